package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

func mustUnmarshal(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%q is not JSON: %v", s, err)
	}
}

func TestSeedIntoApplication(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	out := b.mustRun(t, "seed", "--app", tn.app.ID, "--transactions", "1500", "--seed", "9")
	if !strings.HasPrefix(out, "generated 1500 transactions (seed 9) into "+tn.app.ID) {
		t.Errorf("printed %q", out)
	}
	var got seedJSON
	b.mustJSON(t, &got, "seed", "--app", tn.app.ID, "--transactions", "500", "--seed", "10",
		"--contracts", "3", "--start", "2024-06-01T00:00:00Z", "--days", "30", "--json")
	want := seedJSON{ApplicationID: tn.app.ID, Rows: 500, Seed: 10,
		PeriodStart: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)}
	if got.ApplicationID != want.ApplicationID || got.Rows != want.Rows || got.Seed != want.Seed ||
		!got.PeriodStart.Equal(want.PeriodStart) || !got.PeriodEnd.Equal(want.PeriodEnd) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := b.count(t, tn.app.ID); n != 2000 {
		t.Errorf("stored %d rows, want 2000", n)
	}
	var contracts int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(DISTINCT contract_id) FROM transactions WHERE application_id = $1 AND external_id LIKE 'seed-10-%'`,
		tn.app.ID).Scan(&contracts); err != nil || contracts != 3 {
		t.Errorf("seed 10 spans %d contracts (%v), want 3", contracts, err)
	}
	wantError(t, b.run(t, "seed", "--app", tn.app.ID, "--transactions", "10", "--seed", "9"),
		"application "+tn.app.ID+" already holds rows of seed 9")
}

func TestSeedCSVOutImportsToTheSameRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	seeded := b.newTenant(t, "ana@example.com")
	imported := b.newTenant(t, "bob@example.com")
	path := filepath.Join(t.TempDir(), "seed.csv")
	b.mustRun(t, "seed", "--csv-out", path, "--transactions", "800", "--seed", "4")
	b.mustRun(t, "seed", "--app", seeded.app.ID, "--transactions", "800", "--seed", "4")
	b.mustRun(t, "import", "--app", imported.app.ID, path)

	// Same rows, byte for byte, apart from ingested_at (set by the import).
	dump := func(appID string) string {
		var s string
		err := b.pool.QueryRow(b.ctx, `
			SELECT string_agg(concat_ws('|', contract_id, external_id, occurred_at, amount_minor, currency, kind, counterparty, description), E'\n' ORDER BY external_id)
			  FROM transactions WHERE application_id = $1`, appID).Scan(&s)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if a, b := dump(seeded.app.ID), dump(imported.app.ID); a != b || a == "" {
		t.Error("seeded rows differ from the rows imported from --csv-out")
	}

	r := b.run(t, "seed", "--csv-out", "-", "--transactions", "3", "--seed", "4")
	if r.err != nil || !strings.HasPrefix(r.stdout, ingest.Header+"\n") || strings.Count(r.stdout, "seed-4-") != 3 {
		t.Errorf("--csv-out - wrote %q (%v), want the header and 3 rows", r.stdout, r.err)
	}
	if !strings.Contains(r.stderr, "generated 3 transactions") {
		t.Errorf("stderr %q, want the summary there, off the CSV", r.stderr)
	}
	file, _ := os.ReadFile(path)
	if strings.Count(string(file), "seed-4-") != 800 {
		t.Errorf("%s holds %d rows, want 800", path, strings.Count(string(file), "seed-4-"))
	}
}

func TestSeedErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"NoDestination", []string{"seed", "--transactions", "10"}, "at least one of the flags in the group [app csv-out] is required"},
		{"BothDestinations", []string{"seed", "--app", tn.app.ID, "--csv-out", "x.csv", "--transactions", "10"}, "were all set"},
		{"NoCount", []string{"seed", "--app", tn.app.ID}, `required flag(s) "transactions" not set`},
		{"ZeroCount", []string{"seed", "--app", tn.app.ID, "--transactions", "0"}, "--transactions must be positive"},
		{"ZeroDays", []string{"seed", "--app", tn.app.ID, "--transactions", "1", "--days", "0"}, "--contracts and --days must be at least 1"},
		{"BadStart", []string{"seed", "--app", tn.app.ID, "--transactions", "1", "--start", "2025"}, `--start "2025" is not an RFC 3339 time`},
		{"UnknownApp", []string{"seed", "--app", "app_00000000000000000000000000", "--transactions", "1"}, "seeding 1 transactions into app_00000000000000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, tt.args...), tt.want)
		})
	}
	if n := b.count(t, tn.app.ID); n != 0 {
		t.Errorf("stored %d rows, want 0", n)
	}
}

func TestDemoSeed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var demo ingest.DemoTenant
	b.mustJSON(t, &demo, "demo-seed", "--transactions", "500", "--seed", "3", "--json")
	if demo.Transactions != 500 || demo.Application.ForeignID != "demo" || len(demo.Users) != 4 || len(demo.Cases) != 2 {
		t.Fatalf("got %+v, want 500 transactions in app demo, 4 users, 2 cases", demo)
	}
	for _, u := range demo.Users {
		p, err := db.Authenticate(b.ctx, b.pool, u.Token)
		if err != nil || p.User.ID != u.ID {
			t.Errorf("%s: token authenticates as %+v (%v), want %s", u.Role, p, err, u.ID)
		}
	}
	for _, c := range demo.Cases {
		got, err := db.GetCase(b.ctx, b.pool, c.ID)
		if err != nil || got.Status != db.CaseApproved || got.ApplicationID != demo.Application.ID {
			t.Errorf("case %s: %+v (%v), want approved on the demo application", c.ID, got, err)
		}
	}

	out := b.mustRun(t, "demo-seed", "--transactions", "100")
	for _, want := range []string{"Demo Org ", "\nROLE  ", "auditor+", db.TokenPrefix, "line_items,counterparty_names,descriptions", "contract-001,contract-002"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo-seed printed %q, want it to contain %q", out, want)
		}
	}
	wantError(t, b.run(t, "demo-seed", "--transactions", "-5"), "--transactions must be positive")
}
