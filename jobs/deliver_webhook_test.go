package jobs_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/webhook"
)

func TestWebhookRetryScheduleSpansTheWindow(t *testing.T) {
	t.Parallel()
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute}
	for i, w := range want {
		if got := jobs.WebhookRetryDelay(i+1, jobs.WebhookRetryBase, jobs.WebhookMaxRetryDelay, 0.5); got != w {
			t.Errorf("delay after attempt %d = %s, want %s", i+1, got, w)
		}
	}
	if got := jobs.WebhookRetryDelay(30, jobs.WebhookRetryBase, jobs.WebhookMaxRetryDelay, 0.5); got != jobs.WebhookMaxRetryDelay {
		t.Errorf("delay after attempt 30 = %s, want the cap %s", got, jobs.WebhookMaxRetryDelay)
	}
	if lo, hi := jobs.WebhookRetryDelay(3, time.Minute, time.Hour, 0), jobs.WebhookRetryDelay(3, time.Minute, time.Hour, 0.999); lo != 216*time.Second || hi <= lo || hi > 264*time.Second {
		t.Errorf("jitter bounds of 4 min: %s .. %s, want 3m36s .. 4m24s", lo, hi)
	}
	// With the slowest jitter, the attempts that fit in the window stay
	// within the job's attempt budget, so the window, not the budget, ends
	// a delivery.
	var elapsed time.Duration
	attempts := 1
	for {
		d := jobs.WebhookRetryDelay(attempts, jobs.WebhookRetryBase, jobs.WebhookMaxRetryDelay, 0)
		if elapsed+d > config.WebhookRetryWindow {
			break
		}
		elapsed += d
		attempts++
	}
	if attempts >= jobs.WebhookMaxAttempts || attempts < 10 {
		t.Errorf("%d attempts fit in %s, want between 10 and the budget %d", attempts, config.WebhookRetryWindow, jobs.WebhookMaxAttempts)
	}
}

// hookRecorder answers with status and keeps every request.
type hookRecorder struct {
	mu     sync.Mutex
	status int
	reqs   []*http.Request
	bodies [][]byte
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reqs = append(h.reqs, r)
	h.bodies = append(h.bodies, body)
	w.WriteHeader(h.status)
}

func (h *hookRecorder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reqs)
}

// webhookFixture is a ready report of the fixture's application with one
// delivery to a recording receiver, and a DeliverWebhookWorker to work it
// directly (no River client: each Work call is one attempt).
type webhookFixture struct {
	b        *testBundle
	recv     *hookRecorder
	secret   []byte
	endpoint *db.WebhookEndpoint
	delivery *db.WebhookDelivery
	worker   *jobs.DeliverWebhookWorker
	now      time.Time
}

func newWebhookFixture(t *testing.T, status int) *webhookFixture {
	t.Helper()
	b := setup(t, nil)
	f := &webhookFixture{b: b, recv: &hookRecorder{status: status}, secret: webhook.NewSecret(), now: time.Now()}
	srv := httptest.NewServer(f.recv)
	t.Cleanup(srv.Close)
	sealer := tallytest.WebhookSealer(t)
	id := db.NewID(db.PrefixWebhookEndpoint)
	keyID, sealed, err := sealer.Seal(id, f.secret)
	if err != nil {
		t.Fatal(err)
	}
	if f.endpoint, err = db.CreateWebhookEndpoint(b.ctx, b.pool, db.CreateWebhookEndpointParams{ID: id, OrgID: b.org.ID,
		ApplicationID: b.app.ID, URL: srv.URL, Events: []string{db.EventTypeReportReady}, SecretKeyID: keyID, SecretSealed: sealed}); err != nil {
		t.Fatal(err)
	}
	rep, _ := b.createReport(t, b.createCase(t, caseOpts{}), reportOpts{})
	if _, err := b.pool.Exec(b.ctx, `UPDATE reports SET status = 'running' WHERE id = $1`, rep.ID); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.MarkReportReady(b.ctx, b.pool, db.MarkReportReadyParams{ID: rep.ID, Metadata: db.ReadyMetadata{RowCount: 7},
		SizeBytes: 99, SHA256: strings.Repeat("cd", 32), ContentType: "text/csv", ObjectKey: "reports/x.csv",
		ExpiresAt: time.Now().Add(time.Hour)}); err != nil || !ok {
		t.Fatalf("MarkReportReady: %v %v", ok, err)
	}
	var did string
	if err := b.pool.QueryRow(b.ctx, `SELECT id FROM webhook_deliveries WHERE report_id = $1`, rep.ID).Scan(&did); err != nil {
		t.Fatal(err)
	}
	if f.delivery, err = db.GetWebhookDelivery(b.ctx, b.pool, did); err != nil {
		t.Fatal(err)
	}
	f.worker = &jobs.DeliverWebhookWorker{
		Pool: b.pool, Sealer: sealer, RequestTimeout: 5 * time.Second, Logger: testLogger(t),
		Client:  webhook.NewClient(&webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, 5*time.Second),
		NowFunc: func() time.Time { return f.now },
	}
	return f
}

