package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// failTimeout bounds the transaction that records a failure. It runs on a
// context detached from the job's, which may already be past its deadline.
const failTimeout = 10 * time.Second

// fail decides what a failed attempt means and logs it once: one line with
// the code and the error on the job's logger (report_id, job_id, attempt);
// the error it returns is marked logged so that River's error handler does
// not repeat it. A cancelled context (soft stop, remote cancel) returns
// ctx.Err() so that River counts the job interrupted, not failed. A
// permanent error, or any error on the last attempt, marks the report failed
// with a stable code and writes report.failed in one transaction; a
// permanent error also cancels the job. Other errors are returned for River
// to retry with backoff.
func (w *GenerateReportWorker) fail(ctx context.Context, logger *slog.Logger, job *river.Job[GenerateReportArgs], rep *db.Report, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		logger.InfoContext(ctx, "report generation interrupted; the job will run again", slog.String("error", err.Error()))
		return loggedError{ctx.Err()}
	}
	if errors.Is(err, errJobLost) {
		logger.WarnContext(ctx, "job was taken from this run; leaving the report alone", slog.String("error", err.Error()))
		return loggedError{err}
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
		return loggedError{f}
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
	return loggedError{f}
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
		return db.CreateReportEvent(ctx, tx, rep, db.EventReportFailed, "", map[string]any{
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

// loggedError is an error that its job has already logged, on one line
// with all its context (report_id, job_id, attempt, code, error).
type loggedError struct{ error }

func (e loggedError) Unwrap() error { return e.error }

// IsLogged reports whether err, returned by a job, was already logged by
// that job, so that River's error handler need not log it again.
func IsLogged(err error) bool {
	var l loggedError
	return errors.As(err, &l)
}
