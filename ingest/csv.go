package ingest

import (
	"encoding/csv"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
)

// MaxReportedErrors is how many invalid lines a ValidationError lists; the
// rest are only counted.
const MaxReportedErrors = 20

// MaxRecordBytes bounds one CSV record. The longest valid record is about
// 20 KiB, so anything larger is garbage (an unterminated quote, a binary
// file) and reading stops there instead of buffering it whole.
const MaxRecordBytes = 1 << 20

// LineError is an invalid line of an import file.
type LineError struct {
	// Line is where the record starts, 1-based, the header being line 1.
	Line int
	// Reason says what is wrong, naming the column and quoting the value.
	Reason string
}

// Error returns "line N: reason".
func (e *LineError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// ValidationError is the verdict on a file with invalid lines: it lists the
// first MaxReportedErrors of them and counts all.
type ValidationError struct {
	Errors  []LineError // in file order, at most MaxReportedErrors
	Invalid int         // invalid lines in the whole file
}

// Error lists the reported lines, one per line after a summary when there
// are several.
func (e *ValidationError) Error() string {
	if e.Invalid == 1 && len(e.Errors) == 1 {
		return e.Errors[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d invalid lines", e.Invalid)
	for i := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(e.Errors[i].Error())
	}
	if more := e.Invalid - len(e.Errors); more > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more", more)
	}
	return b.String()
}

// Reader reads the rows of an import file one at a time, validating each:
// the header, the field count, UTF-8, every column's format and length, and
// that no external_id repeats within the file.
//
// Duplicates are found through a set of 128-bit hashes of the external ids
// seen, about 30 bytes per row, so a file of millions of rows is never held
// in memory.
type Reader struct {
	csv     *csv.Reader
	limit   *recordLimiter
	started bool
	stopped bool
	line    int
	t       db.Transaction
	seen    map[[2]uint64]uint32 // external_id hash → line of first use
	seeds   [2]maphash.Seed
}

// NewReader returns a Reader of the import file r.
func NewReader(r io.Reader) *Reader {
	limit := &recordLimiter{r: r, max: MaxRecordBytes}
	c := csv.NewReader(limit)
	c.FieldsPerRecord = -1 // counted by check, to say which line and how many
	c.ReuseRecord = true
	return &Reader{
		csv:   c,
		limit: limit,
		seen:  make(map[[2]uint64]uint32),
		seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
	}
}

// Read returns the next valid row. The Transaction is reused by the next
// call and its ApplicationID and IngestedAt are left empty.
//
// An invalid row yields a *LineError and reading can go on with the next
// one. When the header is wrong or a record is too long, the rest of the
// file cannot be read reliably: Read returns that *LineError and then
// io.EOF. At the end of the file Read returns io.EOF; any other error
// comes from the underlying reader.
func (r *Reader) Read() (*db.Transaction, error) {
	if r.stopped {
		return nil, io.EOF
	}
	if !r.started {
		r.started = true
		if err := r.readHeader(); err != nil {
			r.stopped = true
			return nil, err
		}
	}
	rec, err := r.csv.Read()
	r.limit.reset()
	if err != nil {
		return nil, r.readError(err)
	}
	r.line, _ = r.csv.FieldPos(0)
	if reason := r.check(rec); reason != "" {
		return nil, &LineError{Line: r.line, Reason: reason}
	}
	return &r.t, nil
}

// Line returns the line on which the record last returned by Read starts.
func (r *Reader) Line() int { return r.line }

func (r *Reader) readHeader() error {
	rec, err := r.csv.Read()
	r.limit.reset()
	if errors.Is(err, io.EOF) {
		return &LineError{Line: 1, Reason: "the file is empty; want the header " + Header}
	}
	if err != nil {
		return r.readError(err)
	}
	if len(rec) > 0 {
		rec[0] = strings.TrimPrefix(rec[0], "\ufeff") // a byte-order mark, as spreadsheets write
	}
	if strings.Join(rec, ",") != Header {
		return &LineError{Line: 1, Reason: fmt.Sprintf("header is %s, want %s", quote(strings.Join(rec, ",")), Header)}
	}
	r.line = 1
	return nil
}

// readError turns an error of the CSV reader into a *LineError when it is
// about the file's contents.
func (r *Reader) readError(err error) error {
	if errors.Is(err, io.EOF) {
		return io.EOF
	}
	if errors.Is(err, errRecordTooLong) {
		r.stopped = true
		return &LineError{Line: r.line + 1, Reason: fmt.Sprintf("record after line %d is longer than %d bytes", r.line, MaxRecordBytes)}
	}
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		r.line = pe.StartLine
		where := fmt.Sprintf("column %d", pe.Column)
		if pe.Line != pe.StartLine {
			where = fmt.Sprintf("line %d, column %d", pe.Line, pe.Column)
		}
		return &LineError{Line: pe.StartLine, Reason: fmt.Sprintf("malformed CSV: %v (at %s)", pe.Err, where)}
	}
	return fmt.Errorf("reading CSV: %w", err)
}

