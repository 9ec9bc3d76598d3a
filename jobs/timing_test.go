package jobs_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
)

// TestGenerateReportLargeScopeTiming builds a 100,000-row line-items report
// and logs how long it took. It measures; it does not assert a speed.
func TestGenerateReportLargeScopeTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 100,000 rows; skipped with -short")
	}
	t.Parallel()
	const n = 100_000
	b := setup(t, &setupOpts{Rows: func(b *testBundle) []db.Transaction {
		rows := make([]db.Transaction, n)
		currencies := []string{"EUR", "JPY", "KWD"}
		kinds := []string{"payment", "refund", "fee"}
		for i := range rows {
			rows[i] = db.Transaction{
				ApplicationID: b.app.ID, ContractID: fmt.Sprintf("CTR-%03d", i%50), ExternalID: fmt.Sprintf("ext-%07d", i),
				OccurredAt:  periodStart.Add(time.Duration(i) * 17 * time.Second),
				AmountMinor: int64(i%20000) - 10000, Currency: currencies[i%3], Kind: kinds[(i/3)%3],
				Counterparty: fmt.Sprintf("Counterparty %d, Ltd.", i%997), Description: "monthly service fee",
				IngestedAt: b.dataAsOf.Add(-time.Hour),
			}
		}
		return rows
	}})
	startWorker(t, b.workerOpts(t))
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"LineItemsPseudonyms", []string{"line_items", "descriptions"}},
		{"LineItemsNames", []string{"line_items", "counterparty_names", "descriptions"}},
		{"SubtotalsOnly", nil},
	} {
		c := b.createCase(t, caseOpts{Flags: tc.flags})
		start := time.Now()
		rep, _ := b.createReport(t, c, reportOpts{})
		r := b.waitReport(t, rep.ID, 5*time.Minute, db.ReportReady, db.ReportFailed)
		took := time.Since(start)
		if r.Status != db.ReportReady {
			t.Fatalf("%s: status %s", tc.name, r.Status)
		}
		var build time.Duration
		if r.StartedAt != nil && r.CompletedAt != nil {
			build = r.CompletedAt.Sub(*r.StartedAt)
		}
		t.Logf("%s: %d rows in scope, %d bytes; insert to ready %s (running to ready %s, %.0f rows/s)",
			tc.name, n, *r.SizeBytes, took.Round(time.Millisecond), build.Round(time.Millisecond), float64(n)/build.Seconds())
	}
}
