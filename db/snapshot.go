package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// WithSnapshotTx runs fn in a REPEATABLE READ, READ ONLY transaction on a
// connection of pool: every query fn runs sees the same snapshot, taken at
// its first query, however long fn takes. The transaction is rolled back
// when fn returns (it wrote nothing). Errors are translated like WithTx's.
func WithSnapshotTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("beginning snapshot transaction: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	return translate(fn(tx))
}
