// Package buildinfo says which build of Tally is running, for --version and
// the tally_build_info metric: the version and VCS revision that the Go
// toolchain stamps into every binary built from a module or a checkout, or
// the values a release build sets with
//
//	go build -ldflags "-X github.com/tally-compliance/tally/internal/buildinfo.version=v1.4.0
//	  -X github.com/tally-compliance/tally/internal/buildinfo.revision=$(git rev-parse HEAD)"
//
// (the Dockerfile does this, since its build context has no .git).
package buildinfo

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set with -ldflags -X; empty means what debug.ReadBuildInfo says.
var (
	version  string
	revision string
)

// MetricName is the gauge, always 1, whose labels name the build.
const MetricName = "tally_build_info"

// Info describes a build.
type Info struct {
	// Version is the module version (v1.4.0, or a pseudo-version for go
	// install of a commit), or "devel" for a build from a checkout.
	Version string
	// Revision is the VCS commit, with "-modified" when the work tree had
	// uncommitted changes, or "unknown".
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Get returns the running binary's build.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version, revision)
}

// fromBuildInfo combines what the toolchain recorded (bi may be nil) with
// the -ldflags overrides.
func fromBuildInfo(bi *debug.BuildInfo, version, revision string) Info {
	info := Info{Version: "devel", Revision: "unknown", GoVersion: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		}
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && info.Revision != "unknown" {
			info.Revision += "-modified"
		}
	}
	if version != "" {
		info.Version = version
	}
	if revision != "" {
		info.Revision = revision
	}
	return info
}

// String is the one-line form --version prints after the binary's name.
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", i.Version, i.Revision, i.GoVersion)
}

// Collector returns the tally_build_info gauge: 1, labelled with version,
// revision and go_version, so that a query can join any series on the
// build that produced it.
func (i Info) Collector() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        MetricName,
		Help:        "Always 1; its labels name the build of this process (version, VCS revision, Go version).",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": i.Revision, "go_version": i.GoVersion},
	}, func() float64 { return 1 })
}

// ParseArgs reads the command line of a binary whose only argument is
// --version (tally-api, tally-worker: everything else comes from the
// environment). It returns true when the binary should exit without error
// now: it printed its version or its usage to stdout.
func ParseArgs(name string, args []string, stdout io.Writer) (exit bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, usage printed below
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [--version]\n\nSettings come from the environment (see README.md).\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, nil
		}
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q: %s takes none but --version", fs.Arg(0), name)
	}
	if *showVersion {
		fmt.Fprintf(stdout, "%s %s\n", name, Get())
		return true, nil
	}
	return false, nil
}
