package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const reportColumns = `
	r.id, r.org_id, r.application_id, r.case_id, r.type, r.status, r.metadata, r.created_by,
	u.email AS created_by_email, u.name AS created_by_name,
	r.created_at, r.updated_at, r.started_at, r.completed_at, r.expires_at, r.size_bytes, r.sha256,
	r.content_type, r.object_key, r.job_id, r.error_code, r.error_message, r.error_retryable, r.request_id,
	r.creation_snapshot::text AS creation_snapshot`

// CreateReportParams are the fields of a new, pending report.
type CreateReportParams struct {
	ID            string // empty means a fresh id
	OrgID         string
	ApplicationID string
	CaseID        string
	Type          string
	Metadata      any // marshalled to JSON
	CreatedBy     string
	RequestID     string
	JobID         int64 // zero: no job yet
}

// CreateReport inserts a pending report and returns it with its creator.
//
// It records the report's creation snapshot: the transactions whose rows
// the report holds are those visible in it, the ones that had committed
// when the report was created. The report's own transaction is marked in
// progress in it, whether or not it had written before, so that nothing
// written alongside the report (its report.created event) ever counts.
func CreateReport(ctx context.Context, q DBTX, p CreateReportParams) (*Report, error) {
	if p.ID == "" {
		p.ID = NewID(PrefixReport)
	}
	meta, err := json.Marshal(p.Metadata)
	if err != nil {
		return nil, fmt.Errorf("encoding report metadata: %w", err)
	}
	var reqID *string
	if p.RequestID != "" {
		reqID = &p.RequestID
	}
	rows, _ := q.Query(ctx, `
		WITH s AS (SELECT pg_current_snapshot() AS snap, pg_current_xact_id() AS me),
		c AS (
			SELECT CASE WHEN pg_visible_in_snapshot(me, snap) THEN
			            (pg_snapshot_xmin(snap) || ':' || pg_snapshot_xmax(snap) || ':' ||
			             (SELECT string_agg(x::text, ',' ORDER BY x)
			                FROM (SELECT pg_snapshot_xip(snap) UNION SELECT me) v (x)))::pg_snapshot
			       ELSE snap END AS snap
			  FROM s),
		r AS (
			INSERT INTO reports (id, org_id, application_id, case_id, type, metadata, created_by, request_id, job_id,
			                     creation_snapshot)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, nullif($9, 0), (SELECT snap FROM c)) RETURNING *)
		SELECT `+reportColumns+` FROM r JOIN users u ON u.id = r.created_by`,
		p.ID, p.OrgID, p.ApplicationID, p.CaseID, p.Type, meta, p.CreatedBy, reqID, p.JobID)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Report])
	if err != nil {
		return nil, fmt.Errorf("inserting report: %w", translate(err))
	}
	return r, nil
}

// GetReportParams selects one report. OrgID is always required; an empty
// ApplicationID means any application of the organization.
type GetReportParams struct {
	OrgID         string
	ApplicationID string
	ReportID      string
}

// GetReport returns a report inside a tenant scope, or ErrNotFound, whether
// the report does not exist or belongs to someone else.
func GetReport(ctx context.Context, q DBTX, p GetReportParams) (*Report, error) {
	rows, _ := q.Query(ctx, `SELECT `+reportColumns+`
		  FROM reports r JOIN users u ON u.id = r.created_by
		 WHERE r.id = $1 AND r.org_id = $2 AND ($3 = '' OR r.application_id = $3)`,
		p.ReportID, p.OrgID, p.ApplicationID)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Report])
	if err != nil {
		return nil, translate(err)
	}
	return r, nil
}

// GetReportByID returns a report by id alone, for workers.
func GetReportByID(ctx context.Context, q DBTX, id string) (*Report, error) {
	rows, _ := q.Query(ctx, `SELECT `+reportColumns+` FROM reports r JOIN users u ON u.id = r.created_by WHERE r.id = $1`, id)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Report])
	if err != nil {
		return nil, translate(err)
	}
	return r, nil
}

// ReportCursor is a position in the newest-first report order.
type ReportCursor struct {
	CreatedAt time.Time
	ID        string
}

// ListReportsParams filter and page a report list. OrgID is required.
type ListReportsParams struct {
	OrgID         string
	ApplicationID string // empty: every application of the organization
	Status        string
	Type          string
	CaseID        string
	Limit         int
	After         *ReportCursor
}

