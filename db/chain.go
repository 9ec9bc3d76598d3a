package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultChainBatch is how many events one sequencer transaction chains,
// and the most it chains: the SQL function's cost per event grows with the
// batch beyond a few thousand.
const DefaultChainBatch = 1000

// The activity chain is built after the fact (migration 00009): events are
// inserted with no lock and no chain work, and a sequencer appends each
// organization's committed events to its chain (activity_chain) in (xact, id)
// order once every transaction older than them has ended. Every worker runs
// it every TALLY_CHAIN_INTERVAL; concurrent sequencers are serialized per
// organization by a transaction-scoped advisory lock, and the chain's keys
// refuse a fork or a double chaining.

// ChainOrg chains an organization's committed events, batch per
// transaction, until none is left that can be chained now, and returns how
// many it chained. Run it on a pool (or a connection outside a
// transaction): each batch is a statement, so a transaction, of its own.
func ChainOrg(ctx context.Context, q DBTX, orgID string, batch int) (int, error) {
	if batch <= 0 || batch > DefaultChainBatch {
		batch = DefaultChainBatch
	}
	total := 0
	for {
		var n int
		if err := q.QueryRow(ctx, `SELECT tally_chain_activity($1, $2)`, orgID, batch).Scan(&n); err != nil {
			return total, fmt.Errorf("chaining activity of %s: %w", orgID, translate(err))
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}

// ChainPending chains the committed events of every organization that has
// some (see ChainOrg, and tally_chain_pending_orgs in migration 00009) and
// returns how many it chained.
func ChainPending(ctx context.Context, q DBTX, batch int) (int, error) {
	rows, _ := q.Query(ctx, `SELECT tally_chain_pending_orgs()`)
	orgs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("finding unchained activity: %w", translate(err))
	}
	total := 0
	for _, org := range orgs {
		n, err := ChainOrg(ctx, q, org, batch)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// ChainLag returns the age of the first committed event waiting to be
// chained, over every organization (zero when none is): how far the chain
// trails the log (tally_chain_lag in migration 00009).
func ChainLag(ctx context.Context, q DBTX) (time.Duration, error) {
	var seconds float64
	err := q.QueryRow(ctx, `SELECT tally_chain_lag()`).Scan(&seconds)
	if err != nil {
		return 0, fmt.Errorf("measuring chain lag: %w", translate(err))
	}
	return time.Duration(max(seconds, 0) * float64(time.Second)), nil
}

// CountUnchainedCaseEvents returns how many of the events ListCaseEvents
// would list for the same arguments are not chained yet.
func CountUnchainedCaseEvents(ctx context.Context, q DBTX, caseID string, asOf time.Time, snapshot string) (int64, error) {
	var snap *string
	if snapshot != "" {
		snap = &snapshot
	}
	var n int64
	err := q.QueryRow(ctx, `
		SELECT count(*) FROM activity_events e
		 WHERE e.case_id = $1 AND e.occurred_at <= $2
		   AND ($3::pg_snapshot IS NULL OR pg_visible_in_snapshot(e.xact, $3::pg_snapshot))
		   AND NOT EXISTS (SELECT 1 FROM activity_chain c WHERE c.event_id = e.id)`, caseID, asOf, snap).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("counting unchained events: %w", translate(err))
	}
	return n, nil
}

// ChainEvent is a chain position with the activity event it covers, as its
// hash covers it. Missing means the position's event row is gone (the event
// fields are then zero).
type ChainEvent struct {
	ID            int64
	OrgID         string
	ApplicationID string
	CaseID        string
	ReportID      string
	ReportType    string
	Kind          string
	ActorID       *string
	OccurredAt    time.Time
	Details       string // jsonb's text form
	Xact          string
	Seq           int64
	PrevHash      []byte
	Hash          []byte
	Missing       bool
}

// StreamOrgChain calls fn for each position of an organization's chain, in
// order, with its event, without loading them all.
func StreamOrgChain(ctx context.Context, q DBTX, orgID string, fn func(*ChainEvent) error) error {
	rows, err := q.Query(ctx, `
		SELECT c.event_id, c.seq, c.prev_hash, c.hash, e.id IS NULL,
		       coalesce(e.org_id, ''), coalesce(e.application_id, ''), coalesce(e.case_id, ''),
		       coalesce(e.report_id, ''), coalesce(e.report_type, ''), coalesce(e.kind, ''), e.actor_id,
		       coalesce(e.occurred_at, 'epoch'), coalesce(e.details::text, ''), coalesce(e.xact::text, '')
		  FROM activity_chain c LEFT JOIN activity_events e ON e.id = c.event_id
		 WHERE c.org_id = $1 ORDER BY c.seq`, orgID)
	if err != nil {
		return translate(err)
	}
	defer rows.Close()
	for rows.Next() {
		var ev ChainEvent
		if err := rows.Scan(&ev.ID, &ev.Seq, &ev.PrevHash, &ev.Hash, &ev.Missing, &ev.OrgID, &ev.ApplicationID, &ev.CaseID,
			&ev.ReportID, &ev.ReportType, &ev.Kind, &ev.ActorID, &ev.OccurredAt, &ev.Details, &ev.Xact); err != nil {
			return translate(err)
		}
		if err := fn(&ev); err != nil {
			return err
		}
	}
	return translate(rows.Err())
}

// UnchainedEvent is an activity event without a chain position.
type UnchainedEvent struct {
	ID         int64     `db:"id"`
	OccurredAt time.Time `db:"occurred_at"`
	Xact       string    `db:"xact"`
}

// ListUnchainedEvents returns an organization's events that have no chain
// position, in the order the sequencer would chain them.
func ListUnchainedEvents(ctx context.Context, q DBTX, orgID string) ([]UnchainedEvent, error) {
	rows, _ := q.Query(ctx, `
		SELECT e.id, e.occurred_at, e.xact::text AS xact FROM activity_events e
		 WHERE e.org_id = $1 AND NOT EXISTS (SELECT 1 FROM activity_chain c WHERE c.event_id = e.id)
		 ORDER BY e.xact, e.id`, orgID)
	evs, err := pgx.CollectRows(rows, pgx.RowToStructByName[UnchainedEvent])
	if err != nil {
		return nil, fmt.Errorf("listing unchained events: %w", translate(err))
	}
	return evs, nil
}
