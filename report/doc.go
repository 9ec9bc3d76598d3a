// Package report builds report files from rows: the transaction_summary and
// activity_log CSV formats, exact money formatting by ISO 4217 exponent, and
// counterparty pseudonyms. It is pure: no database, no object store, no
// River. Writers stream to an io.Writer and hold one row at a time, so a
// report of any size is built in constant memory.
package report
