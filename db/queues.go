package db

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// EnqueueJob inserts a River job in tx, so that it exists only if tx
// commits. Driver errors become this package's sentinels, as for any query.
func EnqueueJob(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	res, err := client.InsertTx(ctx, tx, args, opts)
	if err != nil {
		return nil, fmt.Errorf("enqueueing %s job: %w", args.Kind(), translate(err))
	}
	return res, nil
}

// QueueCount is the number of River jobs of one queue in one state.
type QueueCount struct {
	Queue string `db:"queue"`
	State string `db:"state"`
	Count int64  `db:"count"`
}

// QueueCounts counts unfinished River jobs by queue and state. It is an
// index-only scan on river_job_prioritized_fetching_index and never counts
// finalized jobs, so it stays cheap on a large table.
func QueueCounts(ctx context.Context, q DBTX) ([]QueueCount, error) {
	rows, _ := q.Query(ctx, `
		SELECT queue, state::text AS state, count(*) AS count FROM river_job
		 WHERE state IN ('available', 'running', 'retryable', 'scheduled')
		 GROUP BY queue, state`)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[QueueCount])
	if err != nil {
		return nil, fmt.Errorf("counting queue jobs: %w", translate(err))
	}
	return out, nil
}

// QueueOldestAvailable returns, per queue, the age in seconds of the oldest
// job waiting to be worked.
func QueueOldestAvailable(ctx context.Context, q DBTX) (map[string]float64, error) {
	rows, err := q.Query(ctx, `
		SELECT queue, extract(epoch FROM now() - min(scheduled_at))::float8 FROM river_job
		 WHERE state = 'available'
		 GROUP BY queue`)
	if err != nil {
		return nil, fmt.Errorf("reading oldest available jobs: %w", translate(err))
	}
	defer rows.Close()
	out := map[string]float64{}
	for rows.Next() {
		var queue string
		var age float64
		if err := rows.Scan(&queue, &age); err != nil {
			return nil, fmt.Errorf("scanning oldest available jobs: %w", err)
		}
		out[queue] = max(age, 0)
	}
	return out, translate(rows.Err())
}

// ExpiryOverdue returns how many seconds ago the oldest ready report should
// have expired (0 when none is due): how far expire_reports lags behind
// retention. It reads reports_expiry_idx's first entry.
func ExpiryOverdue(ctx context.Context, q DBTX) (float64, error) {
	var overdue float64
	err := q.QueryRow(ctx, `
		SELECT coalesce(extract(epoch FROM now() - min(expires_at)), 0)::float8 FROM reports
		 WHERE status = 'ready' AND expires_at <= now()`).Scan(&overdue)
	if err != nil {
		return 0, fmt.Errorf("reading the oldest overdue expiry: %w", translate(err))
	}
	return max(overdue, 0), nil
}
