package report_test

import (
	"bytes"
	"encoding/csv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/xuri/excelize/v2"

	"github.com/tally-compliance/tally/report"
)

// formatRows returns n transactions in report order, with non-ASCII
// names, formula-looking text, every currency exponent, and one amount
// beyond 15 digits.
func formatRows(n int) []report.Transaction {
	r := rand.New(rand.NewPCG(7, 13))
	contracts := []string{"c-1", "c-2", "=SUM(A1)", "Ölwerk"}
	currencies := []string{"EUR", "JPY", "KWD", "CLF"}
	kinds := []string{"fee", "payment", "refund"}
	names := []string{"Zoë Ångström", "=cmd|' /C calc'!A0", "Иван", "", "plain"}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]report.Transaction, n)
	for i := range out {
		out[i] = report.Transaction{
			ContractID: contracts[r.IntN(len(contracts))], Currency: currencies[r.IntN(len(currencies))],
			Kind: kinds[r.IntN(len(kinds))], OccurredAt: base.Add(time.Duration(r.IntN(1e6)) * time.Millisecond * 1000),
			ExternalID: "ext-" + strconv.Itoa(i), Counterparty: names[r.IntN(len(names))],
			Description: "desc, \"quoted\" " + strconv.Itoa(i), AmountMinor: r.Int64N(2_000_000) - 1_000_000,
		}
	}
	out[n/2].AmountMinor = 1<<53 + 7 // beyond 2^53: text
	slices.SortStableFunc(out, func(a, b report.Transaction) int {
		return cmp3(a.ContractID, b.ContractID, a.Currency, b.Currency, a.Kind, b.Kind, a.OccurredAt, b.OccurredAt)
	})
	return out
}

func cmp3(a1, b1, a2, b2, a3, b3 string, at, bt time.Time) int {
	for _, p := range [][2]string{{a1, b1}, {a2, b2}, {a3, b3}} {
		if c := strings.Compare(p[0], p[1]); c != 0 {
			return c
		}
	}
	return at.Compare(bt)
}

var formatScope = report.ScopeInfo{
	ReportID: "rep_01test", CaseID: "case_01test",
	PeriodStart: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), PeriodEnd: time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC),
	DisclosureFlags: []string{"line_items"}, ContractFilters: nil,
	DataAsOf:    time.Date(2025, 4, 2, 10, 0, 0, 0, time.UTC),
	GeneratedAt: time.Date(2025, 4, 2, 10, 0, 1, 0, time.UTC), GeneratedBy: "Ann Ödegaard <ann@acme.test>",
}

