package db_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
)

// newEndpoint registers an endpoint of app with a dummy sealed secret (the
// trigger never reads it).
func newEndpoint(t *testing.T, b *jobSyncBundle, app *db.Application, events ...string) *db.WebhookEndpoint {
	t.Helper()
	ep, err := db.CreateWebhookEndpoint(context.Background(), b.pool, db.CreateWebhookEndpointParams{
		ID: db.NewID(db.PrefixWebhookEndpoint), OrgID: app.OrgID, ApplicationID: app.ID,
		URL: "https://receiver.example/hook", Events: events, SecretKeyID: "k", SecretSealed: []byte("sealed"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// enqueued is a delivery with the River job the trigger inserted for it.
type enqueued struct {
	endpointID, eventType, status string
	kind, queue, state            string
	maxAttempts                   int
	args                          map[string]string
}

func deliveriesOf(t *testing.T, b *jobSyncBundle, reportID string) []enqueued {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), `
		SELECT d.id, d.endpoint_id, d.event_type, d.status, j.kind, j.queue, j.state::text, j.max_attempts, j.args
		  FROM webhook_deliveries d JOIN river_job j ON j.id = d.job_id
		 WHERE d.report_id = $1 ORDER BY d.endpoint_id`, reportID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []enqueued
	for rows.Next() {
		var e enqueued
		var id string
		var args []byte
		if err := rows.Scan(&id, &e.endpointID, &e.eventType, &e.status, &e.kind, &e.queue, &e.state, &e.maxAttempts, &args); err != nil {
			t.Fatal(err)
		}
		if !db.ValidID(db.PrefixWebhookMessage, id) {
			t.Errorf("delivery id %q is not an id like msg_<ulid>", id)
		}
		if err := json.Unmarshal(args, &e.args); err != nil {
			t.Fatal(err)
		}
		if e.args["delivery_id"] != id {
			t.Errorf("job args %v do not name delivery %s", e.args, id)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWebhookTriggerEnqueuesOnEveryPath checks that a delivery and its job
// are inserted in the transaction that makes a report ready or failed,
// whichever path does it: the worker's finishing transaction, a worker
// giving up (Go), and a discarded job (the river_job trigger, SQL).
func TestWebhookTriggerEnqueuesOnEveryPath(t *testing.T) {
	t.Parallel()
	b := setupJobSync(t)
	ctx := context.Background()
	both := newEndpoint(t, b, b.app, db.EventTypeReportReady, db.EventTypeReportFailed)
	readyOnly := newEndpoint(t, b, b.app, db.EventTypeReportReady)
	failedOnly := newEndpoint(t, b, b.app, db.EventTypeReportFailed)
	disabled := newEndpoint(t, b, b.app, db.EventTypeReportReady, db.EventTypeReportFailed)
	if _, err := db.DisableWebhookEndpoint(ctx, b.pool, disabled.ID); err != nil {
		t.Fatal(err)
	}
	otherApp, err := db.CreateApplication(ctx, b.pool, db.CreateApplicationParams{OrgID: b.app.OrgID, ForeignID: "beta", Name: "Beta"})
	if err != nil {
		t.Fatal(err)
	}
	newEndpoint(t, b, otherApp, db.EventTypeReportReady, db.EventTypeReportFailed)

	want := func(event string, eps ...*db.WebhookEndpoint) []enqueued {
		var out []enqueued
		for _, ep := range eps {
			out = append(out, enqueued{endpointID: ep.ID, eventType: event, status: db.DeliveryPending,
				kind: jobs.DeliverWebhookArgs{}.Kind(), queue: jobs.QueueWebhooks, state: "available",
				maxAttempts: jobs.WebhookMaxAttempts})
		}
		slices.SortFunc(out, func(a, b enqueued) int { return strings.Compare(a.endpointID, b.endpointID) })
		return out
	}
	check := func(name, reportID string, wantDs []enqueued) {
		t.Helper()
		got := deliveriesOf(t, b, reportID)
		for i := range got {
			got[i].args = nil
		}
		if !slices.EqualFunc(got, wantDs, func(a, b enqueued) bool {
			return a.endpointID == b.endpointID && a.eventType == b.eventType && a.status == b.status && a.kind == b.kind &&
				a.queue == b.queue && a.state == b.state && a.maxAttempts == b.maxAttempts
		}) {
			t.Errorf("%s: deliveries\n got %+v\nwant %+v", name, got, wantDs)
		}
	}

	// Ready, from the worker's finishing transaction.
	ready, readyJob := b.newReport(t)
	b.startRun(t, ready, readyJob)
	check("running", ready, nil)
	b.makeReady(t, ready)
	check("ready", ready, want(db.EventTypeReportReady, both, readyOnly))

	// Failed by a worker that gives up (Go).
	goFailed, goJob := b.newReport(t)
	b.startRun(t, goFailed, goJob)
	if ok, err := db.MarkReportFailed(ctx, b.pool, goFailed, "build_failed", "boom", false); err != nil || !ok {
		t.Fatalf("MarkReportFailed: %v %v", ok, err)
	}
	check("failed in Go", goFailed, want(db.EventTypeReportFailed, both, failedOnly))

	// Failed because its job was discarded (SQL, the river_job trigger).
	sqlFailed, sqlJob := b.newReport(t)
	b.startRun(t, sqlFailed, sqlJob)
	b.discard(t, sqlJob, "out of attempts")
	check("failed by a discarded job", sqlFailed, want(db.EventTypeReportFailed, both, failedOnly))

	// An update that leaves the status alone enqueues nothing more.
	b.exec(t, `UPDATE reports SET status = status, updated_at = now() WHERE id = $1`, ready)
	check("ready, touched", ready, want(db.EventTypeReportReady, both, readyOnly))

	// A rolled-back status change leaves neither delivery nor job.
	rolled, rolledJob := b.newReport(t)
	b.startRun(t, rolled, rolledJob)
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.MarkReportFailed(ctx, tx, rolled, "build_failed", "boom", false); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	check("rolled back", rolled, nil)
	var jobs int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'deliver_webhook'`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 6 {
		t.Errorf("%d deliver_webhook jobs, want 6", jobs)
	}
}
