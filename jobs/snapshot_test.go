package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
)

// openWriter begins a transaction on conn that holds a transaction id, as a
// writer does, and returns it still open.
func openWriter(t *testing.T, ctx context.Context, conn interface {
	Begin(context.Context) (pgx.Tx, error)
}) pgx.Tx {
	t.Helper()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// TestGenerateReportIgnoresForeignWriters: transactions that are writing
// when a report is created, in another database of the cluster, on another
// application, or even importing into the report's own application, do not
// delay the report. It is ready while they are all still open, and holds
// exactly the rows committed before it was created.
func TestGenerateReportIgnoresForeignWriters(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := b.ctx

	cfg := b.pool.Config().ConnConfig.Copy()
	cfg.Database = "postgres"
	other, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connecting to the cluster's postgres database: %v", err)
	}
	defer other.Close(context.WithoutCancel(ctx))
	otherDB := openWriter(t, ctx, other)

	otherApp := openWriter(t, ctx, b.pool)
	csvFile := ingest.Header + "\nCTR-A,in-flight-%d,2025-01-15T00:00:00Z,777,EUR,payment,In Flight,\n"
	if _, err := ingest.Import(ctx, otherApp, b.otherApp.ID, strings.NewReader(fmt.Sprintf(csvFile, 1)), nil); err != nil {
		t.Fatal(err)
	}
	sameApp := openWriter(t, ctx, b.pool)
	if _, err := ingest.Import(ctx, sameApp, b.app.ID, strings.NewReader(fmt.Sprintf(csvFile, 2)), nil); err != nil {
		t.Fatal(err)
	}

	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names"}})
	rep, jobID := b.createReport(t, c, reportOpts{})
	r := b.waitReport(t, rep.ID, time.Minute, db.ReportReady, db.ReportFailed)

	for name, tx := range map[string]pgx.Tx{"other database": otherDB, "other application": otherApp, "same application": sameApp} {
		if st := tx.Conn().PgConn().TxStatus(); st != 'T' {
			t.Fatalf("the writer in the %s ended (status %q) before the report was checked", name, st)
		}
	}
	if r.Status != db.ReportReady {
		t.Fatalf("status %s (%s), want ready", r.Status, deref(r.ErrorMessage))
	}
	scope, err := r.Scope()
	if err != nil {
		t.Fatal(err)
	}
	b.checkReady(t, r, jobID, expectedSummary(t, b.seeded, b.app.ID, r.ID, scope))

	// Once the writers commit, the report still reads the same rows.
	for _, tx := range []pgx.Tx{otherDB, otherApp, sameApp} {
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := rebuild(t, b, r), b.download(t, r); !bytes.Equal(got, want) {
		t.Fatalf("rebuilt after the writers committed, the file differs:\n--- rebuilt\n%s\n--- stored\n%s", got, want)
	}
}

// rebuild writes rep's file again from what the report stores.
func rebuild(t *testing.T, b *testBundle, rep *db.Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := db.WithSnapshotTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.WriteReport(b.ctx, tx, b.portal, tallytest.PseudonymKeys(t), rep, &buf)
		return err
	})
	if err != nil {
		t.Fatalf("rebuilding report %s: %v", rep.ID, err)
	}
	return buf.Bytes()
}

// createReportNow creates a report as the API does: its data_as_of is the
// creating transaction's now().
func (b *testBundle) createReportNow(t *testing.T, c *db.Case, typ string) *db.Report {
	t.Helper()
	rt, ok := b.portal.ReportType(typ)
	if !ok {
		t.Fatalf("report type %s unknown", typ)
	}
	rep, err := jobs.CreateReport(b.ctx, b.pool, b.inserter, jobs.CreateReportParams{
		Application: b.app, CaseID: c.ID, Type: rt, UserID: b.user.ID, LargeReportRows: 1 << 40,
	})
	if err != nil {
		t.Fatalf("creating report: %v", err)
	}
	return rep
}

