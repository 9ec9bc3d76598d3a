package report

import (
	"archive/zip"
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/flate"
	"github.com/xuri/excelize/v2"
)

// ExcelMaxRows is the number of rows of an Excel worksheet.
const ExcelMaxRows = 1_048_576

// MaxNumericMinor is the largest magnitude of minor units written as a
// number cell. A spreadsheet holds numbers as IEEE 754 doubles (exact for
// integers up to 2^53) and Excel shows 15 significant digits, so beyond 15
// digits a number cell would show or keep a different amount. Such amounts
// (which include every amount above 2^53 minor units) are written as text
// cells holding the exact decimal, flagged in the row's amount_note.
const MaxNumericMinor = 999_999_999_999_999

// AmountAsTextNote is the amount_note of an amount written as text.
const AmountAsTextNote = "exact amount as text: more than 15 digits"

// WorkbookOpts configure a WorkbookWriter.
type WorkbookOpts struct {
	// Summary holds the disclosure options, as for the CSV.
	Summary SummaryOpts
	// Scope is printed on the Summary sheet.
	Scope ScopeInfo
	// SheetRows is the most rows, header included, of one Transactions
	// sheet; the next rows go to a new sheet. Zero means ExcelMaxRows.
	SheetRows int
	// TempDir holds the spooled sheets; empty means os.TempDir().
	TempDir string
}

// transactionColumns are the columns of a Transactions sheet: the CSV's
// transaction fields, then the amount's note.
var transactionColumns = []any{"contract_id", "currency", "kind", "occurred_at", "external_id", "counterparty", "description", "amount", "amount_note"}

var transactionWidths = []float64{18, 10, 12, 24, 22, 24, 40, 18, 24}

type subtotalLine struct {
	contract, currency, kind string
	count, minor             int64
}

// WorkbookWriter writes the transaction_summary as an XLSX workbook: a
// Summary sheet (scope, totals per currency, subtotals per contract,
// currency and kind) and, with line items, Transactions sheets of at most
// SheetRows rows each. It takes the same input, in the same order, as
// SummaryWriter and computes subtotals and totals the same way, so both
// files of a snapshot agree. Cells are typed (numbers, dates, inline
// strings) and never formulas, so no value can be taken for one.
//
// Transaction rows stream through excelize's StreamWriter, which spills to
// temporary files; only the subtotals (one per contract, currency and kind)
// are held in memory, because the Summary sheet shows totals above them.
// The workbook is written to the output by Close, with its zip entries in
// name order so that a rebuild gives the same bytes.
type WorkbookWriter struct {
	out  io.Writer
	opts WorkbookOpts
	f    *excelize.File
	err  error // sticky

	amountStyles             [5]int // by currency exponent
	dateStyle, headerStyle   int
	tx                       *excelize.StreamWriter
	txSheets, txRow          int
	row                      []any
	pseudonyms               *pseudonymizer
	inGroup                  bool
	contract, currency, kind string
	groupCount               int64
	groupSum                 int128
	groups                   []subtotalLine
	totals                   groupTotals
	rowCount                 int64
	closed                   bool
}

// NewWorkbookWriter returns a writer of a workbook to out.
func NewWorkbookWriter(out io.Writer, opts WorkbookOpts) (*WorkbookWriter, error) {
	if opts.SheetRows == 0 {
		opts.SheetRows = ExcelMaxRows
	}
	if opts.SheetRows < 2 || opts.SheetRows > ExcelMaxRows {
		return nil, fmt.Errorf("report: SheetRows %d outside 2..%d", opts.SheetRows, ExcelMaxRows)
	}
	f := excelize.NewFile(excelize.Options{TmpDir: opts.TempDir})
	w := &WorkbookWriter{out: out, opts: opts, f: f, row: make([]any, len(transactionColumns))}
	if opts.Summary.LineItems && !opts.Summary.CounterpartyNames {
		w.pseudonyms = newPseudonymizer(opts.Summary.PseudonymKey)
	}
	if err := w.init(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("creating workbook: %w", err)
	}
	return w, nil
}

func (w *WorkbookWriter) init() error {
	if err := w.f.SetSheetName("Sheet1", "Summary"); err != nil {
		return err
	}
	for exp, format := range []string{"0", "0.0", "0.00", "0.000", "0.0000"} {
		id, err := w.f.NewStyle(&excelize.Style{CustomNumFmt: &format})
		if err != nil {
			return err
		}
		w.amountStyles[exp] = id
	}
	date := "yyyy-mm-dd hh:mm:ss.000"
	var err error
	if w.dateStyle, err = w.f.NewStyle(&excelize.Style{CustomNumFmt: &date}); err != nil {
		return err
	}
	w.headerStyle, err = w.f.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	return err
}

