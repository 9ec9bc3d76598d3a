package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/view"
	"github.com/tally-compliance/tally/webhook"
	"github.com/tally-compliance/tally/worker"
)

// receiver is a webhook consumer: it verifies every request with the
// reference Standard Webhooks library, answers 500 to the first failFirst
// attempts of each message, then 204.
type receiver struct {
	t         *testing.T
	wh        *standardwebhooks.Webhook
	failFirst int
	srv       *httptest.Server

	mu       sync.Mutex
	attempts map[string]int    // webhook-id → requests
	ok       map[string]int    // webhook-id → 2xx answers
	bodies   map[string][]byte // webhook-id → body
	bad      []string          // verification failures
	first    chan struct{}     // closed at the first request
}

func newReceiver(t *testing.T, secret []byte, failFirst int) *receiver {
	wh, err := standardwebhooks.NewWebhook(webhook.EncodeSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, wh: wh, failFirst: failFirst, attempts: map[string]int{}, ok: map[string]int{},
		bodies: map[string][]byte{}, first: make(chan struct{})}
	r.srv = httptest.NewServer(r)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, n := range r.attempts {
		total += n
	}
	if total == 0 {
		close(r.first)
	}
	id := req.Header.Get(webhook.HeaderID)
	r.attempts[id]++
	if err := r.wh.Verify(body, req.Header); err != nil {
		r.bad = append(r.bad, id+": "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if req.Header.Get("Content-Type") != "application/json" {
		r.bad = append(r.bad, id+": Content-Type "+req.Header.Get("Content-Type"))
	}
	if prev, seen := r.bodies[id]; seen && string(prev) != string(body) {
		r.bad = append(r.bad, id+": the body changed between attempts")
	}
	r.bodies[id] = body
	if r.attempts[id] <= r.failFirst {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.ok[id]++
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.attempts {
		n += a
	}
	return n
}

// TestWebhooksDeliveredOnceAfterFailuresAndRestart runs real workers against
// real receivers: the application's receiver fails the first two attempts
// of each message, the worker is stopped after the first and another one
// finishes; each event arrives exactly once with a 2xx, signed so that the
// reference library verifies it, carrying the report as a caller with
// reports:list sees it. Another application's receiver, a disabled
// endpoint, a private address and a redirect get nothing.
func TestWebhooksDeliveredOnceAfterFailuresAndRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	org, app, user := b.tenant(t)
	otherApp, err := db.CreateApplication(ctx, b.pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "other", Name: "Other"})
	if err != nil {
		t.Fatal(err)
	}
	c, otherCase := b.openCase(t, app), b.openCase(t, otherApp)

	sealer := tallytest.WebhookSealer(t)
	addEndpoint := func(a *db.Application, url string, secret []byte) *db.WebhookEndpoint {
		t.Helper()
		id := db.NewID(db.PrefixWebhookEndpoint)
		keyID, sealed, err := sealer.Seal(id, secret)
		if err != nil {
			t.Fatal(err)
		}
		ep, err := db.CreateWebhookEndpoint(ctx, b.pool, db.CreateWebhookEndpointParams{ID: id, OrgID: a.OrgID, ApplicationID: a.ID,
			URL: url, Events: []string{db.EventTypeReportFailed, db.EventTypeReportReady}, SecretKeyID: keyID, SecretSealed: sealed})
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	// The application's receiver: 500 twice per message, then 204.
	mainSecret := webhook.NewSecret()
	mainRecv := newReceiver(t, mainSecret, 2)
	mainEP := addEndpoint(app, mainRecv.srv.URL+"/hooks/tally", mainSecret)
	// Another application's receiver.
	otherSecret := webhook.NewSecret()
	otherRecv := newReceiver(t, otherSecret, 0)
	otherEP := addEndpoint(otherApp, otherRecv.srv.URL, otherSecret)
	// A disabled endpoint of the application.
	disabledSecret := webhook.NewSecret()
	disabledRecv := newReceiver(t, disabledSecret, 0)
	disabledEP := addEndpoint(app, disabledRecv.srv.URL, disabledSecret)
	if _, err := db.DisableWebhookEndpoint(ctx, b.pool, disabledEP.ID); err != nil {
		t.Fatal(err)
	}
	// A redirect to a receiver, which must never be reached.
	target := newReceiver(t, webhook.NewSecret(), 0)
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusFound))
	defer redirect.Close()
	redirectEP := addEndpoint(app, redirect.URL, webhook.NewSecret())
	// A private address outside the test's allow-list (loopback only).
	privateEP := addEndpoint(app, "http://10.255.255.1:9/hooks", webhook.NewSecret())

	opts := b.opts(t)
	opts.WebhookSealer = sealer
	opts.WebhookGuard = &webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	opts.WebhookRetryBase, opts.WebhookMaxRetryDelay = time.Second, 2*time.Second
	opts.WebhookTimeout = 5 * time.Second

	inserter, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	newReport := func(a *db.Application, k *db.Case, typ config.ReportType) *db.Report {
		t.Helper()
		rep, err := jobs.CreateReport(ctx, b.pool, inserter, jobs.CreateReportParams{
			Application: a, CaseID: k.ID, Type: typ, UserID: user.ID, LargeReportRows: 200_000})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(25 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	// findDelivery is the delivery of a report to an endpoint, nil while the
	// report has not reached ready or failed (none is enqueued yet).
	findDelivery := func(reportID, endpointID string) *db.WebhookDelivery {
		t.Helper()
		var id string
		err := b.pool.QueryRow(ctx, `SELECT id FROM webhook_deliveries WHERE report_id = $1 AND endpoint_id = $2`,
			reportID, endpointID).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			t.Fatalf("delivery of %s to %s: %v", reportID, endpointID, err)
		}
		d, err := db.GetWebhookDelivery(ctx, b.pool, id)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	deliveryOf := func(reportID, endpointID string) *db.WebhookDelivery {
		t.Helper()
		d := findDelivery(reportID, endpointID)
		if d == nil {
			t.Fatalf("no delivery of %s to %s", reportID, endpointID)
		}
		return d
	}
	// deliveryIs waits until the delivery exists and cond holds for it.
	deliveryIs := func(reportID, endpointID string, cond func(*db.WebhookDelivery) bool) func() bool {
		return func() bool {
			d := findDelivery(reportID, endpointID)
			return d != nil && cond(d)
		}
	}
	succeeded := func(d *db.WebhookDelivery) bool { return d.Status == db.DeliverySucceeded }
	attempted := func(d *db.WebhookDelivery) bool { return d.Attempts >= 1 }

	summary, _ := b.portal.ReportType("transaction_summary")
	ready := newReport(app, c, summary)
	// A type the worker does not know: it fails the report for good (Go).
	failed := newReport(app, c, config.ReportType{Name: "retired_type", Builder: "retired_type"})
	otherReady := newReport(otherApp, otherCase, summary)

	// First worker: runs until the receiver has answered the first attempt.
	runCtx, cancel := context.WithCancel(ctx)
	w1, err := worker.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w1.Run(runCtx) }()
	select {
	case <-mainRecv.first:
	case <-time.After(60 * time.Second):
		t.Fatal("the receiver got no request")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The restart comes mid-retry: a delivery has failed attempts and is
	// still pending.
	var midRetry int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries
		WHERE endpoint_id = $1 AND status = 'pending' AND attempts >= 1`, mainEP.ID).Scan(&midRetry); err != nil {
		t.Fatal(err)
	}
	if midRetry == 0 {
		t.Fatal("no delivery is pending after a failed attempt when the first worker stops")
	}

	// Second worker: finishes the retries.
	runCtx, cancel = context.WithCancel(ctx)
	defer cancel()
	w2, err := worker.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- w2.Run(runCtx) }()
	for _, r := range []*db.Report{ready, failed} {
		waitFor("the delivery of "+r.ID, deliveryIs(r.ID, mainEP.ID, succeeded))
	}
	waitFor("the other application's delivery", deliveryIs(otherReady.ID, otherEP.ID, succeeded))
	waitFor("a redirect attempt", deliveryIs(ready.ID, redirectEP.ID, attempted))
	waitFor("a refused attempt", deliveryIs(ready.ID, privateEP.ID, attempted))
	// Disabling an endpoint cancels its pending deliveries at their next turn.
	if _, err := db.DisableWebhookEndpoint(ctx, b.pool, redirectEP.ID); err != nil {
		t.Fatal(err)
	}
	waitFor("the disabled endpoint's delivery to be canceled", deliveryIs(ready.ID, redirectEP.ID,
		func(d *db.WebhookDelivery) bool { return d.Status == db.DeliveryCanceled }))
	srv := httptest.NewServer(w2.Handler())
	defer srv.Close()
	_, metrics := get(t, srv.URL+"/metrics")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Exactly one 2xx per event, after two failures, under one webhook-id.
	mainRecv.mu.Lock()
	defer mainRecv.mu.Unlock()
	if len(mainRecv.bad) > 0 {
		t.Errorf("receiver rejected requests: %v", mainRecv.bad)
	}
	if len(mainRecv.attempts) != 2 {
		t.Fatalf("receiver saw messages %v, want one per event (2)", mainRecv.attempts)
	}
	types := map[string]bool{}
	for _, r := range []*db.Report{ready, failed} {
		d := deliveryOf(r.ID, mainEP.ID)
		if got := mainRecv.attempts[d.ID]; got != 3 {
			t.Errorf("%s: %d requests, want 3 (500, 500, 204)", d.ID, got)
		}
		if got := mainRecv.ok[d.ID]; got != 1 {
			t.Errorf("%s: %d successful requests, want exactly 1", d.ID, got)
		}
		var body struct {
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(mainRecv.bodies[d.ID], &body); err != nil {
			t.Fatalf("%s: body %s: %v", d.ID, mainRecv.bodies[d.ID], err)
		}
		types[body.Type] = true
		if body.Type != d.EventType || !body.Timestamp.Equal(d.OccurredAt) {
			t.Errorf("%s: type %s at %s, want %s at %s", d.ID, body.Type, body.Timestamp, d.EventType, d.OccurredAt)
		}
		cur, err := db.GetReportByID(ctx, b.pool, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(view.ReportFor(cur, false))
		if string(body.Data) != string(want) {
			t.Errorf("%s: data\n got %s\nwant %s (the report as reports:list shows it)", d.ID, body.Data, want)
		}
		var data struct {
			Status    string  `json:"status"`
			SizeBytes *int64  `json:"size_bytes"`
			SHA256    *string `json:"sha256"`
		}
		if err := json.Unmarshal(body.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.Status != strings.TrimPrefix(d.EventType, "report.") || data.SizeBytes != nil || data.SHA256 != nil ||
			strings.Contains(string(body.Data), "object_key") || strings.Contains(string(body.Data), "row_count") {
			t.Errorf("%s: data %s: want the status of the event and no file content (size, hash, key, rows)", d.ID, body.Data)
		}
	}
	if !types[db.EventTypeReportReady] || !types[db.EventTypeReportFailed] {
		t.Errorf("event types %v, want report.ready and report.failed", types)
	}
	if n := otherRecv.requests(); n != 1 {
		t.Errorf("the other application's receiver got %d requests, want 1 (its own report only)", n)
	}
	if n := disabledRecv.requests(); n != 0 {
		t.Errorf("the disabled endpoint got %d requests, want 0", n)
	}
	if n := target.requests(); n != 0 {
		t.Errorf("the redirect's target got %d requests, want 0 (redirects are not followed)", n)
	}
	logs, err := db.ListWebhookDeliveries(ctx, b.pool, app.ID, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		switch l.EndpointID {
		case redirectEP.ID:
			if a := l.AttemptLog[0]; a.StatusCode == nil || *a.StatusCode != http.StatusFound || a.Succeeded {
				t.Errorf("redirect attempt %+v, want a failed 302", a)
			}
		case privateEP.ID:
			if a := l.AttemptLog[0]; a.StatusCode != nil || a.Error == nil || !strings.Contains(*a.Error, "refused address") {
				t.Errorf("private address attempt %+v, want refused without a status code", a)
			}
		case mainEP.ID:
			if len(l.AttemptLog) != 3 || *l.AttemptLog[0].StatusCode != 500 || *l.AttemptLog[2].StatusCode != 204 || !l.AttemptLog[2].Succeeded {
				t.Errorf("main delivery attempts %+v, want 500, 500, 204", l.AttemptLog)
			}
		case disabledEP.ID:
			t.Errorf("the disabled endpoint has a delivery: %+v", l)
		}
	}
	if got := metricValue(t, metrics, `tally_webhook_deliveries_total{result="succeeded"}`); got < 1 {
		t.Errorf("succeeded counter = %v, want at least 1", got)
	}
	if got := metricValue(t, metrics, `tally_webhook_deliveries_total{result="retry"}`); got < 1 {
		t.Errorf("retry counter = %v, want at least 1", got)
	}
}
