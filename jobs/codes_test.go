package jobs_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/jobs"
)

// declaredCodes returns the values of the Code constants of codes.go.
func declaredCodes(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]string{} // value -> name
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING || !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				codes[v] = name.Name
			}
		}
	}
	return codes
}

// sqlCode matches an error code that SQL writes into reports.error_code or
// into an event's details as 'code'.
var sqlCode = regexp.MustCompile(`(?:error_code\s*=\s*|'code'\s*,\s*)'([^']*)'`)

// TestSQLErrorCodesAreDeclared: every error code that a migration (a
// trigger) or a query of db writes as a literal is declared in codes.go, so
// that codes.go is the whole list of codes a report can carry.
func TestSQLErrorCodesAreDeclared(t *testing.T) {
	t.Parallel()
	declared := declaredCodes(t)
	if declared[jobs.CodeBuildFailed] != "CodeBuildFailed" {
		t.Fatalf("codes.go declares %v, want CodeBuildFailed among them", declared)
	}
	migrations, err := filepath.Glob("../db/migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	queries, err := filepath.Glob("../db/*.go")
	if err != nil {
		t.Fatal(err)
	}
	var fromMigrations []string
	for _, path := range append(migrations, queries...) {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		src, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sqlCode.FindAllSubmatch(src, -1) {
			code := string(m[1])
			if strings.HasSuffix(path, ".sql") {
				fromMigrations = append(fromMigrations, code)
			}
			if _, ok := declared[code]; !ok {
				t.Errorf("%s writes error code %q, which jobs/codes.go does not declare", path, code)
			}
		}
	}
	// The scan must see the codes the river_job trigger writes; if it does
	// not, the pattern no longer matches the SQL and checks nothing.
	for _, code := range []string{jobs.CodeJobDiscarded, jobs.CodeCanceled} {
		if !slices.Contains(fromMigrations, code) {
			t.Errorf("no migration writes %q; the scan found %v", code, fromMigrations)
		}
	}
}
