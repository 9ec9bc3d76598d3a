package jobs_test

import (
	"slices"
	"testing"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/jobs"
)

// TestBuilderNamesMatchConfig: the builders the worker registers are exactly
// the ones the portal configuration accepts, so a report type that loads
// always has a builder and every builder can be configured.
func TestBuilderNamesMatchConfig(t *testing.T) {
	got := jobs.BuilderNames()
	want := slices.Sorted(slices.Values(config.Builders))
	if !slices.Equal(got, want) {
		t.Fatalf("jobs.BuilderNames() = %v, want config.Builders %v", got, want)
	}
}
