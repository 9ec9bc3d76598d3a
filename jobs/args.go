// Package jobs defines Tally's River job kinds (their arguments and their
// workers) and CreateReport, the one operation that creates a report
// together with the job that builds it. Arguments hold ids only: never
// secrets, never data.
package jobs

import (
	"github.com/riverqueue/river"
)

// Queue names. A report whose estimated scope exceeds the large-report
// threshold goes to QueueLarge so that one huge case cannot starve small ones.
const (
	QueueReports = "reports"
	QueueLarge   = "reports_large"
	QueueMaint   = river.QueueDefault
)

// GenerateReportArgs asks a worker to build one report's file.
type GenerateReportArgs struct {
	ReportID string `json:"report_id" river:"unique"`
}

// Kind is the job kind; it is stored in river_job and never renamed.
func (GenerateReportArgs) Kind() string { return "generate_report" }

// InsertOpts are the per-kind defaults. A report has at most one live job:
// uniqueness by report id over the non-final states (a completed or
// discarded job does not block an admin's re-run).
func (GenerateReportArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{
		Queue: QueueReports,
		UniqueOpts: river.UniqueOpts{
			ByArgs:  true,
			ByState: uniqueStates,
		},
	}
}

// ExpireReportsArgs asks a worker to expire reports past their retention.
type ExpireReportsArgs struct{}

// Kind is the job kind.
func (ExpireReportsArgs) Kind() string { return "expire_reports" }

// InsertOpts are the per-kind defaults.
func (ExpireReportsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaint, MaxAttempts: 3}
}

// SweepObjectsArgs asks a worker to delete report files that no committed
// report owns, and incomplete multipart uploads, past a grace period.
type SweepObjectsArgs struct{}

// Kind is the job kind.
func (SweepObjectsArgs) Kind() string { return "sweep_objects" }

// InsertOpts are the per-kind defaults.
func (SweepObjectsArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaint, MaxAttempts: 3}
}
