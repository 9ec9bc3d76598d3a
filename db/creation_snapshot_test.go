package db_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// TestCreateReportSnapshot: a report's creation snapshot shows as committed
// the transactions that had committed when the report was inserted, and as
// running the ones that were open, its own transaction included: also when
// that one wrote first and another committed after it began, the case where
// PostgreSQL's own snapshot shows it visible.
func TestCreateReportSnapshot(t *testing.T) {
	t.Parallel()
	b := setupJobSync(t)
	ctx := context.Background()
	xid := func(q db.DBTX) string {
		t.Helper()
		var x string
		if err := q.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&x); err != nil {
			t.Fatal(err)
		}
		return x
	}

	before := xid(b.pool)
	open, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Rollback(ctx)
	openXID := xid(open)

	var rep *db.Report
	var own, during string
	err = db.WithTx(ctx, b.pool, func(tx pgx.Tx) error {
		own = xid(tx)
		during = xid(b.pool)
		var pgSees bool
		if err := tx.QueryRow(ctx, `SELECT pg_visible_in_snapshot($1::xid8, pg_current_snapshot())`, own).Scan(&pgSees); err != nil {
			return err
		}
		if !pgSees {
			t.Errorf("PostgreSQL's snapshot does not show the own transaction visible: the test misses its case")
		}
		rep, err = db.CreateReport(ctx, tx, db.CreateReportParams{OrgID: b.app.OrgID, ApplicationID: b.app.ID,
			CaseID: b.kase.ID, Type: "transaction_summary", Metadata: map[string]any{}, CreatedBy: b.user.ID})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	after := xid(b.pool)
	if rep.CreationSnapshot == nil {
		t.Fatal("creation_snapshot is NULL")
	}
	tests := []struct {
		name string
		xid  string
		want bool
	}{
		{"CommittedBefore", before, true},
		{"CommittedWhileCreating", during, true},
		{"OpenWhileCreating", openXID, false},
		{"Own", own, false},
		{"CommittedAfter", after, false},
	}
	for _, tt := range tests {
		var got bool
		err := b.pool.QueryRow(ctx, `SELECT pg_visible_in_snapshot($1::xid8, $2::pg_snapshot)`, tt.xid, *rep.CreationSnapshot).Scan(&got)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: transaction %s visible in %s = %v, want %v", tt.name, tt.xid, *rep.CreationSnapshot, got, tt.want)
		}
	}
}