// listFilter is the WHERE clause of ListReports, EachReport and
// ReportListStamp: $1 to $5 are OrgID, ApplicationID, Status, Type, CaseID.
const listFilter = `
		 WHERE r.org_id = $1
		   AND ($2 = '' OR r.application_id = $2)
		   AND ($3 = '' OR r.status = $3)
		   AND ($4 = '' OR r.type = $4)
		   AND ($5 = '' OR r.case_id = $5)`

// listQuery selects reports newest first, after the cursor $6, $7 when $6
// is not null, at most $8 of them (null: all).
const listQuery = `SELECT ` + reportColumns + `
		  FROM reports r JOIN users u ON u.id = r.created_by` + listFilter + `
		   AND ($6::timestamptz IS NULL OR (r.created_at, r.id) < ($6, $7))
		 ORDER BY r.created_at DESC, r.id DESC
		 LIMIT $8`

func (p ListReportsParams) args() []any {
	var afterAt *time.Time
	var afterID string
	if p.After != nil {
		afterAt, afterID = &p.After.CreatedAt, p.After.ID
	}
	var limit *int
	if p.Limit > 0 {
		limit = &p.Limit
	}
	return []any{p.OrgID, p.ApplicationID, p.Status, p.Type, p.CaseID, afterAt, afterID, limit}
}

// ListReports returns reports newest first, at most Limit of them, after the
// cursor when one is given.
func ListReports(ctx context.Context, q DBTX, p ListReportsParams) ([]Report, error) {
	rows, _ := q.Query(ctx, listQuery, p.args()...)
	reports, err := pgx.CollectRows(rows, pgx.RowToStructByName[Report])
	if err != nil {
		return nil, fmt.Errorf("listing reports: %w", translate(err))
	}
	return reports, nil
}

// ClaimReport is GetReportByID and MarkReportRunning in one statement: it
// moves the report to running for jobID when MarkReportRunning would, and
// returns the report (as it is after the claim) and whether it claimed it.
// A report it does not claim (ready, expired) is returned as it is.
//
// Its commit does not wait for the WAL flush (synchronous_commit off for
// this transaction alone, set by the statement itself): "running" is a
// progress mark that the finishing transaction's synchronous commit makes
// durable along with everything before it in the WAL. A crash of
// PostgreSQL in the few milliseconds before a flush can lose only the mark,
// and the job, rescued, claims the report again. It saves a WAL flush per
// report.
func ClaimReport(ctx context.Context, q DBTX, id string, jobID int64) (*Report, bool, error) {
	rows, _ := q.Query(ctx, `
		WITH claimed AS (
			UPDATE reports SET status = 'running', started_at = now(), updated_at = now(), job_id = $2,
			       error_code = NULL, error_message = NULL, error_retryable = NULL
			 WHERE id = $1 AND status IN ('pending', 'running', 'failed', 'canceled')
			   AND set_config('synchronous_commit', 'off', true) = 'off'
			RETURNING *)
		SELECT `+reportColumns+`, true AS claimed FROM claimed r JOIN users u ON u.id = r.created_by
		 UNION ALL
		SELECT `+reportColumns+`, false FROM reports r JOIN users u ON u.id = r.created_by
		 WHERE r.id = $1 AND NOT EXISTS (SELECT FROM claimed)`, id, jobID)
	type claimedReport struct {
		Report
		Claimed bool `db:"claimed"`
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[claimedReport])
	if err != nil {
		return nil, false, translate(err)
	}
	return &r.Report, r.Claimed, nil
}

