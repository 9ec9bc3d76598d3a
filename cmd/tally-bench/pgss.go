package main

import (
	"context"
	"fmt"
	"strings"
)

// pgss reads pg_stat_statements for the bench database (-pgss): which
// statements cost PostgreSQL time per report in a small-report batch. It
// needs the library preloaded (shared_preload_libraries); the extension is
// created in the bench database, and statements run by triggers and
// functions are counted on their own (pg_stat_statements.track = all for
// this database only).
type pgss struct{ b *bench }

// enable creates the extension in the bench database and tracks nested
// statements there. New connections pick the setting up.
func (p pgss) enable(ctx context.Context) error {
	if _, err := p.b.ctl.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return fmt.Errorf("-pgss: %w", err)
	}
	_, err := p.b.ctl.Exec(ctx, `ALTER DATABASE `+quoteIdent(p.b.dbName)+` SET pg_stat_statements.track = 'all'`)
	return err
}

// reset clears the bench database's statistics (other databases keep theirs).
func (p pgss) reset(ctx context.Context) error {
	_, err := p.b.ctl.Exec(ctx, `SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database WHERE datname = current_database()), 0)`)
	return err
}

// print logs the top statements by total execution time, per unit of work.
func (p pgss) print(ctx context.Context, n int, per int, unit string) error {
	rows, err := p.b.ctl.Query(ctx, `
		SELECT calls, total_exec_time, rows, shared_blks_hit + shared_blks_read, wal_records, toplevel, query
		  FROM pg_stat_statements
		 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		 ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return err
	}
	defer rows.Close()
	var sum float64
	p.b.log.printf("  pg_stat_statements, per %s (%d %ss): ms, calls, rows, buffers, WAL records; query", unit, per, unit)
	for rows.Next() {
		var (
			calls, nrows, blks, wal int64
			total                   float64
			top                     bool
			q                       string
		)
		if err := rows.Scan(&calls, &total, &nrows, &blks, &wal, &top, &q); err != nil {
			return err
		}
		if top {
			sum += total
		}
		q = strings.Join(strings.Fields(q), " ")
		if len(q) > 150 {
			q = q[:150] + "…"
		}
		nested := ""
		if !top {
			nested = " (nested)"
		}
		f := float64(per)
		p.b.log.printf("    %7.3f ms %6.2f calls %8.1f rows %8.1f bufs %6.2f wal%s  %s",
			total/f, float64(calls)/f, float64(nrows)/f, float64(blks)/f, float64(wal)/f, nested, q)
	}
	p.b.log.printf("  top-level statements listed: %.3f ms per %s", sum/float64(per), unit)
	return rows.Err()
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// pgssReset enables pg_stat_statements in the bench database the first
// time, and clears its statistics.
func (b *bench) pgssReset(ctx context.Context) error {
	if !b.pgssOn {
		if err := (pgss{b}).enable(ctx); err != nil {
			return err
		}
		b.pgssOn = true
	}
	return (pgss{b}).reset(ctx)
}
