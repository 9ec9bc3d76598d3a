package jobs_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
)

// createParams are the parameters of a transaction summary of c by the
// fixture's auditor, below the large-report threshold.
func (b *testBundle) createParams(t *testing.T, c *db.Case) jobs.CreateReportParams {
	t.Helper()
	typ, ok := b.portal.ReportType("transaction_summary")
	if !ok {
		t.Fatal("the default portal has no transaction_summary")
	}
	return jobs.CreateReportParams{Application: b.app, CaseID: c.ID, Type: typ, UserID: b.user.ID,
		RequestID: "req-create", LargeReportRows: 200_000, MaxAttempts: 3}
}

// count returns the rows of a table ("reports" or "river_job").
func (b *testBundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCreateReportWritesReportJobAndEventTogether(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{ContractFilters: []string{"CTR-A"}})

	rep, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, b.createParams(t, c))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status != db.ReportPending || rep.Type != "transaction_summary" || rep.CaseID != c.ID ||
		rep.ApplicationID != b.app.ID || rep.OrgID != b.org.ID || rep.CreatedBy != b.user.ID || deref(rep.RequestID) != "req-create" {
		t.Errorf("report %+v, want pending transaction_summary of the case by the auditor with the request id", rep)
	}
	if rep.JobID == nil {
		t.Fatal("report has no job id")
	}

	// The job builds this report, on the reports queue, with the attempts
	// and the request id it was given.
	job, err := b.inserter.JobGet(b.ctx, *rep.JobID)
	if err != nil {
		t.Fatal(err)
	}
	var args jobs.GenerateReportArgs
	if err := json.Unmarshal(job.EncodedArgs, &args); err != nil {
		t.Fatal(err)
	}
	var jobMeta map[string]any
	if err := json.Unmarshal(job.Metadata, &jobMeta); err != nil {
		t.Fatal(err)
	}
	if job.Kind != "generate_report" || args.ReportID != rep.ID || job.Queue != jobs.QueueReports || job.MaxAttempts != 3 ||
		jobMeta["request_id"] != "req-create" || !cmp.Equal(job.Tags, []string{"report", "transaction_summary"}) {
		t.Errorf("job kind %s args %+v queue %s max attempts %d metadata %v tags %v, want generate_report of %s on %s, 3 attempts, the request id, tags report and the type",
			job.Kind, args, job.Queue, job.MaxAttempts, jobMeta, job.Tags, rep.ID, jobs.QueueReports)
	}

	// The snapshot is the case as of the transaction's clock, which is also
	// the report's created_at.
	scope, err := rep.Scope()
	if err != nil {
		t.Fatal(err)
	}
	want := db.Scope{CaseID: c.ID, PeriodStart: periodStart, PeriodEnd: periodEnd, DisclosureFlags: []string{},
		ContractFilters: []string{"CTR-A"}, DataAsOf: rep.CreatedAt.UTC()}
	if diff := cmp.Diff(want, scope); diff != "" {
		t.Errorf("scope mismatch (-want +got):\n%s", diff)
	}
	var raw map[string]any
	if err := json.Unmarshal(rep.Metadata, &raw); err != nil {
		t.Fatal(err)
	}
	if flags, ok := raw["disclosure_flags"].([]any); !ok || len(flags) != 0 {
		t.Errorf("metadata disclosure_flags %v, want [] (never null)", raw["disclosure_flags"])
	}

	evs := b.events(t, rep.ID)
	if len(evs) != 1 || evs[0].Kind != db.EventReportCreated || deref(evs[0].ActorID) != b.user.ID {
		t.Fatalf("events %v, want one report.created by the auditor", eventKinds(evs))
	}
	var details map[string]any
	if err := json.Unmarshal(evs[0].Details, &details); err != nil {
		t.Fatal(err)
	}
	wantDetails := map[string]any{"request_id": "req-create", "job_id": float64(job.ID), "queue": jobs.QueueReports}
	if diff := cmp.Diff(wantDetails, details); diff != "" {
		t.Errorf("report.created details mismatch (-want +got):\n%s", diff)
	}
}

