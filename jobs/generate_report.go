package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// Error codes recorded on a failed report. They are part of the API: stable,
// snake_case, never renamed.
const (
	// CodeStorageUnavailable: the object store could not be reached or
	// refused the upload.
	CodeStorageUnavailable = "storage_unavailable"
	// CodeDatabaseUnavailable: the database could not be reached.
	CodeDatabaseUnavailable = "database_unavailable"
	// CodeAmountOverflow: a subtotal or total does not fit in 64-bit minor units.
	CodeAmountOverflow = "amount_overflow"
	// CodeUnknownCurrency: a transaction's currency is not an ISO 4217 code
	// with a minor unit, so its amounts cannot be written exactly.
	CodeUnknownCurrency = "unknown_currency"
	// CodeUnknownReportType: the report's type is not in the portal configuration.
	CodeUnknownReportType = "unknown_report_type"
	// CodeBuildFailed: any other failure, including a timeout and an
	// unreadable scope snapshot.
	CodeBuildFailed = "build_failed"
)

// DefaultJobTimeout is the GenerateReportWorker timeout when JobTimeout is unset.
const DefaultJobTimeout = 15 * time.Minute

// failTimeout bounds the transaction that records a failure. It runs on a
// context detached from the job's, which may already be past its deadline.
const failTimeout = 10 * time.Second

// ObjectStore is what the report workers need of a storage.Store.
type ObjectStore interface {
	Put(ctx context.Context, key string, r io.Reader, contentType string) (int64, error)
	Delete(ctx context.Context, key string) error
}

// ReportMetrics receives the outcome of report jobs. The worker package
// implements it with Prometheus collectors.
type ReportMetrics interface {
	// ReportReady is called once a report is committed ready.
	ReportReady(reportType string, took time.Duration, sizeBytes int64)
	// ReportFailed is called once a report is committed failed.
	ReportFailed(reportType, code string)
}

// GenerateReportWorker builds a report's file from its scope snapshot,
// streams it to the object store, and marks the report ready in the same
// transaction that completes its job. The file is a pure function of the
// snapshot, so a rerun (a rescued or retried job) uploads the same bytes to
// the same key.
type GenerateReportWorker struct {
	river.WorkerDefaults[GenerateReportArgs]

	// Pool is the database. The scope is read on a connection of its own, in
	// a REPEATABLE READ, READ ONLY transaction.
	Pool *pgxpool.Pool
	// Store receives the files.
	Store ObjectStore
	// Portal gives report types (builder, format) and the retention.
	Portal *config.Portal
	// Logger is the base logger; each job logs with report_id, job_id,
	// attempt and request_id. Nil discards.
	Logger *slog.Logger
	// JobTimeout bounds one attempt; zero means DefaultJobTimeout. It is
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
}

