package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/ingest"
)

// importSeedBase is the generator seed of the first import batch; batch i
// uses importSeedBase+i, so its rows' external ids are
// "seed-<importSeedBase+i>-<n>", apart from the demo's (ingest.DefaultDemoSeed).
const importSeedBase = 900_000

// Plans of an import batch.
const (
	planCommit       = "commit"
	planHoldCommit   = "commit after a hold"
	planRollback     = "roll back"
	planHoldRollback = "roll back after a hold"
)

// importBatch is one ingest.Import of a small CSV into the demo
// application while reports are created.
type importBatch struct {
	seed       uint64
	rows       int64
	plan       string
	hold       time.Duration // how long the transaction stays open after the rows are in
	start, end time.Time
	committed  bool  // COMMIT acknowledged
	rolledBack bool  // ROLLBACK done as planned
	err        error // anything else
}

// runImports starts an import batch every importEvery (± half) until
// until, each in its own transaction: most commit at once, some are held
// open for 1–4 s first (a slow import across report creations), some roll
// back. Several may be open at once.
func (c *chaos) runImports(ctx context.Context, until time.Time) {
	if c.opts.importEvery <= 0 {
		return
	}
	cfg, err := pgxpool.ParseConfig(c.db.url)
	if err != nil {
		c.logger.Error("imports", slog.String("error", err.Error()))
		return
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "tally-chaos-import"
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		c.logger.Error("imports", slog.String("error", err.Error()))
		return
	}
	defer pool.Close()

	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 4)
	for i := 0; ; i++ {
		next := time.Now().Add(c.randDuration(c.opts.importEvery/2, c.opts.importEvery*3/2))
		if next.After(until) || !sleepUntil(ctx, next) {
			return
		}
		b := &importBatch{seed: importSeedBase + uint64(i), rows: int64(1 + c.randIntN(c.opts.importRowsMax))}
		switch r := c.randIntN(100); {
		case r < 50:
			b.plan = planCommit
		case r < 70:
			b.plan, b.hold = planHoldCommit, c.randDuration(time.Second, 4*time.Second)
		case r < 85:
			b.plan = planRollback
		default:
			b.plan, b.hold = planHoldRollback, c.randDuration(time.Second, 4*time.Second)
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			c.importOne(ctx, pool, b)
			c.mu.Lock()
			c.imports = append(c.imports, *b)
			c.mu.Unlock()
		})
	}
}

// importOne runs one batch and records how it ended.
func (c *chaos) importOne(ctx context.Context, pool *pgxpool.Pool, b *importBatch) {
	b.start = time.Now()
	defer func() { b.end = time.Now() }()
	gen, err := ingest.NewGenerator(ingest.GeneratorOpts{Seed: b.seed, Count: b.rows})
	if err != nil {
		b.err = err
		return
	}
	var file bytes.Buffer
	if _, err := gen.WriteCSV(&file); err != nil {
		b.err = err
		return
	}
	appID := c.tenant.Application.ID
	if b.plan == planCommit {
		_, b.err = ingest.Import(ctx, pool, appID, bytes.NewReader(file.Bytes()), nil)
		b.committed = b.err == nil
		return
	}
	// The import runs in a transaction of ours, which then stays open for
	// b.hold before it commits or rolls back.
	tx, err := pool.Begin(ctx)
	if err != nil {
		b.err = err
		return
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := ingest.Import(ctx, tx, appID, bytes.NewReader(file.Bytes()), nil); err != nil {
		b.err = err
		return
	}
	sleepUntil(ctx, time.Now().Add(b.hold))
	switch b.plan {
	case planHoldCommit:
		b.err = tx.Commit(ctx)
		b.committed = b.err == nil
	default:
		b.err = tx.Rollback(ctx)
		b.rolledBack = b.err == nil
	}
}

// importRowCounts returns the rows of each import batch in the database,
// by seed.
func (c *chaos) importRowCounts(ctx context.Context) (map[uint64]int64, error) {
	rows, err := c.pool.Query(ctx, `SELECT substring(external_id FROM '^seed-([0-9]+)-'), count(*)
		FROM transactions WHERE application_id = $1 AND external_id LIKE 'seed-%' GROUP BY 1`, c.tenant.Application.ID)
	if err != nil {
		return nil, err
	}
	counts := map[uint64]int64{}
	var seed string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&seed, &n}, func() error {
		s, err := strconv.ParseUint(seed, 10, 64)
		if err != nil {
			return fmt.Errorf("external id seed %q: %w", seed, err)
		}
		counts[s] = n
		return nil
	})
	return counts, err
}

// verifyImports checks that every committed batch is whole in the database
// (the PostgreSQL crash included), that every rolled-back one left nothing,
// and that a batch that failed left all or nothing, and failed only while
// PostgreSQL was down.
func (c *chaos) verifyImports(ctx context.Context, v *verdict, outageStart, outageEnd time.Time) error {
	c.mu.Lock()
	batches := append([]importBatch(nil), c.imports...)
	c.mu.Unlock()
	if c.opts.importEvery <= 0 {
		v.add("imports while reports were created", "off (-import-every 0)")
		return nil
	}
	counts, err := c.importRowCounts(ctx)
	if err != nil {
		return fmt.Errorf("counting imported rows: %w", err)
	}
	before := len(v.problems)
	plans := map[string]int{}
	var rows, committedRows int64
	failed, failedCommitted := 0, 0
	for _, b := range batches {
		rows += b.rows
		got := counts[b.seed]
		switch {
		case b.committed:
			plans[b.plan]++
			committedRows += b.rows
			if got != b.rows {
				v.problem("import batch %d (%s at %s) committed %d rows, the database holds %d", b.seed, b.plan, c.rel(b.start), b.rows, got)
			}
		case b.rolledBack:
			plans[b.plan]++
			if got != 0 {
				v.problem("import batch %d rolled back, the database holds %d of its rows", b.seed, got)
			}
		default:
			failed++
			if got == b.rows {
				failedCommitted++ // the connection died after the commit
			} else if got != 0 {
				v.problem("import batch %d failed (%v) and left %d of its %d rows: not all or nothing", b.seed, b.err, got, b.rows)
			}
			if outageStart.IsZero() || b.end.Before(outageStart) || b.start.After(outageEnd.Add(3*time.Second)) {
				v.problem("import batch %d failed while PostgreSQL was up (%s to %s): %v", b.seed, c.rel(b.start), c.rel(b.end), b.err)
			}
		}
	}
	verdictWord := "yes"
	if len(v.problems) > before {
		verdictWord = fmt.Sprintf("NO (%d problems)", len(v.problems)-before)
	}
	v.add("imports while reports were created (ingest.Import of 1–"+strconv.Itoa(c.opts.importRowsMax)+" rows into the demo application; holds of 1–4 s)",
		fmt.Sprintf("%d batches, %d rows; %s; %d rows committed; %d failed during the PostgreSQL outage (%d of them committed before the error: all or nothing); committed rows all present, rolled-back rows absent: %s",
			len(batches), rows, countsString(plans), committedRows, failed, failedCommitted, verdictWord))
	if len(batches) == 0 {
		v.problem("no import ran while reports were created")
	}
	return nil
}
