package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateCaseParams are the fields of a new, draft case.
type CreateCaseParams struct {
	ApplicationID     string
	Title             string
	PeriodStart       time.Time
	PeriodEnd         time.Time
	DisclosureFlags   []string
	ContractFilters   []string
	AccessWindowStart time.Time
	AccessWindowEnd   time.Time
}

// CreateCase inserts a draft case on an application.
func CreateCase(ctx context.Context, q DBTX, p CreateCaseParams) (*Case, error) {
	flags, filters := p.DisclosureFlags, p.ContractFilters
	if flags == nil {
		flags = []string{}
	}
	if filters == nil {
		filters = []string{}
	}
	rows, _ := q.Query(ctx, `
		INSERT INTO cases (id, org_id, application_id, title, period_start, period_end,
		                   disclosure_flags, contract_filters, access_window_start, access_window_end)
		SELECT $1, a.org_id, a.id, $3, $4, $5, $6, $7, $8, $9 FROM applications a WHERE a.id = $2
		RETURNING *`,
		NewID(PrefixCase), p.ApplicationID, p.Title, p.PeriodStart.UTC(), p.PeriodEnd.UTC(),
		flags, filters, p.AccessWindowStart.UTC(), p.AccessWindowEnd.UTC())
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Case])
	if err != nil {
		return nil, fmt.Errorf("inserting case: %w", translate(err))
	}
	return c, nil
}

// GetCase returns a case by id.
func GetCase(ctx context.Context, q DBTX, id string) (*Case, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM cases WHERE id = $1`, id)
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Case])
	if err != nil {
		return nil, translate(err)
	}
	return c, nil
}

// GetCaseForUser returns a case and whether the user is assigned to it, in
// one query.
func GetCaseForUser(ctx context.Context, q DBTX, caseID, userID string) (*Case, bool, error) {
	r, err := caseForUser(ctx, q, "", caseID, userID)
	if err != nil {
		return nil, false, err
	}
	return &r.Case, r.Assigned, nil
}

// LockCaseForReport reads on tx, in one statement, the transaction's clock
// (now(), the time it began), a case and whether the user is assigned to it,
// and locks the case's row FOR SHARE until tx ends: a concurrent change of
// the case (revoked, closed, edited) waits until tx commits or rolls back,
// so whatever tx writes from what it read stays true of the case until then.
// ErrNotFound when there is no such case.
func LockCaseForReport(ctx context.Context, tx pgx.Tx, caseID, userID string) (time.Time, *Case, bool, error) {
	r, err := caseForUser(ctx, tx, " FOR SHARE OF c", caseID, userID)
	if err != nil {
		return time.Time{}, nil, false, err
	}
	return r.Now.UTC(), &r.Case, r.Assigned, nil
}

// caseUserRow is a case as caseForUser reads it.
type caseUserRow struct {
	Now time.Time `db:"now"` // the transaction's clock
	Case
	Assigned bool `db:"assigned"`
}

// caseForUser reads a case, whether the user is assigned to it and now(),
// with lock (empty, or a locking clause) after the query.
func caseForUser(ctx context.Context, q DBTX, lock, caseID, userID string) (*caseUserRow, error) {
	rows, _ := q.Query(ctx, `
		SELECT now() AS now, c.*,
		       EXISTS (SELECT 1 FROM case_assignments a WHERE a.case_id = c.id AND a.user_id = $2) AS assigned
		  FROM cases c WHERE c.id = $1`+lock, caseID, userID)
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[caseUserRow])
	if err != nil {
		return nil, translate(err)
	}
	return &r, nil
}

// ApproveCase moves a draft case to approved, recording who approved it.
// Approving an approved case is a no-op; other states are ErrInvalid.
func ApproveCase(ctx context.Context, q DBTX, caseID, approverID string) (*Case, error) {
	return setCaseStatus(ctx, q, caseID, CaseApproved, approverID)
}

// RevokeCase moves a case to revoked: no report can be created for it.
func RevokeCase(ctx context.Context, q DBTX, caseID string) (*Case, error) {
	return setCaseStatus(ctx, q, caseID, CaseRevoked, "")
}

// CloseCase moves a case to closed.
func CloseCase(ctx context.Context, q DBTX, caseID string) (*Case, error) {
	return setCaseStatus(ctx, q, caseID, CaseClosed, "")
}

func setCaseStatus(ctx context.Context, q DBTX, caseID, status, approverID string) (*Case, error) {
	var rows pgx.Rows
	if status == CaseApproved {
		rows, _ = q.Query(ctx, `
			UPDATE cases SET status = 'approved',
			       approved_at = coalesce(approved_at, now()), approved_by = coalesce(approved_by, $2)
			 WHERE id = $1 AND status IN ('draft', 'approved') RETURNING *`, caseID, approverID)
	} else {
		rows, _ = q.Query(ctx, `UPDATE cases SET status = $2 WHERE id = $1 RETURNING *`, caseID, status)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Case])
	if err != nil {
		err = translate(err)
		if errors.Is(err, ErrNotFound) && status == CaseApproved {
			if _, gerr := GetCase(ctx, q, caseID); gerr == nil {
				return nil, fmt.Errorf("%w: only a draft case can be approved", ErrInvalid)
			}
		}
		return nil, err
	}
	return c, nil
}

// AssignCase assigns a user to a case. The user must belong to the case's
// organization; assigning twice is a no-op.
func AssignCase(ctx context.Context, q DBTX, caseID, userID string) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO case_assignments (case_id, user_id)
		SELECT c.id, m.user_id FROM cases c JOIN memberships m ON m.org_id = c.org_id
		 WHERE c.id = $1 AND m.user_id = $2
		ON CONFLICT DO NOTHING`, caseID, userID)
	if err != nil {
		return fmt.Errorf("assigning case: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		var ok bool
		if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM case_assignments WHERE case_id = $1 AND user_id = $2)`,
			caseID, userID).Scan(&ok); err != nil {
			return translate(err)
		}
		if !ok {
			return fmt.Errorf("%w: case or user not found in the same organization", ErrNotFound)
		}
	}
	return nil
}
