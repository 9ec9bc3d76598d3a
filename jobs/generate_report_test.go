package jobs_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// checkReady checks a ready report against the expected file: the stored
// bytes, the row's size, SHA-256, content type, key, expiry and metadata,
// and exactly one report.generated event with its details.
func (b *testBundle) checkReady(t *testing.T, r *db.Report, jobID int64, want expectedFile) {
	t.Helper()
	got := b.download(t, r)
	if diff := cmp.Diff(string(want.data), string(got)); diff != "" {
		t.Errorf("file mismatch (-want +got):\n%s", diff)
	}
	if deref(r.SizeBytes) != int64(len(got)) {
		t.Errorf("size_bytes = %d, want %d", deref(r.SizeBytes), len(got))
	}
	if deref(r.SHA256) != sha256Hex(want.data) {
		t.Errorf("sha256 = %s, want %s", deref(r.SHA256), sha256Hex(want.data))
	}
	if deref(r.ContentType) != "text/csv; charset=utf-8" {
		t.Errorf("content_type = %q, want text/csv; charset=utf-8", deref(r.ContentType))
	}
	// The key is one run's: reports/<org>/<app>/<report>/run_<ulid>.csv,
	// and the object carries the file's SHA-256.
	prefix := storage.ReportsPrefix + r.OrgID + "/" + r.ApplicationID + "/" + r.ID + "/" + db.PrefixRun
	if key := deref(r.ObjectKey); !strings.HasPrefix(key, prefix) || !db.ValidID(db.PrefixRun, strings.TrimSuffix(strings.TrimPrefix(key, prefix[:len(prefix)-len(db.PrefixRun)]), ".csv")) {
		t.Errorf("object_key = %q, want %s<ulid>.csv", key, prefix)
	}
	if st, err := tallytest.Stat(b.ctx, b.store, deref(r.ObjectKey)); err != nil || st.SHA256 != deref(r.SHA256) {
		t.Errorf("object digest metadata %q (err %v), want %s", st.SHA256, err, deref(r.SHA256))
	}
	if r.StartedAt == nil || r.CompletedAt == nil || r.ExpiresAt == nil {
		t.Fatalf("started_at %v, completed_at %v, expires_at %v: want all set", r.StartedAt, r.CompletedAt, r.ExpiresAt)
	}
	if d := r.ExpiresAt.Sub(*r.CompletedAt) - 30*24*time.Hour; d < -time.Minute || d > time.Minute {
		t.Errorf("expires_at %v is not 30 days after completed_at %v", r.ExpiresAt, r.CompletedAt)
	}
	var meta struct {
		CaseID   string               `json:"case_id"`
		RowCount int64                `json:"row_count"`
		Totals   map[string]testTotal `json:"totals"`
		Format   string               `json:"format"`
	}
	if err := json.Unmarshal(r.Metadata, &meta); err != nil {
		t.Fatal(err)
	}
	if meta.RowCount != want.rowCount || meta.Format != "csv" || meta.CaseID != r.CaseID {
		t.Errorf("metadata row_count %d format %q case_id %q, want %d, csv, %s", meta.RowCount, meta.Format, meta.CaseID, want.rowCount, r.CaseID)
	}
	if want.totals != nil {
		if diff := cmp.Diff(want.totals, meta.Totals); diff != "" {
			t.Errorf("totals mismatch (-want +got):\n%s", diff)
		}
	}
	evs := b.events(t, r.ID)
	var generated []db.Event
	for _, e := range evs {
		if e.Kind == db.EventReportGenerated {
			generated = append(generated, e)
		}
	}
	if len(generated) != 1 {
		t.Fatalf("events %v, want exactly one report.generated", eventKinds(evs))
	}
	var details map[string]any
	if err := json.Unmarshal(generated[0].Details, &details); err != nil {
		t.Fatal(err)
	}
	wantDetails := map[string]any{"row_count": float64(want.rowCount), "size_bytes": float64(len(got)),
		"sha256": sha256Hex(want.data), "job_id": float64(jobID), "attempt": details["attempt"]}
	if diff := cmp.Diff(wantDetails, details); diff != "" {
		t.Errorf("report.generated details mismatch (-want +got):\n%s", diff)
	}
	if a, _ := details["attempt"].(float64); a < 1 {
		t.Errorf("report.generated attempt = %v, want >= 1", details["attempt"])
	}
	if generated[0].ActorID != nil {
		t.Errorf("report.generated actor = %v, want the system (none)", *generated[0].ActorID)
	}
}