// check validates a record and fills r.t from it, returning the first
// problem found or "".
func (r *Reader) check(rec []string) string {
	if len(rec) != numColumns {
		return fmt.Sprintf("has %d fields, want %d (%s)", len(rec), numColumns, Header)
	}
	names := columnNames()
	for i, f := range rec {
		if !utf8.ValidString(f) {
			return names[i] + " is not valid UTF-8"
		}
		if strings.IndexByte(f, 0) >= 0 {
			return names[i] + " contains a NUL character"
		}
	}
	t := &r.t
	*t = db.Transaction{
		ContractID:   rec[colContractID],
		ExternalID:   rec[colExternalID],
		Currency:     rec[colCurrency],
		Kind:         rec[colKind],
		Counterparty: rec[colCounterparty],
		Description:  rec[colDescription],
	}
	if reason := checkID("contract_id", t.ContractID, MaxContractIDLen); reason != "" {
		return reason
	}
	if reason := checkID("external_id", t.ExternalID, MaxExternalIDLen); reason != "" {
		return reason
	}
	if reason := r.checkUnique(t.ExternalID); reason != "" {
		return reason
	}
	var err error
	if t.OccurredAt, err = parseRFC3339(rec[colOccurredAt]); err != nil {
		return fmt.Sprintf("occurred_at %s is not an RFC 3339 timestamp like 2025-01-31T13:45:00Z", quote(rec[colOccurredAt]))
	}
	// An offset can carry year 0000 or 9999 out of RFC 3339's range in UTC,
	// where Tally stores and exports times.
	if y := t.OccurredAt.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Sprintf("occurred_at %s is outside the years 0001 to 9999 in UTC", quote(rec[colOccurredAt]))
	}
	if t.AmountMinor, err = strconv.ParseInt(rec[colAmountMinor], 10, 64); err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return fmt.Sprintf("amount_minor %s is out of the 64-bit integer range", quote(rec[colAmountMinor]))
		}
		return fmt.Sprintf("amount_minor %s is not an integer", quote(rec[colAmountMinor]))
	}
	if !ValidCurrency(t.Currency) {
		return fmt.Sprintf("currency %s is not an ISO 4217 code with a minor unit", quote(t.Currency))
	}
	if !slices.Contains(db.TransactionKinds, t.Kind) {
		return fmt.Sprintf("kind %s is not one of %s", quote(t.Kind), strings.Join(db.TransactionKinds, ", "))
	}
	if n := utf8.RuneCountInString(t.Counterparty); n > MaxCounterpartyLen {
		return fmt.Sprintf("counterparty is %d characters long, more than %d", n, MaxCounterpartyLen)
	}
	if n := utf8.RuneCountInString(t.Description); n > MaxDescriptionLen {
		return fmt.Sprintf("description is %d characters long, more than %d", n, MaxDescriptionLen)
	}
	return ""
}

// checkUnique records the external id and reports whether an earlier line
// used it.
func (r *Reader) checkUnique(id string) string {
	key := [2]uint64{maphash.String(r.seeds[0], id), maphash.String(r.seeds[1], id)}
	if first, ok := r.seen[key]; ok {
		return fmt.Sprintf("external_id %s repeats line %d", quote(id), first)
	}
	r.seen[key] = uint32(min(r.line, 1<<32-1))
	return ""
}

func checkID(name, s string, maxLen int) string {
	if s == "" {
		return name + " is empty"
	}
	if n := utf8.RuneCountInString(s); n > maxLen {
		return fmt.Sprintf("%s is %d characters long, more than %d", name, n, maxLen)
	}
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	// Case filters match contract ids exactly: an invisible space would
	// silently leave a row out of a report.
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return fmt.Sprintf("%s %s has leading or trailing white space", name, quote(s))
	}
	return ""
}

