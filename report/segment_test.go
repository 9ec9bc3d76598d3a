package report_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/report"
)

// TestSummarySegmentsMatchOneWriter: a file written as segments of whole
// groups (each by a writer of its own), counted into the writer of the
// whole file, has the bytes and the summary of the file written by one
// writer, wherever the segments are cut, with line items or pseudonyms.
func TestSummarySegmentsMatchOneWriter(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 16))
	var txs []report.Transaction
	at := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	for c := range 6 {
		for _, cur := range []string{"EUR", "JPY", "USD"} {
			for _, kind := range []string{"credit", "debit"} {
				for i := range rng.IntN(5) {
					txs = append(txs, report.Transaction{ContractID: fmt.Sprintf("contract-%02d", c), Currency: cur, Kind: kind,
						OccurredAt: at.Add(time.Duration(i) * time.Hour), ExternalID: fmt.Sprintf("x-%d", len(txs)),
						Counterparty: fmt.Sprintf("cp %d", rng.IntN(4)), Description: "d", AmountMinor: rng.Int64N(2e12) - 1e12})
				}
			}
		}
	}
	// Group starts: the only places a segment may be cut.
	var starts []int
	for i := range txs {
		if i == 0 || txs[i].ContractID != txs[i-1].ContractID || txs[i].Currency != txs[i-1].Currency || txs[i].Kind != txs[i-1].Kind {
			starts = append(starts, i)
		}
	}
	for _, opts := range []report.SummaryOpts{
		{LineItems: true, CounterpartyNames: true, Descriptions: true},
		{LineItems: true, PseudonymKey: []byte("0123456789abcdef0123456789abcdef")},
	} {
		var want bytes.Buffer
		one := report.NewSummaryWriter(&want, opts)
		for i := range txs {
			if err := one.WriteTransaction(&txs[i]); err != nil {
				t.Fatal(err)
			}
		}
		wantSum, err := one.Close()
		if err != nil {
			t.Fatal(err)
		}
		for cuts := range 5 {
			// cuts random group starts, in order.
			var at []int
			for _, s := range starts[1:] {
				if rng.IntN(len(starts)) < cuts*3 {
					at = append(at, s)
				}
			}
			at = append(append([]int{0}, at...), len(txs))
			var got bytes.Buffer
			whole := report.NewSummaryWriter(&got, opts)
			if err := whole.Flush(); err != nil {
				t.Fatal(err)
			}
			for k := range len(at) - 1 {
				seg := report.NewSummarySegmentWriter(&got, opts)
				for i := at[k]; i < at[k+1]; i++ {
					if err := seg.WriteTransaction(&txs[i]); err != nil {
						t.Fatal(err)
					}
				}
				s, err := seg.CloseSegment()
				if err != nil {
					t.Fatal(err)
				}
				if err := whole.AddSegment(s); err != nil {
					t.Fatal(err)
				}
			}
			gotSum, err := whole.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("segments cut at %v: %d bytes differ from one writer's %d:\n%s\n---\n%s", at, got.Len(), want.Len(), got.String(), want.String())
			}
			if diff := cmp.Diff(wantSum, gotSum); diff != "" {
				t.Fatalf("segments cut at %v: summary mismatch (-one writer +segments):\n%s", at, diff)
			}
		}
	}
}
