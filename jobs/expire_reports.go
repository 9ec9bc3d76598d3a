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

// ExpireReportsWorker expires ready reports past their expires_at: it sets
// each report expired with a report.expired event, keeping the row and its
// history, and then deletes its file. The row changes first so that a
// download racing with expiry finds the report expired (410 report_expired)
// rather than a ready report without its file. It runs as a periodic job and
// is idempotent; a file left behind by a crash or an object store outage
// between the two steps belongs to an expired report, and
// SweepObjectsWorker deletes it.
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
			ok, err := w.expire(ctx, logger, job, &due[i])
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

func (w *ExpireReportsWorker) expire(ctx context.Context, logger *slog.Logger, job *river.Job[ExpireReportsArgs], r *db.ExpiringReport) (bool, error) {
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
	if !ok {
		return false, nil // no longer ready: someone else expired it
	}
	if err := w.Store.Delete(ctx, r.ObjectKey); err != nil {
		// The report is expired already; its file is the sweep's now.
		logger.WarnContext(ctx, "deleting the file of an expired report; the sweep will",
			slog.String("report_id", r.ID), slog.String("object_key", r.ObjectKey), slog.String("error", err.Error()))
	}
	return true, nil
}
