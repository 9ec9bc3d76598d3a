package jobs_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// TestActivityLogWaitsForTheChain: an activity_log report created while some
// of its events cannot be chained yet (a transaction older than them is
// open) waits, snoozed and still pending, instead of writing a file whose
// hashes depend on when it was built. Once the old transaction ends, the
// report is built with every event's hash and rebuilds byte for byte. A
// writer open in another database of the cluster holds nothing up.
func TestActivityLogWaitsForTheChain(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := b.ctx

	cfg := b.pool.Config().ConnConfig.Copy()
	cfg.Database = "postgres"
	otherConn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to the cluster's postgres database: %v", err)
	}
	defer otherConn.Close(context.WithoutCancel(ctx))
	otherDB := openWriter(t, ctx, otherConn)

	c := b.createCase(t, caseOpts{})
	first := b.createReportNow(t, c, "transaction_summary")
	long := openWriter(t, ctx, b.pool) // older than the events below
	for i := range 3 {
		if err := db.CreateReportEvent(ctx, b.pool, first, db.EventReportDownloaded, b.user.ID,
			map[string]any{"client_ip": "203.0.113.9", "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	rep := b.createReportNow(t, c, "activity_log")
	scope, err := rep.Scope()
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, b.workerOpts(t))

	// The job snoozes: the downloads cannot be chained while the older
	// transaction is open, and the report stays pending.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var snoozes int
		if err := b.pool.QueryRow(ctx, `
			SELECT coalesce((metadata ->> 'snoozes')::int, 0) FROM river_job WHERE args ->> 'report_id' = $1`,
			rep.ID).Scan(&snoozes); err != nil {
			t.Fatal(err)
		}
		if snoozes >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the activity_log job was snoozed %d times, want it to wait for the chain", snoozes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cur, err := db.GetReportByID(ctx, b.pool, rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cur.Status != db.ReportPending {
		t.Fatalf("report is %s while its events cannot be chained, want pending", cur.Status)
	}
	if n, err := db.CountUnchainedCaseEvents(ctx, b.pool, c.ID, scope.DataAsOf, deref(rep.CreationSnapshot)); err != nil || n != 3 {
		t.Fatalf("%d unchained events of the snapshot (%v), want the 3 downloads", n, err)
	}

	if err := long.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	r := b.waitReport(t, rep.ID, time.Minute, db.ReportReady, db.ReportFailed)
	if r.Status != db.ReportReady {
		t.Fatalf("status %s (%s), want ready", r.Status, deref(r.ErrorMessage))
	}
	if st := otherDB.Conn().PgConn().TxStatus(); st != 'T' {
		t.Fatalf("the writer in the other database ended (status %q) before the report was ready", st)
	}
	stored := b.download(t, r)

	// Every row carries its event's chain hash, in the report's order.
	rows, err := b.pool.Query(ctx, `
		SELECT encode(c.hash, 'hex') FROM activity_events e JOIN activity_chain c ON c.event_id = e.id
		 WHERE e.case_id = $1 AND e.occurred_at <= $2 AND pg_visible_in_snapshot(e.xact, $3::pg_snapshot)
		 ORDER BY e.occurred_at, e.id`, c.ID, scope.DataAsOf, deref(rep.CreationSnapshot))
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(bytes.NewReader(stored)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != len(want)+1 || len(want) != 4 { // created (first), 3 downloads
		t.Fatalf("file has %d rows, %d events chained in the snapshot, want 4 and 4:\n%s", len(records)-1, len(want), stored)
	}
	for i, rec := range records[1:] {
		if got := rec[len(rec)-1]; got != want[i] || len(got) != 64 {
			t.Errorf("row %d: hash %q, want %q", i+1, got, want[i])
		}
	}
	if got := rebuild(t, b, r); !bytes.Equal(got, stored) {
		t.Fatalf("rebuilt from its snapshot, the file differs:\n--- rebuilt\n%s\n--- stored\n%s", got, stored)
	}
}