// TestReportsArePureFunctionsOfTheirSnapshots interleaves, at random,
// imports that commit at once, imports that fail and roll back, and imports
// held open (in their transaction, or before it begins) across report
// creations, often until the worker has built those reports, then committed
// or rolled back; with report creations of every builder. Once every import
// has ended, each report's file is written again from what the report
// stores, and must equal the file the worker wrote, byte for byte.
// TALLY_TEST_SEED replays a run.
func TestReportsArePureFunctionsOfTheirSnapshots(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := b.ctx
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("TALLY_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("TALLY_TEST_SEED: %v", err)
		}
	}
	t.Logf("seed %d (TALLY_TEST_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	startWorker(t, b.workerOpts(t))
	lineItems := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names"}})
	subtotals := b.createCase(t, caseOpts{ContractFilters: []string{"CTR-A", "CTR-B"}})

	// importFile returns a file of n new rows in the cases' period.
	var nextID int
	var committed []string // external ids known to be imported
	span := int64(periodEnd.Sub(periodStart) / time.Microsecond)
	importFile := func(n int, dup string) (string, []string) {
		var sb strings.Builder
		sb.WriteString(ingest.Header + "\n")
		var ids []string
		for range n {
			nextID++
			id := fmt.Sprintf("imp-%05d", nextID)
			ids = append(ids, id)
			at := periodStart.Add(time.Duration(rng.Int64N(span)) * time.Microsecond)
			fmt.Fprintf(&sb, "CTR-%c,%s,%s,%d,%s,payment,Imported %d,\n", "ABC"[rng.IntN(3)], id,
				at.Format(time.RFC3339Nano), rng.Int64N(2_000_000)-1_000_000, []string{"EUR", "JPY", "KWD"}[rng.IntN(3)], nextID)
		}
		if dup != "" {
			fmt.Fprintf(&sb, "CTR-A,%s,2025-01-10T00:00:00Z,1,EUR,payment,,\n", dup)
		}
		return sb.String(), ids
	}

	// An import held open inside its transaction, rows written; or running
	// in the background, stopped at a gate: before its transaction begins
	// (validated) or while it copies. during lists the reports created
	// while it was open.
	type held struct {
		tx     pgx.Tx
		during []string
	}
	type gated struct {
		release chan struct{}
		done    chan error
		during  []string
	}
	var open []*held
	var gates, started []*gated
	var mu sync.Mutex // guards committed against the background imports
	stats := map[string]int{}
	var reports []*db.Report

	// outlive makes an import slower than the reports created while it was
	// open, half the time: it ends only once the worker has finished them
	// (or after a few seconds, should the worker wait for the import).
	outlive := func(during []string) {
		if len(during) == 0 || rng.IntN(2) == 0 {
			return
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var unfinished int
			err := b.pool.QueryRow(ctx, `SELECT count(*) FROM reports WHERE id = ANY ($1) AND status IN ('pending', 'running')`,
				during).Scan(&unfinished)
			if err != nil {
				t.Fatal(err)
			}
			if unfinished == 0 {
				stats["outlived its reports"]++
				return
			}
		}
		stats["waited for by its reports"]++
	}
	endHeld := func(i int) {
		h := open[i]
		open = append(open[:i], open[i+1:]...)
		outlive(h.during)
		if rng.IntN(3) == 0 {
			if err := h.tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			stats["held rolled back"]++
			return
		}
		if err := h.tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		stats["held committed"]++
	}
	releaseGate := func(i int) {
		g := gates[i]
		gates = append(gates[:i], gates[i+1:]...)
		outlive(g.during)
		close(g.release)
		stats["gated released"]++
	}

	const steps = 400
	for step := 0; step < steps; step++ {
		switch k := rng.IntN(12); {
		case k < 4:
			c, typ := lineItems, "transaction_summary"
			switch rng.IntN(3) {
			case 1:
				c = subtotals
			case 2:
				typ = "activity_log"
			}
			rep := b.createReportNow(t, c, typ)
			reports = append(reports, rep)
			for _, h := range open {
				h.during = append(h.during, rep.ID)
			}
			for _, g := range gates {
				g.during = append(g.during, rep.ID)
			}
			if len(open)+len(gates) > 0 {
				stats["reports created during an import"]++
			}
		case k == 4:
			f, ids := importFile(1+rng.IntN(4), "")
			if _, err := ingest.Import(ctx, b.pool, b.app.ID, strings.NewReader(f), nil); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			committed = append(committed, ids...)
			mu.Unlock()
			stats["committed at once"]++
		case k == 5:
			mu.Lock()
			if len(committed) == 0 {
				mu.Unlock()
				continue
			}
			dup := committed[rng.IntN(len(committed))]
			mu.Unlock()
			f, _ := importFile(1+rng.IntN(3), dup)
			if _, err := ingest.Import(ctx, b.pool, b.app.ID, strings.NewReader(f), nil); !errors.Is(err, ingest.ErrAlreadyImported) {
				t.Fatalf("import repeating %s: got %v, want ErrAlreadyImported", dup, err)
			}
			stats["failed and rolled back"]++
		case k == 6 || k == 7:
			if len(open) >= 3 {
				endHeld(rng.IntN(len(open)))
				continue
			}
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
			f, _ := importFile(1+rng.IntN(4), "")
			if _, err := ingest.Import(ctx, tx, b.app.ID, strings.NewReader(f), nil); err != nil {
				t.Fatal(err)
			}
			open = append(open, &held{tx: tx})
			stats["held open"]++
		case k == 8:
			if len(open) > 0 {
				endHeld(rng.IntN(len(open)))
			}
		case k == 9 || k == 10:
			if len(gates) >= 3 {
				releaseGate(rng.IntN(len(gates)))
				continue
			}
			g := &gated{release: make(chan struct{}), done: make(chan error, 1)}
			gates, started = append(gates, g), append(started, g)
			f, ids := importFile(1+rng.IntN(4), "")
			opts := &ingest.ImportOpts{}
			if rng.IntN(2) == 0 {
				opts.Validated = func(int64) { <-g.release }
			} else {
				opts.Progress = func(n int64) {
					if n == int64(len(ids)) {
						<-g.release
					}
				}
			}
			go func() {
				_, err := ingest.Import(ctx, b.pool, b.app.ID, strings.NewReader(f), opts)
				if err == nil {
					mu.Lock()
					committed = append(committed, ids...)
					mu.Unlock()
				}
				g.done <- err
			}()
			stats["gated"]++
		case k == 11:
			if len(gates) > 0 {
				releaseGate(rng.IntN(len(gates)))
			}
		}
	}
	for len(open) > 0 {
		endHeld(rng.IntN(len(open)))
	}
	for len(gates) > 0 {
		releaseGate(rng.IntN(len(gates)))
	}
	for _, g := range started {
		if err := <-g.done; err != nil {
			t.Fatalf("gated import: %v", err)
		}
	}
	t.Logf("%d steps: %v", steps, stats)

	for _, rep := range reports {
		r := b.waitReport(t, rep.ID, time.Minute, db.ReportReady, db.ReportFailed)
		if r.Status != db.ReportReady {
			t.Fatalf("report %s is %s (%s), want ready", r.ID, r.Status, deref(r.ErrorMessage))
		}
		stored := b.download(t, r)
		if got := rebuild(t, b, r); !bytes.Equal(got, stored) {
			t.Errorf("report %s (%s, created %s): rebuilt from its snapshot, the file differs:\n--- rebuilt\n%s\n--- stored\n%s",
				r.ID, r.Type, r.CreatedAt.Format(time.RFC3339Nano), got, stored)
		}
	}
}
