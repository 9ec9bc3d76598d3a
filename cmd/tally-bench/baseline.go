package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/worker"
)

// insertReport creates a report the way POST case-reports does, through
// jobs.CreateReport, without HTTP, authentication or the case checks. It is
// the create row's baseline, and how the small-report batches are queued.
func (b *bench) insertReport(ctx context.Context, set *scopeSet, c *db.Case) (string, error) {
	typ, ok := b.portal.ReportType("transaction_summary")
	if !ok {
		return "", errors.New("the portal configuration has no transaction_summary report type")
	}
	rep, err := jobs.CreateReport(ctx, b.base, b.inserter, jobs.CreateReportParams{
		Application: set.app, CaseID: c.ID, Type: typ, UserID: b.fx.auditor.ID,
		RequestID: db.NewID("bench_"), LargeReportRows: config.DefaultLargeReportRows, MaxAttempts: config.DefaultMaxAttempts,
	})
	if err != nil {
		return "", err
	}
	return rep.ID, nil
}

// copyScope runs COPY (ScopeOrderedSQL) TO STDOUT for the scope and reads
// the output to the end; it returns the bytes and rows read.
func copyScope(ctx context.Context, pool *pgxpool.Pool, q db.ScopeParams) (bytes, rows int64, err error) {
	sql, err := inlineArgs(db.ScopeOrderedSQL, q.ScopeArgs())
	if err != nil {
		return 0, 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	w := &countingWriter{}
	tag, err := conn.Conn().PgConn().CopyTo(ctx, w, "COPY ("+sql+") TO STDOUT")
	if err != nil {
		return 0, 0, fmt.Errorf("COPY: %w", err)
	}
	return w.n, tag.RowsAffected(), nil
}

// groupScope runs ScopeGroupedSQL and reads every group. Like
// db.StreamScopeGroups, it has the query planned with its own parameters
// (no cached statement, whose generic plan would not fit every scope size).
func groupScope(ctx context.Context, pool *pgxpool.Pool, q db.ScopeParams) (int64, error) {
	rows, err := pool.Query(ctx, db.ScopeGroupedSQL, append([]any{pgx.QueryExecModeDescribeExec}, q.ScopeArgs()...)...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var (
		n                        int64
		contract, currency, kind string
		count, sum               int64
	)
	for rows.Next() {
		if err := rows.Scan(&contract, &currency, &kind, &count, &sum); err != nil {
			return 0, err
		}
		n++
	}
	return n, rows.Err()
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// inlineArgs replaces the $n placeholders of sql with SQL literals of args,
// for COPY, which takes no parameters. It handles the types ScopeArgs
// returns; strings are quoted for standard_conforming_strings = on, which
// checkStandardStrings verifies.
func inlineArgs(sql string, args []any) (string, error) {
	lits := make([]string, len(args))
	for i, a := range args {
		var err error
		if lits[i], err = literal(a); err != nil {
			return "", fmt.Errorf("argument $%d: %w", i+1, err)
		}
	}
	var bad error
	out := placeholder.ReplaceAllStringFunc(sql, func(m string) string {
		n, _ := strconv.Atoi(m[1:])
		if n < 1 || n > len(lits) {
			bad = fmt.Errorf("placeholder %s has no argument", m)
			return m
		}
		return lits[n-1]
	})
	return out, bad
}

func literal(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return quote(v)
	case *string: // the snapshot: NULL when the scope has none
		if v == nil {
			return "NULL", nil
		}
		return quote(*v)
	case time.Time:
		return "'" + v.UTC().Format(time.RFC3339Nano) + "'::timestamptz", nil
	case []string:
		if len(v) == 0 {
			return "'{}'::text[]", nil
		}
		parts := make([]string, len(v))
		for i, s := range v {
			q, err := quote(s)
			if err != nil {
				return "", err
			}
			parts[i] = q
		}
		return "ARRAY[" + strings.Join(parts, ",") + "]::text[]", nil
	}
	return "", fmt.Errorf("no literal for %T", v)
}

func quote(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", errors.New("string contains NUL")
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'", nil
}

func checkStandardStrings(ctx context.Context, pool *pgxpool.Pool) error {
	var v string
	if err := pool.QueryRow(ctx, `SHOW standard_conforming_strings`).Scan(&v); err != nil {
		return err
	}
	if v != "on" {
		return fmt.Errorf("standard_conforming_strings is %s; the COPY baseline quotes literals for on", v)
	}
	return nil
}

// noopQueue is the queue of the no-op baseline jobs; no Tally worker works it.
const noopQueue = "bench_noop"

// noopArgs is a job that does nothing.
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "bench_noop" }

func (noopArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{Queue: noopQueue} }

// noopClient is a River client in the bench process with the fetch settings
// of a tally-worker's reports queue, working no-op jobs. It has a pool of
// its own, sized as a worker process's.
type noopClient struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

func (b *bench) startNoopClient(ctx context.Context, i int) (*noopClient, error) {
	const concurrency = config.DefaultSmallConcurrency
	pool, err := db.Connect(ctx, b.dbURL, &db.PoolOpts{MaxConns: worker.MaxConns(concurrency, 1), ApplicationName: "tally-bench-noop"})
	if err != nil {
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, river.WorkFunc(func(ctx context.Context, job *river.Job[noopArgs]) error { return nil }))
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:                fmt.Sprintf("bench-noop-%d-%d", i, time.Now().UnixNano()),
		Queues:            map[string]river.QueueConfig{noopQueue: {MaxWorkers: concurrency}},
		Workers:           workers,
		FetchCooldown:     worker.DefaultFetchCooldown,
		FetchPollInterval: config.DefaultFetchPollInterval,
	})
	if err != nil {
		pool.Close()
		return nil, err
	}
	if err := client.Start(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &noopClient{pool: pool, client: client}, nil
}

