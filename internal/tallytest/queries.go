package tallytest

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// The queries below exist for tests only: they read state that production
// code never reads, or write it in ways production never does. They live
// here, not in db, so that db holds only what the services run.

// ListReportEvents returns the events of one report, oldest first.
func ListReportEvents(ctx context.Context, q db.DBTX, reportID string) ([]db.Event, error) {
	rows, _ := q.Query(ctx, `
		SELECT e.id, e.occurred_at, e.kind, e.report_id, e.report_type, e.actor_id,
		       u.email AS actor_email, u.name AS actor_name, e.details, e.case_id, e.application_id,
		       encode(c.hash, 'hex') AS hash
		  FROM activity_events e LEFT JOIN users u ON u.id = e.actor_id
		  LEFT JOIN activity_chain c ON c.event_id = e.id
		 WHERE e.report_id = $1 ORDER BY e.occurred_at, e.id`, reportID)
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByName[db.Event])
	if err != nil {
		return nil, fmt.Errorf("listing report events: %w", err)
	}
	return evs, nil
}

// MarkReportCanceled cancels a report that is not finished, as the river_job
// triggers do when an admin cancels its job, and reports whether it did.
func MarkReportCanceled(ctx context.Context, q db.DBTX, id, message string) (bool, error) {
	tag, err := q.Exec(ctx, `
		UPDATE reports SET status = 'canceled', error_code = 'canceled', error_message = $2, error_retryable = false,
		       completed_at = now(), updated_at = now()
		 WHERE id = $1 AND status IN ('pending', 'running', 'failed')`, id, message)
	if err != nil {
		return false, fmt.Errorf("marking report canceled: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// IsAssigned reports whether a user is assigned to a case.
func IsAssigned(ctx context.Context, q db.DBTX, caseID, userID string) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM case_assignments WHERE case_id = $1 AND user_id = $2)`,
		caseID, userID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("checking assignment: %w", err)
	}
	return ok, nil
}

// AuditorPermissions returns a user's auditor-bucket permissions on an
// application (empty when there is no grant).
func AuditorPermissions(ctx context.Context, q db.DBTX, userID, applicationID string) ([]string, error) {
	var perms []string
	err := q.QueryRow(ctx, `SELECT permissions FROM application_grants WHERE user_id = $1 AND application_id = $2 AND bucket = 'auditor'`,
		userID, applicationID).Scan(&perms)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading auditor permissions: %w", err)
	}
	return perms, nil
}

// CountTransactions returns the number of transactions of an application.
func CountTransactions(ctx context.Context, q db.DBTX, applicationID string) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE application_id = $1`, applicationID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting transactions: %w", err)
	}
	return n, nil
}
