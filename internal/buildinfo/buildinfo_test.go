package buildinfo

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/tally-compliance/tally", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "1250de0abc"}, {Key: "vcs.modified", Value: "false"},
		},
	}
	dirty := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		name              string
		bi                *debug.BuildInfo
		version, revision string
		want              Info
	}{
		{"checkout build", stamped, "", "", Info{"devel", "1250de0abc", "go1.26.8"}},
		{"module version, dirty tree", dirty, "", "", Info{"v1.3.0", "abc-modified", "go1.26.8"}},
		{"ldflags override both", stamped, "v2.0.0", "feedface", Info{"v2.0.0", "feedface", "go1.26.8"}},
		{"no VCS information", &debug.BuildInfo{GoVersion: "go1.26.8"}, "", "", Info{"devel", "unknown", "go1.26.8"}},
	} {
		if got := fromBuildInfo(tc.bi, tc.version, tc.revision); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestCollectorIsOneWithTheBuildAsLabels(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(Info{"v1.3.0", "abc", "go1.26.8"}.Collector())
	want := `# HELP tally_build_info Always 1; its labels name the build of this process (version, VCS revision, Go version).
# TYPE tally_build_info gauge
tally_build_info{go_version="go1.26.8",revision="abc",version="v1.3.0"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricName); err != nil {
		t.Error(err)
	}
}

func TestParseArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args    []string
		exit    bool
		err     string
		printed string
	}{
		{nil, false, "", ""},
		{[]string{"--version"}, true, "", "tally-x " + Get().Version + " (revision "},
		{[]string{"-version"}, true, "", "tally-x " + Get().Version},
		{[]string{"--help"}, true, "", "Usage: tally-x [--version]"},
		{[]string{"serve"}, false, `unexpected argument "serve"`, ""},
		{[]string{"--port=1"}, false, "flag provided but not defined: -port", ""},
	} {
		var out bytes.Buffer
		exit, err := ParseArgs("tally-x", tc.args, &out)
		if exit != tc.exit || (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseArgs(%q) = %v, %v; want %v, error containing %q", tc.args, exit, err, tc.exit, tc.err)
		}
		if !strings.HasPrefix(out.String(), tc.printed) || tc.printed == "" && out.Len() > 0 {
			t.Errorf("ParseArgs(%q) printed %q, want it to start with %q", tc.args, out.String(), tc.printed)
		}
	}
}