func TestCreateReportLeavesNothingWhenAnyStepFails(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{})

	// The job is enqueued before the report row, which then fails: its
	// creator does not exist.
	p := b.createParams(t, c)
	p.UserID = db.NewID(db.PrefixUser)
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); !errors.Is(err, db.ErrInvalid) {
		t.Fatalf("CreateReport by an unknown user: got %v, want db.ErrInvalid", err)
	}
	if reports, jobCount := b.count(t, "reports"), b.count(t, "river_job"); reports != 0 || jobCount != 0 {
		t.Errorf("after a failed creation: %d reports and %d jobs, want none", reports, jobCount)
	}

	// In the caller's transaction, the report and its job commit or roll
	// back with it.
	abort := errors.New("abort")
	err := db.WithTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := jobs.CreateReport(b.ctx, tx, b.inserter, b.createParams(t, c)); err != nil {
			return err
		}
		return abort
	})
	if !errors.Is(err, abort) {
		t.Fatalf("transaction: got %v, want the abort", err)
	}
	if reports, jobCount := b.count(t, "reports"), b.count(t, "river_job"); reports != 0 || jobCount != 0 {
		t.Errorf("after the caller rolled back: %d reports and %d jobs, want none", reports, jobCount)
	}
}

func TestCreateReportChoosesQueueByEstimatedRows(t *testing.T) {
	t.Parallel()
	const rows = 2000
	b := setup(t, &setupOpts{Rows: func(b *testBundle) []db.Transaction {
		out := make([]db.Transaction, rows)
		for i := range out {
			out[i] = db.Transaction{ApplicationID: b.app.ID, ContractID: "CTR-A", ExternalID: fmt.Sprintf("x%d", i),
				OccurredAt: periodStart.Add(time.Duration(i) * time.Minute), AmountMinor: 1, Currency: "EUR", Kind: "payment",
				IngestedAt: b.dataAsOf.Add(-time.Hour)}
		}
		return out
	}})
	// As autovacuum would: ANALYZE is the owner's (the runtime role's is skipped with a warning).
	if _, err := tallytest.AsOwner(t, b.pool).Exec(b.ctx, `ANALYZE transactions`); err != nil {
		t.Fatal(err)
	}
	c := b.createCase(t, caseOpts{})
	activityLog, ok := b.portal.ReportType("activity_log")
	if !ok {
		t.Fatal("the default portal has no activity_log")
	}

	tests := []struct {
		name      string
		typ       *config.ReportType // nil: transaction_summary
		threshold int64
		want      string
	}{
		{"SummaryAboveThresholdIsLarge", nil, rows / 4, jobs.QueueLarge},
		{"SummaryBelowThresholdIsSmall", nil, rows * 4, jobs.QueueReports},
		{"ActivityLogIsNeverEstimated", &activityLog, -1, jobs.QueueReports},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.createParams(t, c)
			p.LargeReportRows = tt.threshold
			if tt.typ != nil {
				p.Type = *tt.typ
			}
			rep, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p)
			if err != nil {
				t.Fatal(err)
			}
			job, err := b.inserter.JobGet(b.ctx, *rep.JobID)
			if err != nil {
				t.Fatal(err)
			}
			if job.Queue != tt.want {
				t.Errorf("queue: got %s, want %s", job.Queue, tt.want)
			}
		})
	}
}

func TestCreateReportIdempotencyConflictCreatesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{})
	p := b.createParams(t, c)
	p.IdempotencyKey, p.RequestHash = "key-1", []byte("hash")

	first, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := db.GetIdempotencyKey(b.ctx, b.pool, b.user.ID, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ReportID != first.ID || string(rec.RequestHash) != "hash" {
		t.Errorf("idempotency record %+v, want report %s with the request hash", rec, first.ID)
	}

	// A second request with the key: it lost the race, so nothing of it stays.
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); !errors.Is(err, jobs.ErrIdempotencyConflict) {
		t.Fatalf("second CreateReport with the key: got %v, want ErrIdempotencyConflict", err)
	}
	if reports, jobCount := b.count(t, "reports"), b.count(t, "river_job"); reports != 1 || jobCount != 1 {
		t.Errorf("after the conflict: %d reports and %d jobs, want the first request's only", reports, jobCount)
	}

	// Another user may use the same key.
	other, err := db.CreateUser(b.ctx, b.pool, db.CreateUserParams{OrgID: b.org.ID, Email: "bo@example.com", Name: "Bo"})
	if err != nil {
		t.Fatal(err)
	}
	p.UserID = other.ID
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); err != nil {
		t.Errorf("the same key by another user: %v", err)
	}
}

