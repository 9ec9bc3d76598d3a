package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/internal/health"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
	"github.com/tally-compliance/tally/worker"
)

func TestMaxConns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		small, large int
		want         int32
	}{
		{4, 1, 13}, // the defaults
		{1, 1, 10},
		{10, 2, 20},
	}
	for _, tt := range tests {
		if got := worker.MaxConns(tt.small, tt.large); got != tt.want {
			t.Errorf("MaxConns(%d, %d) = %d, want %d", tt.small, tt.large, got, tt.want)
		}
	}
}

func TestOptsFromConfigCarriesWorkerSettings(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadFrom(map[string]string{
		"TALLY_WORKER_CONCURRENCY": "6", "TALLY_WORKER_LARGE_CONCURRENCY": "2", "TALLY_JOB_TIMEOUT": "7m",
		"TALLY_SHUTDOWN_TIMEOUT": "9s", "TALLY_JOB_MAX_ATTEMPTS": "3", "TALLY_FETCH_POLL_INTERVAL": "250ms",
		"TALLY_SWEEP_INTERVAL": "20m", "TALLY_SWEEP_GRACE": "2h", "TALLY_CHAIN_INTERVAL": "3s", "TALLY_PPROF": "true", "TALLY_REPORT_PARALLELISM": "3",
		"TALLY_REPORT_SPILL_DIR": "/var/tmp/tally", "TALLY_REPORT_SPILL_MAX": "1000000",
		"TALLY_WEBHOOK_ALLOWED_CIDRS": "10.1.0.0/16", "TALLY_WEBHOOK_TIMEOUT": "3s", "TALLY_WEBHOOK_CONCURRENCY": "2",
	})
	if err != nil {
		t.Fatal(err)
	}
	got := worker.OptsFromConfig(cfg)
	want := worker.Opts{SmallConcurrency: 6, LargeConcurrency: 2, JobTimeout: 7 * time.Minute,
		ShutdownTimeout: 9 * time.Second, MaxAttempts: 3, FetchPollInterval: 250 * time.Millisecond,
		SweepInterval: 20 * time.Minute, SweepGrace: 2 * time.Hour, ChainInterval: 3 * time.Second,
		WebhookGuard:   &webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		WebhookTimeout: 3 * time.Second, WebhookConcurrency: 2, Pprof: true, ReportParallelism: 3,
		ReportSpillDir: "/var/tmp/tally", ReportSpillMax: 1000000}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("Opts mismatch (-want +got):\n%s", diff)
	}

	// TALLY_REPORT_SPILL_MAX=0 turns the temporary files off, which the
	// worker says with a negative bound (zero there means the default).
	cfg, err = config.LoadFrom(map[string]string{"TALLY_REPORT_SPILL_MAX": "0"})
	if err != nil {
		t.Fatal(err)
	}
	if got := worker.OptsFromConfig(cfg).ReportSpillMax; got >= 0 {
		t.Errorf("TALLY_REPORT_SPILL_MAX=0: ReportSpillMax = %d, want < 0 (off)", got)
	}
	if _, err := config.LoadFrom(map[string]string{"TALLY_REPORT_SPILL_MAX": "-1"}); err == nil {
		t.Error("TALLY_REPORT_SPILL_MAX=-1 was accepted")
	}
}

type testBundle struct {
	ctx    context.Context
	pool   *pgxpool.Pool
	s3     storage.Opts
	store  *storage.Store
	portal *config.Portal
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{ctx: context.Background(), pool: tallytest.DB(t), s3: tallytest.S3Opts(t)}
	var err error
	if b.store, err = storage.New(b.s3); err != nil {
		t.Fatal(err)
	}
	if b.portal, err = config.LoadPortal(""); err != nil {
		t.Fatal(err)
	}
	return b
}

