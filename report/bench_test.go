package report_test

import (
	"bufio"
	"encoding/csv"
	"io"
	"strconv"
	"testing"
	"time"

	"github.com/tally-compliance/tally/report"
)

func BenchmarkFormatAmount(b *testing.B) {
	buf := make([]byte, 0, 32)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf = report.FormatAmount(buf[:0], int64(i)*7919-1_000_000, "EUR")
	}
}

// benchRow is a typical line-item row: short ids, a counterparty with a
// comma (quoted), a plain description.
var benchRow = report.Transaction{
	ContractID: "CTR-000123", Currency: "EUR", Kind: "payment",
	OccurredAt: time.Date(2025, 3, 1, 10, 0, 0, 123456000, time.UTC),
	ExternalID: "tx-00000000123456", Counterparty: "Acme Trading, Ltd.", Description: "Invoice 2025-03 services",
	AmountMinor: 1234567,
}

// BenchmarkCSVRowHandWritten encodes one transaction row with the package's
// field encoder into a reused buffer flushed through a bufio.Writer.
func BenchmarkCSVRowHandWritten(b *testing.B) {
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	row := make([]byte, 0, 512)
	t := &benchRow
	b.ReportAllocs()
	for b.Loop() {
		r := append(row[:0], "transaction,"...)
		r = report.AppendTextField(r, t.ContractID)
		r = append(r, ',')
		r = report.AppendField(r, t.Currency)
		r = append(r, ',')
		r = report.AppendField(r, t.Kind)
		r = append(r, ',')
		r = t.OccurredAt.UTC().AppendFormat(r, time.RFC3339Nano)
		r = append(r, ',')
		r = report.AppendTextField(r, t.ExternalID)
		r = append(r, ',')
		r = report.AppendTextField(r, t.Counterparty)
		r = append(r, ',')
		r = report.AppendTextField(r, t.Description)
		r = append(r, ",,"...)
		r = report.FormatAmount(r, t.AmountMinor, t.Currency)
		r = append(r, '\n')
		row = r
		w.Write(r)
	}
	w.Flush()
}

// BenchmarkCSVRowEncodingCSV is the baseline: the same row through
// encoding/csv, building the []string record as a caller must.
func BenchmarkCSVRowEncodingCSV(b *testing.B) {
	w := csv.NewWriter(io.Discard)
	t := &benchRow
	rec := make([]string, 10)
	b.ReportAllocs()
	for b.Loop() {
		rec[0] = "transaction"
		rec[1] = t.ContractID
		rec[2] = t.Currency
		rec[3] = t.Kind
		rec[4] = t.OccurredAt.UTC().Format(time.RFC3339Nano)
		rec[5] = t.ExternalID
		rec[6] = t.Counterparty
		rec[7] = t.Description
		rec[8] = ""
		rec[9] = string(report.FormatAmount(nil, t.AmountMinor, t.Currency))
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
}

func benchSummary(b *testing.B, opts report.SummaryOpts) {
	w := report.NewSummaryWriter(io.Discard, opts)
	// 1,000 counterparties and a new group every 100 rows, as in a real scope.
	cps := make([]string, 1000)
	for i := range cps {
		cps[i] = "Counterparty " + strconv.Itoa(i)
	}
	t := benchRow
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			t.Kind = strconv.Itoa(i) // a new group
		}
		t.Counterparty = cps[i%len(cps)]
		if err := w.WriteTransaction(&t); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkSummaryWriterLineItemsPseudonyms(b *testing.B) {
	benchSummary(b, report.SummaryOpts{PseudonymKey: []byte("rpt_bench"), LineItems: true, Descriptions: true})
}

func BenchmarkSummaryWriterLineItemsNames(b *testing.B) {
	benchSummary(b, report.SummaryOpts{PseudonymKey: []byte("rpt_bench"), LineItems: true, CounterpartyNames: true, Descriptions: true})
}

func BenchmarkSummaryWriterNoLineItems(b *testing.B) {
	benchSummary(b, report.SummaryOpts{PseudonymKey: []byte("rpt_bench")})
}

// BenchmarkSummaryEncodingCSVBaseline writes the same line-item rows as
// BenchmarkSummaryWriterLineItemsNames through encoding/csv, for comparison.
func BenchmarkSummaryEncodingCSVBaseline(b *testing.B) {
	w := csv.NewWriter(io.Discard)
	t := benchRow
	rec := make([]string, 10)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		rec[0], rec[1], rec[2], rec[3] = "transaction", t.ContractID, t.Currency, t.Kind
		rec[4] = t.OccurredAt.UTC().Format(time.RFC3339Nano)
		rec[5], rec[6], rec[7], rec[8] = t.ExternalID, "Counterparty "+strconv.Itoa(i%1000), t.Description, ""
		rec[9] = string(report.FormatAmount(nil, t.AmountMinor, t.Currency))
		if err := w.Write(rec); err != nil {
			b.Fatal(err)
		}
	}
	w.Flush()
}
