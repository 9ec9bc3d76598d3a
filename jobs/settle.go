package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/db"
)

// settleWait bounds how long a run waits for the transactions that were
// writing when its report was created; after that the job is snoozed.
const settleWait = 30 * time.Second

// waitCreationSettled waits until every transaction that was writing when
// the report was created has ended, so that the snapshot read next holds all
// rows ingested before data_as_of, and a rerun reads the same ones.
func (w *GenerateReportWorker) waitCreationSettled(ctx context.Context, logger *slog.Logger, reportID string) error {
	deadline := time.Now().Add(settleWait)
	for logged := false; ; {
		settled, err := db.CreationSettled(ctx, w.Pool, reportID)
		if err != nil || settled {
			return err
		}
		if !logged {
			logger.InfoContext(ctx, "waiting for transactions that were writing when the report was created")
			logged = true
		}
		if time.Now().After(deadline) {
			return river.JobSnooze(10 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
