package ingest_test

import (
	"bytes"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

// FuzzValidateCSV checks that ValidateCSV never panics, that every row it
// accepts obeys the rules of the transactions table (checked here again,
// independently), and that accepted rows written back by Writer validate to
// the same rows. Seeds live in testdata/fuzz/FuzzValidateCSV.
func FuzzValidateCSV(f *testing.F) {
	f.Add([]byte(csvFile(goodRow)))
	f.Add([]byte("\ufeff" + ingest.Header + "\r\n" + `c1,e1,2025-01-01T00:00:00+14:00,-1,JPY,refund,"a ""b"", c","x` + "\n" + `y"` + "\r\n"))
	f.Add([]byte(csvFile(goodRow, goodRow, "c1,e2,0000-01-01T00:00:00+01:00,1,EUR,fee,,")))
	f.Add([]byte(csvFile(" c,e,2025-01-01T00:00:00Z,x,eur,gift,\x00,\xff")))
	f.Add([]byte(ingest.Header))

	currency := regexp.MustCompile(`^[A-Z]{3}$`)
	f.Fuzz(func(t *testing.T, data []byte) {
		var accepted []db.Transaction
		seen := map[string]bool{}
		lastLine := 1
		rows, err := ingest.ValidateCSV(bytes.NewReader(data), func(line int, tx *db.Transaction) error {
			if line <= lastLine {
				t.Fatalf("row on line %d after line %d", line, lastLine)
			}
			lastLine = line
			for name, s := range map[string]string{"contract_id": tx.ContractID, "external_id": tx.ExternalID,
				"counterparty": tx.Counterparty, "description": tx.Description, "currency": tx.Currency, "kind": tx.Kind} {
				if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
					t.Fatalf("line %d: accepted %s %q: invalid UTF-8 or NUL", line, name, s)
				}
			}
			for name, lim := range map[string]struct {
				s   string
				max int
			}{"contract_id": {tx.ContractID, 100}, "external_id": {tx.ExternalID, 200}} {
				n := utf8.RuneCountInString(lim.s)
				first, _ := utf8.DecodeRuneInString(lim.s)
				last, _ := utf8.DecodeLastRuneInString(lim.s)
				if n < 1 || n > lim.max || unicode.IsSpace(first) || unicode.IsSpace(last) {
					t.Fatalf("line %d: accepted %s %q", line, name, lim.s)
				}
			}
			if utf8.RuneCountInString(tx.Counterparty) > 500 || utf8.RuneCountInString(tx.Description) > 2000 {
				t.Fatalf("line %d: accepted an over-long counterparty or description", line)
			}
			if !currency.MatchString(tx.Currency) || !slices.Contains(db.TransactionKinds, tx.Kind) {
				t.Fatalf("line %d: accepted currency %q kind %q", line, tx.Currency, tx.Kind)
			}
			if y := tx.OccurredAt.UTC().Year(); y < 1 || y > 9999 {
				t.Fatalf("line %d: accepted occurred_at %v", line, tx.OccurredAt)
			}
			if seen[tx.ExternalID] {
				t.Fatalf("line %d: accepted external_id %q twice", line, tx.ExternalID)
			}
			seen[tx.ExternalID] = true
			accepted = append(accepted, *tx)
			return nil
		})
		if rows != len(accepted) {
			t.Fatalf("ValidateCSV returned %d rows, accepted %d", rows, len(accepted))
		}
		var verr *ingest.ValidationError
		switch {
		case err == nil:
		case errors.As(err, &verr):
			if len(verr.Errors) == 0 || len(verr.Errors) > ingest.MaxReportedErrors || verr.Invalid < len(verr.Errors) {
				t.Fatalf("ValidationError lists %d of %d errors", len(verr.Errors), verr.Invalid)
			}
			for i, le := range verr.Errors {
				if le.Line < 1 || le.Reason == "" || (i > 0 && le.Line <= verr.Errors[i-1].Line) {
					t.Fatalf("error %d: %+v after %+v", i, le, verr.Errors[max(i-1, 0)])
				}
			}
		default:
			t.Fatalf("ValidateCSV of in-memory data: %v", err) // no I/O error can happen
		}

		// What was accepted survives a write and a second validation.
		var buf bytes.Buffer
		w := ingest.NewWriter(&buf)
		for i := range accepted {
			if err := w.Write(&accepted[i]); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		i := 0
		n, err := ingest.ValidateCSV(&buf, func(line int, tx *db.Transaction) error {
			want := accepted[i]
			if tx.OccurredAt.Equal(want.OccurredAt) {
				tx.OccurredAt = want.OccurredAt
			}
			if *tx != want {
				t.Fatalf("row %d written and read back as %+v, want %+v", i, *tx, want)
			}
			i++
			return nil
		})
		if err != nil || n != len(accepted) {
			t.Fatalf("re-validating %d written rows: %d rows, %v", len(accepted), n, err)
		}
	})
}