func writeCSV(t *testing.T, rows []report.Transaction, opts report.SummaryOpts) [][]string {
	t.Helper()
	var buf bytes.Buffer
	w := report.NewSummaryWriter(&buf, opts)
	for i := range rows {
		if err := w.WriteTransaction(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs[1:]
}

func writeWorkbook(t *testing.T, rows []report.Transaction, opts report.WorkbookOpts) ([]byte, report.Summary) {
	t.Helper()
	var buf bytes.Buffer
	w, err := report.NewWorkbookWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := w.WriteTransaction(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), sum
}

// unguard undoes the CSV's formula guard: workbook cells are typed and
// need none.
func unguard(s string) string {
	if len(s) > 1 && s[0] == '\'' && strings.ContainsRune("=+-@\t\r", rune(s[1])) {
		return s[1:]
	}
	return s
}

// cellAmount reads an amount cell back as the CSV writes it.
func cellAmount(t *testing.T, raw, currency, note string) string {
	t.Helper()
	if note != "" {
		return raw // text: the exact decimal
	}
	v, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		t.Fatalf("amount %q: %v", raw, err)
	}
	exp, _ := report.Exponent(currency)
	return strconv.FormatFloat(v, 'f', exp, 64)
}

// TestWorkbookMatchesCSV reads the workbook back with excelize: every
// transaction, subtotal and total equals the CSV's for the same input,
// across a rollover of the Transactions sheets.
func TestWorkbookMatchesCSV(t *testing.T) {
	t.Parallel()
	rows := formatRows(2500)
	for _, flags := range [][]string{{"line_items"}, {"line_items", "counterparty_names", "descriptions"}} {
		opts := report.SummaryOptsFromFlags([]byte("rep_01test"), flags)
		want := writeCSV(t, rows, opts)
		data, sum := writeWorkbook(t, rows, report.WorkbookOpts{Summary: opts, Scope: formatScope, SheetRows: 1000})

		f, err := excelize.OpenReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		wantSheets := []string{"Summary", "Transactions", "Transactions 2", "Transactions 3"}
		if diff := cmp.Diff(wantSheets, f.GetSheetList()); diff != "" {
			t.Fatalf("sheets mismatch (-want +got):\n%s", diff)
		}
		// Transactions: 999 + 999 + 502 data rows, each equal to the CSV's.
		var got [][]string
		for _, sheet := range wantSheets[1:] {
			recs, err := f.GetRows(sheet, excelize.Options{RawCellValue: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) > 1000 {
				t.Errorf("%s has %d rows, want at most 1000", sheet, len(recs))
			}
			if recs[0][0] != "contract_id" {
				t.Errorf("%s header = %v", sheet, recs[0])
			}
			for _, r := range recs[1:] {
				r = append(r, make([]string, 9-len(r))...)
				serial, err := strconv.ParseFloat(r[3], 64)
				if err != nil {
					t.Fatalf("occurred_at %q is not a date cell", r[3])
				}
				at, err := excelize.ExcelDateToTime(serial, false)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, []string{"transaction", r[0], r[1], r[2], at.Round(time.Millisecond).Format(time.RFC3339Nano),
					r[4], r[5], r[6], "", cellAmount(t, r[7], r[1], r[8])})
			}
		}
		var wantTx, wantSub, wantTotal [][]string
		for _, r := range want {
			switch r[0] {
			case "transaction":
				for _, i := range []int{1, 5, 6, 7} {
					r[i] = unguard(r[i])
				}
				wantTx = append(wantTx, r)
			case "subtotal":
				wantSub = append(wantSub, []string{unguard(r[1]), r[2], r[3], r[8], r[9]})
			case "total":
				wantTotal = append(wantTotal, []string{r[2], r[8], r[9]})
			}
		}
		if diff := cmp.Diff(wantTx, got); diff != "" {
			t.Errorf("%v: transactions mismatch (-csv +xlsx):\n%s", flags, diff)
		}

		// Summary: the totals and subtotals tables.
		recs, err := f.GetRows("Summary", excelize.Options{RawCellValue: true})
		if err != nil {
			t.Fatal(err)
		}
		var gotSub, gotTotal [][]string
		var noted int
		for _, r := range recs {
			if len(r) == 0 {
				continue
			}
			r = append(r, make([]string, 7-len(r))...)
			switch r[0] {
			case "total":
				gotTotal = append(gotTotal, []string{r[1], r[2], cellAmount(t, r[3], r[1], r[4])})
			case "subtotal":
				if r[6] != "" {
					noted++
				}
				gotSub = append(gotSub, []string{r[1], r[2], r[3], r[4], cellAmount(t, r[5], r[2], r[6])})
			}
		}
		if diff := cmp.Diff(wantSub, gotSub); diff != "" {
			t.Errorf("%v: subtotals mismatch (-csv +xlsx):\n%s", flags, diff)
		}
		if diff := cmp.Diff(wantTotal, gotTotal); diff != "" {
			t.Errorf("%v: totals mismatch (-csv +xlsx):\n%s", flags, diff)
		}
		if noted == 0 {
			t.Error("the subtotal beyond 15 digits is not flagged")
		}
		if sum.RowCount != int64(len(rows)) {
			t.Errorf("row count = %d, want %d", sum.RowCount, len(rows))
		}
		// The amount beyond 2^53 is a text cell holding the exact decimal.
		for _, sheet := range wantSheets[1:] {
			recs, _ := f.GetRows(sheet)
			for i, r := range recs {
				if len(r) == 9 && r[8] == report.AmountAsTextNote {
					cell, _ := excelize.CoordinatesToCellName(8, i+1)
					typ, _ := f.GetCellType(sheet, cell)
					if typ != excelize.CellTypeInlineString || r[7] != string(report.FormatAmount(nil, 1<<53+7, r[1])) {
						t.Errorf("big amount cell = %q (type %v)", r[7], typ)
					}
				}
			}
		}
		// No formulas anywhere: the formula-looking contract is a string.
		if formula, _ := f.GetCellFormula("Transactions", "A2"); formula != "" {
			t.Errorf("A2 has a formula %q", formula)
		}
		_ = f.Close()
	}
}

// TestWorkbookSubtotalsOnly: with line items off the workbook has only the
// Summary sheet, and groups give the same file as their transactions.
func TestWorkbookSubtotalsOnly(t *testing.T) {
	t.Parallel()
	rows := formatRows(300)
	opts := report.WorkbookOpts{Summary: report.SummaryOptsFromFlags([]byte("rep_01test"), nil), Scope: formatScope}
	fromRows, sum := writeWorkbook(t, rows, opts)
	var buf bytes.Buffer
	w, err := report.NewWorkbookWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groupsOf(rows) {
		if err := w.WriteGroup(&g); err != nil {
			t.Fatal(err)
		}
	}
	sum2, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fromRows, buf.Bytes()) {
		t.Error("groups and rows give different workbooks")
	}
	if diff := cmp.Diff(sum, sum2); diff != "" {
		t.Errorf("summary mismatch (-rows +groups):\n%s", diff)
	}
	f, err := excelize.OpenReader(bytes.NewReader(fromRows))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.GetSheetList(); !slices.Equal(got, []string{"Summary"}) {
		t.Errorf("sheets = %v, want [Summary]", got)
	}
}

