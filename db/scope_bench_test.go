package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// benchScopeRows is the size of the scope the row-scanner benchmarks read.
const benchScopeRows = 100_000

// setupScopeBench seeds one application with benchScopeRows generated
// transactions and returns the pool and the scope over all of them.
func setupScopeBench(b *testing.B) (*pgxpool.Pool, db.ScopeParams) {
	b.Helper()
	ctx := context.Background()
	pool := tallytest.DB(b)
	org, err := db.CreateOrganization(ctx, pool, "Bench")
	if err != nil {
		b.Fatal(err)
	}
	app, err := db.CreateApplication(ctx, pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "bench", Name: "Bench"})
	if err != nil {
		b.Fatal(err)
	}
	opts := ingest.GeneratorOpts{ApplicationID: app.ID, Seed: 1, Count: benchScopeRows}
	if _, err := ingest.Seed(ctx, pool, opts); err != nil {
		b.Fatal(err)
	}
	if _, err := tallytest.AsOwner(b, pool).Exec(ctx, `VACUUM ANALYZE transactions`); err != nil {
		b.Fatal(err)
	}
	gen, err := ingest.NewGenerator(opts)
	if err != nil {
		b.Fatal(err)
	}
	start, end := gen.Period()
	return pool, db.ScopeParams{ApplicationID: app.ID, PeriodStart: start, PeriodEnd: end, DataAsOf: time.Now()}
}

func reportRowsPerSecond(b *testing.B, rows int64) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkStreamScope reads a 100k-row scope through the row scanner the
// report worker uses: every column decoded into a reused ScopeRow.
func BenchmarkStreamScope(b *testing.B) {
	pool, q := setupScopeBench(b)
	ctx := context.Background()
	var rows int64
	b.ReportAllocs()
	for b.Loop() {
		err := db.StreamScope(ctx, pool, q, func(*db.ScopeRow) error { rows++; return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	if rows != int64(b.N)*benchScopeRows {
		b.Fatalf("read %d rows, want %d", rows, int64(b.N)*benchScopeRows)
	}
	reportRowsPerSecond(b, rows)
}

// BenchmarkStreamScopeRawBaseline runs the same query, planned the same way,
// and touches each row's raw bytes without decoding them: the floor under
// StreamScope.
func BenchmarkStreamScopeRawBaseline(b *testing.B) {
	benchRawScope(b, pgx.QueryExecModeDescribeExec)
}

// BenchmarkScopeCachedStatement is the raw read through a cached prepared
// statement, as StreamScope ran before it planned each call: from the sixth
// execution on the connection PostgreSQL uses a generic plan, which sorts
// the scope instead of reading it in index order.
func BenchmarkScopeCachedStatement(b *testing.B) {
	benchRawScope(b, pgx.QueryExecModeCacheStatement)
}

func benchRawScope(b *testing.B, mode pgx.QueryExecMode) {
	pool, q := setupScopeBench(b)
	ctx := context.Background()
	conn, err := pool.Acquire(ctx) // one connection, as a busy worker reuses its own
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	args := append([]any{mode}, q.ScopeArgs()...)
	var rows, size int64
	b.ReportAllocs()
	for b.Loop() {
		r, err := conn.Query(ctx, db.ScopeOrderedSQL, args...)
		if err != nil {
			b.Fatal(err)
		}
		for r.Next() {
			for _, v := range r.RawValues() {
				size += int64(len(v))
			}
			rows++
		}
		if err := r.Err(); err != nil {
			b.Fatal(err)
		}
	}
	if rows != int64(b.N)*benchScopeRows {
		b.Fatalf("read %d rows, want %d", rows, int64(b.N)*benchScopeRows)
	}
	reportRowsPerSecond(b, rows)
}

// BenchmarkStreamScopeGroups reads the same scope aggregated per group.
func BenchmarkStreamScopeGroups(b *testing.B) {
	pool, q := setupScopeBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		err := db.StreamScopeGroups(ctx, pool, q, func(*db.ScopeGroup) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}