func TestGenerateReportTransactionSummaryMatchesIndependentCSV(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))

	type tcase struct {
		name    string
		flags   []string
		filters []string
		queue   string
	}
	var cases []tcase
	all := []string{"line_items", "counterparty_names", "descriptions"}
	for mask := 0; mask < 8; mask++ {
		var flags []string
		for i, f := range all {
			if mask&(1<<i) != 0 {
				flags = append(flags, f)
			}
		}
		name := "Flags_" + strings.Join(flags, "+")
		if len(flags) == 0 {
			name = "Flags_none"
		}
		cases = append(cases, tcase{name: name, flags: flags})
	}
	cases = append(cases,
		tcase{name: "ContractFilterLineItems", flags: all, filters: []string{"CTR-B", "CTR-C"}},
		tcase{name: "ContractFilterSubtotalsOnly", filters: []string{"CTR-A"}},
		tcase{name: "ContractFilterNoMatch", flags: all, filters: []string{"CTR-NONE"}},
		tcase{name: "LargeQueue", flags: all, queue: jobs.QueueLarge},
	)

	// Create every report first so that the worker builds them concurrently.
	type created struct {
		rep   *db.Report
		jobID int64
		scope db.Scope
	}
	made := make([]created, len(cases))
	for i, tc := range cases {
		c := b.createCase(t, caseOpts{Flags: tc.flags, ContractFilters: tc.filters})
		rep, jobID := b.createReport(t, c, reportOpts{RequestID: "req-" + tc.name, Queue: tc.queue})
		made[i] = created{rep, jobID, scopeOf(c, b.dataAsOf)}
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := b.waitReport(t, made[i].rep.ID, 60*time.Second, db.ReportReady, db.ReportFailed)
			if r.Status != db.ReportReady {
				t.Fatalf("status %s (%s: %s), want ready", r.Status, deref(r.ErrorCode), deref(r.ErrorMessage))
			}
			want := expectedSummary(t, b.seeded, b.app.ID, r.ID, made[i].scope)
			b.checkReady(t, r, made[i].jobID, want)
			job := b.waitJob(t, made[i].jobID, 10*time.Second, rivertype.JobStateCompleted)
			var out map[string]any
			if err := json.Unmarshal(job.Output(), &out); err != nil {
				t.Fatalf("job output %s: %v", job.Output(), err)
			}
			if out["sha256"] != sha256Hex(want.data) {
				t.Errorf("job output %v, want sha256 %s", out, sha256Hex(want.data))
			}
		})
	}

	// The fixture must exercise what it claims to: rows left out by each
	// scope rule, and text that needs quoting and the formula guard.
	full := expectedSummary(t, b.seeded, b.app.ID, "x", scopeOf(b.createCase(t, caseOpts{Flags: all}), b.dataAsOf))
	for _, s := range []string{`"Acme, Inc."`, `"The ""Quoted"" Co"`, `"'=HYPERLINK(""http://evil"")"`, "'=ext-formula", "'-minus", "'+49 30 1234", `"'` + "\r"} {
		if !bytes.Contains(full.data, []byte(s)) {
			t.Errorf("fixture never produces %q", s)
		}
	}
	for _, s := range []string{"Before", "After", "Late", "Other app"} {
		if bytes.Contains(full.data, []byte(s)) {
			t.Errorf("fixture row %q should be out of scope", s)
		}
	}
}

