package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// TestStreamScopeNotPrepared checks that the scope queries are planned with
// each call's parameters: no named prepared statement is left on the
// connection, so PostgreSQL never switches them to a generic plan.
func TestStreamScopeNotPrepared(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, err := tallytest.DB(t).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	q := db.ScopeParams{ApplicationID: "app_none", PeriodStart: time.Unix(0, 0), PeriodEnd: time.Now(), DataAsOf: time.Now()}
	for range 6 {
		if err := db.StreamScope(ctx, conn, q, func(*db.ScopeRow) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if err := db.StreamScopeGroups(ctx, conn, q, func(*db.ScopeGroup) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements
		WHERE statement LIKE '%FROM transactions%' AND statement NOT LIKE '%pg_prepared_statements%'`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("got %d prepared scope statements on the connection, want 0", n)
	}
}