// parseRFC3339 parses an RFC 3339 timestamp. time.Parse alone is lenient
// about the layout (it takes "T1:02:03Z" with a one-digit hour), so the
// shape is checked first: YYYY-MM-DDTHH:MM:SS, an optional fraction, then Z
// or ±HH:MM.
func parseRFC3339(s string) (time.Time, error) {
	errShape := errors.New("not RFC 3339")
	digits := func(from, to int) bool {
		for i := from; i < to; i++ {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	if len(s) < 20 || !digits(0, 4) || s[4] != '-' || !digits(5, 7) || s[7] != '-' || !digits(8, 10) || s[10] != 'T' ||
		!digits(11, 13) || s[13] != ':' || !digits(14, 16) || s[16] != ':' || !digits(17, 19) {
		return time.Time{}, errShape
	}
	rest := s[19:]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return time.Time{}, errShape
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		off := len(s) - 6
		if !digits(off+1, off+3) || !digits(off+4, off+6) {
			return time.Time{}, errShape
		}
	default:
		return time.Time{}, errShape
	}
	return time.Parse(time.RFC3339, s)
}

// ValidCurrency reports whether s is an ISO 4217 currency code with a minor
// unit, so that its amounts in minor units are exact (report.Exponent).
func ValidCurrency(s string) bool {
	_, ok := report.Exponent(s)
	return ok
}

// quote quotes a value for an error message, cutting it short so that a
// 2,000-character description does not flood the terminal.
func quote(s string) string {
	const maxRunes = 40
	n := 0
	for i := range s {
		if n == maxRunes {
			return strconv.Quote(s[:i]) + "…"
		}
		n++
	}
	return strconv.Quote(s)
}

// ValidateCSV reads a whole import file, validating every row, and calls fn
// (when not nil) with each valid row and the line it starts on; the
// Transaction is reused between calls. It returns the number of valid rows.
//
// When some lines are invalid the error is a *ValidationError listing them;
// fn has then been called for the valid rows only, so a caller that must
// import all or nothing validates first and loads in a second pass, as
// Import does. An error returned by fn stops the reading and is returned.
func ValidateCSV(r io.Reader, fn func(line int, t *db.Transaction) error) (int, error) {
	cr := NewReader(r)
	var verr ValidationError
	rows := 0
	for {
		t, err := cr.Read()
		var le *LineError
		switch {
		case errors.Is(err, io.EOF):
			if verr.Invalid > 0 {
				return rows, &verr
			}
			return rows, nil
		case errors.As(err, &le):
			verr.Invalid++
			if len(verr.Errors) < MaxReportedErrors {
				verr.Errors = append(verr.Errors, *le)
			}
			continue
		case err != nil:
			return rows, err
		}
		rows++
		if fn != nil {
			if err := fn(cr.Line(), t); err != nil {
				return rows, err
			}
		}
	}
}

// Writer writes transactions as an import file that Reader accepts.
type Writer struct {
	csv    *csv.Writer
	rec    []string
	header bool
}

// NewWriter returns a Writer to w. Call Flush when done.
func NewWriter(w io.Writer) *Writer {
	return &Writer{csv: csv.NewWriter(w), rec: make([]string, numColumns)}
}

// Write writes t as one record, after the header on the first call.
// Timestamps are written in UTC.
func (w *Writer) Write(t *db.Transaction) error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	w.rec[colContractID] = t.ContractID
	w.rec[colExternalID] = t.ExternalID
	w.rec[colOccurredAt] = t.OccurredAt.UTC().Format(time.RFC3339Nano)
	w.rec[colAmountMinor] = strconv.FormatInt(t.AmountMinor, 10)
	w.rec[colCurrency] = t.Currency
	w.rec[colKind] = t.Kind
	w.rec[colCounterparty] = t.Counterparty
	w.rec[colDescription] = t.Description
	if err := w.csv.Write(w.rec); err != nil {
		return fmt.Errorf("writing CSV: %w", err)
	}
	return nil
}

// Flush writes the header if no row was written, and any buffered data.
func (w *Writer) Flush() error {
	if err := w.writeHeader(); err != nil {
		return err
	}
	w.csv.Flush()
	if err := w.csv.Error(); err != nil {
		return fmt.Errorf("writing CSV: %w", err)
	}
	return nil
}

func (w *Writer) writeHeader() error {
	if w.header {
		return nil
	}
	w.header = true
	names := columnNames()
	if err := w.csv.Write(names[:]); err != nil {
		return fmt.Errorf("writing CSV header: %w", err)
	}
	return nil
}

var errRecordTooLong = errors.New("record too long")

// recordLimiter fails a read once more than max bytes have been read since
// the last reset, which Reader calls after every record. The CSV reader
// reads ahead by at most its buffer size, so the bound is approximate but
// holds.
type recordLimiter struct {
	r   io.Reader
	n   int
	max int
}

func (l *recordLimiter) Read(p []byte) (int, error) {
	if l.n >= l.max {
		return 0, errRecordTooLong
	}
	if len(p) > l.max-l.n {
		p = p[:l.max-l.n]
	}
	n, err := l.r.Read(p)
	l.n += n
	return n, err
}

func (l *recordLimiter) reset() { l.n = 0 }