// work makes attempt n of the delivery.
func (f *webhookFixture) work(t *testing.T, attempt int) error {
	t.Helper()
	job := &river.Job[jobs.DeliverWebhookArgs]{
		JobRow: &rivertype.JobRow{ID: *f.delivery.JobID, Attempt: attempt, MaxAttempts: jobs.WebhookMaxAttempts,
			State: rivertype.JobStateRunning, Kind: "deliver_webhook"},
		Args: jobs.DeliverWebhookArgs{DeliveryID: f.delivery.ID},
	}
	return f.worker.Work(f.b.ctx, job)
}

func (f *webhookFixture) reload(t *testing.T) *db.WebhookDelivery {
	t.Helper()
	d, err := db.GetWebhookDelivery(f.b.ctx, f.b.pool, f.delivery.ID)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDeliverWebhookSucceededIsNeverSentAgain(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, http.StatusAccepted)
	if err := f.work(t, 1); err != nil {
		t.Fatalf("Work: %v", err)
	}
	if d := f.reload(t); d.Status != db.DeliverySucceeded || d.Attempts != 1 || d.FinishedAt == nil {
		t.Fatalf("delivery %+v, want succeeded after 1 attempt", d)
	}
	// The job run again (a rescue, a restart before River recorded the
	// completion) sends nothing.
	if err := f.work(t, 2); err != nil {
		t.Fatalf("second Work: %v", err)
	}
	if n := f.recv.count(); n != 1 {
		t.Errorf("receiver got %d requests, want 1", n)
	}
	wh, _ := standardwebhooks.NewWebhook(webhook.EncodeSecret(f.secret))
	if err := wh.Verify(f.recv.bodies[0], f.recv.reqs[0].Header); err != nil {
		t.Errorf("reference library: %v", err)
	}
}

