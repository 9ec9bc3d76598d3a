package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// importFile writes an import file of the given rows into a temporary
// directory and returns its path.
func importFile(t *testing.T, rows ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "transactions.csv")
	body := ingest.Header + "\n" + strings.Join(rows, "\n") + "\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// validRows returns n valid records with external ids prefix-0 and on.
func validRows(prefix string, n int) []string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = fmt.Sprintf(`contract-%d,%s-%d,2025-03-%02dT05:06:07Z,%d,EUR,payment,"Acme, Inc.",`, i%3, prefix, i, i%28+1, 100+i)
	}
	return rows
}

func (b *testBundle) count(t *testing.T, appID string) int64 {
	t.Helper()
	n, err := tallytest.CountTransactions(b.ctx, b.pool, appID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	out := b.mustRun(t, "import", "--app", tn.app.ID, importFile(t, validRows("a", 25)...))
	if !strings.HasPrefix(out, "imported 25 rows from ") || !strings.Contains(out, " into "+tn.app.ID+" in ") {
		t.Errorf("printed %q, want the row count and the time", out)
	}
	if n := b.count(t, tn.app.ID); n != 25 {
		t.Errorf("stored %d rows, want 25", n)
	}
}

func TestImportStdinJSONWithProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	stdin := ingest.Header + "\n" + strings.Join(validRows("s", 10), "\n") + "\n"
	r := b.runStdin(t, stdin, "import", "--app", tn.app.ID, "--json", "--progress", "-")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var got importJSON
	mustUnmarshal(t, r.stdout, &got)
	if got.Rows != 10 || got.ApplicationID != tn.app.ID || got.IngestedAt.IsZero() || got.ElapsedSeconds <= 0 {
		t.Errorf("got %+v, want 10 rows into %s", got, tn.app.ID)
	}
	if !strings.Contains(r.stderr, "validating") || !strings.Contains(r.stderr, "importing") {
		t.Errorf("stderr %q, want both progress bars", r.stderr)
	}
	if n := b.count(t, tn.app.ID); n != 10 {
		t.Errorf("stored %d rows, want 10", n)
	}
}

func TestImportBadRowAtLine7ImportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	rows := validRows("a", 20)
	rows[5] = "contract-1,a-5,2025-03-04T05:06:07Z,12.5,EUR,payment,," // the header is line 1
	path := importFile(t, rows...)
	r := b.run(t, "import", "--app", tn.app.ID, path)
	wantError(t, r, path+`: nothing imported: line 7: amount_minor "12.5" is not an integer`)
	if n := b.count(t, tn.app.ID); n != 0 {
		t.Errorf("stored %d rows, want 0", n)
	}
}

func TestImportListsSeveralBadLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	rows := validRows("a", 10)
	rows[1] = "contract-1,a-1,2025-03-04T05:06:07Z,1,ABC,payment,,"
	rows[8] = "contract-1,a-0,2025-03-04T05:06:07Z,1,EUR,payment,,"
	r := b.runStdin(t, ingest.Header+"\n"+strings.Join(rows, "\n"), "import", "--app", tn.app.ID, "-")
	wantError(t, r, "stdin: nothing imported: 2 invalid lines\n  line 3: currency \"ABC\" is not an ISO 4217 code with a minor unit\n  line 10: external_id \"a-0\" repeats line 2")
	if n := b.count(t, tn.app.ID); n != 0 {
		t.Errorf("stored %d rows, want 0", n)
	}
}

func TestImportAlreadyImportedExternalIDImportsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	b.mustRun(t, "import", "--app", tn.app.ID, importFile(t, validRows("a", 5)...))
	again := append(validRows("b", 5), validRows("a", 1)...)
	wantError(t, b.run(t, "import", "--app", tn.app.ID, importFile(t, again...)),
		"nothing imported: an external_id of the file is already imported into the application")
	if n := b.count(t, tn.app.ID); n != 5 {
		t.Errorf("stored %d rows, want the first file's 5", n)
	}
}

func TestImportErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	good := importFile(t, validRows("a", 1)...)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"MissingApp", []string{"import", good}, `required flag(s) "app" not set`},
		{"MissingFile", []string{"import", "--app", tn.app.ID}, "accepts 1 arg(s), received 0"},
		{"NoSuchFile", []string{"import", "--app", tn.app.ID, filepath.Join(t.TempDir(), "nope.csv")}, "no such file or directory"},
		{"Directory", []string{"import", "--app", tn.app.ID, t.TempDir()}, "is not a regular file"},
		{"NotAnAppID", []string{"import", "--app", "payments", good}, `--app "payments" is not an id like app_…`},
		{"UnknownApp", []string{"import", "--app", "app_00000000000000000000000000", good}, "nothing imported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, tt.args...), tt.want)
		})
	}
}