// amount returns the cell of an amount and its note.
func (w *WorkbookWriter) amount(minor int64, currency string) (excelize.Cell, string) {
	exp, _ := Exponent(currency) // checked when its group began
	if minor < -MaxNumericMinor || minor > MaxNumericMinor {
		return excelize.Cell{Value: string(formatAmount(nil, minor, currency))}, AmountAsTextNote
	}
	// float64(minor) is exact and the division correctly rounded, so the
	// double is the nearest to the decimal, which has at most 15 digits.
	return excelize.Cell{StyleID: w.amountStyles[exp], Value: float64(minor) / pow10(exp)}, ""
}

func (w *WorkbookWriter) date(t time.Time) excelize.Cell {
	return excelize.Cell{StyleID: w.dateStyle, Value: t.UTC()}
}

func (w *WorkbookWriter) header(values []any) []any {
	out := make([]any, len(values))
	for i, v := range values {
		out[i] = excelize.Cell{StyleID: w.headerStyle, Value: v}
	}
	return out
}

// nextSheet flushes the current Transactions sheet and starts another.
func (w *WorkbookWriter) nextSheet() error {
	if w.tx != nil {
		if err := w.tx.Flush(); err != nil {
			return err
		}
	}
	w.txSheets++
	name := "Transactions"
	if w.txSheets > 1 {
		name += " " + strconv.Itoa(w.txSheets)
	}
	if _, err := w.f.NewSheet(name); err != nil {
		return err
	}
	sw, err := w.f.NewStreamWriter(name)
	if err != nil {
		return err
	}
	for i, width := range transactionWidths {
		if err := sw.SetColWidth(i+1, i+1, width); err != nil {
			return err
		}
	}
	if err := sw.SetPanes(&excelize.Panes{Freeze: true, YSplit: 1, TopLeftCell: "A2", ActivePane: "bottomLeft"}); err != nil {
		return err
	}
	if err := sw.SetRow("A1", w.header(transactionColumns)); err != nil {
		return err
	}
	w.tx, w.txRow = sw, 1
	return nil
}

// WriteTransaction adds one transaction, in report order.
func (w *WorkbookWriter) WriteTransaction(t *Transaction) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	if !w.inGroup || t.ContractID != w.contract || t.Currency != w.currency || t.Kind != w.kind {
		if err := w.endGroup(); err != nil {
			return err
		}
		if err := w.checkCurrency(t.Currency); err != nil {
			return err
		}
		w.inGroup = true
		w.contract, w.currency, w.kind = t.ContractID, t.Currency, t.Kind
	}
	w.groupCount++
	w.groupSum.add(t.AmountMinor)
	w.rowCount++
	if !w.opts.Summary.LineItems {
		return nil
	}
	if w.tx == nil || w.txRow >= w.opts.SheetRows {
		if err := w.nextSheet(); err != nil {
			w.err = fmt.Errorf("writing workbook: %w", err)
			return w.err
		}
	}
	counterparty := t.Counterparty
	if counterparty != "" && !w.opts.Summary.CounterpartyNames {
		counterparty = string(w.pseudonyms.append(nil, counterparty))
	}
	description := ""
	if w.opts.Summary.Descriptions {
		description = t.Description
	}
	amount, note := w.amount(t.AmountMinor, t.Currency)
	r := w.row
	r[0], r[1], r[2], r[3] = t.ContractID, t.Currency, t.Kind, w.date(t.OccurredAt)
	r[4], r[5], r[6], r[7], r[8] = t.ExternalID, counterparty, description, amount, note
	w.txRow++
	cell, _ := excelize.CoordinatesToCellName(1, w.txRow)
	if err := w.tx.SetRow(cell, r); err != nil {
		w.err = fmt.Errorf("writing workbook row %d: %w", w.txRow, err)
	}
	return w.err
}

// WriteGroup adds a whole group, as aggregated by the database, when line
// items are off.
func (w *WorkbookWriter) WriteGroup(g *Group) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.opts.Summary.LineItems {
		return errors.New("report: WriteGroup needs line items off")
	}
	if w.err != nil {
		return w.err
	}
	if err := w.endGroup(); err != nil {
		return err
	}
	if err := w.checkCurrency(g.Currency); err != nil {
		return err
	}
	var sum int128
	sum.add(g.SumMinor)
	w.rowCount += g.Count
	return w.subtotal(g.ContractID, g.Currency, g.Kind, g.Count, sum)
}