func TestDeliverWebhookGivesUpAtTheEndOfTheWindow(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, http.StatusServiceUnavailable)
	if err := f.work(t, 1); err == nil {
		t.Fatal("Work succeeded on a 503, want an error so that River retries")
	}
	if d := f.reload(t); d.Status != db.DeliveryPending || d.Attempts != 1 {
		t.Fatalf("delivery %+v, want pending after 1 failed attempt", d)
	}
	// Near the end of the window the next retry would fall after it.
	f.now = f.delivery.CreatedAt.Add(config.WebhookRetryWindow - time.Minute)
	err := f.work(t, 12)
	var cancel *rivertype.JobCancelError
	if !errors.As(err, &cancel) {
		t.Fatalf("Work at the end of the window = %v, want a JobCancel", err)
	}
	d := f.reload(t)
	if d.Status != db.DeliveryFailed || d.Attempts != 2 {
		t.Fatalf("delivery %+v, want failed after 2 attempts", d)
	}
	logs, err := db.ListWebhookDeliveries(f.b.ctx, f.b.pool, f.b.app.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 1 || len(logs[0].AttemptLog) != 2 || *logs[0].AttemptLog[1].StatusCode != 503 ||
		!strings.Contains(*logs[0].AttemptLog[1].Error, "503") {
		t.Errorf("delivery log %+v, want two 503 attempts", logs)
	}
	if err := f.work(t, 13); err != nil {
		t.Fatalf("Work of a failed delivery: %v", err)
	}
	if n := f.recv.count(); n != 2 {
		t.Errorf("receiver got %d requests, want 2", n)
	}
	// The body was fixed by the first attempt and re-sent byte for byte,
	// with the same webhook-id and a fresh timestamp.
	if string(f.recv.bodies[0]) != string(f.recv.bodies[1]) || f.recv.reqs[0].Header.Get("webhook-id") != f.delivery.ID ||
		f.recv.reqs[1].Header.Get("webhook-id") != f.delivery.ID {
		t.Errorf("attempts differ: %s / %s", f.recv.bodies[0], f.recv.bodies[1])
	}
	if f.recv.reqs[0].Header.Get("webhook-timestamp") == f.recv.reqs[1].Header.Get("webhook-timestamp") {
		t.Error("both attempts have the same webhook-timestamp, want the attempt's time")
	}
}

func TestDeliverWebhookSignsWithBothSecretsAfterRotation(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, http.StatusInternalServerError)
	sealer := tallytest.WebhookSealer(t)
	newSecret := webhook.NewSecret()
	keyID, sealed, err := sealer.Seal(f.endpoint.ID, newSecret)
	if err != nil {
		t.Fatal(err)
	}
	until := f.now.Add(config.WebhookRetryWindow)
	if _, err := db.RotateWebhookSecret(f.b.ctx, f.b.pool, db.RotateWebhookSecretParams{ID: f.endpoint.ID,
		SecretKeyID: keyID, SecretSealed: sealed, PreviousUntil: until}); err != nil {
		t.Fatal(err)
	}
	_ = f.work(t, 1)
	f.now = until.Add(time.Second) // the grace period is over
	f.worker.RetryWindow = 48 * time.Hour
	_ = f.work(t, 2)
	if f.recv.count() != 2 {
		t.Fatalf("receiver got %d requests, want 2", f.recv.count())
	}
	verify := func(secret []byte, i int) error {
		wh, _ := standardwebhooks.NewWebhook(webhook.EncodeSecret(secret))
		return wh.VerifyIgnoringTimestamp(f.recv.bodies[i], f.recv.reqs[i].Header)
	}
	if err := verify(f.secret, 0); err != nil {
		t.Errorf("during the grace period the old secret does not verify: %v", err)
	}
	if err := verify(newSecret, 0); err != nil {
		t.Errorf("the new secret does not verify: %v", err)
	}
	if err := verify(f.secret, 1); err == nil {
		t.Error("after the grace period the old secret still verifies")
	}
	if err := verify(newSecret, 1); err != nil {
		t.Errorf("after the grace period the new secret does not verify: %v", err)
	}
}

func TestDeliverWebhookGoneDisablesTheEndpoint(t *testing.T) {
	t.Parallel()
	f := newWebhookFixture(t, http.StatusGone)
	var cancel *rivertype.JobCancelError
	if err := f.work(t, 1); !errors.As(err, &cancel) {
		t.Fatalf("Work on a 410 = %v, want a JobCancel", err)
	}
	if d := f.reload(t); d.Status != db.DeliveryFailed || d.Attempts != 1 {
		t.Errorf("delivery %+v, want failed after 1 attempt", d)
	}
	ep, err := db.GetWebhookEndpoint(f.b.ctx, f.b.pool, f.endpoint.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ep.DisabledAt == nil {
		t.Error("the endpoint is still enabled after a 410")
	}
}