func (c *noopClient) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = c.client.Stop(ctx)
	c.pool.Close()
}

// benchPseudonymKey is the workers' TALLY_PSEUDONYM_KEY in the bench.
const benchPseudonymKey = "tally bench pseudonym master key, not a secret"

// directReports queues n small reports as the batch does and marks their
// jobs completed, so that no worker ever takes them: they are the direct
// baseline's reports.
func (b *bench) directReports(ctx context.Context, n int) ([]*db.Report, error) {
	set := b.fx.small
	reps := make([]*db.Report, 0, n)
	for range n {
		id, err := b.insertReport(ctx, set, set.lineCase)
		if err != nil {
			return nil, err
		}
		rep, err := db.GetReportByID(ctx, b.ctl, id)
		if err != nil {
			return nil, err
		}
		reps = append(reps, rep)
	}
	ids := make([]string, len(reps))
	for i, r := range reps {
		ids[i] = r.ID
	}
	_, err := b.ctl.Exec(ctx, `UPDATE river_job SET state = 'completed', finalized_at = now()
		WHERE args ->> 'report_id' = ANY($1)`, ids)
	return reps, err
}

// directBatch is the small reports' second baseline: the same work without
// River and HTTP, in a Go loop at the workers' concurrency (conc goroutines):
// for each report, its file written by jobs.WriteReport from the scope
// (one query), PUT to the object store through storage.Store.Write (the same
// bytes, hashed on the way), and one commit (an UPDATE of the report's row
// with the file). Counted from the first start to the last commit.
func (b *bench) directBatch(ctx context.Context, conc int, reps []*db.Report) (float64, error) {
	store, err := storage.New(b.storageOpts())
	if err != nil {
		return 0, err
	}
	keys, err := report.NewPseudonymKeys([]byte(benchPseudonymKey))
	if err != nil {
		return 0, err
	}
	typ, _ := b.portal.ReportType("transaction_summary")
	pool, err := db.Connect(ctx, b.dbURL, &db.PoolOpts{MaxConns: int32(conc), ApplicationName: "tally-bench-direct"})
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return 0, err
	}
	run := time.Now().UnixNano()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	start, c0 := time.Now(), takeCPUSnapshot()
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(reps) {
					return
				}
				rep := reps[i]
				key := fmt.Sprintf("bench-direct/%s/%d.%s", rep.ID, run, typ.Format)
				w, err := store.Write(ctx, key, typ.ContentType(), func(out io.Writer) error {
					_, err := jobs.WriteReport(ctx, pool, b.portal, keys, rep, out)
					return err
				})
				if err == nil {
					_, err = pool.Exec(ctx, `UPDATE reports SET size_bytes = $2, sha256 = $3, object_key = $4, updated_at = now() WHERE id = $1`,
						rep.ID, w.Size, w.SHA256, key)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	// Before the pool closes: the CPU time of an exited backend is not counted.
	b.log.printf("  direct baseline, %d at once: %s", conc, takeCPUSnapshot().since(c0).top(6, len(reps), "report"))
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(len(reps)) / took.Seconds(), nil
}
