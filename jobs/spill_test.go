package jobs_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
)

// TestLargeReportSpilledIsByteIdentical: a report on the large queue, read
// once in the table's order into buckets of groups and sorted by the
// worker, gets the file the sequential writer writes, with names or with
// pseudonyms, with groups larger than a bucket cut by time; and so it does
// when it cannot spill (no temporary directory, or a group whose rows
// crowd into one instant past what a bucket may sort) and reads ranges
// instead.
func TestLargeReportSpilledIsByteIdentical(t *testing.T) {
	// Not parallel: it changes how every large scope of the package is read.
	b := setup(t, &setupOpts{Rows: func(b *testBundle) []db.Transaction {
		rows := standardRows(b)
		r := rand.New(rand.NewPCG(5, 6))
		in := b.dataAsOf.Add(-time.Hour)
		span := int64(periodEnd.Sub(periodStart) / time.Microsecond)
		// Ties on occurred_at within a group: the id orders them.
		tied := periodStart.Add(time.Duration(r.Int64N(span)) * time.Microsecond)
		for i := range 1500 {
			at := periodStart.Add(time.Duration(r.Int64N(span)) * time.Microsecond)
			if i%7 == 0 {
				at = tied
			}
			rows = append(rows, db.Transaction{ApplicationID: b.app.ID, ContractID: fmt.Sprintf("CTR-%02d", r.IntN(25)),
				Currency: []string{"EUR", "JPY", "KWD"}[r.IntN(3)], Kind: []string{"payment", "refund"}[r.IntN(2)],
				OccurredAt: at, AmountMinor: r.Int64N(2e9) - 1e9,
				Counterparty: fmt.Sprintf("cp %d", r.IntN(50)), Description: []string{"d", "", "with, comma", "ünï \"q\""}[r.IntN(4)],
				ExternalID: fmt.Sprintf("s-%d", i), IngestedAt: in})
		}
		// A group whose rows all share one instant.
		for i := range 12 {
			rows = append(rows, db.Transaction{ApplicationID: b.app.ID, ContractID: "CTR-TIED", Currency: "EUR", Kind: "fee",
				OccurredAt: tied, AmountMinor: int64(i), Counterparty: "cp", Description: "tied", ExternalID: fmt.Sprintf("t-%d", i), IngestedAt: in})
		}
		return rows
	}})
	// Table statistics, so that the scan can be cut into block ranges.
	if _, err := b.pool.Exec(b.ctx, `ANALYZE transactions`); err != nil {
		t.Fatal(err)
	}
	opts := b.workerOpts(t)
	opts.ReportParallelism = 3
	startWorker(t, opts)
	for _, tc := range []struct {
		name      string
		rangeRows int64
		scanMin   int64 // table blocks per scanning connection; 0: the default
		dir       string
		maxBytes  int64 // the temporary file's bound; 0: the worker's
		spills    bool
	}{
		{"spilled", 40, 0, "", 0, true},
		{"spilled, scanned on three connections", 40, 1, "", 0, true},
		{"one bucket", 1_000_000, 1, "", 0, true},
		{"no temporary directory", 40, 1, "/nonexistent/tally", 0, false},
		{"temporary file over its bound", 40, 1, "", 4 << 10, false},
		{"groups larger than a bucket, cut by time", 2, 1, "", 0, true},
		{"a group crowded into one instant", 1, 0, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer jobs.SetRangeRows(tc.rangeRows)()
			defer jobs.SetScanBlocksMin(tc.scanMin)()
			defer jobs.SetSpillDir(tc.dir)()
			defer jobs.SetSpillMax(tc.maxBytes)()
			for _, flags := range [][]string{
				{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions},
				{report.FlagLineItems},
			} {
				before := jobs.SpilledScopes()
				c := b.createCase(t, caseOpts{Flags: flags})
				rep, _ := b.createReport(t, c, reportOpts{Queue: jobs.QueueLarge})
				ready := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
				if spilled := jobs.SpilledScopes() > before; spilled != tc.spills {
					t.Fatalf("flags %v: spilled %v, want %v", flags, spilled, tc.spills)
				}
				got, want := b.download(t, ready), rebuild(t, b, ready)
				if !bytes.Equal(got, want) {
					t.Fatalf("flags %v: the file (%d bytes) differs from the sequential one (%d bytes)", flags, len(got), len(want))
				}
				if sha256Hex(got) != *ready.SHA256 {
					t.Fatalf("flags %v: the file's SHA-256 is not the report's", flags)
				}
			}
		})
	}
}
