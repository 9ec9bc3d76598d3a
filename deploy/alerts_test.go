package deploy

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// registeredName matches where Tally's code names a metric: a collector's
// Name field or a Metric… constant.
var registeredName = regexp.MustCompile(`(?:\bName:\s*|\bMetric\w*\s*=\s*)"(tally_[a-z0-9_]+)"`)

// exportedMetrics returns the names of the metrics that Tally's production
// code registers, read from its sources.
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") ||
			strings.HasPrefix(filepath.ToSlash(path), "../cmd/") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range registeredName.FindAllStringSubmatch(string(b), -1) {
			names[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The search itself must find what is known to exist, or an empty set
	// would let every rule fail silently the other way.
	for _, known := range []string{
		"tally_queue_oldest_available_seconds", "tally_reports_failed_total", "tally_http_request_duration_seconds",
		"tally_report_object_mismatch_total", "tally_reports_reproduced_total", "tally_build_info",
	} {
		if !names[known] {
			t.Fatalf("the search for registered metrics missed %s (found %d names)", known, len(names))
		}
	}
	return names
}

// exists reports whether name is a registered metric or one of the series
// a registered histogram or summary exports.
func exists(registered map[string]bool, name string) bool {
	if registered[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && registered[base] {
			return true
		}
	}
	return false
}

// TestAlertRulesParseAndUseExportedMetrics: deploy/prometheus/alerts.yaml
// is a valid rules file for Prometheus (rulefmt, strict fields, templates
// and PromQL checked), every rule is an alert with a severity and a
// summary, and every metric it reads is one the API or the worker exports.
func TestAlertRulesParseAndUseExportedMetrics(t *testing.T) {
	t.Parallel()
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.ParseFile("prometheus/alerts.yaml", false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	registered := exportedMetrics(t)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule (%s); this file holds alerts only", g.Name, r.Record)
				continue
			}
			alerts = append(alerts, r.Alert)
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("%s: severity %q, want critical, warning or info", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("%s has no summary", r.Alert)
			}
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			var used int
			for _, selector := range parser.ExtractSelectors(expr) {
				for _, m := range selector {
					if m.Name != labels.MetricName {
						continue
					}
					used++
					if m.Type != labels.MatchEqual {
						t.Errorf("%s: metric name matched by %s, want an exact name", r.Alert, m)
					} else if !exists(registered, m.Value) {
						t.Errorf("%s reads %s, which no Tally code registers", r.Alert, m.Value)
					}
				}
			}
			if used == 0 {
				t.Errorf("%s reads no metric", r.Alert)
			}
		}
	}
	// The alerts the operations guide promises.
	for _, want := range []string{
		"TallyQueueBacklog", "TallyReportsFailing", "TallyExpiryLagging", "TallyAPIErrorRate",
		"TallyDownloadObjectMismatch", "TallyReproductionMismatch",
	} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}
