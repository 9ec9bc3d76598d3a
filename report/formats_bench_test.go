package report_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"io"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tally-compliance/tally/report"
)

// benchRows returns n line-item rows in report order over 300 contracts;
// TALLY_BENCH_ROWS overrides n (e.g. 1000000).
func benchRows(n int) []report.Transaction {
	if v, err := strconv.Atoi(os.Getenv("TALLY_BENCH_ROWS")); err == nil && v > 0 {
		n = v
	}
	rows := make([]report.Transaction, n)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		rows[i] = benchRow
		rows[i].ContractID = "CTR-" + strconv.Itoa(100000+i*300/n)
		rows[i].OccurredAt = base.Add(time.Duration(i) * time.Second)
		rows[i].ExternalID = "tx-" + strconv.Itoa(i)
		rows[i].AmountMinor = int64(i%100000) - 50000
	}
	return rows
}

func peakHeapMiB(b *testing.B, run func()) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	run()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(1<<20), "MiB-alloc/op")
	b.ReportMetric(float64(after.HeapSys)/float64(1<<20), "MiB-heap-sys")
}

// BenchmarkCSVLineItems is the CSV baseline of BenchmarkWorkbookLineItems.
func BenchmarkCSVLineItems(b *testing.B) {
	rows := benchRows(100_000)
	opts := report.SummaryOptsFromFlags([]byte("rep_bench"), []string{"line_items", "counterparty_names", "descriptions"})
	for b.Loop() {
		w := report.NewSummaryWriter(io.Discard, opts)
		for i := range rows {
			_ = w.WriteTransaction(&rows[i])
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows)), "rows")
}

// BenchmarkWorkbookLineItems writes the workbook of 100k rows (or
// TALLY_BENCH_ROWS) with every disclosure flag.
func BenchmarkWorkbookLineItems(b *testing.B) {
	rows := benchRows(100_000)
	opts := report.WorkbookOpts{Summary: report.SummaryOptsFromFlags([]byte("rep_bench"), []string{"line_items", "counterparty_names", "descriptions"}),
		Scope: formatScope, TempDir: b.TempDir()}
	var size int
	for b.Loop() {
		peakHeapMiB(b, func() {
			cw := &countingWriter{}
			w, err := report.NewWorkbookWriter(cw, opts)
			if err != nil {
				b.Fatal(err)
			}
			for i := range rows {
				if err := w.WriteTransaction(&rows[i]); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Close(); err != nil {
				b.Fatal(err)
			}
			size = cw.n
		})
	}
	b.ReportMetric(float64(len(rows)), "rows")
	b.ReportMetric(float64(size)/float64(1<<20), "MiB-file")
}

// BenchmarkAttestation lays out the attestation of a case of 300 contracts
// × 3 currencies × 6 kinds (5,400 subtotals), whatever its row count.
func BenchmarkAttestation(b *testing.B) {
	var groups []report.Group
	for c := range 300 {
		for _, cur := range []string{"EUR", "JPY", "USD"} {
			for _, k := range []string{"adjustment", "chargeback", "fee", "payment", "payout", "refund"} {
				groups = append(groups, report.Group{ContractID: "CTR-" + strconv.Itoa(100000+c), Currency: cur, Kind: k, Count: 185, SumMinor: 123456789})
			}
		}
	}
	var size int
	for b.Loop() {
		cw := &countingWriter{}
		w := report.NewAttestationWriter(cw, report.AttestationOpts{Scope: formatScope})
		for i := range groups {
			_ = w.WriteGroup(&groups[i])
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
		size = cw.n
	}
	b.ReportMetric(float64(size)/float64(1<<10), "KiB-file")
}

// BenchmarkGzipCSV compresses a transaction_summary CSV as a download
// does: klauspost's gzip (the one used) against the standard library's.
func BenchmarkGzipCSV(b *testing.B) {
	var csv bytes.Buffer
	rows := benchRows(100_000)
	w := report.NewSummaryWriter(&csv, report.SummaryOptsFromFlags([]byte("rep_bench"), []string{"line_items"}))
	for i := range rows {
		_ = w.WriteTransaction(&rows[i])
	}
	if _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
	for _, impl := range []struct {
		name string
		new  func(io.Writer) io.WriteCloser
	}{
		{"klauspost", func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) }},
		{"klauspost-bestspeed", func(w io.Writer) io.WriteCloser { zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed); return zw }},
		{"stdlib", func(w io.Writer) io.WriteCloser { return stdgzip.NewWriter(w) }},
	} {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(csv.Len()))
			var out int
			for b.Loop() {
				cw := &countingWriter{}
				zw := impl.new(cw)
				if _, err := zw.Write(csv.Bytes()); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
				out = cw.n
			}
			b.ReportMetric(float64(csv.Len())/float64(out), "ratio")
		})
	}
}

type countingWriter struct{ n int }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }
