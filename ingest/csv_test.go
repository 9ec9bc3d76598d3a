package ingest_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

// goodRow is a valid record; tests change one field of it.
const goodRow = "c1,ext-1,2025-03-04T05:06:07Z,1250,EUR,payment,Acme,Invoice 1"

// csvFile joins the header and rows into an import file.
func csvFile(rows ...string) string {
	return ingest.Header + "\n" + strings.Join(rows, "\n") + "\n"
}

// collect validates file and returns the valid rows with their lines.
func collect(t *testing.T, file string) ([]db.Transaction, []int, error) {
	t.Helper()
	var rows []db.Transaction
	var lines []int
	n, err := ingest.ValidateCSV(strings.NewReader(file), func(line int, tx *db.Transaction) error {
		rows = append(rows, *tx)
		lines = append(lines, line)
		return nil
	})
	if n != len(rows) {
		t.Fatalf("ValidateCSV returned %d rows, called fn %d times", n, len(rows))
	}
	return rows, lines, err
}

func TestValidateCSVAcceptsGoodFile(t *testing.T) {
	t.Parallel()
	file := "\ufeff" + ingest.Header + "\r\n" +
		goodRow + "\r\n" +
		`c2,ext-2,2025-03-04T07:06:07.123456+02:00,-99,JPY,refund,,` + "\r\n" +
		`c1,ext-3,2025-12-31T23:59:59Z,9223372036854775807,KWD,adjustment,"Smith, ""Jones"" & Søn","two` + "\n" + `lines"` + "\n" +
		`c3,ext-4,2025-01-01T00:00:00Z,+7,USD,fee,株式会社,` // no final newline
	rows, lines, err := collect(t, file)
	if err != nil {
		t.Fatalf("ValidateCSV: %v", err)
	}
	want := []db.Transaction{
		{ContractID: "c1", ExternalID: "ext-1", OccurredAt: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), AmountMinor: 1250, Currency: "EUR", Kind: "payment", Counterparty: "Acme", Description: "Invoice 1"},
		{ContractID: "c2", ExternalID: "ext-2", OccurredAt: time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC), AmountMinor: -99, Currency: "JPY", Kind: "refund"},
		{ContractID: "c1", ExternalID: "ext-3", OccurredAt: time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), AmountMinor: 9223372036854775807, Currency: "KWD", Kind: "adjustment", Counterparty: `Smith, "Jones" & Søn`, Description: "two\nlines"},
		{ContractID: "c3", ExternalID: "ext-4", OccurredAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), AmountMinor: 7, Currency: "USD", Kind: "fee", Counterparty: "株式会社"},
	}
	if diff := cmp.Diff(want, rows, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("rows mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{2, 3, 4, 6}, lines); diff != "" {
		t.Errorf("lines mismatch (-want +got):\n%s", diff)
	}
}

func TestValidateCSVHeaderOnlyIsZeroRows(t *testing.T) {
	t.Parallel()
	rows, _, err := collect(t, ingest.Header+"\n")
	if err != nil || len(rows) != 0 {
		t.Fatalf("got %d rows, err %v; want 0 rows, no error", len(rows), err)
	}
}

func TestValidateCSVRejectsBadRows(t *testing.T) {
	t.Parallel()
	// Each file has one bad record; wantLine is where it starts.
	tests := []struct {
		name       string
		file       string
		wantLine   int
		wantReason string
	}{
		{"EmptyFile", "", 1, "the file is empty"},
		{"WrongHeaderOrder", "external_id,contract_id,occurred_at,amount_minor,currency,kind,counterparty,description\n" + goodRow, 1, "header is"},
		{"MissingHeader", goodRow + "\n", 1, "header is"},
		{"TooFewFields", csvFile(goodRow, "c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,Acme"), 3, "has 7 fields, want 8"},
		{"TooManyFields", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,Acme,d,extra"), 2, "has 9 fields, want 8"},
		{"EmptyContractID", csvFile(",ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,"), 2, "contract_id is empty"},
		{"LongContractID", csvFile(strings.Repeat("c", 101) + ",ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,"), 2, "contract_id is 101 characters long, more than 100"},
		{"PaddedContractID", csvFile("c1 ,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,"), 2, `contract_id "c1 " has leading or trailing white space`},
		{"EmptyExternalID", csvFile("c1,,2025-03-04T05:06:07Z,1,EUR,payment,,"), 2, "external_id is empty"},
		{"LongExternalID", csvFile("c1," + strings.Repeat("é", 201) + ",2025-03-04T05:06:07Z,1,EUR,payment,,"), 2, "external_id is 201 characters long, more than 200"},
		{"DateWithoutTime", csvFile("c1,ext-2,2025-03-04,1,EUR,payment,,"), 2, `occurred_at "2025-03-04" is not an RFC 3339 timestamp`},
		{"TimeWithoutZone", csvFile("c1,ext-2,2025-03-04T05:06:07,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"OneDigitHour", csvFile("c1,ext-2,2025-03-04T5:06:07Z,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"SpaceForT", csvFile("c1,ext-2,2025-03-04 05:06:07Z,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"EmptyFraction", csvFile("c1,ext-2,2025-03-04T05:06:07.Z,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"ShortOffset", csvFile("c1,ext-2,2025-03-04T05:06:07+0200,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"February30", csvFile("c1,ext-2,2025-02-30T05:06:07Z,1,EUR,payment,,"), 2, "is not an RFC 3339 timestamp"},
		{"YearZeroInUTC", csvFile("c1,ext-2,0001-01-01T00:30:00+01:00,1,EUR,payment,,"), 2, "outside the years 0001 to 9999"},
		{"DecimalAmount", csvFile("c1,ext-2,2025-03-04T05:06:07Z,12.5,EUR,payment,,"), 2, `amount_minor "12.5" is not an integer`},
		{"EmptyAmount", csvFile("c1,ext-2,2025-03-04T05:06:07Z,,EUR,payment,,"), 2, `amount_minor "" is not an integer`},
		{"HugeAmount", csvFile("c1,ext-2,2025-03-04T05:06:07Z,9223372036854775808,EUR,payment,,"), 2, "is out of the 64-bit integer range"},
		{"LowerCaseCurrency", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,eur,payment,,"), 2, `currency "eur" is not an ISO 4217 code`},
		{"FourLetterCurrency", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EURO,payment,,"), 2, `currency "EURO"`},
		{"NotISO4217", csvFile(goodRow, "c1,ext-2,2025-03-04T05:06:07Z,1,ABC,payment,,"), 3, `currency "ABC" is not an ISO 4217 code with a minor unit`},
		{"NoMinorUnit", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,XAU,payment,,"), 2, `currency "XAU" is not an ISO 4217 code with a minor unit`},
		{"WithdrawnBefore2015", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,DEM,payment,,"), 2, `currency "DEM"`},
		{"UnknownKind", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,deposit,,"), 2, `kind "deposit" is not one of payment, refund, fee, chargeback, payout, adjustment`},
		{"LongCounterparty", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment," + strings.Repeat("ж", 501) + ","), 2, "counterparty is 501 characters long, more than 500"},
		{"LongDescription", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,," + strings.Repeat("d", 2001)), 2, "description is 2001 characters long, more than 2000"},
		{"InvalidUTF8", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,Caf\xe9,"), 2, "counterparty is not valid UTF-8"},
		{"NULCharacter", csvFile("c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,a\x00b"), 2, "description contains a NUL character"},
		{"DuplicateExternalID", csvFile(goodRow, "c2,ext-9,2025-03-04T05:06:07Z,1,EUR,payment,,", "c3,ext-1,2025-03-04T05:06:07Z,1,EUR,payment,,"), 4, `external_id "ext-1" repeats line 2`},
		{"BareQuote", csvFile(`c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,Say "hi",`), 2, "malformed CSV"},
		{"UnterminatedQuote", csvFile(goodRow, `c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,"open,`), 3, "malformed CSV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := collect(t, tt.file)
			var verr *ingest.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if verr.Invalid != 1 || len(verr.Errors) != 1 {
				t.Fatalf("got %d invalid lines %v, want 1", verr.Invalid, verr.Errors)
			}
			got := verr.Errors[0]
			if got.Line != tt.wantLine || !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("got line %d %q, want line %d containing %q", got.Line, got.Reason, tt.wantLine, tt.wantReason)
			}
			if want := fmt.Sprintf("line %d: ", tt.wantLine); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestValidateCSVBadRowAtLine7NamesLine7(t *testing.T) {
	t.Parallel()
	rows := make([]string, 10)
	for i := range rows {
		rows[i] = fmt.Sprintf("c1,ext-%d,2025-03-04T05:06:07Z,%d,EUR,payment,,", i, i*100)
	}
	rows[5] = "c1,ext-5,2025-03-04T05:06:07Z,12.5,EUR,payment,," // the header is line 1
	_, _, err := collect(t, csvFile(rows...))
	if got, want := fmt.Sprint(err), `line 7: amount_minor "12.5" is not an integer`; got != want {
		t.Errorf("got error %q, want %q", got, want)
	}
}

func TestValidateCSVListsFirst20ErrorsAndCountsAll(t *testing.T) {
	t.Parallel()
	var rows []string
	for i := range 30 {
		rows = append(rows, fmt.Sprintf("c1,ext-%d,2025-03-04T05:06:07Z,1,EUR,payment,,", i), // valid
			fmt.Sprintf("c1,bad-%d,2025-03-04T05:06:07Z,1,XX,payment,,", i)) // invalid currency
	}
	valid, lines, err := collect(t, csvFile(rows...))
	var verr *ingest.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	if len(valid) != 30 || len(lines) != 30 {
		t.Errorf("got %d valid rows, want 30", len(valid))
	}
	if verr.Invalid != 30 || len(verr.Errors) != ingest.MaxReportedErrors {
		t.Fatalf("got %d invalid, %d listed; want 30, %d", verr.Invalid, len(verr.Errors), ingest.MaxReportedErrors)
	}
	for i, le := range verr.Errors {
		if want := 3 + 2*i; le.Line != want {
			t.Errorf("error %d on line %d, want %d", i, le.Line, want)
		}
	}
	msg := err.Error()
	for _, want := range []string{"30 invalid lines", "\n  line 3: currency \"XX\"", "\n  line 41: ", "\n  ... and 10 more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestValidateCSVCountsPhysicalLinesOfMultilineRecords(t *testing.T) {
	t.Parallel()
	file := csvFile(
		"c1,ext-1,2025-03-04T05:06:07Z,1,EUR,payment,,\"three\nline\ndescription\"", // lines 2-4
		"c1,ext-2,2025-03-04T05:06:07Z,1,EUR,nope,,",                                // line 5
	)
	_, _, err := collect(t, file)
	if got, want := fmt.Sprint(err), `line 5: kind "nope"`; !strings.HasPrefix(got, want) {
		t.Errorf("got %q, want it to start with %q", got, want)
	}
}

func TestValidateCSVStopsAtOverlongRecord(t *testing.T) {
	t.Parallel()
	// An unterminated quote swallows the rest of a large file: reading
	// stops at MaxRecordBytes instead of buffering it all.
	file := csvFile(goodRow, `c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,"`+strings.Repeat("x\n", ingest.MaxRecordBytes))
	_, _, err := collect(t, file)
	var verr *ingest.ValidationError
	if !errors.As(err, &verr) || verr.Invalid != 1 {
		t.Fatalf("err = %v, want one invalid line", err)
	}
	if got := verr.Errors[0]; got.Line != 3 || !strings.Contains(got.Reason, "longer than") {
		t.Errorf("got %+v, want line 3 longer than the limit", got)
	}
}

func TestValidateCSVStopsWhenCallbackFails(t *testing.T) {
	t.Parallel()
	stop := errors.New("stop")
	calls := 0
	_, err := ingest.ValidateCSV(strings.NewReader(csvFile(goodRow, "c1,ext-2,2025-03-04T05:06:07Z,1,EUR,payment,,")),
		func(int, *db.Transaction) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("got err %v after %d calls, want %v after 1", err, calls, stop)
	}
}

func TestValidateCSVPassesReadErrorsThrough(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	r := io.MultiReader(strings.NewReader(ingest.Header+"\n"+goodRow+"\n"), errReader{boom})
	_, err := ingest.ValidateCSV(r, nil)
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestWriterOutputValidatesToTheSameRows(t *testing.T) {
	t.Parallel()
	g, err := ingest.NewGenerator(ingest.GeneratorOpts{Seed: 5, Count: 2000})
	if err != nil {
		t.Fatal(err)
	}
	var want []db.Transaction
	var buf bytes.Buffer
	w := ingest.NewWriter(&buf)
	for g.Next() {
		tx := *g.Transaction()
		tx.ApplicationID, tx.IngestedAt = "", time.Time{}
		want = append(want, tx)
		if err := w.Write(&tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _, err := collect(t, buf.String())
	if err != nil {
		t.Fatalf("ValidateCSV of written file: %v", err)
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestWriterWithoutRowsWritesHeader(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := ingest.NewWriter(&buf).Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := buf.String(), ingest.Header+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidCurrencyISO4217WithMinorUnit(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"EUR", "USD", "JPY", "KWD", "CLF", "UYW", "XCG", "ZWG", "VES", "HRK", "BYR"} {
		if !ingest.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = false, want true", c)
		}
	}
	for _, c := range []string{"ABC", "QQQ", "XAU", "XDR", "XXX", "XTS", "DEM", "eur", "EURO", "EU", ""} {
		if ingest.ValidCurrency(c) {
			t.Errorf("ValidCurrency(%q) = true, want false", c)
		}
	}
}
