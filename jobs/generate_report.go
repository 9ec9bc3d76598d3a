package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/report"
)

// GenerateReportWorker builds a report's file from its scope snapshot,
// streams it to the object store, and marks the report ready in the same
// transaction that completes its job. Each run writes a key of its own
// (storage.ReportKey with a fresh run id) and the finishing transaction
// records which key is the report's file, so a late run (a rescued run that
// is still alive) can never replace a committed file; a run that does not
// commit deletes its own object, and SweepObjectsWorker deletes what a
// crashed run left.
type GenerateReportWorker struct {
	river.WorkerDefaults[GenerateReportArgs]

	// Pool is the database. The scope is read on a connection of its own, in
	// a REPEATABLE READ, READ ONLY transaction.
	Pool *pgxpool.Pool
	// Store receives the files.
	Store ObjectStore
	// Portal gives report types (builder, format) and the retention.
	Portal *config.Portal
	// PseudonymKeys key counterparty pseudonyms. A report records the id of
	// the key it was built with (metadata.pseudonym_key_id) and is rebuilt
	// with that key; a report without one gets the current key.
	PseudonymKeys *report.PseudonymKeys
	// Logger is the base logger; each job logs with report_id, job_id,
	// attempt and request_id. Nil discards.
	Logger *slog.Logger
	// JobTimeout bounds one attempt; zero means config.DefaultJobTimeout. It is
	// never -1: a job without timeout would never be rescued after a crash.
	JobTimeout time.Duration
	// Metrics, when set, is told about ready and failed reports.
	Metrics ReportMetrics
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time
	// AfterUploadFunc, when set, runs after the file is uploaded and before
	// the finishing transaction. Tests use it to stop a worker at the worst
	// moment; an error it returns is handled like a build error.
	AfterUploadFunc func(ctx context.Context, job *river.Job[GenerateReportArgs]) error
	// MaxSnoozes is how many times a job that found PostgreSQL or the object
	// store unreachable is snoozed (not counting as an attempt) before
	// outages spend attempts: zero means DefaultMaxSnoozes, negative none.
	MaxSnoozes int
	// Parallelism is how many ranges of a large scope (a job of QueueLarge)
	// are read at once, on as many connections of Pool sharing a snapshot;
	// below 2 reads every scope with one query.
	Parallelism int
	// SpillDir is where a large scope is sorted, in a temporary file
	// unlinked at once (see writeSpilled); empty means os.TempDir.
	SpillDir string
	// SpillMax is the most bytes that file may hold: a scope that needs
	// more is read in ranges of the index instead (writeRanges). Zero
	// means DefaultSpillMax; negative turns the temporary files off.
	SpillMax int64
	// Keys sign each ready report's manifest; nil means an ephemeral key,
	// generated once with a loud warning (development only).
	Keys *evidence.Keys

	ephemeral lazyKeys
	// registeredKeys holds the ids of signing keys that a committed
	// finishing transaction of this worker registered (or found): later
	// ones skip the INSERT.
	registeredKeys sync.Map
}

// Timeout is the per-attempt deadline of a report job.
func (w *GenerateReportWorker) Timeout(*river.Job[GenerateReportArgs]) time.Duration {
	if w.JobTimeout > 0 {
		return w.JobTimeout
	}
	return config.DefaultJobTimeout
}

func (w *GenerateReportWorker) now() time.Time {
	if w.NowFunc != nil {
		return w.NowFunc()
	}
	return time.Now()
}

