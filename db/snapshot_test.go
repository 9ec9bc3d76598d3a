package db_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// TestWithSnapshotTxSeesOneSnapshotAndWritesNothing: rows committed while fn
// runs are not seen by its later queries, and a write fails.
func TestWithSnapshotTxSeesOneSnapshotAndWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t)
	count := func(q db.DBTX) int {
		t.Helper()
		var n int
		if err := q.QueryRow(ctx, `SELECT count(*) FROM organizations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	err := db.WithSnapshotTx(ctx, pool, func(tx pgx.Tx) error {
		before := count(tx)
		if _, err := db.CreateOrganization(ctx, pool, "Committed Meanwhile"); err != nil {
			return err
		}
		if got := count(tx); got != before {
			t.Errorf("the snapshot sees %d organizations after a commit, want %d", got, before)
		}
		if got := count(pool); got != before+1 {
			t.Errorf("the pool sees %d organizations, want %d", got, before+1)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.WithSnapshotTx(ctx, pool, func(tx pgx.Tx) error {
		_, err := db.CreateOrganization(ctx, tx, "Written In A Snapshot")
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" { // read_only_sql_transaction
		t.Fatalf("writing in a snapshot: %v, want read_only_sql_transaction", err)
	}
}

// TestTxHelpersTranslateFnErrors: WithTx and WithSnapshotTx translate a
// driver error that fn returns, and leave an error that is already
// translated, or not the driver's, as it is.
func TestTxHelpersTranslateFnErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t)
	// What translating 57P01 gives: the sentinel with the driver's error.
	unavailable := fmt.Errorf("%w: %w", db.ErrUnavailable, &pgconn.PgError{Code: "57P01", Message: "terminating connection"})
	mine := errors.New("mine")
	helpers := map[string]func(fn func(pgx.Tx) error) error{
		"WithTx":         func(fn func(pgx.Tx) error) error { return db.WithTx(ctx, pool, fn) },
		"WithSnapshotTx": func(fn func(pgx.Tx) error) error { return db.WithSnapshotTx(ctx, pool, fn) },
	}
	for name, with := range helpers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := with(func(pgx.Tx) error { return fmt.Errorf("reading: %w", pgx.ErrNoRows) })
			if !errors.Is(err, db.ErrNotFound) {
				t.Errorf("fn returning pgx.ErrNoRows: got %v, want db.ErrNotFound", err)
			}
			err = with(func(pgx.Tx) error { return &pgconn.PgError{Code: "57P01", Message: "terminating connection"} })
			if !errors.Is(err, db.ErrUnavailable) {
				t.Errorf("fn returning 57P01: got %v, want db.ErrUnavailable", err)
			}
			err = with(func(pgx.Tx) error { return unavailable })
			if err == nil || err.Error() != unavailable.Error() {
				t.Errorf("fn returning a translated error: got %v, want it unchanged: %v", err, unavailable)
			}
			if err := with(func(pgx.Tx) error { return mine }); err != mine {
				t.Errorf("fn returning its own error: got %v, want %v", err, mine)
			}
		})
	}
}
