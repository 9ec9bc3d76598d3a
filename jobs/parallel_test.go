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

// TestLargeReportReadInParallelRangesIsByteIdentical: a report on the large
// queue, read as many ranges at once on connections sharing one snapshot,
// gets the file that the sequential writer (jobs.WriteReport) writes, with
// names or with pseudonyms, and its ranges really are many.
func TestLargeReportReadInParallelRangesIsByteIdentical(t *testing.T) {
	// Not parallel: it cuts every large scope of the package into small ranges.
	defer jobs.SetRangeRows(40)()
	b := setup(t, &setupOpts{Rows: func(b *testBundle) []db.Transaction {
		rows := standardRows(b)
		r := rand.New(rand.NewPCG(3, 4))
		in := b.dataAsOf.Add(-time.Hour)
		span := int64(periodEnd.Sub(periodStart) / time.Microsecond)
		for i := range 1500 {
			rows = append(rows, db.Transaction{ApplicationID: b.app.ID, ContractID: fmt.Sprintf("CTR-%02d", r.IntN(25)),
				Currency: []string{"EUR", "JPY", "KWD"}[r.IntN(3)], Kind: []string{"payment", "refund"}[r.IntN(2)],
				OccurredAt: periodStart.Add(time.Duration(r.Int64N(span)) * time.Microsecond), AmountMinor: r.Int64N(2e9) - 1e9,
				Counterparty: fmt.Sprintf("cp %d", r.IntN(50)), Description: "d", ExternalID: fmt.Sprintf("p-%d", i), IngestedAt: in})
		}
		return rows
	}})
	keys, err := db.ScopeSplitKeys(b.ctx, b.pool, b.app.ID, 40, 2000)
	if err != nil || len(keys) < 10 {
		t.Fatalf("ScopeSplitKeys = %d keys, %v; want the scope cut into many ranges", len(keys), err)
	}
	opts := b.workerOpts(t)
	opts.ReportParallelism = 3
	startWorker(t, opts)
	for _, flags := range [][]string{
		{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions},
		{report.FlagLineItems},
	} {
		c := b.createCase(t, caseOpts{Flags: flags})
		rep, _ := b.createReport(t, c, reportOpts{Queue: jobs.QueueLarge})
		ready := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
		got, want := b.download(t, ready), rebuild(t, b, ready)
		if !bytes.Equal(got, want) {
			t.Fatalf("flags %v: the file read in ranges (%d bytes) differs from the sequential one (%d bytes)", flags, len(got), len(want))
		}
		if sha256Hex(got) != *ready.SHA256 {
			t.Fatalf("flags %v: the file's SHA-256 is not the report's", flags)
		}
	}
}
