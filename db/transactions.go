package db

import (
	"context"
	"encoding/binary"
	"errors"
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
	return streamScopeRows(ctx, q, ScopeOrderedSQL, s.queryArgs(), fn)
}

// streamScopeRows runs a scope query (ScopeOrderedSQL's columns) and calls fn
// for every row, reusing one ScopeRow.
func streamScopeRows(ctx context.Context, q DBTX, sql string, args []any, fn func(*ScopeRow) error) error {
	var r ScopeRow
	return eachScopeRow(ctx, q, "scope", sql, args, func(rows pgx.Rows) error {
		if err := rows.Scan(&r.ContractID, &r.Currency, &r.Kind, &r.OccurredAt, &r.ExternalID,
			&r.Counterparty, &r.Description, &r.AmountMinor); err != nil {
			return fmt.Errorf("scanning scope row: %w", err)
		}
		return fn(&r)
	})
}

// eachScopeRow runs a query over a scope (what names it in errors) and
// calls row for each of its rows, in the order they come.
func eachScopeRow(ctx context.Context, q DBTX, what, sql string, args []any, row func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("querying %s: %w", what, translate(err))
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", what, translate(err))
	}
	return nil
}

// GroupKey is the key of a (contract, currency, kind) group: the leading
// columns of the report order, at which a scope can be cut into ranges that
// each hold whole groups.
type GroupKey struct {
	ContractID string
	Currency   string
	Kind       string
}

// scopeRangeSQL is ScopeOrderedSQL restricted to the groups from $7..$9
// (inclusive) to $10..$12 (exclusive); a NULL contract id leaves that end
// open. The row comparisons are in the index's order (and the database's
// collation, as the ORDER BY), so a range is an index range.
const scopeRangeSQL = `
	SELECT contract_id, currency, kind, occurred_at, external_id, counterparty, description, amount_minor
	  FROM transactions` + scopeWhere + `
	   AND ($7::text IS NULL OR (contract_id, currency, kind) >= ($7::text, $8::text, $9::text))
	   AND ($10::text IS NULL OR (contract_id, currency, kind) < ($10::text, $11::text, $12::text))
	 ORDER BY contract_id, currency, kind, occurred_at, id`

// StreamScopeRange is StreamScope for the scope's groups from from
// (inclusive) to to (exclusive); a nil bound leaves that end open.
// Consecutive ranges, read in order, give the scope's rows in report order.
func StreamScopeRange(ctx context.Context, q DBTX, s ScopeParams, from, to *GroupKey, fn func(*ScopeRow) error) error {
	args := s.queryArgs()
	for _, k := range []*GroupKey{from, to} {
		if k == nil {
			args = append(args, nil, nil, nil)
		} else {
			args = append(args, k.ContractID, k.Currency, k.Kind)
		}
	}
	return streamScopeRows(ctx, q, scopeRangeSQL, args, fn)
}

// scopeUnorderedSQL is ScopeOrderedSQL without the ORDER BY, and with id,
// the order's last key: the rows in whatever order the planner reads them
// fastest (for a large scope, the table in physical order), for a caller
// that puts them in report order itself.
//
// $7 and $8, when not NULL, keep the rows stored in the table's blocks from
// $7 (inclusive) to $8 (exclusive): a TID range scan, with which several
// connections that share a snapshot read disjoint parts of one scope. The
// planner plans each query with its parameters (queryArgs), so a NULL bound
// folds away.
const scopeUnorderedSQL = `
	SELECT contract_id, currency, kind, occurred_at, external_id, counterparty, description, amount_minor, id
	  FROM transactions` + scopeWhere + `
	   AND ($7::bigint IS NULL OR ctid >= ('(' || $7::bigint || ',0)')::tid)
	   AND ($8::bigint IS NULL OR ctid < ('(' || $8::bigint || ',0)')::tid)`

// BlockRange is a range of the transactions table's blocks, From
// inclusive, To exclusive; a To of 0 leaves the range open.
type BlockRange struct {
	From, To int64
}

// TransactionBlocks returns the planner's counts of the transactions
// table's blocks and rows (pg_class.relpages and reltuples): estimates, for
// cutting a scan into block ranges whose last is open.
func TransactionBlocks(ctx context.Context, q DBTX) (blocks, rows int64, err error) {
	err = q.QueryRow(ctx, `SELECT relpages::bigint, greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'transactions'::regclass`).Scan(&blocks, &rows)
	if err != nil {
		return 0, 0, fmt.Errorf("counting the transactions table's blocks: %w", translate(err))
	}
	return blocks, rows, nil
}

// scopeRawFormats asks for every column of scopeUnorderedSQL in binary:
// text as its bytes, timestamptz and bigint as 8 big-endian bytes.
var scopeRawFormats = pgx.QueryResultFormats{1, 1, 1, 1, 1, 1, 1, 1, 1}

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's timestamp epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946_684_800_000_000

// ScopeRawRow is one transaction of a scope as the database sent it. Its
// byte slices are valid only during the callback that receives it.
type ScopeRawRow struct {
	ContractID, Currency, Kind            []byte
	OccurredAtMicros                      int64 // microseconds since the Unix epoch, UTC
	ExternalID, Counterparty, Description []byte
	AmountMinor                           int64
	ID                                    int64
}