func TestGenerateReportRerunGivesIdenticalBytes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items"}})
	rep, jobID := b.createReport(t, c, reportOpts{})
	first := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
	firstBytes := b.download(t, first)
	b.waitJob(t, jobID, 10*time.Second, rivertype.JobStateCompleted)

	// As if a worker had crashed after committing nothing: the report is
	// running again and its job runs once more.
	if _, err := b.pool.Exec(b.ctx, `UPDATE reports SET status = 'running' WHERE id = $1`, rep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.inserter.JobRetry(b.ctx, jobID); err != nil {
		t.Fatalf("JobRetry: %v", err)
	}
	second := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
	secondBytes := b.download(t, second)
	if !bytes.Equal(firstBytes, secondBytes) {
		t.Fatalf("rerun changed the file:\n%s", cmp.Diff(string(firstBytes), string(secondBytes)))
	}
	if deref(first.SHA256) != deref(second.SHA256) || deref(first.SizeBytes) != deref(second.SizeBytes) {
		t.Errorf("rerun: sha %s size %d, want %s %d", deref(second.SHA256), deref(second.SizeBytes),
			deref(first.SHA256), deref(first.SizeBytes))
	}
	if deref(first.ObjectKey) == deref(second.ObjectKey) {
		t.Errorf("rerun wrote the first run's key %s, want a key of its own", deref(first.ObjectKey))
	}
	if got := eventKinds(b.events(t, rep.ID)); !cmp.Equal(got, []string{"report.created", "report.generated", "report.generated"}) {
		t.Errorf("events %v, want created and one generated per run", got)
	}
}

func TestGenerateReportEmptyScopeIsReadyWithHeaderOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	for _, flags := range [][]string{nil, {"line_items", "counterparty_names", "descriptions"}} {
		c := b.createCase(t, caseOpts{Flags: flags, PeriodStart: periodStart.AddDate(-5, 0, 0), PeriodEnd: periodStart.AddDate(-4, 0, 0)})
		rep, jobID := b.createReport(t, c, reportOpts{})
		r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady, db.ReportFailed)
		if r.Status != db.ReportReady {
			t.Fatalf("flags %v: status %s, want ready", flags, r.Status)
		}
		b.checkReady(t, r, jobID, expectedFile{
			data:   []byte("row_type,contract_id,currency,kind,occurred_at,external_id,counterparty,description,count,amount\n"),
			totals: map[string]testTotal{},
		})
	}
}

func TestGenerateReportActivityLog(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{Flags: []string{"line_items"}})
	other := b.createCase(t, caseOpts{})

	// History of the case: a report created by Ann, generated by the system
	// (the worker below), downloaded by Bo; another case's report.
	bo, err := db.CreateUser(b.ctx, b.pool, db.CreateUserParams{OrgID: b.org.ID, Email: "bo@example.com", Name: "=Bo"})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := startWorker(t, b.workerOpts(t))
	first, _ := b.createReport(t, c, reportOpts{})
	b.waitReport(t, first.ID, 30*time.Second, db.ReportReady)
	if err := db.CreateReportEvent(b.ctx, b.pool, first, db.EventReportDownloaded, bo.ID,
		map[string]any{"client_ip": "203.0.113.9", "user_agent": "=agent, 1.0"}); err != nil {
		t.Fatal(err)
	}
	b.createReport(t, other, reportOpts{})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ChainPending(b.ctx, b.pool, 0); err != nil {
		t.Fatal(err)
	}
	asOf := time.Now().UTC().Truncate(time.Microsecond)
	time.Sleep(5 * time.Millisecond)
	// After data_as_of: left out.
	if err := db.CreateReportEvent(b.ctx, b.pool, first, db.EventReportDownloaded, b.user.ID, nil); err != nil {
		t.Fatal(err)
	}

	// Independent expectation straight from the table.
	rows, err := b.pool.Query(b.ctx, `
		SELECT e.occurred_at, e.kind, e.report_id, e.report_type, coalesce(e.actor_id, ''),
		       coalesce(u.email, 'system'), coalesce(u.name, ''),
		       coalesce(e.details ->> 'client_ip', ''), coalesce(e.details ->> 'user_agent', ''), encode(c.hash, 'hex')
		  FROM activity_events e LEFT JOIN users u ON u.id = e.actor_id JOIN activity_chain c ON c.event_id = e.id
		 WHERE e.case_id = $1 AND e.occurred_at <= $2 ORDER BY e.occurred_at, e.id`, c.ID, asOf)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	cw := csv.NewWriter(&want)
	cw.Write([]string{"occurred_at", "event", "report_id", "report_type", "actor_id", "actor_email", "actor_name", "client_ip", "user_agent", "hash"})
	var n int64
	for rows.Next() {
		var at time.Time
		var kind, rid, rtype, actor, email, name, ip, ua, hash string
		if err := rows.Scan(&at, &kind, &rid, &rtype, &actor, &email, &name, &ip, &ua, &hash); err != nil {
			t.Fatal(err)
		}
		cw.Write([]string{at.UTC().Format(time.RFC3339Nano), kind, rid, rtype, actor, testGuard(email), testGuard(name), ip, testGuard(ua), hash})
		n++
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	cw.Flush()
	if n != 3 { // created, generated, downloaded; the other case's and the late event left out
		t.Fatalf("fixture has %d events in scope, want 3:\n%s", n, want.String())
	}

	startWorker(t, b.workerOpts(t))
	rep, jobID := b.createReport(t, c, reportOpts{Type: "activity_log", Metadata: scopeOf(c, asOf)})
	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady, db.ReportFailed)
	if r.Status != db.ReportReady {
		t.Fatalf("status %s (%s), want ready", r.Status, deref(r.ErrorMessage))
	}
	b.checkReady(t, r, jobID, expectedFile{data: want.Bytes(), rowCount: n, totals: map[string]testTotal{}})
	if !strings.Contains(want.String(), ",,system,,,,") || !strings.Contains(want.String(), ",'=Bo,203.0.113.9,\"'=agent, 1.0\",") {
		t.Errorf("fixture misses a system event or a guarded name:\n%s", want.String())
	}
}

