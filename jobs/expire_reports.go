package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/db"
)

// DefaultExpireBatchSize is how many reports ExpireReportsWorker reads at once.
const DefaultExpireBatchSize = 100

// ExpireReportsWorker expires ready reports past their expires_at: it deletes
// each file and sets the report expired with a report.expired event, keeping
// the row and its history. It runs as a periodic job and is idempotent: the
// object is deleted before the row changes, so a crash in between leaves a
// ready report that the next run expires (deleting a missing object is fine).
type ExpireReportsWorker struct {
	river.WorkerDefaults[ExpireReportsArgs]

	// Pool is the database.
	Pool *pgxpool.Pool
	// Store holds the files.
	Store ObjectStore
	// Logger is the base logger; nil discards.
	Logger *slog.Logger
	// BatchSize is the number of reports read per query; zero means
	// DefaultExpireBatchSize.
	BatchSize int
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time
}

// Timeout bounds one run.
func (w *ExpireReportsWorker) Timeout(*river.Job[ExpireReportsArgs]) time.Duration {
	return 5 * time.Minute
}

// Work expires every report due at the start of the run.
func (w *ExpireReportsWorker) Work(ctx context.Context, job *river.Job[ExpireReportsArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With(slog.Int64("job_id", job.ID), slog.Int("attempt", job.Attempt))
	now := time.Now()
	if w.NowFunc != nil {
		now = w.NowFunc()
	}
	batch := w.BatchSize
	if batch <= 0 {
		batch = DefaultExpireBatchSize
	}
	expired := 0
	for {
		due, err := db.ListExpiringReports(ctx, w.Pool, now, batch)
		if err != nil {
			return fmt.Errorf("listing expiring reports: %w", err)
		}
		for i := range due {
			ok, err := w.expire(ctx, job, &due[i])
			if err != nil {
				return err
			}
			if ok {
				expired++
				logger.InfoContext(ctx, "report expired", slog.String("report_id", due[i].ID))
			}
		}
		// Every listed report has left the ready state (expired here or
		// changed meanwhile), so the next query makes progress.
		if len(due) < batch {
			break
		}
	}
	if expired > 0 {
		logger.InfoContext(ctx, "expired reports", slog.Int("count", expired))
	}
	return nil
}

func (w *ExpireReportsWorker) expire(ctx context.Context, job *river.Job[ExpireReportsArgs], r *db.ExpiringReport) (bool, error) {
	if err := w.Store.Delete(ctx, r.ObjectKey); err != nil {
		return false, fmt.Errorf("deleting file of report %s: %w", r.ID, err)
	}
	var ok bool
	err := db.WithTx(ctx, w.Pool, func(tx pgx.Tx) error {
		var err error
		if ok, err = db.MarkReportExpired(ctx, tx, r.ID); err != nil || !ok {
			return err
		}
		return db.CreateEvent(ctx, tx, db.CreateEventParams{
			OrgID: r.OrgID, ApplicationID: r.ApplicationID, CaseID: r.CaseID, ReportID: r.ID,
			ReportType: r.Type, Kind: db.EventReportExpired,
			Details: map[string]any{"job_id": job.ID},
		})
	})
	if err != nil {
		return false, fmt.Errorf("expiring report %s: %w", r.ID, err)
	}
	return ok, nil
}
