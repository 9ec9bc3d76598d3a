package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
)

// rebuildParallel is how many reports are rebuilt at once.
const rebuildParallel = 2

// verifyRebuilds writes every ready report's file again from what the
// report stores (its creation snapshot), long after every import ended,
// streaming it into SHA-256 with no upload, and checks that it gives the
// report's sha256 and size_bytes: the file is a function of the snapshot,
// whatever ran, crashed, committed or rolled back around its creation.
func (c *chaos) verifyRebuilds(ctx context.Context, v *verdict, ready []reportRow) error {
	portal, err := config.LoadPortal(c.cfg.PortalConfig)
	if err != nil {
		return fmt.Errorf("loading the portal configuration: %w", err)
	}
	t := time.Now()
	type result struct {
		id, sum string
		size    int64
		err     error
	}
	results := make([]result, len(ready))
	next := make(chan int)
	var wg sync.WaitGroup
	for range rebuildParallel {
		wg.Go(func() {
			for i := range next {
				r := &results[i]
				r.id = ready[i].ID
				r.sum, r.size, r.err = c.rebuild(ctx, portal, r.id)
			}
		})
	}
	for i := range ready {
		next <- i
	}
	close(next)
	wg.Wait()
	same := 0
	var bytes int64
	for i, r := range results {
		row := ready[i]
		bytes += r.size
		switch {
		case r.err != nil:
			v.problem("rebuilding report %s from its snapshot: %v", r.id, r.err)
		case r.sum != deref(row.SHA256) || row.SizeBytes == nil || r.size != *row.SizeBytes:
			v.problem("report %s rebuilt from its snapshot has SHA-256 %s and %d bytes, its row says %s and %v: not a function of its snapshot",
				r.id, r.sum, r.size, deref(row.SHA256), row.SizeBytes)
		default:
			same++
		}
	}
	v.add("ready reports rebuilt from their creation snapshot after every import ended (jobs.WriteReport into SHA-256, no upload): same SHA-256 and size",
		fmt.Sprintf("%d / %d (%.1f MiB in %s)", same, len(ready), float64(bytes)/(1<<20), time.Since(t).Round(100*time.Millisecond)))
	return nil
}

// chaosPseudonymKey is the workers' pseudonym master key (TALLY_PSEUDONYM_KEY).
const chaosPseudonymKey = "tally chaos pseudonym master key, not a secret"

// rebuild writes report id's file again into SHA-256, as the worker builds
// it with the workers' key, in the kind of transaction the worker reads it in.
func (c *chaos) rebuild(ctx context.Context, portal *config.Portal, id string) (string, int64, error) {
	keys, err := report.NewPseudonymKeys([]byte(chaosPseudonymKey))
	if err != nil {
		return "", 0, err
	}
	h := sha256.New()
	cw := &countWriter{w: h}
	err = db.WithSnapshotTx(ctx, c.pool, func(tx pgx.Tx) error {
		rep, err := db.GetReportByID(ctx, tx, id)
		if err != nil {
			return err
		}
		_, err = jobs.WriteReport(ctx, tx, portal, keys, rep, cw)
		return err
	})
	return hex.EncodeToString(h.Sum(nil)), cw.n, err
}

// countWriter counts what it passes on.
type countWriter struct {
	w io.Writer
	n int64
}

func (w *countWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	w.n += int64(n)
	return n, err
}