// Timeout is the per-attempt deadline of a report job.
func (w *GenerateReportWorker) Timeout(*river.Job[GenerateReportArgs]) time.Duration {
	if w.JobTimeout > 0 {
		return w.JobTimeout
	}
	return DefaultJobTimeout
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

// builtFile describes an uploaded report file.
type builtFile struct {
	key         string
	format      string
	contentType string
	size        int64
	sha256      string
	summary     report.Summary
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

	rep, err := db.GetReportByID(ctx, w.Pool, job.Args.ReportID)
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

	run, err := db.MarkReportRunning(ctx, w.Pool, rep.ID, job.ID)
	if err != nil {
		return w.fail(ctx, logger, job, rep, err)
	}
	if !run {
		// Ready or expired: a rescued or duplicated job has nothing to do.
		logger.InfoContext(ctx, "report already finished; nothing to do", slog.String("status", rep.Status))
		return nil
	}
	logger.InfoContext(ctx, "generating report")

	file, err := w.build(ctx, rep)
	if err != nil {
		return w.fail(ctx, logger, job, rep, err)
	}
	if w.AfterUploadFunc != nil {
		if err := w.AfterUploadFunc(ctx, job); err != nil {
			return w.fail(ctx, logger, job, rep, err)
		}
	}
	if err := w.finish(ctx, logger, job, rep, file); err != nil {
		return w.fail(ctx, logger, job, rep, err)
	}
	took := time.Since(started)
	if w.Metrics != nil {
		w.Metrics.ReportReady(rep.Type, took, file.size)
	}
	logger.InfoContext(ctx, "report ready",
		slog.Int64("row_count", file.summary.RowCount),
		slog.Int64("size_bytes", file.size),
		slog.String("sha256", file.sha256),
		slog.Duration("took", took))
	return nil
}

// build streams the report's rows from a consistent snapshot into the
// object store, hashing and counting the bytes on the way.
func (w *GenerateReportWorker) build(ctx context.Context, rep *db.Report) (*builtFile, error) {
	rt, write, err := reportWriter(w.Portal, rep)
	if err != nil {
		return nil, err
	}
	file := &builtFile{
		key:         storage.ReportKey(rep.OrgID, rep.ApplicationID, rep.ID, rt.Format),
		format:      rt.Format,
		contentType: rt.ContentType(),
	}

	tx, err := w.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("beginning snapshot transaction: %w", db.Translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	// Upload while writing: Put reads the pipe in PartSize parts while the
	// rows are encoded into it, so memory stays flat whatever the size.
	uploadCtx, cancelUpload := context.WithCancel(ctx)
	defer cancelUpload()
	pr, pw := io.Pipe()
	type putResult struct {
		n   int64
		err error
	}
	done := make(chan putResult, 1)
	go func() {
		n, err := w.Store.Put(uploadCtx, file.key, pr, file.contentType)
		if err == nil {
			err = errUploadEnded
		}
		pr.CloseWithError(err) // a writer still writing gets the upload's fate
		done <- putResult{n, err}
	}()

	out := &digestWriter{w: pw, h: sha256.New()}
	summary, buildErr := write(ctx, tx, out)
	if buildErr != nil {
		pw.CloseWithError(buildErr)
		cancelUpload()
		put := <-done
		if out.err != nil && !errors.Is(put.err, errUploadEnded) {
			// The upload failed first and the writer only saw the closed pipe.
			return nil, put.err
		}
		return nil, buildErr
	}
	_ = pw.Close()
	put := <-done
	if !errors.Is(put.err, errUploadEnded) {
		return nil, put.err
	}
	if put.n != out.n {
		return nil, fmt.Errorf("uploading %s: stored %d bytes, wrote %d", file.key, put.n, out.n)
	}
	file.size = out.n
	file.sha256 = hex.EncodeToString(out.h.Sum(nil))
	file.summary = summary
	return file, nil
}

// errUploadEnded closes the pipe's read side after a successful Put, so a
// writer that still writes learns that nothing more is read.
var errUploadEnded = errors.New("upload ended")

func checkScope(s *db.Scope) error {
	switch {
	case s.CaseID == "":
		return errors.New("scope has no case_id")
	case s.PeriodStart.IsZero() || s.PeriodEnd.IsZero() || !s.PeriodEnd.After(s.PeriodStart):
		return errors.New("scope has no valid period")
	case s.DataAsOf.IsZero():
		return errors.New("scope has no data_as_of")
	}
	return nil
}

func writeTransactionSummary(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, out io.Writer) (report.Summary, error) {
	opts := report.SummaryOptsFromFlags(rep.ID, scope.DisclosureFlags)
	sw := report.NewSummaryWriter(out, opts)
	sq := db.ScopeQuery{
		ApplicationID:   rep.ApplicationID,
		PeriodStart:     scope.PeriodStart,
		PeriodEnd:       scope.PeriodEnd,
		ContractFilters: scope.ContractFilters,
		DataAsOf:        scope.DataAsOf,
		Snapshot:        deref(rep.CreationSnapshot),
	}
	var err error
	if opts.LineItems {
		var t report.Transaction
		err = db.StreamScope(ctx, q, sq, func(r *db.ScopeRow) error {
			t = report.Transaction{
				ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind, OccurredAt: r.OccurredAt,
				ExternalID: r.ExternalID, Counterparty: r.Counterparty, Description: r.Description,
				AmountMinor: r.AmountMinor,
			}
			return sw.WriteTransaction(&t)
		})
	} else {
		// Subtotals only: let the database aggregate (an index-only scan);
		// the bytes are the same as from the rows.
		var g report.Group
		err = db.StreamScopeGroups(ctx, q, sq, func(r *db.ScopeGroup) error {
			g = report.Group{ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind, Count: r.Count, SumMinor: r.SumMinor}
			return sw.WriteGroup(&g)
		})
	}
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing transaction summary: %w", err)
	}
	sum, err := sw.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing transaction summary: %w", err)
	}
	return sum, nil
}

