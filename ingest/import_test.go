package ingest_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tally-compliance/tally/ingest"
)

func TestImportGoodFileImportsEveryRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := csvFile(
		`contract-1,ext-1,2025-03-04T05:06:07.5Z,1250,EUR,payment,"Smith, ""Jones""",Invoice 1`,
		`contract-2,ext-2,2025-03-04T07:06:07+02:00,-300,JPY,refund,,`,
		`contract-1,ext-3,2025-06-30T23:59:59Z,42,KWD,fee,株式会社,"two`+"\n"+`lines"`,
	)
	before := b.dbNow(t)
	var validated, progressed int64
	res, err := ingest.Import(b.ctx, b.pool, b.app.ID, strings.NewReader(file), &ingest.ImportOpts{
		Validated: func(n int64) { validated = n },
		Progress:  func(n int64) { progressed = n },
	})
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.Rows != 3 || validated != 3 || progressed != 3 {
		t.Errorf("got %d rows (validated %d, progress %d), want 3", res.Rows, validated, progressed)
	}
	// ingested_at is the import transaction's now(), on the database's clock.
	at := res.IngestedAt.UTC()
	if after := b.dbNow(t); at.Before(before) || at.After(after) {
		t.Errorf("ingested_at %v is not between the database's clock before (%v) and after (%v) the import", at, before, after)
	}
	got := b.rows(t, b.app.ID)
	want := []storedRow{
		{"contract-1", "ext-1", time.Date(2025, 3, 4, 5, 6, 7, 5e8, time.UTC), 1250, "EUR", "payment", `Smith, "Jones"`, "Invoice 1", at},
		{"contract-2", "ext-2", time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC), -300, "JPY", "refund", "", "", at},
		{"contract-1", "ext-3", time.Date(2025, 6, 30, 23, 59, 59, 0, time.UTC), 42, "KWD", "fee", "株式会社", "two\nlines", at},
	}
	if len(got) != len(want) {
		t.Fatalf("read back %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestImportGeneratedFileOf5000Rows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	res, err := ingest.Import(b.ctx, b.pool, b.app.ID, bytes.NewReader(generatedCSV(t, 3, 5000)), nil)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	if res.Rows != 5000 || b.count(t, b.app.ID) != 5000 {
		t.Errorf("imported %d, stored %d; want 5000", res.Rows, b.count(t, b.app.ID))
	}
}

func TestImportBadRowAtLine7ImportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rows := make([]string, 20)
	for i := range rows {
		rows[i] = row(fmt.Sprintf("ext-%d", i))
	}
	rows[5] = "contract-1,ext-5,2025-03-04T05:06:07Z,12.5,EUR,payment,," // line 7: the header is line 1
	_, err := ingest.Import(b.ctx, b.pool, b.app.ID, strings.NewReader(csvFile(rows...)), nil)
	var verr *ingest.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	if got, want := err.Error(), `line 7: amount_minor "12.5" is not an integer`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if n := b.count(t, b.app.ID); n != 0 {
		t.Errorf("%d rows stored, want 0", n)
	}
}

func TestImportNamesEveryBadLineAndImportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	file := csvFile(
		row("ok-1"),
		"contract-1,bad-1,yesterday,1,EUR,payment,,",
		row("ok-2"),
		"contract-1,bad-2,2025-03-04T05:06:07Z,1,usd,payment,,",
		"contract-1,bad-3,2025-03-04T05:06:07Z,1,USD,gift,,",
		row("ok-1"),
		"contract-1,bad-4,2025-03-04T05:06:07Z,1,ABC,payment,,",
	)
	_, err := ingest.Import(b.ctx, b.pool, b.app.ID, strings.NewReader(file), nil)
	var verr *ingest.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	want := []struct {
		line   int
		reason string
	}{
		{3, `occurred_at "yesterday" is not an RFC 3339 timestamp`},
		{5, `currency "usd"`},
		{6, `kind "gift"`},
		{7, `external_id "ok-1" repeats line 2`},
		{8, `currency "ABC" is not an ISO 4217 code with a minor unit`},
	}
	if len(verr.Errors) != len(want) || verr.Invalid != len(want) {
		t.Fatalf("got %d errors (%d invalid): %v; want %d", len(verr.Errors), verr.Invalid, verr, len(want))
	}
	for i, w := range want {
		if got := verr.Errors[i]; got.Line != w.line || !strings.Contains(got.Reason, w.reason) {
			t.Errorf("error %d: got line %d %q, want line %d with %q", i, got.Line, got.Reason, w.line, w.reason)
		}
	}
	if n := b.count(t, b.app.ID); n != 0 {
		t.Errorf("%d rows stored, want 0", n)
	}
}

func TestImportExternalIDAlreadyInDatabaseImportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if _, err := ingest.Import(b.ctx, b.pool, b.app.ID, strings.NewReader(csvFile(row("a"), row("b"))), nil); err != nil {
		t.Fatalf("first import: %v", err)
	}
	// Valid on its own; its last row repeats an external id of the first file.
	second := csvFile(row("c"), row("d"), row("b"))
	_, err := ingest.Import(b.ctx, b.pool, b.app.ID, strings.NewReader(second), nil)
	if !errors.Is(err, ingest.ErrAlreadyImported) {
		t.Fatalf("err = %v, want ErrAlreadyImported", err)
	}
	if !strings.Contains(err.Error(), "nothing imported") {
		t.Errorf("error %q does not say that nothing was imported", err)
	}
	if n := b.count(t, b.app.ID); n != 2 {
		t.Errorf("%d rows stored, want the first file's 2", n)
	}
}

func TestImportSameExternalIDInAnotherApplicationIsFine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := b.newApp(t)
	for _, app := range []string{b.app.ID, other.ID} {
		if _, err := ingest.Import(b.ctx, b.pool, app, strings.NewReader(csvFile(row("same"))), nil); err != nil {
			t.Fatalf("import into %s: %v", app, err)
		}
	}
}

func TestImportUnknownApplicationFails(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := ingest.Import(b.ctx, b.pool, "app_00000000000000000000000000", strings.NewReader(csvFile(row("a"))), nil)
	if err == nil || !strings.Contains(err.Error(), "nothing imported") {
		t.Fatalf("err = %v, want a failure saying nothing was imported", err)
	}
}
