// Package ingest gets transactions into Tally: it reads and validates CSV
// import files (Reader, ValidateCSV), loads them all-or-nothing with COPY
// (Import), generates deterministic synthetic transactions (Generator, Seed)
// and builds a ready-to-use demo tenant (SeedDemo).
//
// Everything streams: an import file is read twice (validate, then copy)
// rather than held in memory, and generated rows go straight into COPY.
package ingest

// Header is the first line every import file must start with, exactly.
const Header = "contract_id,external_id,occurred_at,amount_minor,currency,kind,counterparty,description"

// Field limits, in characters, matching the checks of the transactions table.
const (
	MaxContractIDLen   = 100
	MaxExternalIDLen   = 200
	MaxCounterpartyLen = 500
	MaxDescriptionLen  = 2000
)

// Columns of an import file, in Header order.
const (
	colContractID = iota
	colExternalID
	colOccurredAt
	colAmountMinor
	colCurrency
	colKind
	colCounterparty
	colDescription
	numColumns
)

// columnNames returns the names of the import file's columns, in order.
func columnNames() [numColumns]string {
	return [numColumns]string{
		"contract_id", "external_id", "occurred_at", "amount_minor",
		"currency", "kind", "counterparty", "description",
	}
}

// progressEvery is how many rows pass between two calls of a progress callback.
const progressEvery = 4096
