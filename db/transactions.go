package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// TransactionColumns are the columns CopyTransactions writes, in order. The
// database fills in xact, the writing transaction.
var TransactionColumns = []string{
	"application_id", "contract_id", "external_id", "occurred_at", "amount_minor",
	"currency", "kind", "counterparty", "description", "ingested_at",
}

// TransactionValues returns t as a COPY row in TransactionColumns order. A
// zero IngestedAt is sent as NULL, which the database refuses: the caller
// says when the row was ingested (ingest.Import uses its transaction's
// now()), no process's clock decides it silently.
func TransactionValues(t *Transaction) []any {
	var ingested any
	if !t.IngestedAt.IsZero() {
		ingested = t.IngestedAt.UTC()
	}
	return []any{t.ApplicationID, t.ContractID, t.ExternalID, t.OccurredAt.UTC(), t.AmountMinor,
		t.Currency, t.Kind, t.Counterparty, t.Description, ingested}
}

// CopyTransactions bulk-loads rows with COPY. Run it in a transaction so that
// a failure leaves nothing behind.
func CopyTransactions(ctx context.Context, q DBTX, src pgx.CopyFromSource) (int64, error) {
	n, err := q.CopyFrom(ctx, pgx.Identifier{"transactions"}, TransactionColumns, src)
	if err != nil {
		return 0, fmt.Errorf("copying transactions: %w", translate(err))
	}
	return n, nil
}

// ScopeParams selects the transactions of a report's snapshot.
//
// A row belongs to a report when the transaction that wrote it had
// committed when the report was created (visible in Snapshot, the report's
// creation_snapshot) and its ingested_at is not after DataAsOf. Both are
// stored with the report and the row and never change, so every read, by
// the worker now or by a rebuild years later, selects the same rows, and
// nothing waits for transactions that were still open: their rows are not
// the report's, whatever their ingested_at.
type ScopeParams struct {
	ApplicationID   string
	PeriodStart     time.Time // inclusive
	PeriodEnd       time.Time // exclusive
	ContractFilters []string  // empty: every contract
	DataAsOf        time.Time // rows ingested later are left out
	// Snapshot is the report's creation snapshot (pg_snapshot text form).
	// Empty for reports created before snapshots were recorded, and when
	// estimating a scope before its report exists: then DataAsOf alone decides.
	Snapshot string
}

func (s ScopeParams) args() []any {
	filters := s.ContractFilters
	if filters == nil {
		filters = []string{}
	}
	var snapshot *string
	if s.Snapshot != "" {
		snapshot = &s.Snapshot
	}
	return []any{s.ApplicationID, s.PeriodStart, s.PeriodEnd, filters, s.DataAsOf, snapshot}
}

// scopeWhere selects a ScopeParams' rows. The xact < xmin clause is implied
// by pg_visible_in_snapshot; it is there for the planner, which estimates it
// from xact's statistics (nearly every row), where it would guess a third of
// the rows for the function alone and then sort large scopes instead of
// reading them in index order.
const scopeWhere = `
	 WHERE application_id = $1 AND occurred_at >= $2 AND occurred_at < $3
	   AND (cardinality($4::text[]) = 0 OR contract_id = ANY ($4::text[]))
	   AND ingested_at <= $5
	   AND ($6::pg_snapshot IS NULL OR xact < pg_snapshot_xmin($6::pg_snapshot)
	        OR pg_visible_in_snapshot(xact, $6::pg_snapshot))`

// ScopeOrderedSQL is the query that streams a scope in report order. It is
// exported so benchmarks can COPY the very same SELECT as a baseline.
const ScopeOrderedSQL = `
	SELECT contract_id, currency, kind, occurred_at, external_id, counterparty, description, amount_minor
	  FROM transactions` + scopeWhere + `
	 ORDER BY contract_id, currency, kind, occurred_at, id`