// checkCurrency fails the writer, as SummaryWriter does, when Exponent
// does not know the currency.
func (w *WorkbookWriter) checkCurrency(currency string) error {
	if _, ok := Exponent(currency); !ok {
		w.err = &UnknownCurrencyError{Currency: currency}
	}
	return w.err
}

func (w *WorkbookWriter) endGroup() error {
	if !w.inGroup {
		return nil
	}
	w.inGroup = false
	err := w.subtotal(w.contract, w.currency, w.kind, w.groupCount, w.groupSum)
	w.groupCount, w.groupSum = 0, int128{}
	return err
}

func (w *WorkbookWriter) subtotal(contract, currency, kind string, count int64, sum int128) error {
	v, ok := sum.int64()
	if !ok {
		w.err = fmt.Errorf("%w: subtotal of contract %q, %s, %s", ErrAmountOverflow, contract, currency, kind)
		return w.err
	}
	w.totals.add(currency, count, v)
	w.groups = append(w.groups, subtotalLine{contract: contract, currency: currency, kind: kind, count: count, minor: v})
	return nil
}

// Discard removes the temporary files without writing the workbook, when
// the input failed.
func (w *WorkbookWriter) Discard() {
	if !w.closed {
		w.closed = true
		_ = w.f.Close()
	}
}

// Close writes the Summary sheet and the workbook to the output, and
// removes the temporary files. It does not close the output.
func (w *WorkbookWriter) Close() (Summary, error) {
	if w.closed {
		return Summary{}, ErrWriterClosed
	}
	w.closed = true
	defer w.f.Close()
	if err := w.endGroup(); err != nil {
		return Summary{}, err
	}
	if w.err != nil {
		return Summary{}, w.err
	}
	lines, sum, err := w.totals.lines(w.rowCount)
	if err != nil {
		return Summary{}, err
	}
	if err := w.writeSummary(lines); err != nil {
		return Summary{}, fmt.Errorf("writing workbook summary: %w", err)
	}
	if w.tx != nil {
		if err := w.tx.Flush(); err != nil {
			return Summary{}, fmt.Errorf("writing workbook: %w", err)
		}
	}
	zw := &sortedZip{out: w.out, dir: w.opts.TempDir}
	defer zw.cleanup()
	w.f.SetZipWriter(func(io.Writer) excelize.ZipWriter { return zw })
	// WriteToBuffer hands its buffer to our zip writer, which ignores it
	// and streams to the output instead.
	if _, err := w.f.WriteToBuffer(); err != nil {
		return Summary{}, fmt.Errorf("writing workbook: %w", err)
	}
	if zw.err != nil {
		return Summary{}, fmt.Errorf("writing workbook: %w", zw.err)
	}
	return sum, nil
}

func (w *WorkbookWriter) writeSummary(lines []currencyLine) error {
	sw, err := w.f.NewStreamWriter("Summary")
	if err != nil {
		return err
	}
	for i, width := range []float64{24, 40, 12, 12, 18, 24} {
		if err := sw.SetColWidth(i+1, i+1, width); err != nil {
			return err
		}
	}
	s := &w.opts.Scope
	rows := [][]any{
		{excelize.Cell{StyleID: w.headerStyle, Value: "Transaction summary"}},
		{"case", s.CaseID},
		{"report", s.ReportID},
		{"period_start", w.date(s.PeriodStart)},
		{"period_end", w.date(s.PeriodEnd)},
		{"disclosure_flags", s.flags()},
		{"contract_filters", s.contracts()},
		{"data_as_of", w.date(s.DataAsOf)},
		{"generated_at", w.date(s.GeneratedAt)},
		{"generated_by", s.GeneratedBy},
		{"transactions", w.rowCount},
		nil,
		w.header([]any{"totals", "currency", "count", "amount", "amount_note"}),
	}
	for _, l := range lines {
		amount, note := w.amount(l.minor, l.currency)
		rows = append(rows, []any{"total", l.currency, l.count, amount, note})
	}
	rows = append(rows, nil, w.header([]any{"subtotals", "contract_id", "currency", "kind", "count", "amount", "amount_note"}))
	n := 0
	put := func(r []any) error {
		n++
		cell, _ := excelize.CoordinatesToCellName(1, n)
		return sw.SetRow(cell, r)
	}
	for _, r := range rows {
		if err := put(r); err != nil {
			return err
		}
	}
	for _, g := range w.groups {
		amount, note := w.amount(g.minor, g.currency)
		if err := put([]any{"subtotal", g.contract, g.currency, g.kind, g.count, amount, note}); err != nil {
			return err
		}
	}
	return sw.Flush()
}

