package db_test

import (
	"context"
	"errors"
	"testing"

	"github.com/tally-compliance/tally/db"
)

// TestClaimReport: ClaimReport moves a pending (or running) report to
// running for the job and returns it as it is then; a ready report is
// returned unclaimed, a missing one is ErrNotFound; and the claim's
// asynchronous commit does not outlive its own transaction on the
// connection.
func TestClaimReport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupJobSync(t)
	reportID, jobID := b.newReport(t)

	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for range 2 { // running stays claimable: a rescued job claims it again
		rep, claimed, err := db.ClaimReport(ctx, conn, reportID, jobID)
		if err != nil || !claimed || rep.ID != reportID || rep.Status != db.ReportRunning ||
			rep.JobID == nil || *rep.JobID != jobID || rep.StartedAt == nil || rep.CreatedByName != "Auditor" {
			t.Fatalf("ClaimReport = %+v, %v, %v; want the report running for job %d", rep, claimed, err, jobID)
		}
	}
	var syncCommit string
	if err := conn.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&syncCommit); err != nil || syncCommit != "on" {
		t.Fatalf("synchronous_commit after a claim = %q, %v; want on (the claim's setting is its transaction's alone)", syncCommit, err)
	}

	b.makeReady(t, reportID)
	rep, claimed, err := db.ClaimReport(ctx, b.pool, reportID, jobID+1)
	if err != nil || claimed || rep.Status != db.ReportReady || *rep.JobID != jobID {
		t.Fatalf("ClaimReport of a ready report = %+v, %v, %v; want it unclaimed and unchanged", rep, claimed, err)
	}

	if _, _, err := db.ClaimReport(ctx, b.pool, "rpt_missing", 1); !errors.Is(err, db.ErrNotFound) {
		t.Fatalf("ClaimReport of a missing report: %v, want ErrNotFound", err)
	}
}