// ScopeGroupedSQL aggregates a scope per (contract, currency, kind) in report order.
const ScopeGroupedSQL = `
	SELECT contract_id, currency, kind, count(*), sum(amount_minor)::bigint
	  FROM transactions` + scopeWhere + `
	 GROUP BY contract_id, currency, kind
	 ORDER BY contract_id, currency, kind`

// ScopeArgs returns the query arguments of ScopeOrderedSQL and ScopeGroupedSQL.
func (s ScopeParams) ScopeArgs() []any { return s.args() }

// queryArgs are the arguments StreamScope and StreamScopeGroups pass to
// Query. A scope holds anything from a handful of rows to millions, so each
// query is planned with its own parameters: QueryExecModeDescribeExec uses
// the unnamed statement, never a cached one. With a cached statement,
// PostgreSQL switches a connection to a generic plan after five executions,
// and the generic plan, costed for a few hundred rows, sorts a
// million-row scope on disk instead of reading it in index order.
func (s ScopeParams) queryArgs() []any {
	return append([]any{pgx.QueryExecModeDescribeExec}, s.args()...)
}

// ScopeRow is one transaction in report order. StreamScope reuses the value
// between calls: copy what must outlive the callback.
type ScopeRow struct {
	ContractID   string
	Currency     string
	Kind         string
	OccurredAt   time.Time
	ExternalID   string
	Counterparty string
	Description  string
	AmountMinor  int64
}

// StreamScope calls fn for every transaction in the scope, in report order,
// holding one row in memory at a time.
func StreamScope(ctx context.Context, q DBTX, s ScopeParams, fn func(*ScopeRow) error) error {
	rows, err := q.Query(ctx, ScopeOrderedSQL, s.queryArgs()...)
	if err != nil {
		return fmt.Errorf("querying scope: %w", translate(err))
	}
	defer rows.Close()
	var r ScopeRow
	for rows.Next() {
		if err := rows.Scan(&r.ContractID, &r.Currency, &r.Kind, &r.OccurredAt, &r.ExternalID,
			&r.Counterparty, &r.Description, &r.AmountMinor); err != nil {
			return fmt.Errorf("scanning scope row: %w", err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading scope: %w", translate(err))
	}
	return nil
}

// ScopeGroup is one (contract, currency, kind) group of a scope.
type ScopeGroup struct {
	ContractID string
	Currency   string
	Kind       string
	Count      int64
	SumMinor   int64
}

// StreamScopeGroups calls fn for every group of the scope, in report order.
func StreamScopeGroups(ctx context.Context, q DBTX, s ScopeParams, fn func(*ScopeGroup) error) error {
	rows, err := q.Query(ctx, ScopeGroupedSQL, s.queryArgs()...)
	if err != nil {
		return fmt.Errorf("querying scope groups: %w", translate(err))
	}
	defer rows.Close()
	var g ScopeGroup
	for rows.Next() {
		if err := rows.Scan(&g.ContractID, &g.Currency, &g.Kind, &g.Count, &g.SumMinor); err != nil {
			return fmt.Errorf("scanning scope group: %w", err)
		}
		if err := fn(&g); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading scope groups: %w", translate(err))
	}
	return nil
}

// EstimateScopeRows returns the planner's estimate of the rows in a scope:
// cheap enough to route a job to a queue at request time.
func EstimateScopeRows(ctx context.Context, q DBTX, s ScopeParams) (int64, error) {
	var plan []map[string]any
	err := q.QueryRow(ctx, `EXPLAIN (FORMAT JSON) SELECT 1 FROM transactions`+scopeWhere, s.args()...).Scan(&plan)
	if err != nil {
		return 0, fmt.Errorf("estimating scope: %w", translate(err))
	}
	if len(plan) == 0 {
		return 0, nil
	}
	p, _ := plan[0]["Plan"].(map[string]any)
	rows, _ := p["Plan Rows"].(float64)
	return int64(rows), nil
}
