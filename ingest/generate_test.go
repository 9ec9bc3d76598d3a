package ingest_test

import (
	"bytes"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

func TestGeneratorSameOptionsSameBytes(t *testing.T) {
	t.Parallel()
	a, b := generatedCSV(t, 17, 3000), generatedCSV(t, 17, 3000)
	if !bytes.Equal(a, b) {
		t.Fatal("two generators with seed 17 wrote different files")
	}
	if bytes.Equal(a, generatedCSV(t, 18, 3000)) {
		t.Fatal("seeds 17 and 18 wrote the same file")
	}
}

// TestGeneratorPinnedOutput pins the first rows of a data set, so that a
// change of algorithm, which changes every data set, is deliberate.
func TestGeneratorPinnedOutput(t *testing.T) {
	t.Parallel()
	want := ingest.Header + "\n" +
		`contract-011,seed-3-0000000001,2025-02-13T10:32:24.947215Z,284198,EUR,payment,"Zürich Rückversicherung, AG","Subscription renewal — plan ""Pro"""` + "\n" +
		`contract-009,seed-3-0000000002,2025-07-19T09:14:24.05039Z,10184,KWD,payment,O'Brien Logistics,"Subscription renewal — plan ""Pro"""` + "\n" +
		`contract-004,seed-3-0000000003,2025-11-05T09:35:32.757567Z,465988,EUR,payment,Łódź Tekstil sp. z o.o.,"Order #323830, 2 items"` + "\n"
	if got := string(generatedCSV(t, 3, 3)); got != want {
		t.Errorf("seed 3 mismatch (-want +got):\n%s", cmp.Diff(want, got))
	}
}

func TestGeneratorRowsAreValidAndVaried(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
	g, err := ingest.NewGenerator(ingest.GeneratorOpts{ApplicationID: "app_x", Seed: 99, Count: 20_000, Contracts: 7, Start: start, Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	from, to := g.Period()
	if !from.Equal(start) || !to.Equal(start.AddDate(0, 0, 10)) {
		t.Errorf("Period() = %v, %v; want %v, %v", from, to, start, start.AddDate(0, 0, 10))
	}
	idPattern := regexp.MustCompile(`^seed-99-\d{10}$`)
	currencies, kinds, contracts := map[string]int{}, map[string]int{}, map[string]bool{}
	var prev time.Time
	var quoted, unicode, multiline int
	var buf bytes.Buffer
	w := ingest.NewWriter(&buf)
	n := 0
	for g.Next() {
		tx := g.Transaction()
		n++
		if tx.ApplicationID != "app_x" || !tx.IngestedAt.Equal(start) {
			t.Fatalf("row %d: application %q ingested %v, want app_x at %v", n, tx.ApplicationID, tx.IngestedAt, start)
		}
		if !idPattern.MatchString(tx.ExternalID) {
			t.Fatalf("row %d: external id %q does not match %v", n, tx.ExternalID, idPattern)
		}
		if tx.OccurredAt.Before(from) || !tx.OccurredAt.Before(to) || tx.OccurredAt.Before(prev) {
			t.Fatalf("row %d: occurred_at %v outside [%v, %v) or before the previous row", n, tx.OccurredAt, from, to)
		}
		if tx.AmountMinor == 0 {
			t.Fatalf("row %d: amount 0", n)
		}
		if (tx.Kind == "payment") != (tx.AmountMinor > 0) && tx.Kind != "adjustment" {
			t.Fatalf("row %d: %s of %d has the wrong sign", n, tx.Kind, tx.AmountMinor)
		}
		prev = tx.OccurredAt
		currencies[tx.Currency]++
		kinds[tx.Kind]++
		contracts[tx.ContractID] = true
		if bytes.ContainsAny([]byte(tx.Counterparty+tx.Description), `,"`) {
			quoted++
		}
		if bytes.ContainsFunc([]byte(tx.Counterparty), func(r rune) bool { return r > 0x7f }) {
			unicode++
		}
		if bytes.ContainsRune([]byte(tx.Description), '\n') {
			multiline++
		}
		if err := w.Write(tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if n != 20_000 {
		t.Errorf("generated %d rows, want 20000", n)
	}
	if got := slices.Sorted(mapsKeys(currencies)); !slices.Equal(got, []string{"EUR", "JPY", "KWD", "USD"}) {
		t.Errorf("currencies %v, want EUR, JPY, KWD, USD", got)
	}
	if got, want := slices.Sorted(mapsKeys(kinds)), slices.Sorted(slices.Values(db.TransactionKinds)); !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	if len(contracts) != 7 {
		t.Errorf("%d contracts, want 7", len(contracts))
	}
	if quoted == 0 || unicode == 0 || multiline == 0 {
		t.Errorf("rows needing quotes %d, with non-ASCII names %d, multi-line %d; want some of each", quoted, unicode, multiline)
	}
	if rows, err := ingest.ValidateCSV(&buf, nil); err != nil || rows != n {
		t.Errorf("ValidateCSV of the generated rows: %d rows, %v; want %d, nil", rows, err, n)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestNewGeneratorRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string]ingest.GeneratorOpts{
		"NegativeCount":    {Count: -1},
		"TooManyContracts": {Count: 1, Contracts: ingest.MaxContracts + 1},
		"NegativeDays":     {Count: 1, Days: -3},
	} {
		if _, err := ingest.NewGenerator(opts); err == nil {
			t.Errorf("%s: NewGenerator(%+v) succeeded, want an error", name, opts)
		}
	}
}

func TestSeedSameSeedSameRowsInTwoApplications(t *testing.T) {
	t.Parallel()
	b := setup(t)
	appB, appC := b.newApp(t), b.newApp(t)
	seed := func(appID string, s uint64) {
		t.Helper()
		n, err := ingest.Seed(b.ctx, b.pool, ingest.GeneratorOpts{ApplicationID: appID, Seed: s, Count: 3000, Contracts: 5})
		if err != nil {
			t.Fatalf("Seed(%s, %d): %v", appID, s, err)
		}
		if n != 3000 {
			t.Fatalf("Seed(%s, %d) = %d rows, want 3000", appID, s, n)
		}
	}
	seed(b.app.ID, 7)
	seed(appB.ID, 7)
	seed(appC.ID, 8)

	a, bb, c := b.rows(t, b.app.ID), b.rows(t, appB.ID), b.rows(t, appC.ID)
	if len(a) != 3000 {
		t.Fatalf("stored %d rows, want 3000", len(a))
	}
	if diff := cmp.Diff(a, bb); diff != "" {
		t.Errorf("seed 7 in two applications differs (-first +second):\n%s", diff)
	}
	same := 0
	for i := range a {
		a[i].ExternalID, c[i].ExternalID = "", ""
		if a[i] == c[i] {
			same++
		}
	}
	if same > 30 {
		t.Errorf("seeds 7 and 8 share %d of 3000 rows apart from ids, want them to differ", same)
	}
}

func TestSeedTwiceWithSameSeedConflicts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := ingest.GeneratorOpts{ApplicationID: b.app.ID, Seed: 1, Count: 100}
	if _, err := ingest.Seed(b.ctx, b.pool, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := ingest.Seed(b.ctx, b.pool, opts); err == nil {
		t.Fatal("seeding seed 1 twice succeeded, want a conflict")
	}
	opts.Seed = 2
	if _, err := ingest.Seed(b.ctx, b.pool, opts); err != nil {
		t.Fatalf("seeding seed 2 next to seed 1: %v", err)
	}
	if n := b.count(t, b.app.ID); n != 200 {
		t.Errorf("stored %d rows, want 200", n)
	}
}