func (w *GenerateReportWorker) logger() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Work builds one report.
func (w *GenerateReportWorker) Work(ctx context.Context, job *river.Job[GenerateReportArgs]) error {
	started := time.Now()
	logger := w.logger().With(
		slog.String("report_id", job.Args.ReportID),
		slog.Int64("job_id", job.ID),
		slog.Int("attempt", job.Attempt),
	)
	requestID := metadataRequestID(job.Metadata)
	if requestID != "" {
		logger = logger.With(slog.String("request_id", requestID))
	}

	rep, run, err := db.ClaimReport(ctx, w.Pool, job.Args.ReportID, job.ID)
	if errors.Is(err, db.ErrNotFound) {
		logger.WarnContext(ctx, "report does not exist; cancelling its job")
		return river.JobCancel(fmt.Errorf("report %s does not exist", job.Args.ReportID))
	}
	if err != nil {
		return w.fail(ctx, logger, job, nil, fmt.Errorf("loading report: %w", err))
	}
	if requestID == "" && rep.RequestID != nil {
		logger = logger.With(slog.String("request_id", *rep.RequestID))
	}
	logger = logger.With(slog.String("report_type", rep.Type))
	if !run {
		// Ready or expired: a rescued or duplicated job has nothing to do.
		logger.InfoContext(ctx, "report already finished; nothing to do", slog.String("status", rep.Status))
		return nil
	}

	if wait, err := w.awaitChain(ctx, rep); err != nil {
		return w.fail(ctx, logger, job, rep, err)
	} else if wait {
		if n := snoozes(job.Metadata); n < maxChainSnoozes {
			delay := min(chainBackoff<<n, maxChainBackoff)
			logger.InfoContext(ctx, "events of the report's snapshot are not chained yet (a transaction older than them is still open); snoozing the job",
				slog.Int("snoozes", n), slog.Duration("delay", delay))
			// The claim marked it running; it waits as pending.
			if err := db.UnclaimReport(ctx, w.Pool, rep.ID, job.ID); err != nil {
				return w.fail(ctx, logger, job, rep, err)
			}
			return river.JobSnooze(delay)
		}
		return w.fail(ctx, logger, job, rep, &failure{code: CodeBuildFailed, retryable: true, err: ErrEventsNotChained,
			message: "events of the report's snapshot could not be chained: a database transaction older than them stayed open"})
	}
	logger.InfoContext(ctx, "generating report")

	runID := db.NewID(db.PrefixRun)
	logger = logger.With(slog.String("run_id", runID))
	buildStart := time.Now()
	file, err := w.build(ctx, rep, runID, job.Queue == QueueLarge)
	buildTook := time.Since(buildStart)
	if err != nil {
		return w.fail(ctx, logger, job, rep, err)
	}
	if w.AfterUploadFunc != nil {
		if err := w.AfterUploadFunc(ctx, job); err != nil {
			w.discard(ctx, logger, file.key)
			return w.fail(ctx, logger, job, rep, err)
		}
	}
	finishStart := time.Now()
	committed, err := w.finish(ctx, logger, job, rep, file)
	finishTook := time.Since(finishStart)
	switch {
	case errors.Is(err, errCommitUnknown):
		// The COMMIT may have succeeded: the object is left to the sweep,
		// which keeps it if the report owns it.
		logger.WarnContext(ctx, "outcome of the finishing transaction unknown; leaving the file to the sweep",
			slog.String("object_key", file.key))
	case !committed:
		w.discard(ctx, logger, file.key)
	}
	if err != nil {
		return w.fail(ctx, logger, job, rep, err)
	}
	if !committed {
		return nil // another run finished the report, or an admin canceled it
	}
	took := time.Since(started)
	if w.Metrics != nil {
		w.Metrics.ReportReady(rep.Type, took, file.size)
	}
	logger.InfoContext(ctx, "report ready",
		slog.Int64("row_count", file.summary.RowCount),
		slog.Int64("size_bytes", file.size),
		slog.String("sha256", file.sha256),
		slog.Duration("took", took),
		slog.Duration("build_took", buildTook),              // scope read, file written and uploaded
		slog.Duration("finish_took", finishTook),            // the finishing transaction
		slog.Duration("waited", started.Sub(job.CreatedAt))) // job inserted → this attempt's start
	return nil
}

// Chain snoozes: 250 ms, 500 ms, … up to 10 s apart, maxChainSnoozes of
// them (about 15 minutes in all), before waiting spends attempts.
const (
	chainBackoff    = 250 * time.Millisecond
	maxChainBackoff = 10 * time.Second
	maxChainSnoozes = 100
)

// awaitChain makes sure that every activity event of the report's snapshot
// is chained before a builder that writes event hashes runs: it runs the
// sequencer for the report's organization, and says whether some member is
// still unchained (a transaction older than it is still open: the job
// should wait). The hashes the builder then reads are chain positions,
// written once, so the file does not depend on when it is built.
func (w *GenerateReportWorker) awaitChain(ctx context.Context, rep *db.Report) (bool, error) {
	rt, ok := w.Portal.ReportType(rep.Type)
	if !ok || !needsChain[rt.Builder] || (rep.Status != db.ReportPending && rep.Status != db.ReportRunning) {
		return false, nil
	}
	scope, err := rep.Scope()
	if err != nil {
		return false, nil // the build fails on it, permanently
	}
	if _, err := db.ChainOrg(ctx, w.Pool, rep.OrgID, db.DefaultChainBatch); err != nil {
		return false, err
	}
	n, err := db.CountUnchainedCaseEvents(ctx, w.Pool, rep.CaseID, scope.DataAsOf, deref(rep.CreationSnapshot))
	return n > 0, err
}