func TestGenerateReportStorageDownEndsFailedAfterLastAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	opts := b.workerOpts(t)
	missing := b.s3
	missing.Bucket = "tally-missing-" + strings.ToLower(db.NewID(""))[:12]
	var err error
	if opts.Store, err = storage.New(missing); err != nil {
		t.Fatal(err)
	}
	startWorker(t, opts)
	c := b.createCase(t, caseOpts{Flags: []string{"line_items"}})
	rep, jobID := b.createReport(t, c, reportOpts{MaxAttempts: 2})

	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportFailed, db.ReportReady)
	job := b.waitJob(t, jobID, 10*time.Second, rivertype.JobStateDiscarded)
	if got := deref(r.ErrorCode); got != jobs.CodeStorageUnavailable || !deref(r.ErrorRetryable) || deref(r.ErrorMessage) == "" {
		t.Errorf("error %q %q retryable %v, want %s with a message, retryable", got, deref(r.ErrorMessage), deref(r.ErrorRetryable), jobs.CodeStorageUnavailable)
	}
	if job.Attempt != 2 || len(job.Errors) != 2 {
		t.Errorf("job attempt %d with %d errors, want 2 and 2", job.Attempt, len(job.Errors))
	}
	evs := b.events(t, rep.ID)
	if diff := cmp.Diff([]string{"report.created", "report.failed"}, eventKinds(evs)); diff != "" {
		t.Fatalf("events mismatch (-want +got):\n%s", diff)
	}
	var details map[string]any
	json.Unmarshal(evs[1].Details, &details)
	if details["code"] != jobs.CodeStorageUnavailable || details["attempt"] != float64(2) || details["job_id"] != float64(jobID) {
		t.Errorf("report.failed details %v, want code, attempt 2, job id", details)
	}
}

