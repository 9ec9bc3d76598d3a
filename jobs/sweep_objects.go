package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/storage"
)

// Reasons an object is swept, the label of the sweep's counter.
const (
	// SweepReasonOrphan: no report of that id exists, or the key is not a
	// report key.
	SweepReasonOrphan = "orphan"
	// SweepReasonSuperseded: the report is ready with another run's file.
	SweepReasonSuperseded = "superseded"
	// SweepReasonUnfinished: the report is pending or running and the run
	// that wrote the object can no longer commit it.
	SweepReasonUnfinished = "unfinished"
	// The report is failed, canceled or expired.
	SweepReasonFailed   = db.ReportFailed
	SweepReasonCanceled = db.ReportCanceled
	SweepReasonExpired  = db.ReportExpired
)

// sweepBatch is how many listed objects are looked up in one query.
const sweepBatch = 500

// SweepObjectsWorker deletes report files that no committed report owns:
// files of runs that lost or crashed, of failed, canceled and expired
// reports, and incomplete multipart uploads of workers that died mid-upload.
// It runs as a periodic job.
//
// An object is kept when its report is ready with that object_key. Otherwise
// it is deleted when its report is ready (with another run's file: a ready
// report's key never changes) or expired (final), and, whatever the report's
// status, when it is older than Grace. The grace period protects runs in
// flight: a run uploads before its finishing transaction records the key,
// and it cannot commit after its job timeout (its context ends), so an
// object older than Grace > job timeout can no longer become a report's
// file. Failed and canceled reports wait for Grace too, because an admin
// may retry their job while an old run is still alive.
type SweepObjectsWorker struct {
	river.WorkerDefaults[SweepObjectsArgs]

	// Pool is the database.
	Pool *pgxpool.Pool
	// Store holds the files.
	Store SweepStore
	// Logger is the base logger; nil discards. Each deleted object is
	// logged at info with its key, report and reason.
	Logger *slog.Logger
	// Grace is the age below which an object or upload that may belong to
	// a run in flight is kept; zero means config.DefaultSweepGrace. It must exceed
	// the report job timeout.
	Grace time.Duration
	// Metrics, when set, counts what was deleted.
	Metrics SweepMetrics
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time
}

// Timeout bounds one run.
func (w *SweepObjectsWorker) Timeout(*river.Job[SweepObjectsArgs]) time.Duration {
	return 10 * time.Minute
}

// Work sweeps once.
func (w *SweepObjectsWorker) Work(ctx context.Context, job *river.Job[SweepObjectsArgs]) error {
	_, err := w.Sweep(ctx)
	return err
}

// SweepResult counts what one sweep deleted.
type SweepResult struct {
	// Objects counts deleted objects by reason (SweepReason*).
	Objects map[string]int
	// Uploads counts aborted incomplete multipart uploads.
	Uploads int
}

// Sweep deletes, under storage.ReportsPrefix, the objects no committed
// report owns and the incomplete uploads older than Grace (see
// SweepObjectsWorker). Deleting an object that is already gone is fine, so
// sweeps may overlap.
func (w *SweepObjectsWorker) Sweep(ctx context.Context) (SweepResult, error) {
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	now := time.Now()
	if w.NowFunc != nil {
		now = w.NowFunc()
	}
	grace := w.Grace
	if grace <= 0 {
		grace = config.DefaultSweepGrace
	}
	cutoff := now.Add(-grace)
	res := SweepResult{Objects: map[string]int{}}

	var batch []storage.ObjectInfo
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ids := make([]string, 0, len(batch))
		for _, o := range batch {
			if id, ok := storage.ReportIDOfKey(o.Key); ok {
				ids = append(ids, id)
			}
		}
		// The statuses are read after the objects were listed: a run marks
		// its report running before it uploads, so an object listed here
		// cannot belong to a run that this query does not see started.
		files, err := db.ListReportFiles(ctx, w.Pool, ids)
		if err != nil {
			return err
		}
		for _, o := range batch {
			reason := sweepReason(o, files, cutoff)
			if reason == "" {
				continue
			}
			if err := w.Store.Delete(ctx, o.Key); err != nil {
				return fmt.Errorf("sweeping %s: %w", o.Key, err)
			}
			id, _ := storage.ReportIDOfKey(o.Key)
			logger.InfoContext(ctx, "swept object", slog.String("object_key", o.Key), slog.String("report_id", id),
				slog.String("reason", reason), slog.Int64("size_bytes", o.Size), slog.Time("last_modified", o.LastModified))
			res.Objects[reason]++
			if w.Metrics != nil {
				w.Metrics.ObjectsSwept(reason, 1)
			}
		}
		batch = batch[:0]
		return nil
	}
	err := w.Store.ListInfo(ctx, storage.ReportsPrefix, func(o storage.ObjectInfo) error {
		batch = append(batch, o)
		if len(batch) >= sweepBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("sweeping objects: %w", err)
	}

	err = w.Store.ListUploads(ctx, storage.ReportsPrefix, func(u storage.Upload) error {
		if !u.Initiated.Before(cutoff) {
			return nil // a run may still be uploading
		}
		if err := w.Store.AbortUpload(ctx, u); err != nil {
			return err
		}
		logger.InfoContext(ctx, "aborted incomplete upload", slog.String("object_key", u.Key),
			slog.String("upload_id", u.UploadID), slog.Time("initiated", u.Initiated))
		res.Uploads++
		if w.Metrics != nil {
			w.Metrics.UploadsAborted(1)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("sweeping incomplete uploads: %w", err)
	}
	if n := sumCounts(res.Objects); n > 0 || res.Uploads > 0 {
		logger.InfoContext(ctx, "sweep done", slog.Int("objects_deleted", n), slog.Int("uploads_aborted", res.Uploads))
	}
	return res, nil
}

// sweepReason says why o is to be deleted, or "" to keep it.
func sweepReason(o storage.ObjectInfo, files map[string]db.ReportFile, cutoff time.Time) string {
	old := o.LastModified.Before(cutoff)
	id, ok := storage.ReportIDOfKey(o.Key)
	f, exists := files[id]
	switch {
	case !ok || !exists:
		if old {
			return SweepReasonOrphan
		}
	case f.Status == db.ReportReady:
		if f.ObjectKey == nil || *f.ObjectKey != o.Key {
			return SweepReasonSuperseded
		}
	case f.Status == db.ReportExpired:
		return SweepReasonExpired
	case old && (f.Status == db.ReportFailed || f.Status == db.ReportCanceled):
		return f.Status
	case old:
		return SweepReasonUnfinished
	}
	return ""
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
