package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateEventParams are the fields of an activity event.
type CreateEventParams struct {
	OrgID         string
	ApplicationID string
	CaseID        string
	ReportID      string
	ReportType    string
	Kind          string
	ActorID       string // empty for the system (workers)
	Details       map[string]any
}

// CreateEvent appends an activity event.
func CreateEvent(ctx context.Context, q DBTX, p CreateEventParams) error {
	sql, args, err := createEventSQL(p)
	if err != nil {
		return err
	}
	if _, err := q.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("inserting %s event: %w", p.Kind, translate(err))
	}
	return nil
}

func createEventSQL(p CreateEventParams) (string, []any, error) {
	details := []byte("{}")
	if p.Details != nil {
		var err error
		if details, err = json.Marshal(p.Details); err != nil {
			return "", nil, err
		}
	}
	var actor *string
	if p.ActorID != "" {
		actor = &p.ActorID
	}
	return `
		INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, actor_id, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		[]any{p.OrgID, p.ApplicationID, p.CaseID, p.ReportID, p.ReportType, p.Kind, actor, details}, nil
}

// CreateReportEvent appends an event about r.
func CreateReportEvent(ctx context.Context, q DBTX, r *Report, kind, actorID string, details map[string]any) error {
	return CreateEvent(ctx, q, CreateEventParams{
		OrgID: r.OrgID, ApplicationID: r.ApplicationID, CaseID: r.CaseID, ReportID: r.ID,
		ReportType: r.Type, Kind: kind, ActorID: actorID, Details: details,
	})
}

// Event is an activity event with its actor.
type Event struct {
	ID          int64           `db:"id"`
	OccurredAt  time.Time       `db:"occurred_at"`
	Kind        string          `db:"kind"`
	ReportID    string          `db:"report_id"`
	ReportType  string          `db:"report_type"`
	ActorID     *string         `db:"actor_id"`
	ActorEmail  *string         `db:"actor_email"`
	ActorName   *string         `db:"actor_name"`
	Details     json.RawMessage `db:"details"`
	CaseID      string          `db:"case_id"`
	Application string          `db:"application_id"`
	// Hash is the event's hash in its chain (hex), nil while the event is
	// not chained yet.
	Hash *string `db:"hash"`
}

// ListCaseEvents calls fn for each event about a case's reports that
// belongs to a report's snapshot, oldest first, without loading them all.
// Like transactions (see ScopeParams), an event belongs when the transaction
// that wrote it is visible in snapshot (the report's creation snapshot) and
// it occurred at or before asOf; an empty snapshot leaves asOf alone to
// decide, for reports created before snapshots were recorded. An event's
// hash is its chain position's, which never changes once written.
func ListCaseEvents(ctx context.Context, q DBTX, caseID string, asOf time.Time, snapshot string, fn func(Event) error) error {
	var snap *string
	if snapshot != "" {
		snap = &snapshot
	}
	rows, err := q.Query(ctx, `
		SELECT e.id, e.occurred_at, e.kind, e.report_id, e.report_type, e.actor_id,
		       u.email AS actor_email, u.name AS actor_name, e.details, e.case_id, e.application_id,
		       encode(c.hash, 'hex') AS hash
		  FROM activity_events e LEFT JOIN users u ON u.id = e.actor_id
		  LEFT JOIN activity_chain c ON c.event_id = e.id
		 WHERE e.case_id = $1 AND e.occurred_at <= $2
		   AND ($3::pg_snapshot IS NULL OR pg_visible_in_snapshot(e.xact, $3::pg_snapshot))
		 ORDER BY e.occurred_at, e.id`, caseID, asOf, snap)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	scan := pgx.RowToStructByName[Event]
	for rows.Next() {
		ev, err := scan(rows)
		if err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	return translate(rows.Err())
}