// StreamScopeUnordered calls fn for every transaction in the scope stored
// in blocks (the zero BlockRange: all), in no particular order, with the
// bytes the database sent: nothing is allocated per row. Sorting the rows
// by (group in report order, OccurredAtMicros, ID) gives the report order
// of StreamScope.
func StreamScopeUnordered(ctx context.Context, q DBTX, s ScopeParams, blocks BlockRange, fn func(*ScopeRawRow) error) error {
	args := append([]any{pgx.QueryExecModeDescribeExec, scopeRawFormats}, s.args()...)
	var from, to *int64
	if blocks.From > 0 {
		from = &blocks.From
	}
	if blocks.To > 0 {
		to = &blocks.To
	}
	args = append(args, from, to)
	var r ScopeRawRow
	return eachScopeRow(ctx, q, "scope", scopeUnorderedSQL, args, func(rows pgx.Rows) error {
		v := rows.RawValues()
		if len(v) != 9 || len(v[3]) != 8 || len(v[7]) != 8 || len(v[8]) != 8 {
			return errors.New("reading scope: unexpected row shape")
		}
		r.ContractID, r.Currency, r.Kind = v[0], v[1], v[2]
		r.OccurredAtMicros = int64(binary.BigEndian.Uint64(v[3])) + pgEpochMicros
		r.ExternalID, r.Counterparty, r.Description = v[4], v[5], v[6]
		r.AmountMinor = int64(binary.BigEndian.Uint64(v[7]))
		r.ID = int64(binary.BigEndian.Uint64(v[8]))
		return fn(&r)
	})
}

// ScopeGroupSpan is a group of a scope with its count and the first and
// last occurred_at of its rows, in microseconds since the Unix epoch.
type ScopeGroupSpan struct {
	GroupKey
	Count       int64
	FirstMicros int64
	LastMicros  int64
}

// scopeGroupSpansSQL counts a scope's groups, in report order, with the
// span of their times: an index-only scan of the scope index, as
// ScopeGroupedSQL.
const scopeGroupSpansSQL = `
	SELECT contract_id, currency, kind, count(*),
	       (extract(epoch FROM min(occurred_at)) * 1000000)::bigint,
	       (extract(epoch FROM max(occurred_at)) * 1000000)::bigint
	  FROM transactions` + scopeWhere + `
	 GROUP BY contract_id, currency, kind
	 ORDER BY contract_id, currency, kind`

// StreamScopeGroupSpans calls fn for every group of the scope, in report
// order (the database's collation), with its count and time span.
func StreamScopeGroupSpans(ctx context.Context, q DBTX, s ScopeParams, fn func(*ScopeGroupSpan) error) error {
	var g ScopeGroupSpan
	return eachScopeRow(ctx, q, "scope groups", scopeGroupSpansSQL, s.queryArgs(), func(rows pgx.Rows) error {
		if err := rows.Scan(&g.ContractID, &g.Currency, &g.Kind, &g.Count, &g.FirstMicros, &g.LastMicros); err != nil {
			return fmt.Errorf("scanning scope group: %w", err)
		}
		return fn(&g)
	})
}

// scopeSampleRows is about how many rows of the table ScopeSplitKeys samples.
const scopeSampleRows = 50_000

// ScopeSplitKeys returns group keys, increasing, that cut an application's
// transactions into ranges of about rowsPerRange rows (at most maxRanges
// ranges), estimated from a sample of the table's pages (TABLESAMPLE
// SYSTEM, fixed seed): the first range ends before the first key, the last
// starts at the last key. Ranges hold whole groups, so a group larger than
// rowsPerRange is one range. The keys only balance work: ranges cut between
// any groups give the same rows in the same order. None means one range.
func ScopeSplitKeys(ctx context.Context, q DBTX, applicationID string, rowsPerRange int64, maxRanges int) ([]GroupKey, error) {
	if maxRanges < 2 || rowsPerRange < 1 {
		return nil, nil
	}
	var tuples float64
	if err := q.QueryRow(ctx, `SELECT greatest(reltuples, 1)::float8 FROM pg_class WHERE oid = 'transactions'::regclass`).Scan(&tuples); err != nil {
		return nil, fmt.Errorf("sizing the scope sample: %w", translate(err))
	}
	percent := min(100, max(0.01, 100*scopeSampleRows/tuples))
	// Grouped and ordered by the database, in its collation: the order of
	// the report and of the range comparisons.
	rows, _ := q.Query(ctx, `
		SELECT contract_id, currency, kind, count(*)
		  FROM transactions TABLESAMPLE SYSTEM ($2) REPEATABLE (0)
		 WHERE application_id = $1
		 GROUP BY contract_id, currency, kind
		 ORDER BY contract_id, currency, kind`, applicationID, percent)
	type sampled struct {
		key GroupKey
		n   int64
	}
	groups, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (sampled, error) {
		var g sampled
		err := row.Scan(&g.key.ContractID, &g.key.Currency, &g.key.Kind, &g.n)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("sampling the scope's groups: %w", translate(err))
	}
	var total int64
	for _, g := range groups {
		total += g.n
	}
	estimate := float64(total) * 100 / percent
	ranges := min(int64(maxRanges), int64(estimate/float64(rowsPerRange)))
	if ranges < 2 {
		return nil, nil
	}
	var keys []GroupKey
	var seen int64
	for _, g := range groups {
		// Cut before g when the groups so far fill the ranges cut so far.
		if seen*ranges >= int64(len(keys)+1)*total && len(keys) < int(ranges)-1 {
			keys = append(keys, g.key)
		}
		seen += g.n
	}
	return keys, nil
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
	var g ScopeGroup
	return eachScopeRow(ctx, q, "scope groups", ScopeGroupedSQL, s.queryArgs(), func(rows pgx.Rows) error {
		if err := rows.Scan(&g.ContractID, &g.Currency, &g.Kind, &g.Count, &g.SumMinor); err != nil {
			return fmt.Errorf("scanning scope group: %w", err)
		}
		return fn(&g)
	})
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