// finish marks the report ready with this run's file as its object_key,
// stores its signed manifest, writes report.generated and completes the job,
// all in one transaction, and reports whether it committed. The job row is
// locked first, in the order the river_job triggers lock (job, then report),
// so an admin's concurrent cancel cannot deadlock with it. An error wrapping
// errCommitUnknown means the transaction reached COMMIT and its outcome is
// unknown; any other error means nothing was committed.
func (w *GenerateReportWorker) finish(ctx context.Context, logger *slog.Logger, job *river.Job[GenerateReportArgs], rep *db.Report, file *builtFile) (bool, error) {
	if err := river.RecordOutput(ctx, map[string]any{
		"row_count": file.summary.RowCount, "size_bytes": file.size, "sha256": file.sha256, "object_key": file.key,
	}); err != nil {
		return false, fmt.Errorf("recording job output: %w", err)
	}
	totals := make(map[string]db.CurrencyTotal, len(file.summary.Totals))
	for currency, t := range file.summary.Totals {
		totals[currency] = db.CurrencyTotal(t)
	}
	now := w.now()
	keys, err := w.ephemeral.get(ctx, w.Keys, w.logger())
	if err != nil {
		return false, err
	}
	manifest, err := ManifestOf(rep, file.format, file.sha256, file.size, file.summary.RowCount, now)
	if err != nil {
		return false, err
	}
	canonical, sig, err := evidence.SignManifest(keys.Current, manifest)
	if err != nil {
		return false, fmt.Errorf("signing manifest: %w", err)
	}
	_, keyRegistered := w.registeredKeys.Load(keys.Current.ID)
	var alreadyFinished, reachedCommit bool
	err = db.WithTx(ctx, w.Pool, func(tx pgx.Tx) error {
		after, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		if err != nil {
			return fmt.Errorf("completing job: %w", err)
		}
		if after.State != rivertype.JobStateCompleted {
			// Rescued or cancelled meanwhile: this run no longer owns the job.
			return fmt.Errorf("%w: job %d is %s", errJobLost, job.ID, after.State)
		}
		ok, err := db.FinishReport(ctx, tx, db.FinishReportParams{
			Ready: db.MarkReportReadyParams{
				ID: rep.ID,
				Metadata: db.ReadyMetadata{RowCount: file.summary.RowCount, Totals: totals, Format: file.format,
					PseudonymKeyID: file.pseudonymKeyID},
				SizeBytes:   file.size,
				SHA256:      file.sha256,
				ContentType: file.contentType,
				ObjectKey:   file.key,
				ExpiresAt:   now.Add(w.Portal.Retention()),
			},
			SigningKeyID:         keys.Current.ID,
			SigningKey:           keys.Current.Public,
			SigningKeyRegistered: keyRegistered,
			Manifest:             db.ReportManifest{ReportID: manifest.ReportID, KeyID: keys.Current.ID, Manifest: string(canonical), Signature: sig},
			Event: db.CreateEventParams{
				OrgID: rep.OrgID, ApplicationID: rep.ApplicationID, CaseID: rep.CaseID, ReportID: rep.ID,
				ReportType: rep.Type, Kind: db.EventReportGenerated,
				Details: map[string]any{
					"row_count":  file.summary.RowCount,
					"size_bytes": file.size,
					"sha256":     file.sha256,
					"job_id":     job.ID,
					"attempt":    job.Attempt,
				},
			},
		})
		if err != nil {
			return err
		}
		if !ok {
			cur, err := db.GetReportByID(ctx, tx, rep.ID)
			if err != nil {
				return fmt.Errorf("reloading report: %w", err)
			}
			switch cur.Status {
			case db.ReportReady, db.ReportExpired, db.ReportCanceled:
				// Another run finished it (it completed the job too), or an
				// admin cancelled it: nothing left to do.
				alreadyFinished = true
				return errRollback
			}
			return fmt.Errorf("report is %s, not running: not marking it ready", cur.Status)
		}
		reachedCommit = true
		return nil
	})
	switch {
	case err == nil:
		w.registeredKeys.Store(keys.Current.ID, struct{}{})
	case keyRegistered:
		// Whatever failed, the next finish registers the key again.
		w.registeredKeys.Delete(keys.Current.ID)
	}
	switch {
	case alreadyFinished:
		logger.InfoContext(ctx, "report was finished by another run; nothing to do")
		return false, nil
	case err != nil && reachedCommit:
		return false, fmt.Errorf("%w: %w", errCommitUnknown, err)
	}
	return err == nil, err
}

// discardTimeout bounds the deletion of a losing run's object. It runs on a
// context detached from the job's, which may be cancelled already.
const discardTimeout = 30 * time.Second

// discard deletes the object of a run that did not commit, so that no file
// outlives the run that wrote it. It is best effort: a failure is logged,
// and SweepObjectsWorker deletes the object after its grace period.
func (w *GenerateReportWorker) discard(ctx context.Context, logger *slog.Logger, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discardTimeout)
	defer cancel()
	if err := w.Store.Delete(ctx, key); err != nil {
		logger.WarnContext(ctx, "deleting the file of a run that did not commit; the sweep will",
			slog.String("object_key", key), slog.String("error", err.Error()))
		return
	}
	logger.InfoContext(ctx, "deleted the file of a run that did not commit", slog.String("object_key", key))
}

// errRollback makes WithTx roll back without it being a failure.
var errRollback = errors.New("rollback")

// errCommitUnknown means the finishing transaction failed at COMMIT (the
// connection broke, the context ended): it may or may not have committed.
var errCommitUnknown = errors.New("outcome of the finishing transaction unknown")

// errJobLost means the job left the running state while this run worked on
// it (River's rescuer gave it to another run, or an admin cancelled it). The
// run must not touch the report any more.
var errJobLost = errors.New("job is no longer running in this worker")

// metadataRequestID returns the "request_id" of a job's metadata, if any.
func metadataRequestID(metadata []byte) string {
	if len(metadata) == 0 {
		return ""
	}
	var m struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(metadata, &m) != nil {
		return ""
	}
	return m.RequestID
}