func TestGenerateReportPermanentErrorsFailAtOnceAndCancelTheJob(t *testing.T) {
	t.Parallel()
	b := setup(t, &setupOpts{Rows: func(b *testBundle) []db.Transaction {
		mk := func(contract string, amount int64, i int) db.Transaction {
			return db.Transaction{ApplicationID: b.app.ID, ContractID: contract, ExternalID: fmt.Sprintf("x%d", i),
				OccurredAt: periodStart.Add(time.Hour), AmountMinor: amount, Currency: "EUR", Kind: "payment",
				IngestedAt: b.dataAsOf.Add(-time.Hour)}
		}
		unknown := mk("CTR-C", 1234, 4)
		unknown.Currency = "ABC" // stored before imports checked ISO 4217
		return []db.Transaction{mk("CTR-A", math.MaxInt64, 1), mk("CTR-A", 1, 2), mk("CTR-B", 1, 3), unknown}
	}})
	startWorker(t, b.workerOpts(t))

	tests := []struct {
		name      string
		flags     []string
		contracts []string
		opts      reportOpts
		wantCode  string
	}{
		{"AmountOverflowLineItems", []string{"line_items"}, nil, reportOpts{}, jobs.CodeAmountOverflow},
		{"AmountOverflowSubtotalsOnly", nil, nil, reportOpts{}, jobs.CodeAmountOverflow}, // the database's sum overflows
		{"UnknownCurrencyLineItems", []string{"line_items"}, []string{"CTR-C"}, reportOpts{}, jobs.CodeUnknownCurrency},
		{"UnknownCurrencySubtotalsOnly", nil, []string{"CTR-C"}, reportOpts{}, jobs.CodeUnknownCurrency},
		{"UnknownReportType", nil, nil, reportOpts{Type: "pdf_summary"}, jobs.CodeUnknownReportType},
		{"UnreadableSnapshot", nil, nil, reportOpts{Metadata: map[string]any{"case_id": 42}}, jobs.CodeBuildFailed},
	}
	type made struct {
		rep   *db.Report
		jobID int64
	}
	reports := make([]made, len(tests))
	for i, tt := range tests {
		c := b.createCase(t, caseOpts{Flags: tt.flags, ContractFilters: tt.contracts})
		rep, jobID := b.createReport(t, c, tt.opts)
		reports[i] = made{rep, jobID}
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			job := b.waitJob(t, reports[i].jobID, 30*time.Second, rivertype.JobStateCancelled, rivertype.JobStateCompleted, rivertype.JobStateDiscarded)
			if job.State != rivertype.JobStateCancelled || job.Attempt != 1 {
				t.Errorf("job %s after attempt %d, want cancelled after 1 (no retry)", job.State, job.Attempt)
			}
			r := b.waitReport(t, reports[i].rep.ID, 10*time.Second, db.ReportFailed, db.ReportCanceled, db.ReportReady)
			if r.Status != db.ReportFailed || deref(r.ErrorCode) != tt.wantCode || deref(r.ErrorRetryable) {
				t.Errorf("report %s, code %q (%s), retryable %v; want failed, %s, not retryable",
					r.Status, deref(r.ErrorCode), deref(r.ErrorMessage), deref(r.ErrorRetryable), tt.wantCode)
			}
			if diff := cmp.Diff([]string{"report.created", "report.failed"}, eventKinds(b.events(t, r.ID))); diff != "" {
				t.Errorf("events mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGenerateReportMissingReportCancelsJob(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{})
	_, jobID := b.createReport(t, c, reportOpts{NoReport: true})
	job := b.waitJob(t, jobID, 30*time.Second, rivertype.JobStateCancelled, rivertype.JobStateCompleted, rivertype.JobStateDiscarded)
	if job.State != rivertype.JobStateCancelled {
		t.Fatalf("job %s, want cancelled", job.State)
	}
}

func TestGenerateReportSoftStopInterruptsAndAnotherWorkerFinishes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	entered := make(chan struct{}, 1)
	opts := b.workerOpts(t)
	opts.ShutdownTimeout = 300 * time.Millisecond
	opts.AfterUploadFunc = func(ctx context.Context, job *river.Job[jobs.GenerateReportArgs]) error {
		entered <- struct{}{}
		<-ctx.Done() // a job slower than the shutdown timeout
		return ctx.Err()
	}
	_, stop := startWorker(t, opts)
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "descriptions"}})
	rep, jobID := b.createReport(t, c, reportOpts{})
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the job never reached the upload hook")
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s, want about the 300ms shutdown timeout", took)
	}
	job, err := b.inserter.JobGet(b.ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != rivertype.JobStateAvailable || job.Attempt != 0 || len(job.Errors) != 0 {
		t.Fatalf("interrupted job: state %s attempt %d errors %d, want available, attempt restored to 0, no error",
			job.State, job.Attempt, len(job.Errors))
	}
	if r, _ := db.GetReportByID(b.ctx, b.pool, rep.ID); r.Status != db.ReportRunning {
		t.Fatalf("report %s after interruption, want still running", r.Status)
	}

	startWorker(t, b.workerOpts(t))
	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady, db.ReportFailed)
	if r.Status != db.ReportReady {
		t.Fatalf("status %s, want ready", r.Status)
	}
	b.checkReady(t, r, jobID, expectedSummary(t, b.seeded, b.app.ID, r.ID, scopeOf(c, b.dataAsOf)))
}