// TestWorkbookDeterministic: a rebuild writes the same bytes (zip entries in
// name order, no clock).
func TestWorkbookDeterministic(t *testing.T) {
	t.Parallel()
	rows := formatRows(1500)
	opts := report.WorkbookOpts{Summary: report.SummaryOptsFromFlags([]byte("rep_01test"), []string{"line_items"}), Scope: formatScope, SheetRows: 500}
	a, _ := writeWorkbook(t, rows, opts)
	for range 3 {
		if b, _ := writeWorkbook(t, rows, opts); !bytes.Equal(a, b) {
			t.Fatal("two builds of the same workbook differ")
		}
	}
}

func groupsOf(rows []report.Transaction) []report.Group {
	var out []report.Group
	for _, r := range rows {
		n := len(out)
		if n == 0 || out[n-1].ContractID != r.ContractID || out[n-1].Currency != r.Currency || out[n-1].Kind != r.Kind {
			out = append(out, report.Group{ContractID: r.ContractID, Currency: r.Currency, Kind: r.Kind})
			n++
		}
		out[n-1].Count++
		out[n-1].SumMinor += r.AmountMinor
	}
	return out
}

// TestAttestationPDF reads the PDF back with pdftotext: the scope, the
// totals (equal to the CSV's) and the data files' SHA-256 are there, the
// subtotal tables span pages with their header repeated, and every page is
// numbered. The first page is rendered to artifacts/pdf/ for a person to
// look at.
func TestAttestationPDF(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"pdftotext", "pdftoppm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's poppler-utils (.ci/run does)", tool)
		}
	}
	rows := formatRows(3000)
	// Many contracts, so that the subtotal tables break across pages.
	for i := range rows {
		rows[i].ContractID = "contract-" + strconv.Itoa(i%90) + "-" + rows[i].ContractID
	}
	slices.SortStableFunc(rows, func(a, b report.Transaction) int {
		return cmp3(a.ContractID, b.ContractID, a.Currency, b.Currency, a.Kind, b.Kind, a.OccurredAt, b.OccurredAt)
	})
	csvRows := writeCSV(t, rows, report.SummaryOptsFromFlags([]byte("rep_01test"), nil))
	files := []report.DataFile{{ReportID: "rep_01csv", ReportType: "transaction_summary", SizeBytes: 1234,
		CompletedAt: formatScope.DataAsOf, SHA256: strings.Repeat("ab", 32)}}
	var buf bytes.Buffer
	w := report.NewAttestationWriter(&buf, report.AttestationOpts{Scope: formatScope, DataFiles: files})
	for _, g := range groupsOf(rows) {
		if err := w.WriteGroup(&g); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.Close()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	pdfPath := filepath.Join(dir, "attestation.pdf")
	if err := os.WriteFile(pdfPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", pdfPath, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	text := string(out)
	pages := strings.Split(text, "\f")
	nPages := len(pages) - 1 // pdftotext ends every page with a form feed
	if nPages < 3 {
		t.Fatalf("%d pages, want subtotal tables across several", nPages)
	}
	fields := func(line string) []string { return strings.Fields(line) }
	var gotTotals [][]string
	for _, line := range strings.Split(pages[0], "\n") {
		if f := fields(line); len(f) == 3 && slices.Contains([]string{"EUR", "JPY", "KWD", "CLF"}, f[0]) {
			gotTotals = append(gotTotals, f)
		}
	}
	var wantTotals [][]string
	for _, r := range csvRows {
		if r[0] == "total" {
			wantTotals = append(wantTotals, []string{r[2], r[8], r[9]})
			if sum.Totals[r[2]].Amount != r[9] {
				t.Errorf("summary total %s = %s, want %s", r[2], sum.Totals[r[2]].Amount, r[9])
			}
		}
	}
	if diff := cmp.Diff(wantTotals, gotTotals); diff != "" {
		t.Errorf("totals mismatch (-csv +pdf):\n%s", diff)
	}
	for _, want := range []string{"Case attestation", "case_01test", "rep_01test",
		"2025-01-01 00:00:00 UTC to 2025-04-01 00:00:00 UTC", "line_items", "all contracts",
		"Data as of", "2025-04-02 10:00:00 UTC", "Ann Ödegaard <ann@acme.test>", "SHA-256 " + strings.Repeat("ab", 32)} {
		if !strings.Contains(pages[0], want) {
			t.Errorf("first page lacks %q:\n%s", want, pages[0])
		}
	}
	for i, p := range pages[:nPages] {
		if want := "Page " + strconv.Itoa(i+1) + " of " + strconv.Itoa(nPages); !strings.Contains(p, want) {
			t.Errorf("page %d lacks %q", i+1, want)
		}
		if !strings.Contains(p, "Generated at 2025-04-02 10:00:01 UTC") {
			t.Errorf("page %d lacks the generated-at footer", i+1)
		}
		if i > 0 && strings.Contains(p, "Transactions") && !strings.Contains(p, "Currency") {
			t.Errorf("page %d continues a table without its header", i+1)
		}
	}
	if !strings.Contains(text, "(continued)") {
		t.Error("no subtotal table continues on a new page")
	}
	// Every subtotal of the CSV is in the PDF.
	for _, r := range csvRows {
		if r[0] == "subtotal" && !strings.Contains(text, r[9]) {
			t.Errorf("subtotal %v missing", r)
		}
	}
	// No line items: no transaction's external id.
	if strings.Contains(text, "ext-1") {
		t.Error("the attestation shows a line item")
	}

	// The first page as PNG, for a person to look at.
	artifacts := filepath.Join("..", "artifacts", "pdf")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := filepath.Join(artifacts, "case-attestation-page1")
	if out, err := exec.Command("pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", pdfPath, prefix).CombinedOutput(); err != nil {
		t.Fatalf("pdftoppm: %v: %s", err, out)
	}
	if st, err := os.Stat(prefix + ".png"); err != nil || st.Size() == 0 {
		t.Fatalf("no PNG of the first page: %v", err)
	}

	// A rebuild gives the same bytes.
	var again bytes.Buffer
	w = report.NewAttestationWriter(&again, report.AttestationOpts{Scope: formatScope, DataFiles: files})
	for _, g := range groupsOf(rows) {
		_ = w.WriteGroup(&g)
	}
	if _, err := w.Close(); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("two builds of the same attestation differ (err %v)", err)
	}
}
