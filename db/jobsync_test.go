package db_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
)

// otherArgs is a different kind that happens to carry a report id.
type otherArgs struct {
	ReportID string `json:"report_id"`
}

func (otherArgs) Kind() string { return "not_a_report_job" }

// jobSyncBundle is what each trigger test works with: a fresh database, an
// insert-only River client (as the API and River UI have) and one case to
// hang reports on.
type jobSyncBundle struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	app    *db.Application
	user   *db.User
	kase   *db.Case
}

func setupJobSync(t *testing.T) *jobSyncBundle {
	t.Helper()
	ctx := context.Background()
	pool := tallytest.DB(t)
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	org, err := db.CreateOrganization(ctx, pool, "Org")
	if err != nil {
		t.Fatal(err)
	}
	app, err := db.CreateApplication(ctx, pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "alpha", Name: "Alpha"})
	if err != nil {
		t.Fatal(err)
	}
	user, err := db.CreateUser(ctx, pool, db.CreateUserParams{OrgID: org.ID, Email: "auditor@org.test", Name: "Auditor"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	kase, err := db.CreateCase(ctx, pool, db.CreateCaseParams{
		ApplicationID: app.ID, Title: "case", PeriodStart: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), AccessWindowStart: now.Add(-time.Hour),
		AccessWindowEnd: now.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &jobSyncBundle{pool: pool, client: client, app: app, user: user, kase: kase}
}

// newReport creates a pending report and its generate_report job the way
// the API does (jobs.CreateReport), which also records report.created.
func (b *jobSyncBundle) newReport(t *testing.T) (reportID string, jobID int64) {
	t.Helper()
	rep, err := jobs.CreateReport(context.Background(), b.pool, b.client, jobs.CreateReportParams{
		Application: b.app, CaseID: b.kase.ID, Type: config.ReportType{Name: "transaction_summary", Builder: "transaction_summary"},
		UserID: b.user.ID, LargeReportRows: 200_000,
	})
	if err != nil {
		t.Fatalf("creating report: %v", err)
	}
	return rep.ID, *rep.JobID
}

// exec runs one statement and fails the test on error.
func (b *jobSyncBundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := b.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
}

// startRun does what a worker fetching the job does: the job becomes running
// (an attempt) and the worker marks the report running.
func (b *jobSyncBundle) startRun(t *testing.T, reportID string, jobID int64) {
	t.Helper()
	b.exec(t, `UPDATE river_job SET state = 'running', attempt = attempt + 1, attempted_at = now(),
		attempted_by = array_append(attempted_by, 'test-worker') WHERE id = $1`, jobID)
	ok, err := db.MarkReportRunning(context.Background(), b.pool, reportID, jobID)
	if err != nil || !ok {
		t.Fatalf("MarkReportRunning: ok=%v err=%v", ok, err)
	}
}

// finishJob records the end of an attempt the way River's executor does
// (state and finalized_at; the trigger fires on the state change).
func (b *jobSyncBundle) finishJob(t *testing.T, jobID int64, state rivertype.JobState) {
	t.Helper()
	b.exec(t, `UPDATE river_job SET state = $2, finalized_at = now() WHERE id = $1`, jobID, string(state))
}

// discard makes the job discarded with one more error, as River does after
// the last failed attempt (or as an admin's direct UPDATE would).
func (b *jobSyncBundle) discard(t *testing.T, jobID int64, message string) {
	t.Helper()
	attemptErr, _ := json.Marshal(map[string]any{"at": time.Now().UTC(), "attempt": 1, "error": message, "trace": ""})
	b.exec(t, `UPDATE river_job SET state = 'discarded', finalized_at = now(), attempt = greatest(attempt, 1),
		errors = array_append(errors, $2::jsonb) WHERE id = $1`, jobID, attemptErr)
}

// makeReady finishes the report the way a successful worker does.
func (b *jobSyncBundle) makeReady(t *testing.T, reportID string) {
	t.Helper()
	ok, err := db.MarkReportReady(context.Background(), b.pool, db.MarkReportReadyParams{
		ID: reportID, Metadata: db.ReadyMetadata{RowCount: 1}, SizeBytes: 3,
		SHA256: strings.Repeat("ab", 32), ContentType: "text/csv", ObjectKey: "k/" + reportID + ".csv",
		ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil || !ok {
		t.Fatalf("MarkReportReady: ok=%v err=%v", ok, err)
	}
}

// workerFails marks the report failed with code the way the worker's fail
// path does (before it returns JobCancel or its error to River).
func (b *jobSyncBundle) workerFails(t *testing.T, reportID, code string) {
	t.Helper()
	ok, err := db.MarkReportFailed(context.Background(), b.pool, reportID, code, "the worker gave up", false)
	if err != nil || !ok {
		t.Fatalf("MarkReportFailed: ok=%v err=%v", ok, err)
	}
}

func (b *jobSyncBundle) jobState(t *testing.T, jobID int64) rivertype.JobState {
	t.Helper()
	job, err := b.client.JobGet(context.Background(), jobID)
	if errors.Is(err, river.ErrNotFound) {
		return "deleted"
	}
	if err != nil {
		t.Fatalf("JobGet: %v", err)
	}
	return job.State
}

// eventSummary is what the trigger tests compare of an activity event.
type eventSummary struct {
	Kind    string
	JobID   int64  `json:"job_id"`
	Reason  string `json:"reason"`
	Code    string `json:"code"`
	ActorID *string
}

func (b *jobSyncBundle) events(t *testing.T, reportID string) []eventSummary {
	t.Helper()
	evs, err := tallytest.ListReportEvents(context.Background(), b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	out := []eventSummary{}
	for _, ev := range evs {
		var s eventSummary
		if err := json.Unmarshal(ev.Details, &s); err != nil {
			t.Fatalf("event details %s: %v", ev.Details, err)
		}
		s.Kind, s.ActorID = ev.Kind, ev.ActorID
		out = append(out, s)
	}
	return out
}

// reportState is what the trigger tests compare of a report.
type reportState struct {
	Status         string
	ErrorCode      string
	ErrorRetryable *bool
	Completed      bool // completed_at set
	JobID          int64
}

func (b *jobSyncBundle) report(t *testing.T, reportID string) (reportState, *db.Report) {
	t.Helper()
	r, err := db.GetReportByID(context.Background(), b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	s := reportState{Status: r.Status, ErrorRetryable: r.ErrorRetryable, Completed: r.CompletedAt != nil}
	if r.ErrorCode != nil {
		s.ErrorCode = *r.ErrorCode
	}
	if r.JobID != nil {
		s.JobID = *r.JobID
	}
	return s, r
}

func ptr[T any](v T) *T { return &v }

// TestJobSyncTrigger changes a report's job the way River UI, River's
// executor and the worker do, and checks the report row and the activity
// events the migration's trigger leaves.
func TestJobSyncTrigger(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type step func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64)
	cancel := func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
		t.Helper()
		if _, err := b.client.JobCancel(ctx, jobID); err != nil {
			t.Fatalf("JobCancel: %v", err)
		}
	}
	retry := func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
		t.Helper()
		if _, err := b.client.JobRetry(ctx, jobID); err != nil {
			t.Fatalf("JobRetry: %v", err)
		}
	}
	del := func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
		t.Helper()
		if _, err := b.client.JobDelete(ctx, jobID); err != nil {
			t.Fatalf("JobDelete: %v", err)
		}
	}
	discard := func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
		t.Helper()
		b.discard(t, jobID, "s3: connection refused")
	}
	running := func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
		t.Helper()
		b.startRun(t, reportID, jobID)
	}
	ready := func(jobEnd rivertype.JobState) step {
		return func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
			t.Helper()
			b.startRun(t, reportID, jobID)
			b.makeReady(t, reportID)
			switch jobEnd {
			case rivertype.JobStateCompleted:
				b.finishJob(t, jobID, jobEnd)
			case rivertype.JobStateAvailable: // rescued after the report was done: a duplicate run is queued
				b.exec(t, `UPDATE river_job SET state = 'available', scheduled_at = now() WHERE id = $1`, jobID)
			}
		}
	}
	// workerFails: the worker marked the report failed with "scope_invalid"
	// and is about to return JobCancel (or its error, on the last attempt).
	workerFails := func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
		t.Helper()
		b.startRun(t, reportID, jobID)
		b.workerFails(t, reportID, "scope_invalid")
	}
	finalize := func(state rivertype.JobState) step {
		return func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
			t.Helper()
			b.finishJob(t, jobID, state)
		}
	}
	steps := func(ss ...step) step {
		return func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
			t.Helper()
			for _, s := range ss {
				s(t, b, reportID, jobID)
			}
		}
	}

	tests := []struct {
		name string
		// before brings report and job to the state the action starts from
		// (the report then has status beforeStatus, when given); events it
		// writes are not compared.
		before       step
		beforeStatus string
		// action is the change under test.
		action     step
		wantJob    rivertype.JobState
		wantReport reportState // JobID 0 means "the report's job"
		wantEvents []eventSummary
		// wantMessage is a substring of the report's error message.
		wantMessage string
	}{
		{
			name:       "CancelAvailableCancelsReport",
			action:     cancel,
			wantJob:    rivertype.JobStateCancelled,
			wantReport: reportState{Status: "canceled", ErrorCode: "canceled", ErrorRetryable: ptr(false), Completed: true},
			wantEvents: []eventSummary{{Kind: db.EventReportCanceled}},
		},
		{
			// River UI's Cancel on a running job only asks; the state changes
			// when the executor sees the worker stop (remote cancellation).
			name:   "CancelRunningCancelsReportWhenExecutorFinalizes",
			before: running,
			action: steps(cancel, func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
				t.Helper()
				if got := b.jobState(t, jobID); got != rivertype.JobStateRunning {
					t.Fatalf("job after JobCancel while running: got %s, want running", got)
				}
				if got, _ := b.report(t, reportID); got.Status != "running" {
					t.Fatalf("report while its job is being cancelled: got %s, want running", got.Status)
				}
				b.finishJob(t, jobID, rivertype.JobStateCancelled)
			}),
			wantJob:    rivertype.JobStateCancelled,
			wantReport: reportState{Status: "canceled", ErrorCode: "canceled", ErrorRetryable: ptr(false), Completed: true},
			wantEvents: []eventSummary{{Kind: db.EventReportCanceled}},
		},
		{
			name:        "DeleteAvailableCancelsReport",
			action:      del,
			wantJob:     "deleted",
			wantReport:  reportState{Status: "canceled", ErrorCode: "canceled", ErrorRetryable: ptr(false), Completed: true},
			wantEvents:  []eventSummary{{Kind: db.EventReportCanceled, Reason: "job_deleted"}},
			wantMessage: "deleted by an administrator",
		},
		{
			name:   "DeleteRunningIsRefused",
			before: running,
			action: func(t *testing.T, b *jobSyncBundle, _ string, jobID int64) {
				t.Helper()
				if _, err := b.client.JobDelete(ctx, jobID); !errors.Is(err, rivertype.ErrJobRunning) {
					t.Fatalf("JobDelete of a running job: got %v, want ErrJobRunning", err)
				}
			},
			wantJob:    rivertype.JobStateRunning,
			wantReport: reportState{Status: "running"},
			wantEvents: []eventSummary{},
		},
		{
			name:        "DiscardFailsReport",
			before:      running,
			action:      discard,
			wantJob:     rivertype.JobStateDiscarded,
			wantReport:  reportState{Status: "failed", ErrorCode: "job_discarded", ErrorRetryable: ptr(true), Completed: true},
			wantEvents:  []eventSummary{{Kind: db.EventReportFailed, Code: "job_discarded"}},
			wantMessage: "after 1 attempts: s3: connection refused",
		},
		{
			name:         "RetryCancelledMakesReportPending",
			before:       cancel,
			beforeStatus: "canceled",
			action:       retry,
			wantJob:      rivertype.JobStateAvailable,
			wantReport:   reportState{Status: "pending"},
			wantEvents:   []eventSummary{{Kind: db.EventReportRequeued}},
		},
		{
			name:         "RetryDiscardedMakesReportPending",
			before:       steps(running, discard),
			beforeStatus: "failed",
			action:       retry,
			wantJob:      rivertype.JobStateAvailable,
			wantReport:   reportState{Status: "pending"},
			wantEvents:   []eventSummary{{Kind: db.EventReportRequeued}},
		},
		{
			name:         "DeleteOfCancelledJobLeavesReport",
			before:       cancel,
			beforeStatus: "canceled",
			action:       del, // a finished job's deletion leaves the report alone
			wantJob:      "deleted",
			wantReport:   reportState{Status: "canceled", ErrorCode: "canceled", ErrorRetryable: ptr(false), Completed: true},
			wantEvents:   []eventSummary{},
		},
		{
			name:         "RetryOfWorkerFailedReportMakesItPending",
			before:       steps(workerFails, finalize(rivertype.JobStateCancelled)),
			beforeStatus: "failed",
			action:       retry,
			wantJob:      rivertype.JobStateAvailable,
			wantReport:   reportState{Status: "pending"},
			wantEvents:   []eventSummary{{Kind: db.EventReportRequeued}},
		},
		{
			// The worker marks the report failed (code scope_invalid), then
			// returns JobCancel: the job's cancellation must not overwrite it.
			name:        "WorkerFailedThenJobCancelledKeepsFailure",
			before:      workerFails,
			action:      finalize(rivertype.JobStateCancelled),
			wantJob:     rivertype.JobStateCancelled,
			wantReport:  reportState{Status: "failed", ErrorCode: "scope_invalid", ErrorRetryable: ptr(false), Completed: true},
			wantEvents:  []eventSummary{},
			wantMessage: "the worker gave up",
		},
		{
			name:        "WorkerFailedThenJobDiscardedKeepsFailure",
			before:      workerFails,
			action:      discard,
			wantJob:     rivertype.JobStateDiscarded,
			wantReport:  reportState{Status: "failed", ErrorCode: "scope_invalid", ErrorRetryable: ptr(false), Completed: true},
			wantEvents:  []eventSummary{},
			wantMessage: "the worker gave up",
		},
		{
			name:       "ReadyUnchangedByCancelOfRequeuedJob",
			before:     ready(rivertype.JobStateAvailable),
			action:     cancel,
			wantJob:    rivertype.JobStateCancelled,
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:       "ReadyUnchangedByDeleteOfRequeuedJob",
			before:     ready(rivertype.JobStateAvailable),
			action:     del,
			wantJob:    "deleted",
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:   "ReadyUnchangedByCancelWhileJobRunning",
			before: ready(rivertype.JobStateRunning),
			action: func(t *testing.T, b *jobSyncBundle, reportID string, jobID int64) {
				t.Helper()
				cancel(t, b, reportID, jobID)
				b.finishJob(t, jobID, rivertype.JobStateCancelled)
			},
			wantJob:    rivertype.JobStateCancelled,
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:       "ReadyUnchangedByCancelOfCompletedJob",
			before:     ready(rivertype.JobStateCompleted),
			action:     cancel, // River leaves a finished job as it is
			wantJob:    rivertype.JobStateCompleted,
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:       "ReadyUnchangedByDeleteOfCompletedJob",
			before:     ready(rivertype.JobStateCompleted),
			action:     del,
			wantJob:    "deleted",
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:       "ReadyUnchangedByRetryOfCompletedJob",
			before:     ready(rivertype.JobStateCompleted),
			action:     retry,
			wantJob:    rivertype.JobStateAvailable,
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
		{
			name:       "ReadyUnchangedByDiscardOfRequeuedJob",
			before:     ready(rivertype.JobStateAvailable),
			action:     discard,
			wantJob:    rivertype.JobStateDiscarded,
			wantReport: reportState{Status: "ready", Completed: true},
			wantEvents: []eventSummary{},
		},
	}
	// One database for all cases: each works on a report and job of its own.
	b := setupJobSync(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reportID, jobID := b.newReport(t)
			if tt.before != nil {
				tt.before(t, b, reportID, jobID)
			}
			if got, _ := b.report(t, reportID); tt.beforeStatus != "" && got.Status != tt.beforeStatus {
				t.Fatalf("report before the action: got %s, want %s", got.Status, tt.beforeStatus)
			}
			before := len(b.events(t, reportID))

			tt.action(t, b, reportID, jobID)

			if got := b.jobState(t, jobID); got != tt.wantJob {
				t.Errorf("job state: got %s, want %s", got, tt.wantJob)
			}
			want := tt.wantReport
			if want.JobID == 0 {
				want.JobID = jobID
			}
			got, r := b.report(t, reportID)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("report mismatch (-want +got):\n%s", diff)
			}
			if tt.wantMessage != "" && (r.ErrorMessage == nil || !strings.Contains(*r.ErrorMessage, tt.wantMessage)) {
				t.Errorf("error message: got %v, want it to contain %q", deref(r.ErrorMessage), tt.wantMessage)
			}
			if want.ErrorCode == "" && (r.ErrorMessage != nil || r.ErrorRetryable != nil) {
				t.Errorf("error fields left on a %s report: message %q retryable %v", got.Status, deref(r.ErrorMessage), r.ErrorRetryable)
			}
			wantEvents := tt.wantEvents
			for i := range wantEvents {
				if wantEvents[i].JobID == 0 {
					wantEvents[i].JobID = jobID
				}
			}
			if diff := cmp.Diff(wantEvents, b.events(t, reportID)[before:]); diff != "" {
				t.Errorf("events written mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestJobSyncTriggerIgnoresOtherKinds checks that only generate_report jobs
// move reports, whatever the other job's args say.
func TestJobSyncTriggerIgnoresOtherKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupJobSync(t)
	reportID, jobID := b.newReport(t)
	other, err := b.client.Insert(ctx, otherArgs{ReportID: reportID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.JobCancel(ctx, other.Job.ID); err != nil {
		t.Fatal(err)
	}
	other2, err := b.client.Insert(ctx, otherArgs{ReportID: reportID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.JobDelete(ctx, other2.Job.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := b.report(t, reportID)
	if diff := cmp.Diff(reportState{Status: "pending", JobID: jobID}, got); diff != "" {
		t.Errorf("report mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]eventSummary{{Kind: db.EventReportCreated, JobID: jobID, ActorID: &b.user.ID}}, b.events(t, reportID)); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

// TestJobSyncTriggerRoundTrip cancels, retries, discards and retries again
// one report's job, checking the report at each step and that the trail of
// events tells what happened.
func TestJobSyncTriggerRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupJobSync(t)
	reportID, jobID := b.newReport(t)
	check := func(step, wantStatus, wantCode string) {
		t.Helper()
		got, _ := b.report(t, reportID)
		if got.Status != wantStatus || got.ErrorCode != wantCode || got.JobID != jobID {
			t.Fatalf("after %s: got %+v, want status %s code %q job %d", step, got, wantStatus, wantCode, jobID)
		}
	}
	if _, err := b.client.JobCancel(ctx, jobID); err != nil {
		t.Fatal(err)
	}
	check("cancel", "canceled", "canceled")
	if _, err := b.client.JobRetry(ctx, jobID); err != nil {
		t.Fatal(err)
	}
	check("retry", "pending", "")
	b.startRun(t, reportID, jobID)
	check("worker start", "running", "")
	b.discard(t, jobID, "boom")
	check("discard", "failed", "job_discarded")
	if _, err := b.client.JobRetry(ctx, jobID); err != nil {
		t.Fatal(err)
	}
	check("second retry", "pending", "")
	b.startRun(t, reportID, jobID)
	b.makeReady(t, reportID)
	b.finishJob(t, jobID, rivertype.JobStateCompleted)
	check("completion", "ready", "")

	var kinds []string
	for _, ev := range b.events(t, reportID) {
		kinds = append(kinds, ev.Kind)
	}
	if diff := cmp.Diff([]string{db.EventReportCreated, db.EventReportCanceled, db.EventReportRequeued, db.EventReportFailed, db.EventReportRequeued}, kinds); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