func writeActivityLog(ctx context.Context, q db.DBTX, rep *db.Report, scope *db.Scope, out io.Writer) (report.Summary, error) {
	aw := report.NewActivityLogWriter(out)
	var e report.Event
	err := db.ListCaseEvents(ctx, q, rep.CaseID, scope.DataAsOf, deref(rep.CreationSnapshot), func(ev db.Event) error {
		e = report.Event{OccurredAt: ev.OccurredAt, Kind: ev.Kind, ReportID: ev.ReportID, ReportType: ev.ReportType,
			ActorID: deref(ev.ActorID), ActorEmail: deref(ev.ActorEmail), ActorName: deref(ev.ActorName)}
		return aw.WriteEvent(&e)
	})
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing activity log: %w", err)
	}
	sum, err := aw.Close()
	if err != nil {
		return report.Summary{}, fmt.Errorf("writing activity log: %w", err)
	}
	return sum, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// finish marks the report ready, writes report.generated and completes the
// job, all in one transaction. The job row is locked first, in the order the
// river_job triggers lock (job, then report), so an admin's concurrent cancel
// cannot deadlock with it.
func (w *GenerateReportWorker) finish(ctx context.Context, logger *slog.Logger, job *river.Job[GenerateReportArgs], rep *db.Report, file *builtFile) error {
	if err := river.RecordOutput(ctx, map[string]any{
		"row_count": file.summary.RowCount, "size_bytes": file.size, "sha256": file.sha256,
	}); err != nil {
		return fmt.Errorf("recording job output: %w", err)
	}
	totals := file.summary.Totals
	if totals == nil {
		totals = map[string]report.CurrencyTotal{}
	}
	now := w.now()
	var alreadyFinished bool
	err := db.WithTx(ctx, w.Pool, func(tx pgx.Tx) error {
		after, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job)
		if err != nil {
			return fmt.Errorf("completing job: %w", db.Translate(err))
		}
		if after.State != rivertype.JobStateCompleted {
			// Rescued or cancelled meanwhile: this run no longer owns the job.
			return fmt.Errorf("%w: job %d is %s", errJobLost, job.ID, after.State)
		}
		ok, err := db.MarkReportReady(ctx, tx, db.MarkReadyParams{
			ID: rep.ID,
			Metadata: map[string]any{
				"row_count": file.summary.RowCount,
				"totals":    totals,
				"format":    file.format,
			},
			SizeBytes:   file.size,
			SHA256:      file.sha256,
			ContentType: file.contentType,
			ObjectKey:   file.key,
			ExpiresAt:   now.Add(w.Portal.Retention()),
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
		return db.InsertReportEvent(ctx, tx, rep, db.EventReportGenerated, "", map[string]any{
			"row_count":  file.summary.RowCount,
			"size_bytes": file.size,
			"sha256":     file.sha256,
			"job_id":     job.ID,
			"attempt":    job.Attempt,
		})
	})
	if alreadyFinished {
		logger.InfoContext(ctx, "report was finished by another run; nothing to do")
		return nil
	}
	return err
}

// errRollback makes WithTx roll back without it being a failure.
var errRollback = errors.New("rollback")

// errJobLost means the job left the running state while this run worked on
// it (River's rescuer gave it to another run, or an admin cancelled it). The
// run must not touch the report any more.
var errJobLost = errors.New("job is no longer running in this worker")

// fail decides what a failed attempt means. A cancelled context (soft stop,
// remote cancel) returns ctx.Err() so that River counts the job interrupted,
// not failed. A permanent error, or any error on the last attempt, marks the
// report failed with a stable code and writes report.failed in one
// transaction; a permanent error also cancels the job. Other errors are
// returned for River to retry with backoff.
func (w *GenerateReportWorker) fail(ctx context.Context, logger *slog.Logger, job *river.Job[GenerateReportArgs], rep *db.Report, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		logger.InfoContext(ctx, "report generation interrupted; the job will run again", slog.String("error", err.Error()))
		return ctx.Err()
	}
	if errors.Is(err, errJobLost) {
		logger.WarnContext(ctx, "job was taken from this run; leaving the report alone", slog.String("error", err.Error()))
		return err
	}
	f := classify(err, w.Timeout(job))
	if n := snoozes(job.Metadata); f.outage && n < w.maxSnoozes() {
		// Ride out a short outage without spending the attempt budget:
		// River does not count a snooze as an attempt.
		delay := min(outageBackoff<<n, maxOutageBackoff)
		logger.WarnContext(ctx, "dependency unavailable; snoozing the job",
			slog.String("code", f.code), slog.String("error", f.Error()), slog.Int("snoozes", n), slog.Duration("delay", delay))
		return river.JobSnooze(delay)
	}
	last := job.Attempt >= job.MaxAttempts
	if !f.permanent && !last {
		logger.WarnContext(ctx, "report generation failed; River will retry",
			slog.String("code", f.code), slog.String("error", f.Error()), slog.Int("max_attempts", job.MaxAttempts))
		return f
	}
	logger.ErrorContext(ctx, "report generation failed for good",
		slog.String("code", f.code), slog.String("error", f.Error()), slog.Bool("permanent", f.permanent))
	if rep != nil {
		if merr := w.markFailed(ctx, job, rep, f); merr != nil {
			logger.ErrorContext(ctx, "recording report failure", slog.String("error", merr.Error()))
		}
	}
	if f.permanent {
		return river.JobCancel(f)
	}
	return f
}

