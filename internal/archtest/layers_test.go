// Package archtest checks the architecture of the module: which package may
// import which. It has tests only.
package archtest

import (
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// layers are Tally's packages from the bottom up. A package imports only
// packages of lower layers (production code; tests may import anything), so
// the bottom layer imports nothing of Tally and two packages of one layer
// never import each other. README.md's package table says the same.
var layers = [][]string{
	// Leaves: configuration, SQL, the object store, file formats, signing
	// and verification, the readiness shape, tracing, the build's version,
	// webhook signatures and outbound safety.
	{"config", "db", "storage", "report", "evidence", "internal/health", "internal/telemetry", "internal/buildinfo", "webhook"},
	// Helpers of the binaries: import files and the demo tenant; start-up;
	// the objects callers see (API answers and webhook payloads).
	{"ingest", "internal/startup", "view"},
	// The job kinds: what a worker runs and what the API enqueues.
	{"jobs"},
	// The test harness: anything below the API and the worker.
	{"internal/tallytest"},
	// The two services; neither imports the other.
	{"api", "worker"},
	// The binaries wire everything.
	{"cmd/..."},
}

// testOnly are packages that production code never imports.
var testOnly = []string{"internal/tallytest"}

// layerOf returns the layer of pkg (a path inside the module), or -1.
func layerOf(pkg string) int {
	for i, layer := range layers {
		for _, p := range layer {
			if p == pkg || strings.HasSuffix(p, "/...") && strings.HasPrefix(pkg, strings.TrimSuffix(p, "...")) {
				return i
			}
		}
	}
	return -1
}

// check returns every import of graph (package → the module's packages its
// production code imports, all paths inside the module) that breaks the
// layers.
func check(graph map[string][]string) []string {
	var bad []string
	for _, pkg := range slices.Sorted(maps.Keys(graph)) {
		from := layerOf(pkg)
		if from < 0 {
			bad = append(bad, fmt.Sprintf("%s is in no layer: add it to layers (and to README.md's package table)", pkg))
			continue
		}
		for _, imp := range graph[pkg] {
			to := layerOf(imp)
			switch {
			case slices.Contains(testOnly, imp):
				bad = append(bad, fmt.Sprintf("%s imports %s, which only tests may import", pkg, imp))
			case to < 0:
				bad = append(bad, fmt.Sprintf("%s imports %s, which is in no layer", pkg, imp))
			case to >= from:
				bad = append(bad, fmt.Sprintf("%s (layer %d: %v) imports %s (layer %d: %v): a package imports only lower layers",
					pkg, from, layers[from], imp, to, layers[to]))
			}
		}
	}
	return bad
}

// moduleGraph reads the production imports of every package of the module
// rooted at root, keeping those inside the module.
func moduleGraph(t *testing.T, root string) map[string][]string {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var module string
	for line := range strings.Lines(string(mod)) {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			module = strings.TrimSpace(m)
		}
	}
	if module == "" {
		t.Fatal("no module line in go.mod")
	}
	graph := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", path, err)
		}
		if len(pkg.GoFiles)+len(pkg.CgoFiles) == 0 {
			return nil // tests only, like this package
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		graph[rel] = []string{}
		for _, imp := range pkg.Imports {
			if inner, ok := strings.CutPrefix(imp, module+"/"); ok {
				graph[rel] = append(graph[rel], inner)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return graph
}

// TestLayers fails when a package imports one of its own or a higher layer
// (db importing jobs, jobs importing api, api importing worker, …), when
// production code imports the test harness, and when a package is in no
// layer.
func TestLayers(t *testing.T) {
	t.Parallel()
	graph := moduleGraph(t, "../..")
	for _, layer := range layers {
		for _, pkg := range layer {
			if _, ok := graph[pkg]; !ok && !strings.HasSuffix(pkg, "/...") {
				t.Errorf("layers lists %s, which is not a package of the module", pkg)
			}
		}
	}
	if len(graph["api"]) == 0 || len(graph["worker"]) == 0 {
		t.Fatalf("read no imports of api and worker: is moduleGraph reading the module? %v", graph)
	}
	for _, v := range check(graph) {
		t.Error(v)
	}
}

// TestCheckCatchesUpwardImports shows check failing on each kind of
// violation, so that TestLayers can fail.
func TestCheckCatchesUpwardImports(t *testing.T) {
	t.Parallel()
	ok := map[string][]string{
		"config": {}, "db": {}, "storage": {}, "report": {}, "internal/health": {},
		"ingest": {"db", "report"}, "internal/startup": {"config", "storage"},
		"jobs": {"config", "db", "report", "storage"}, "internal/tallytest": {"db", "storage", "jobs"},
		"api": {"jobs", "db", "internal/health"}, "worker": {"jobs", "internal/health"},
		"cmd/tally-api": {"api", "internal/startup"},
	}
	if got := check(ok); len(got) != 0 {
		t.Errorf("check of a well-layered graph: %q, want nothing", got)
	}
	tests := []struct {
		name     string
		pkg, imp string
		want     string
	}{
		{"LeafImportsTally", "db", "config", "db (layer 0"},
		{"LeafImportsService", "storage", "api", "storage (layer 0"},
		{"JobsImportsAPI", "jobs", "api", "jobs (layer 2"},
		{"JobsImportsWorker", "jobs", "worker", "jobs (layer 2"},
		{"APIImportsWorker", "api", "worker", "api (layer 4"},
		{"WorkerImportsAPI", "worker", "api", "worker (layer 4"},
		{"HarnessImportsAPI", "internal/tallytest", "api", "internal/tallytest (layer 3"},
		{"ProductionImportsHarness", "api", "internal/tallytest", "only tests may import"},
		{"BinaryImportsHarness", "cmd/tally-api", "internal/tallytest", "only tests may import"},
		{"UnknownImport", "api", "util", "util, which is in no layer"},
		{"UnknownPackage", "util", "db", "util is in no layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := map[string][]string{tt.pkg: {tt.imp}}
			got := check(g)
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("check(%s imports %s) = %q, want one violation containing %q", tt.pkg, tt.imp, got, tt.want)
			}
		})
	}
	if diff := cmp.Diff([]string(nil), check(map[string][]string{"cmd/tally-bench": {"worker", "jobs", "ingest"}})); diff != "" {
		t.Errorf("a binary may import anything but the harness (-want +got):\n%s", diff)
	}
}