func TestCreateReportCaseOfAnotherApplicationIsNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{})

	p := b.createParams(t, c)
	p.Application = b.otherApp
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); !errors.Is(err, jobs.ErrCaseNotFound) {
		t.Errorf("case of another application: got %v, want ErrCaseNotFound", err)
	}
	p = b.createParams(t, c)
	p.CaseID = db.NewID(db.PrefixCase)
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); !errors.Is(err, jobs.ErrCaseNotFound) {
		t.Errorf("unknown case: got %v, want ErrCaseNotFound", err)
	}
	if reports, jobCount := b.count(t, "reports"), b.count(t, "river_job"); reports != 0 || jobCount != 0 {
		t.Errorf("after the refusals: %d reports and %d jobs, want none", reports, jobCount)
	}
}

func TestCreateReportCheckCaseSeesTheCaseAndCanRefuse(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{ContractFilters: []string{"CTR-A"}})
	other, err := db.CreateUser(b.ctx, b.pool, db.CreateUserParams{OrgID: b.org.ID, Email: "bo@example.com", Name: "Bo"})
	if err != nil {
		t.Fatal(err)
	}

	refusal := errors.New("refused")
	tests := []struct {
		name         string
		userID       string
		wantAssigned bool
	}{
		{"Assigned", b.user.ID, true},
		{"NotAssigned", other.ID, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.createParams(t, c)
			p.UserID = tt.userID
			var seen *db.Case
			var assigned bool
			p.CheckCase = func(cs *db.Case, a bool) error {
				seen, assigned = cs, a
				return refusal
			}
			if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); err != refusal {
				t.Errorf("got %v, want CheckCase's error as it is", err)
			}
			if seen == nil || seen.ID != c.ID || seen.Status != db.CaseApproved || !cmp.Equal(seen.ContractFilters, []string{"CTR-A"}) {
				t.Errorf("CheckCase saw %+v, want the approved case %s", seen, c.ID)
			}
			if assigned != tt.wantAssigned {
				t.Errorf("assigned: got %v, want %v", assigned, tt.wantAssigned)
			}
		})
	}
	if reports, jobCount := b.count(t, "reports"), b.count(t, "river_job"); reports != 0 || jobCount != 0 {
		t.Errorf("after the refusals: %d reports and %d jobs, want none", reports, jobCount)
	}
}

// A revocation that commits while a report is being created either waits
// for the report's commit or is seen by the case check: the case is read
// and locked in the creating transaction.
func TestCreateReportLocksTheCaseUntilCommit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{})

	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(b.ctx) }()
	p := b.createParams(t, c)
	p.CheckCase = func(cs *db.Case, _ bool) error {
		if cs.Status != db.CaseApproved {
			return fmt.Errorf("case is %s", cs.Status)
		}
		return nil
	}
	if _, err := jobs.CreateReport(b.ctx, tx, b.inserter, p); err != nil {
		t.Fatal(err)
	}

	// While the creating transaction is open, the revocation waits.
	revoked := make(chan error, 1)
	go func() {
		_, err := db.RevokeCase(b.ctx, b.pool, c.ID)
		revoked <- err
	}()
	select {
	case err := <-revoked:
		t.Fatalf("the case was revoked (err %v) while a report of it was being created", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-revoked; err != nil {
		t.Fatalf("revoking after the commit: %v", err)
	}

	// Once revoked, the check sees it.
	if _, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, p); err == nil || err.Error() != "case is revoked" {
		t.Errorf("creating on the revoked case: got %v, want the check's refusal", err)
	}
}
