package buildinfo_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestEveryBinaryPrintsItsVersion builds every command under cmd/ with the
// -ldflags a release build uses and runs each with --version: each prints
// its name and the stamped version and revision, and exits 0 without
// reading its configuration or reaching any service.
func TestEveryBinaryPrintsItsVersion(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 3 {
		t.Fatalf("found commands %v under cmd/, want at least tally-api, tally-worker and tallyctl", names)
	}

	bin := t.TempDir()
	const pkg = "github.com/tally-compliance/tally/internal/buildinfo"
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"-ldflags", "-X "+pkg+".version=v9.8.7-test -X "+pkg+".revision=0123abcd", "./cmd/...")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/...: %v\n%s", err, out)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(bin, name), "--version")
			// Nothing the binary could connect to: --version must not try.
			cmd.Env = []string{"DATABASE_URL=postgres://nobody@127.0.0.1:1/none", "S3_ENDPOINT=127.0.0.1:1", "PATH=" + os.Getenv("PATH")}
			out, err := cmd.Output()
			want := name + " v9.8.7-test (revision 0123abcd, " + runtime.Version() + ")\n"
			if err != nil || string(out) != want {
				t.Errorf("%s --version: %q, %v; want %q and exit 0", name, out, err, want)
			}
			if strings.Count(string(out), "\n") != 1 {
				t.Errorf("%s --version printed %d lines, want 1", name, strings.Count(string(out), "\n"))
			}
		})
	}
}
