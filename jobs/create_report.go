package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
)

// ErrIdempotencyConflict means that another request holding the same
// idempotency key claimed it first. CreateReport then created nothing; the
// caller answers with the other request's report.
var ErrIdempotencyConflict = errors.New("jobs: idempotency key claimed by another request")

// ErrCaseNotFound means that the report's case does not exist or belongs to
// another application than the report's. CreateReport then created nothing.
var ErrCaseNotFound = errors.New("jobs: case not found in the application")

// CreateReportParams are what creating a report needs. CreateReport checks
// no permission: the caller has decided that the user may create reports on
// the application. The case's own rules (status, assignment, access window)
// are CheckCase's.
type CreateReportParams struct {
	// Application is the report's.
	Application *db.Application
	// CaseID is the report's case, which must belong to Application
	// (ErrCaseNotFound otherwise). CreateReport reads the case in its
	// transaction, locked until the transaction ends (see
	// db.LockCaseForReport), and snapshots the scope from that read.
	CaseID string
	// CheckCase, when set, is called in the transaction with the case as
	// read and whether UserID is assigned to it; an error it returns rolls
	// everything back and is CreateReport's error, as it is. A change of the
	// case that commits concurrently (revoked, closed) is either seen by
	// CheckCase or waits until the report has committed.
	CheckCase func(c *db.Case, assigned bool) error
	// Type is the report type. Its Builder decides whether the scope's rows
	// are estimated to choose the queue.
	Type config.ReportType
	// UserID is the creator: the report's created_by and the actor of its
	// report.created event.
	UserID string
	// RequestID is recorded on the report, in the job's metadata and in the
	// report.created event.
	RequestID string
	// ClientIP and UserAgent are the request's client address and
	// User-Agent, recorded in the report.created event when not empty.
	ClientIP  string
	UserAgent string
	// IdempotencyKey, when not empty, is claimed for the new report with
	// RequestHash in the same transaction (see db.ClaimIdempotencyKey).
	IdempotencyKey string
	RequestHash    []byte
	// LargeReportRows is the estimated row count above which the job goes to
	// QueueLarge instead of QueueReports.
	LargeReportRows int64
	// MaxAttempts is the job's attempt budget, fixed at insert; zero means
	// the inserting client's default.
	MaxAttempts int
}

// CreateReport creates a pending report in one transaction: it reads the
// database clock and the case (locked until the commit), has CheckCase
// check the case, snapshots the case's scope as of that time, estimates the
// scope's rows to choose the queue, enqueues the generate_report job,
// inserts the report, claims the idempotency key and records report.created.
// Either all of it commits or none of it does, so a job never exists without
// its report and a report never without its job.
//
// On a pool, CreateReport runs in a transaction of its own; on a pgx.Tx, in
// a savepoint of it, and commits with it. It returns ErrCaseNotFound for a
// case outside the application, CheckCase's error as it is, and
// ErrIdempotencyConflict when another request claimed the idempotency key
// first.
func CreateReport(ctx context.Context, q db.DBTX, client *river.Client[pgx.Tx], p CreateReportParams) (*db.Report, error) {
	var rep *db.Report
	var refused error
	err := db.WithTx(ctx, q, func(tx pgx.Tx) error {
		now, c, assigned, err := db.LockCaseForReport(ctx, tx, p.CaseID, p.UserID)
		if errors.Is(err, db.ErrNotFound) || (err == nil && c.ApplicationID != p.Application.ID) {
			return ErrCaseNotFound
		}
		if err != nil {
			return fmt.Errorf("reading case: %w", err)
		}
		if p.CheckCase != nil {
			if refused = p.CheckCase(c, assigned); refused != nil {
				return refused
			}
		}
		scope := scopeOf(c, now)
		queue, err := chooseQueue(ctx, tx, p, scope)
		if err != nil {
			return err
		}
		reportID := db.NewID(db.PrefixReport)
		jobMeta, err := json.Marshal(map[string]string{"request_id": p.RequestID})
		if err != nil {
			return err
		}
		res, err := db.EnqueueJob(ctx, tx, client, GenerateReportArgs{ReportID: reportID}, &river.InsertOpts{
			Queue: queue, Metadata: jobMeta, Tags: []string{"report", p.Type.Name}, MaxAttempts: p.MaxAttempts,
		})
		if err != nil {
			return err
		}
		rep, err = db.CreateReport(ctx, tx, db.CreateReportParams{
			ID: reportID, OrgID: p.Application.OrgID, ApplicationID: p.Application.ID, CaseID: c.ID,
			Type: p.Type.Name, Metadata: scope, CreatedBy: p.UserID, RequestID: p.RequestID, JobID: res.Job.ID,
		})
		if err != nil {
			return err
		}
		if p.IdempotencyKey != "" {
			err := db.ClaimIdempotencyKey(ctx, tx, p.UserID, p.IdempotencyKey, p.RequestHash, rep.ID)
			if errors.Is(err, db.ErrConflict) {
				return ErrIdempotencyConflict // rolls back the report and its job
			}
			if err != nil {
				return err
			}
		}
		details := map[string]any{"request_id": p.RequestID, "job_id": res.Job.ID, "queue": queue}
		if p.ClientIP != "" {
			details["client_ip"] = p.ClientIP
		}
		if p.UserAgent != "" {
			details["user_agent"] = p.UserAgent
		}
		return db.CreateReportEvent(ctx, tx, rep, db.EventReportCreated, p.UserID, details)
	})
	if refused != nil {
		return nil, refused
	}
	if errors.Is(err, ErrIdempotencyConflict) || errors.Is(err, ErrCaseNotFound) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("creating report: %w", err)
	}
	return rep, nil
}

// scopeOf is the snapshot of c that a report created at dataAsOf is built
// from. Empty lists are stored as [], never null.
func scopeOf(c *db.Case, dataAsOf time.Time) db.Scope {
	return db.Scope{
		CaseID: c.ID, PeriodStart: c.PeriodStart.UTC(), PeriodEnd: c.PeriodEnd.UTC(),
		DisclosureFlags: orEmpty(c.DisclosureFlags), ContractFilters: orEmpty(c.ContractFilters),
		DataAsOf: dataAsOf.UTC(),
	}
}

// chooseQueue sends a report that reads its scope's transactions (the
// transaction summary in any format, the attestation) whose scope the
// planner estimates above p.LargeReportRows to QueueLarge, so that one huge
// case cannot starve small ones. Other builders read few rows and always go
// to QueueReports.
func chooseQueue(ctx context.Context, tx pgx.Tx, p CreateReportParams, s db.Scope) (string, error) {
	switch p.Type.Builder {
	case config.BuilderTransactionSummary, config.BuilderTransactionSummaryXLSX, config.BuilderCaseAttestation:
	default:
		return QueueReports, nil
	}
	est, err := db.EstimateScopeRows(ctx, tx, db.ScopeParams{ApplicationID: p.Application.ID,
		PeriodStart: s.PeriodStart, PeriodEnd: s.PeriodEnd, ContractFilters: s.ContractFilters, DataAsOf: s.DataAsOf})
	if err != nil {
		return "", err
	}
	if est > p.LargeReportRows {
		return QueueLarge, nil
	}
	return QueueReports, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