// Outage snoozes: 2 s, 4 s, … up to a minute apart, MaxSnoozes of them
// (about eight minutes in all with the default), before outages spend attempts.
const (
	outageBackoff    = 2 * time.Second
	maxOutageBackoff = time.Minute
	// DefaultMaxSnoozes is GenerateReportWorker.MaxSnoozes when zero.
	DefaultMaxSnoozes = 12
)

func (w *GenerateReportWorker) maxSnoozes() int {
	switch {
	case w.MaxSnoozes < 0:
		return 0
	case w.MaxSnoozes == 0:
		return DefaultMaxSnoozes
	}
	return w.MaxSnoozes
}

// snoozes returns how many times River has snoozed the job.
func snoozes(metadata []byte) int {
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	if len(metadata) > 0 {
		_ = json.Unmarshal(metadata, &m)
	}
	return m.Snoozes
}

func (w *GenerateReportWorker) markFailed(ctx context.Context, job *river.Job[GenerateReportArgs], rep *db.Report, f *failure) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), failTimeout)
	defer cancel()
	var marked bool
	err := db.WithTx(ctx, w.Pool, func(tx pgx.Tx) error {
		var err error
		marked, err = db.MarkReportFailed(ctx, tx, rep.ID, f.code, f.message, f.retryable)
		if err != nil || !marked {
			return err
		}
		return db.InsertReportEvent(ctx, tx, rep, db.EventReportFailed, "", map[string]any{
			"code":      f.code,
			"message":   f.message,
			"retryable": f.retryable,
			"job_id":    job.ID,
			"attempt":   job.Attempt,
		})
	})
	if err != nil {
		return err
	}
	if marked && w.Metrics != nil {
		w.Metrics.ReportFailed(rep.Type, f.code)
	}
	return nil
}

// failure is a classified report error: a stable code, a message for the
// report's reader, whether asking again may help, and whether retrying the
// job can help at all.
type failure struct {
	code      string
	message   string
	retryable bool
	permanent bool
	// outage marks a dependency that could not be reached: waiting helps,
	// so the job is snoozed instead of spending an attempt.
	outage bool
	err    error
}

func permanent(code, message string, err error) *failure {
	return &failure{code: code, message: message, permanent: true, err: err}
}

func (f *failure) Error() string {
	if f.err == nil {
		return f.code + ": " + f.message
	}
	return f.code + ": " + f.message + ": " + f.err.Error()
}

func (f *failure) Unwrap() error { return f.err }

func classify(err error, timeout time.Duration) *failure {
	var f *failure
	var unknownCurrency *report.UnknownCurrencyError
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, report.ErrAmountOverflow), errors.Is(err, db.ErrOutOfRange):
		return permanent(CodeAmountOverflow, "a subtotal or total of the report does not fit in 64-bit minor units", err)
	case errors.As(err, &unknownCurrency):
		return permanent(CodeUnknownCurrency, fmt.Sprintf("the report's transactions include currency %q, "+
			"which is not an ISO 4217 code with a minor unit: their amounts cannot be written exactly", unknownCurrency.Currency), err)
	case errors.Is(err, storage.ErrUnavailable):
		return &failure{code: CodeStorageUnavailable, message: "the file store was unavailable", retryable: true, outage: true, err: err}
	case errors.Is(err, storage.ErrNotFound):
		return &failure{code: CodeStorageUnavailable, message: "the file store was unavailable", retryable: true, err: err}
	case errors.Is(err, db.ErrUnavailable):
		return &failure{code: CodeDatabaseUnavailable, message: "the database was unavailable", retryable: true, outage: true, err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &failure{code: CodeBuildFailed, message: fmt.Sprintf("report generation took longer than %s", timeout), retryable: true, err: err}
	}
	return &failure{code: CodeBuildFailed, message: "report generation failed", retryable: true, err: err}
}

// digestWriter passes bytes on while hashing and counting them, and keeps
// the first error of the writer it wraps.
type digestWriter struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	err error
}

func (d *digestWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	d.h.Write(p[:n])
	d.n += int64(n)
	if err != nil && d.err == nil {
		d.err = err
	}
	return n, err
}

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
