package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/webhook"
	"github.com/tally-compliance/tally/worker"
)

func TestWebhookAddValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	b.newTenant(t, "bob@example.com") // a second organization with an application "payments"
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--app", "payments", "--url", "https://a.example/", "--events", "report.ready"}, "name one with --org"},
		{[]string{"--app", "cards", "--url", "https://a.example/", "--events", "report.ready"}, "not found"},
		{[]string{"--org", tn.org.ID, "--app", "nope", "--url", "https://a.example/", "--events", "report.ready"}, "not found"},
		{[]string{"--app", tn.app.ID, "--url", "http://a.example/", "--events", "report.ready"}, "https"},
		{[]string{"--app", tn.app.ID, "--url", "https://10.0.0.1/", "--events", "report.ready"}, "private"},
		{[]string{"--app", tn.app.ID, "--url", "https://user:pw@a.example/", "--events", "report.ready"}, "credentials"},
		{[]string{"--app", tn.app.ID, "--url", "https://a.example/", "--events", "report.created"}, "unknown event"},
		{[]string{"--app", tn.app.ID, "--url", "https://a.example/", "--events", ""}, "at least one"},
	}
	for _, tt := range tests {
		wantError(t, b.run(t, append([]string{"webhook", "add"}, tt.args...)...), tt.want)
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM webhook_endpoints`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d endpoints after refused adds (%v), want 0", n, err)
	}
}

func TestWebhookAddListRotateDisable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	sealer := tallytest.WebhookSealer(t)

	r := b.run(t, "webhook", "add", "--org", tn.org.ID, "--app", "payments", "--url", "https://portal.example/hooks",
		"--events", "report.ready,report.failed")
	if r.err != nil {
		t.Fatal(r.err)
	}
	secretText := strings.TrimSuffix(r.stdout, "\n")
	secret, err := webhook.DecodeSecret(secretText)
	if err != nil || len(secret) < 24 {
		t.Fatalf("stdout %q, want one whsec_ secret of at least 24 bytes (%v)", r.stdout, err)
	}
	if strings.Contains(r.stderr, secretText) || !strings.Contains(r.stderr, "endpoint wh_") {
		t.Errorf("stderr %q, want the endpoint id and not the secret", r.stderr)
	}
	var eps []endpointJSON
	b.mustJSON(t, &eps, "webhook", "list", "--app", "payments", "--json") // one organization has it here
	if len(eps) != 1 {
		t.Fatalf("list by bare foreign id: %+v, want the endpoint", eps)
	}
	b.mustJSON(t, &eps, "webhook", "list", "--app", tn.app.ID, "--json")
	if len(eps) != 1 || !eps[0].Enabled || eps[0].URL != "https://portal.example/hooks" || eps[0].Secret != "" ||
		strings.Join(eps[0].Events, ",") != "report.failed,report.ready" {
		t.Fatalf("list: %+v, want the one enabled endpoint without its secret", eps)
	}
	id := eps[0].ID
	stored, err := db.GetWebhookEndpoint(b.ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored.SecretSealed, secret) {
		t.Fatal("the secret is stored in clear")
	}
	if got, err := sealer.Open(stored.SecretKeyID, id, stored.SecretSealed); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("stored secret opens to %x (%v), want the printed one", got, err)
	}

	var rotated endpointJSON
	b.mustJSON(t, &rotated, "webhook", "rotate-secret", id, "--json")
	newSecret, err := webhook.DecodeSecret(rotated.Secret)
	if err != nil || bytes.Equal(newSecret, secret) {
		t.Fatalf("rotate-secret printed %q (%v), want a new secret", rotated.Secret, err)
	}
	if rotated.PreviousSecretUntil == nil || time.Until(*rotated.PreviousSecretUntil) < 23*time.Hour {
		t.Errorf("previous secret signs until %v, want about 24 h from now", rotated.PreviousSecretUntil)
	}
	stored, _ = db.GetWebhookEndpoint(b.ctx, b.pool, id)
	if got, _ := sealer.Open(*stored.PreviousSecretKeyID, id, stored.PreviousSecretSealed); !bytes.Equal(got, secret) {
		t.Error("the previous secret is not the one rotated out")
	}
	if got, _ := sealer.Open(stored.SecretKeyID, id, stored.SecretSealed); !bytes.Equal(got, newSecret) {
		t.Error("the current secret is not the printed one")
	}

	if got := b.mustRun(t, "webhook", "disable", id); got != id+" disabled" {
		t.Errorf("disable printed %q", got)
	}
	b.mustRun(t, "webhook", "disable", id) // a no-op
	out := b.mustRun(t, "webhook", "list", "--org", tn.org.ID, "--app", "payments")
	if !strings.Contains(out, "ID") || !strings.Contains(out, id) || !strings.Contains(out, "disabled") {
		t.Errorf("list printed %q, want the endpoint disabled", out)
	}
	wantError(t, b.run(t, "webhook", "disable", db.NewID(db.PrefixWebhookEndpoint)), "not found")
	wantError(t, b.run(t, "webhook", "rotate-secret", "app_x"), "not an id like wh_")
}

// TestWebhookDeliveriesShowsRetries registers an endpoint with tallyctl,
// runs a real worker against a receiver that fails twice, and reads the
// attempts back with webhook deliveries.
func TestWebhookDeliveriesShowsRetries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.urlPolicy = webhook.URLPolicy{AllowHTTP: true, Guard: &webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	tn := b.newTenant(t, "ana@example.com")

	var mu sync.Mutex
	var requests int
	var rejected []string
	var wh *standardwebhooks.Webhook
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if err := wh.Verify(body, r.Header); err != nil {
			rejected = append(rejected, err.Error())
		}
		requests++
		if requests <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer recv.Close()
	secret := b.mustRun(t, "webhook", "add", "--app", tn.app.ID, "--url", recv.URL+"/hooks", "--events", "report.ready")
	var err error
	if wh, err = standardwebhooks.NewWebhook(secret); err != nil {
		t.Fatal(err)
	}

	store := tallytest.Store(t)
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	w, err := worker.New(b.ctx, worker.Opts{Pool: b.pool, Store: store, Portal: portal, PseudonymKeys: tallytest.PseudonymKeys(t),
		Logger: logger, JobTimeout: 10 * time.Second, ShutdownTimeout: time.Second, FetchPollInterval: 100 * time.Millisecond,
		TestOnly: true, WebhookSealer: tallytest.WebhookSealer(t), WebhookGuard: b.urlPolicy.Guard,
		WebhookRetryBase: 500 * time.Millisecond, WebhookMaxRetryDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := db.CreateCase(b.ctx, b.pool, db.CreateCaseParams{ApplicationID: tn.app.ID, PeriodStart: start, PeriodEnd: start.AddDate(0, 1, 0),
		AccessWindowStart: time.Now().Add(-time.Hour), AccessWindowEnd: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	inserter, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	typ, _ := portal.ReportType("transaction_summary")
	rep, err := jobs.CreateReport(b.ctx, b.pool, inserter, jobs.CreateReportParams{Application: tn.app, CaseID: c.ID, Type: typ,
		UserID: tn.user.ID, LargeReportRows: 200_000})
	if err != nil {
		t.Fatal(err)
	}
	var ds []deliveryJSON
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		b.mustJSON(t, &ds, "webhook", "deliveries", "--app", tn.app.ID, "--json")
		if len(ds) == 1 && ds[0].Status == db.DeliverySucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries %+v, want one succeeded", ds)
		}
	}
	out := b.mustRun(t, "webhook", "deliveries", "--org", tn.org.ID, "--app", "payments")
	t.Logf("tallyctl webhook deliveries --app payments:\n%s", out)
	t.Logf("worker log:\n%s", webhookLines(logs.String()))

	d := ds[0]
	if d.ReportID != rep.ID || d.EventType != db.EventTypeReportReady || len(d.Attempts) != 3 {
		t.Fatalf("delivery %+v, want report.ready of %s with 3 attempts", d, rep.ID)
	}
	for i, wantCode := range []int{500, 500, 200} {
		a := d.Attempts[i]
		if a.StatusCode == nil || *a.StatusCode != wantCode || a.Succeeded != (wantCode == 200) || a.Attempt != i+1 {
			t.Errorf("attempt %d: %+v, want status %d", i+1, a, wantCode)
		}
	}
	for _, want := range []string{d.ID, "report.ready", rep.ID, "succeeded", "#1", "#3", "500", "200", "receiver answered 500", "ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("deliveries output lacks %q:\n%s", want, out)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rejected) > 0 || requests != 3 {
		t.Errorf("receiver: %d requests, rejected %v; want 3 verified", requests, rejected)
	}
}

// lockedBuffer is a log buffer that the worker's goroutines write while the
// test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// webhookLines keeps the log lines about webhooks.
func webhookLines(s string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, "webhook") {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}