// EachReport calls fn with each report ListReports would return (every one
// when Limit is zero), one row at a time as they arrive from the server, so
// that memory does not grow with the list. The report passed to fn is only
// valid during the call. An error of fn stops the iteration and is returned.
func EachReport(ctx context.Context, q DBTX, p ListReportsParams, fn func(*Report) error) error {
	rows, err := q.Query(ctx, listQuery, p.args()...)
	if err != nil {
		return fmt.Errorf("listing reports: %w", translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		r, err := pgx.RowToStructByName[Report](rows)
		if err != nil {
			return fmt.Errorf("reading a report row: %w", translate(err))
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("listing reports: %w", translate(err))
	}
	return nil
}

// ListStamp summarizes what a report list shows without reading it out:
// two lists with equal stamps hold the same reports in the same versions.
type ListStamp struct {
	Count        int64
	MaxUpdatedAt time.Time
	// RowSum is the sum of a 64-bit hash of each report's id and row
	// version (xmin, and its creator's), in decimal. Every UPDATE of a row
	// gives it a new xmin, so a change shows here even when it commits
	// after a newer one and leaves the count and max(updated_at) alone
	// (updated_at is its transaction's start time, not its commit time).
	RowSum string
}

// ReportListStamp returns the stamp of the reports matching p's filters
// (its cursor and limit are ignored). It reads the rows' identity and
// version only, not their content.
func ReportListStamp(ctx context.Context, q DBTX, p ListReportsParams) (ListStamp, error) {
	var s ListStamp
	err := q.QueryRow(ctx, `
		SELECT count(*), coalesce(max(r.updated_at), 'epoch'),
		       coalesce(sum(hashtextextended(r.id || ':' || r.xmin::text || ':' || u.xmin::text, 0)::numeric), 0)::text
		  FROM reports r JOIN users u ON u.id = r.created_by`+listFilter,
		p.OrgID, p.ApplicationID, p.Status, p.Type, p.CaseID).Scan(&s.Count, &s.MaxUpdatedAt, &s.RowSum)
	if err != nil {
		return ListStamp{}, fmt.Errorf("stamping report list: %w", translate(err))
	}
	return s, nil
}

// UnclaimReport puts a report that ClaimReport marked running for jobID
// back to pending, for a job that waits (snoozes) before building.
func UnclaimReport(ctx context.Context, q DBTX, id string, jobID int64) error {
	if _, err := q.Exec(ctx, `
		UPDATE reports SET status = 'pending', started_at = NULL, updated_at = now()
		 WHERE id = $1 AND status = 'running' AND job_id = $2`, id, jobID); err != nil {
		return fmt.Errorf("marking report pending: %w", translate(err))
	}
	return nil
}

// MarkReportRunning moves a report to running when work starts and reports
// whether the worker should build it. A ready or expired report is left as it
// is (a rescued duplicate job has nothing to do); a failed or canceled report
// whose job an admin retried starts again and loses its old error.
func MarkReportRunning(ctx context.Context, q DBTX, id string, jobID int64) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE reports SET status = 'running', started_at = now(), updated_at = now(), job_id = $2,
		       error_code = NULL, error_message = NULL, error_retryable = NULL
		 WHERE id = $1 AND status IN ('pending', 'running', 'failed', 'canceled')`, id, jobID)
	if err != nil {
		return false, fmt.Errorf("marking report running: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// MarkReportReadyParams are what a finished build records.
type MarkReportReadyParams struct {
	ID          string
	Metadata    ReadyMetadata // merged into the report's metadata
	SizeBytes   int64
	SHA256      string
	ContentType string
	ObjectKey   string
	ExpiresAt   time.Time
}

// MarkReportReady records a finished file. It only changes a running report
// and reports whether it did.
func MarkReportReady(ctx context.Context, q DBTX, p MarkReportReadyParams) (bool, error) {
	sql, args, err := markReportReadySQL(p)
	if err != nil {
		return false, err
	}
	tag, err := q.Exec(ctx, sql, args...)
	if err != nil {
		return false, fmt.Errorf("marking report ready: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

func markReportReadySQL(p MarkReportReadyParams) (string, []any, error) {
	if p.Metadata.Totals == nil {
		p.Metadata.Totals = map[string]CurrencyTotal{} // an object, as the API documents
	}
	meta, err := json.Marshal(p.Metadata)
	if err != nil {
		return "", nil, err
	}
	return `
		UPDATE reports SET status = 'ready', metadata = metadata || $2::jsonb, size_bytes = $3, sha256 = $4,
		       content_type = $5, object_key = $6, expires_at = $7, completed_at = now(), updated_at = now()
		 WHERE id = $1 AND status = 'running'`,
		[]any{p.ID, meta, p.SizeBytes, p.SHA256, p.ContentType, p.ObjectKey, p.ExpiresAt}, nil
}

// FinishReportParams are what the finishing transaction of a build writes
// after completing the job: the report ready, its signed manifest (and the
// signing key's public half), and the report.generated event.
type FinishReportParams struct {
	Ready        MarkReportReadyParams
	SigningKeyID string
	SigningKey   []byte // public key
	// SigningKeyRegistered says the key is known to be in signing_keys
	// already (a finishing transaction of this process committed with it):
	// its INSERT … ON CONFLICT DO NOTHING is left out. Keys are never
	// deleted; if it were missing, the manifest's foreign key would fail
	// the transaction.
	SigningKeyRegistered bool
	Manifest             ReportManifest
	Event                CreateEventParams
}

// FinishReport runs MarkReportReady, RegisterSigningKey (unless
// SigningKeyRegistered), CreateReportManifest and CreateEvent on tx in one
// round trip (a pipelined batch), and reports whether the report was running and is now ready. When
// it was not, the other statements ran too: the caller must roll tx back.
func FinishReport(ctx context.Context, tx pgx.Tx, p FinishReportParams) (bool, error) {
	readySQL, readyArgs, err := markReportReadySQL(p.Ready)
	if err != nil {
		return false, err
	}
	eventSQL, eventArgs, err := createEventSQL(p.Event)
	if err != nil {
		return false, err
	}
	b := &pgx.Batch{}
	ready := b.Queue(readySQL, readyArgs...)
	if !p.SigningKeyRegistered {
		b.Queue(registerSigningKeySQL, p.SigningKeyID, p.SigningKey)
	}
	b.Queue(createReportManifestSQL, p.Manifest.ReportID, p.Manifest.KeyID, p.Manifest.Manifest, p.Manifest.Signature)
	b.Queue(eventSQL, eventArgs...)
	var marked bool
	ready.Exec(func(tag pgconn.CommandTag) error {
		marked = tag.RowsAffected() == 1
		return nil
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return false, fmt.Errorf("finishing report: %w", translate(err))
	}
	return marked, nil
}

// MarkReportFailed records a final failure on a report that is not finished.
func MarkReportFailed(ctx context.Context, q DBTX, id, code, message string, retryable bool) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE reports SET status = 'failed', error_code = $2, error_message = $3, error_retryable = $4,
		       completed_at = now(), updated_at = now()
		 WHERE id = $1 AND status IN ('pending', 'running')`, id, code, message, retryable)
	if err != nil {
		return false, fmt.Errorf("marking report failed: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// ExpiringReport is a ready report past its expiry.
type ExpiringReport struct {
	ID            string `db:"id"`
	OrgID         string `db:"org_id"`
	ApplicationID string `db:"application_id"`
	CaseID        string `db:"case_id"`
	Type          string `db:"type"`
	ObjectKey     string `db:"object_key"`
}

// ListExpiringReports returns up to limit ready reports whose expiry is before now.
func ListExpiringReports(ctx context.Context, q DBTX, now time.Time, limit int) ([]ExpiringReport, error) {
	rows, _ := q.Query(ctx, `
		SELECT id, org_id, application_id, case_id, type, object_key FROM reports
		 WHERE status = 'ready' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`, now, limit)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[ExpiringReport])
	return out, translate(err)
}

// MarkReportExpired sets a ready report expired, keeping its row and events.
func MarkReportExpired(ctx context.Context, q DBTX, id string) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE reports SET status = 'expired', error_code = 'report_expired',
		       error_message = 'the report file passed its retention period and was deleted',
		       error_retryable = false, updated_at = now()
		 WHERE id = $1 AND status = 'ready'`, id)
	if err != nil {
		return false, fmt.Errorf("marking report expired: %w", translate(err))
	}
	return tag.RowsAffected() == 1, nil
}

// IdempotencyRecord is a stored Idempotency-Key.
type IdempotencyRecord struct {
	RequestHash []byte
	ReportID    string
	CreatedAt   time.Time
}

// GetIdempotencyKey returns a user's key record younger than 24 hours.
func GetIdempotencyKey(ctx context.Context, q DBTX, userID, key string) (*IdempotencyRecord, error) {
	var r IdempotencyRecord
	err := q.QueryRow(ctx, `SELECT request_hash, report_id, created_at FROM idempotency_keys
		WHERE user_id = $1 AND key = $2 AND created_at > now() - interval '24 hours'`, userID, key).
		Scan(&r.RequestHash, &r.ReportID, &r.CreatedAt)
	if err != nil {
		return nil, translate(err)
	}
	return &r, nil
}

// ClaimIdempotencyKey stores a key for a report. It returns ErrConflict when
// the user already holds the key inside its 24-hour life (a concurrent request
// may have taken it); an older record is replaced.
func ClaimIdempotencyKey(ctx context.Context, q DBTX, userID, key string, requestHash []byte, reportID string) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO idempotency_keys (user_id, key, request_hash, report_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, key) DO UPDATE
		   SET request_hash = EXCLUDED.request_hash, report_id = EXCLUDED.report_id, created_at = now()
		 WHERE idempotency_keys.created_at <= now() - interval '24 hours'`, userID, key, requestHash, reportID)
	if err != nil {
		return fmt.Errorf("claiming idempotency key: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrConflict
	}
	return nil
}