// tenant creates an organization with an application ("app") and a user.
func (b *testBundle) tenant(t *testing.T) (*db.Organization, *db.Application, *db.User) {
	t.Helper()
	org, err := db.CreateOrganization(b.ctx, b.pool, "Org")
	if err != nil {
		t.Fatal(err)
	}
	app, err := db.CreateApplication(b.ctx, b.pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "app", Name: "App"})
	if err != nil {
		t.Fatal(err)
	}
	user, err := db.CreateUser(b.ctx, b.pool, db.CreateUserParams{OrgID: org.ID, Email: "a@example.com", Name: "A"})
	if err != nil {
		t.Fatal(err)
	}
	return org, app, user
}

// openCase creates a case of app for January 2025 whose access window is
// open now.
func (b *testBundle) openCase(t *testing.T, app *db.Application) *db.Case {
	t.Helper()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := db.CreateCase(b.ctx, b.pool, db.CreateCaseParams{ApplicationID: app.ID, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0),
		AccessWindowStart: time.Now().Add(-time.Hour), AccessWindowEnd: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (b *testBundle) opts(t *testing.T) worker.Opts {
	return worker.Opts{Pool: b.pool, Store: b.store, Portal: b.portal, PseudonymKeys: tallytest.PseudonymKeys(t),
		Logger:     slog.New(levelHandler{tallytest.Logger(t).Handler(), slog.LevelInfo}),
		JobTimeout: 10 * time.Second, ShutdownTimeout: time.Second, FetchPollInterval: 100 * time.Millisecond,
		QueueStatsInterval: 100 * time.Millisecond, TestOnly: true}
}

func TestNewRejectsBadOpts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name   string
		modify func(*worker.Opts)
	}{
		{"NoPool", func(o *worker.Opts) { o.Pool = nil }},
		{"NoStore", func(o *worker.Opts) { o.Store = nil }},
		{"NoPortal", func(o *worker.Opts) { o.Portal = nil }},
		{"RescueBelowJobTimeout", func(o *worker.Opts) { o.RescueStuckJobsAfter = time.Second }},
		{"SweepGraceNotAboveJobTimeout", func(o *worker.Opts) { o.SweepGrace = o.JobTimeout }},
	}
	for _, tt := range tests {
		opts := b.opts(t)
		tt.modify(&opts)
		if _, err := worker.New(b.ctx, opts); err == nil {
			t.Errorf("%s: New succeeded, want an error", tt.name)
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthReadinessAndMetricsEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w, err := worker.New(b.ctx, b.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok"`) {
		t.Errorf("/healthz = %d %s, want 200 ok", code, body)
	}

	code, body := get(t, srv.URL+"/readyz")
	var ready health.Report
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	want := health.Report{Status: "ok", Checks: map[string]health.Check{"postgres": {Status: "ok"}, "object_store": {Status: "ok"}}}
	if code != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", code)
	}
	if diff := cmp.Diff(want, ready); diff != "" {
		t.Errorf("/readyz mismatch (-want +got):\n%s", diff)
	}

	code, body = get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, name := range []string{
		worker.MetricReportsReady, worker.MetricReportsFailed, worker.MetricGenerationSeconds,
		worker.MetricReportBytes, worker.MetricQueueJobs, worker.MetricQueueOldest, "go_goroutines",
		worker.MetricChainLag, worker.MetricEventsChained,
	} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, line := range []string{
		`tally_reports_ready_total{type="transaction_summary"} 0`,
		`tally_reports_failed_total{code="storage_unavailable",type="activity_log"} 0`,
		`tally_queue_jobs{queue="reports_large",state="available"} 0`,
		fmt.Sprintf("tally_build_info{go_version=%q,revision=%q,version=%q} 1\n", buildinfo.Get().GoVersion, buildinfo.Get().Revision, buildinfo.Get().Version),
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	if code, _ := get(t, srv.URL+"/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d, want 404", code)
	}
	if code, _ := get(t, srv.URL+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Pprof = %d, want 404", code)
	}
}

// TestPprofBehindOption: Opts.Pprof (TALLY_PPROF) serves net/http/pprof on
// the metrics port.
func TestPprofBehindOption(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := b.opts(t)
	opts.Pprof = true
	w, err := worker.New(b.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	if code, body := get(t, srv.URL+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ = %d, want 200 with the profile index", code)
	}
	if code, body := get(t, srv.URL+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("/debug/pprof/goroutine = %d, want 200 with a goroutine profile", code)
	}
}

func TestReadyzUnavailableWhenBucketMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	opts := b.opts(t)
	missing := b.s3
	missing.Bucket = "tally-missing-" + strings.ToLower(db.NewID(""))[:12]
	var err error
	if opts.Store, err = storage.New(missing); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(b.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	code, body := get(t, srv.URL+"/readyz")
	var ready health.Report
	if err := json.Unmarshal([]byte(body), &ready); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusServiceUnavailable || ready.Status != "unavailable" || len(ready.Checks) != 2 ||
		ready.Checks["postgres"].Status != "ok" || ready.Checks["object_store"].Status != "unavailable" ||
		ready.Checks["object_store"].Error == "" {
		t.Errorf("/readyz = %d %s, want 503 with postgres ok and object_store unavailable", code, body)
	}
}

// metricValue returns the value of one exposition line, such as
// `tally_queue_jobs{queue="reports",state="available"}`.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in /metrics", series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestQueueGaugesCountJobsByQueueAndState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	w, err := worker.New(b.ctx, b.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	inserter, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range []*river.InsertOpts{
		{},
		{},
		{Queue: jobs.QueueLarge},
		{ScheduledAt: time.Now().Add(time.Hour)},
	} {
		if _, err := inserter.Insert(b.ctx, jobs.GenerateReportArgs{ReportID: "rpt_" + strconv.Itoa(i)}, o); err != nil {
			t.Fatal(err)
		}
	}
	// One available job has waited a minute.
	if _, err := b.pool.Exec(b.ctx, `UPDATE river_job SET scheduled_at = now() - interval '1 minute'
		WHERE id = (SELECT min(id) FROM river_job WHERE state = 'available')`); err != nil {
		t.Fatal(err)
	}
	if err := w.Metrics().RefreshQueues(b.ctx, b.pool); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	_, body := get(t, srv.URL+"/metrics")
	for series, want := range map[string]float64{
		`tally_queue_jobs{queue="reports",state="available"}`:       2,
		`tally_queue_jobs{queue="reports",state="scheduled"}`:       1,
		`tally_queue_jobs{queue="reports",state="running"}`:         0,
		`tally_queue_jobs{queue="reports_large",state="available"}`: 1,
		`tally_queue_jobs{queue="default",state="available"}`:       0,
	} {
		if got := metricValue(t, body, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if got := metricValue(t, body, `tally_queue_oldest_available_seconds{queue="reports"}`); got < 59 || got > 120 {
		t.Errorf("oldest available age in reports = %v, want about 60s", got)
	}
	if got := metricValue(t, body, `tally_queue_oldest_available_seconds{queue="default"}`); got != 0 {
		t.Errorf("oldest available age in default = %v, want 0", got)
	}
}

// TestRunBuildsReportsExpiresOnStartAndStopsSoftly runs a real worker: it
// builds a report (counted in the metrics), runs expire_reports on start,
// turns /readyz unavailable once shutdown begins, and returns from Run.
func TestRunBuildsReportsExpiresOnStartAndStopsSoftly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	_, app, user := b.tenant(t)
	c := b.openCase(t, app)
	inserter, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	typ, _ := b.portal.ReportType("transaction_summary")
	newReport := func() *db.Report {
		rep, err := jobs.CreateReport(ctx, b.pool, inserter, jobs.CreateReportParams{
			Application: app, CaseID: c.ID, Type: typ, UserID: user.ID, LargeReportRows: 200_000})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	waitStatus := func(id, status string) *db.Report {
		deadline := time.Now().Add(30 * time.Second)
		for {
			r, err := db.GetReportByID(ctx, b.pool, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.Status == status {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("report %s is %s, want %s", id, r.Status, status)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}

	// A report built by a first worker, then made due for expiry.
	old := newReport()
	runCtx, cancel := context.WithCancel(ctx)
	w, err := worker.New(ctx, b.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	waitStatus(old.ID, db.ReportReady)
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()
	_, body := get(t, srv.URL+"/metrics")
	if got := metricValue(t, body, `tally_reports_ready_total{type="transaction_summary"}`); got != 1 {
		t.Errorf("ready counter = %v, want 1", got)
	}
	if got := metricValue(t, body, `tally_report_generation_seconds_count{type="transaction_summary"}`); got != 1 {
		t.Errorf("generation histogram count = %v, want 1", got)
	}
	if got := metricValue(t, body, `tally_report_bytes_sum{type="transaction_summary"}`); got != 97 {
		t.Errorf("bytes histogram sum = %v, want 97 (the header)", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz after shutdown = %d %s, want 503 shutting down", code, body)
	}

	expiryOverdue := func() float64 {
		t.Helper()
		if err := w.Metrics().RefreshQueues(ctx, b.pool); err != nil {
			t.Fatal(err)
		}
		_, body := get(t, srv.URL+"/metrics")
		return metricValue(t, body, worker.MetricExpiryOverdue)
	}
	if got := expiryOverdue(); got != 0 {
		t.Errorf("expiry overdue before the report is due = %v, want 0", got)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE reports SET expires_at = now() - interval '1 hour' WHERE id = $1`, old.ID); err != nil {
		t.Fatal(err)
	}
	// The report is an hour past its expiry and no worker runs.
	if got := expiryOverdue(); got < 3600 || got > 3700 {
		t.Errorf("expiry overdue = %v, want about 3600 (an hour)", got)
	}
	// A second worker expires it on start (the periodic job runs on start).
	runCtx, cancel = context.WithCancel(ctx)
	defer cancel()
	w2, err := worker.New(ctx, b.opts(t))
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- w2.Run(runCtx) }()
	r := waitStatus(old.ID, db.ReportExpired)
	// Expiry marks the report expired first, then deletes its file.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(25 * time.Millisecond) {
		if _, err := tallytest.Stat(ctx, b.store, *r.ObjectKey); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Error("the expired report's file is still stored")
			break
		}
	}
	if got := expiryOverdue(); got != 0 {
		t.Errorf("expiry overdue once the report expired = %v, want 0", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// levelHandler drops records below a level; River logs a lot at debug.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.min}
}

func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(n), h.min}
}

// TestRunChainsActivityEvents: a running worker appends committed activity
// events to their organization's chain by itself, every ChainInterval, and
// counts them; the chain lag gauge comes back to zero.
func TestRunChainsActivityEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	org, app, user := b.tenant(t)
	c := b.openCase(t, app)
	rep, err := db.CreateReport(ctx, b.pool, db.CreateReportParams{OrgID: org.ID, ApplicationID: app.ID, CaseID: c.ID,
		Type: "transaction_summary", Metadata: map[string]any{"case_id": c.ID}, CreatedBy: user.ID})
	if err != nil {
		t.Fatal(err)
	}
	opts := b.opts(t)
	opts.ChainInterval = 50 * time.Millisecond
	w, err := worker.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	srv := httptest.NewServer(w.Handler())
	defer srv.Close()

	// checkpoint_activity runs on start and chains too: wait until it is done
	// (its next run is CheckpointInterval away), so that what chains the
	// events written next is the worker's loop.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var done bool
		if err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM river_job WHERE kind = $1 AND state = 'completed')`,
			jobs.CheckpointActivityArgs{}.Kind()).Scan(&done); err != nil {
			t.Fatal(err)
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("checkpoint_activity did not complete in 30 s")
		}
	}
	const n = 5
	for i := range n {
		if err := db.CreateReportEvent(ctx, b.pool, rep, db.EventReportDownloaded, user.ID, map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		var chained int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM activity_chain WHERE org_id = $1`, org.ID).Scan(&chained); err != nil {
			t.Fatal(err)
		}
		_, body := get(t, srv.URL+"/metrics")
		if chained == n && metricValue(t, body, worker.MetricEventsChained) == n && metricValue(t, body, worker.MetricChainLag) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: %d of %d events chained; /metrics: %s %v, %s %v", chained, n,
				worker.MetricEventsChained, metricValue(t, body, worker.MetricEventsChained),
				worker.MetricChainLag, metricValue(t, body, worker.MetricChainLag))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