// sortedZip is the zip writer excelize writes the workbook through: it
// compresses each entry into one temporary file as it comes, then writes
// the archive to out with the entries in name order. excelize emits
// streamed sheets in map order; sorting makes the bytes reproducible, and
// spooling to disk keeps memory flat.
type sortedZip struct {
	out     io.Writer
	dir     string
	tmp     *os.File
	buf     *bufio.Writer // over tmp
	size    int64         // bytes written to buf
	entries []spooledEntry
	cur     *spooledEntry
	fw      *flate.Writer
	err     error
}

type spooledEntry struct {
	name       string
	off, csize int64
	usize      int64
	crc        uint32
}

// Create starts an entry.
func (z *sortedZip) Create(name string) (io.Writer, error) {
	if err := z.endEntry(); err != nil {
		return nil, err
	}
	if z.tmp == nil {
		tmp, err := os.CreateTemp(z.dir, "tally-xlsx-*")
		if err != nil {
			return nil, z.fail(err)
		}
		z.tmp = tmp
		z.buf = bufio.NewWriterSize((*spoolCounter)(z), 1<<20)
	}
	z.cur = &spooledEntry{name: name, off: z.size + int64(z.buf.Buffered())}
	if z.fw == nil {
		var err error
		if z.fw, err = flate.NewWriter(z.buf, flate.DefaultCompression); err != nil {
			return nil, z.fail(err)
		}
	} else {
		z.fw.Reset(z.buf)
	}
	return (*entryWriter)(z), nil
}

type entryWriter sortedZip

// spoolCounter writes to the temporary file and counts the bytes.
type spoolCounter sortedZip

func (c *spoolCounter) Write(p []byte) (int, error) {
	n, err := c.tmp.Write(p)
	c.size += int64(n)
	return n, err
}

func (e *entryWriter) Write(p []byte) (int, error) {
	z := (*sortedZip)(e)
	if z.err != nil {
		return 0, z.err
	}
	z.cur.crc = crc32.Update(z.cur.crc, crc32.IEEETable, p)
	z.cur.usize += int64(len(p))
	n, err := z.fw.Write(p)
	if err != nil {
		return n, z.fail(err)
	}
	return n, nil
}

func (z *sortedZip) endEntry() error {
	if z.err != nil {
		return z.err
	}
	if z.cur == nil {
		return nil
	}
	if err := z.fw.Close(); err != nil {
		return z.fail(err)
	}
	z.cur.csize = z.size + int64(z.buf.Buffered()) - z.cur.off
	z.entries = append(z.entries, *z.cur)
	z.cur = nil
	return nil
}

// AddFS is not used by excelize's writer.
func (z *sortedZip) AddFS(fs.FS) error {
	return errors.New("report: sortedZip does not add file systems")
}

// Close writes the archive to out.
func (z *sortedZip) Close() error {
	if err := z.endEntry(); err != nil {
		return err
	}
	if z.buf != nil {
		if err := z.buf.Flush(); err != nil {
			return z.fail(err)
		}
	}
	slices.SortFunc(z.entries, func(a, b spooledEntry) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	zw := zip.NewWriter(z.out)
	for _, e := range z.entries {
		hdr := &zip.FileHeader{Name: e.name, Method: zip.Deflate, CRC32: e.crc,
			CompressedSize64: uint64(e.csize), UncompressedSize64: uint64(e.usize)}
		dst, err := zw.CreateRaw(hdr)
		if err != nil {
			return z.fail(err)
		}
		if _, err := io.Copy(dst, io.NewSectionReader(z.tmp, e.off, e.csize)); err != nil {
			return z.fail(err)
		}
	}
	if err := zw.Close(); err != nil {
		return z.fail(err)
	}
	return nil
}

func (z *sortedZip) fail(err error) error {
	if z.err == nil {
		z.err = err
	}
	return z.err
}

func (z *sortedZip) cleanup() {
	if z.tmp != nil {
		_ = z.tmp.Close()
		_ = os.Remove(z.tmp.Name())
	}
}
