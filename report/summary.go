package report

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"strconv"
	"time"
)

// Disclosure flags a case may carry.
const (
	// FlagLineItems adds one row per transaction.
	FlagLineItems = "line_items"
	// FlagCounterpartyNames discloses counterparty names instead of pseudonyms.
	FlagCounterpartyNames = "counterparty_names"
	// FlagDescriptions discloses transaction descriptions.
	FlagDescriptions = "descriptions"
)

// SummaryHeader is the first line of every transaction_summary file.
const SummaryHeader = "row_type,contract_id,currency,kind,occurred_at,external_id,counterparty,description,count,amount\n"

// ErrAmountOverflow means a subtotal or total does not fit in an int64 of
// minor units. The report cannot be built; retrying does not help.
var ErrAmountOverflow = errors.New("report: amount overflows int64 minor units")

// UnknownCurrencyError means a transaction's currency is not one Exponent
// knows, an ISO 4217 code with a minor unit, so its amounts cannot be
// written exactly. The report cannot be built; retrying does not help.
type UnknownCurrencyError struct {
	Currency string
}

func (e *UnknownCurrencyError) Error() string {
	return fmt.Sprintf("report: currency %q is not an ISO 4217 code with a minor unit", e.Currency)
}

// ErrWriterClosed is returned by a writer used after Close.
var ErrWriterClosed = errors.New("report: writer closed")

// bufferSize is the bufio buffer between the row encoder and the output.
const bufferSize = 64 << 10

// SummaryOpts configure a SummaryWriter from a report's snapshot.
type SummaryOpts struct {
	// PseudonymKey keys the counterparty pseudonyms (see
	// PseudonymKeys.ReportKey); it must be set when line items are on and
	// counterparty names are not.
	PseudonymKey []byte
	// LineItems writes one transaction row per transaction.
	LineItems bool
	// CounterpartyNames writes real counterparty names instead of pseudonyms.
	CounterpartyNames bool
	// Descriptions writes transaction descriptions instead of empty fields.
	Descriptions bool
}

// SummaryOptsFromFlags returns the options for a report with these
// disclosure flags and pseudonym key.
func SummaryOptsFromFlags(pseudonymKey []byte, flags []string) SummaryOpts {
	return SummaryOpts{
		PseudonymKey:      pseudonymKey,
		LineItems:         slices.Contains(flags, FlagLineItems),
		CounterpartyNames: slices.Contains(flags, FlagCounterpartyNames),
		Descriptions:      slices.Contains(flags, FlagDescriptions),
	}
}

// Transaction is one transaction of a report's scope.
type Transaction struct {
	ContractID   string
	Currency     string
	Kind         string
	OccurredAt   time.Time
	ExternalID   string
	Counterparty string
	Description  string
	AmountMinor  int64
}

// Group is the aggregate of one (contract, currency, kind) group of a scope.
type Group struct {
	ContractID string
	Currency   string
	Kind       string
	Count      int64
	SumMinor   int64
}

// CurrencyTotal is the total of one currency in a report.
type CurrencyTotal struct {
	Count  int64  `json:"count"`
	Amount string `json:"amount"` // exact decimal, as in the file
}

// Summary describes a written report file.
type Summary struct {
	// RowCount is the number of transactions (transaction_summary) or events
	// (activity_log) the file covers, whether or not line items are shown.
	RowCount int64
	// Totals are the per-currency totals of a transaction_summary; nil for
	// other report types.
	Totals map[string]CurrencyTotal
}

// int128 accumulates int64 values without overflow; only the final value
// must fit in an int64. This matches PostgreSQL, whose sum(bigint) is exact
// and fails only when cast back to bigint, so both input modes of a
// SummaryWriter agree on which reports overflow.
type int128 struct {
	hi int64
	lo uint64
}

func (a *int128) add(v int64) {
	var carry uint64
	a.lo, carry = bits.Add64(a.lo, uint64(v), 0)
	a.hi += int64(carry) + (v >> 63) // v>>63 sign-extends: -1 for negative v
}

func (a *int128) addInt128(b int128) {
	var carry uint64
	a.lo, carry = bits.Add64(a.lo, b.lo, 0)
	a.hi += b.hi + int64(carry)
}

func (a int128) int64() (int64, bool) {
	if (a.hi == 0 && a.lo < 1<<63) || (a.hi == -1 && a.lo >= 1<<63) {
		return int64(a.lo), true
	}
	return 0, false
}

type currencyTotal struct {
	count int64
	sum   int128
}

// SummaryWriter writes a transaction_summary CSV file: an optional row per
// transaction, a subtotal after each (contract, currency, kind) group, and a
// total per currency at the end. Feed it either every transaction, in the
// order (contract_id, currency, kind, occurred_at, id), with
// WriteTransaction, or, when line items are off, the groups in the same
// order with WriteGroup: both give the same bytes. Call Close at the end.
// Memory does not grow with the number of rows.
type SummaryWriter struct {
	w    *bufio.Writer
	opts SummaryOpts
	row  []byte
	err  error // sticky

	inGroup                  bool
	contract, currency, kind string
	groupCount               int64
	groupSum                 int128
	totals                   map[string]*currencyTotal
	rowCount                 int64
	pseudonyms               *pseudonymizer
	closed                   bool
}

// NewSummaryWriter returns a writer of a transaction_summary file to w. The
// header is written at once (through the buffer).
func NewSummaryWriter(w io.Writer, opts SummaryOpts) *SummaryWriter {
	s := newSummaryWriter(w, opts)
	s.write([]byte(SummaryHeader))
	return s
}

// NewSummarySegmentWriter returns a writer of one segment of a
// transaction_summary file's body: the rows and subtotals of whole groups,
// without the header or the totals. End it with CloseSegment, and hand the
// segment to the writer of the whole file (AddSegment), which writes the
// header and the totals: a file written as segments in report order, each
// holding whole groups, has the bytes of the file written by one writer.
// Segments can be written concurrently, by writers of their own.
func NewSummarySegmentWriter(w io.Writer, opts SummaryOpts) *SummaryWriter {
	return newSummaryWriter(w, opts)
}

func newSummaryWriter(w io.Writer, opts SummaryOpts) *SummaryWriter {
	s := &SummaryWriter{
		w:      bufio.NewWriterSize(w, bufferSize),
		opts:   opts,
		row:    make([]byte, 0, 512),
		totals: make(map[string]*currencyTotal),
	}
	if opts.LineItems && !opts.CounterpartyNames {
		if len(opts.PseudonymKey) == 0 {
			// Without a secret key a pseudonym is a plain hash of the name.
			s.err = errors.New("report: pseudonymised counterparties need a PseudonymKey")
		}
		s.pseudonyms = newPseudonymizer(opts.PseudonymKey)
	}
	return s
}

// SummarySegment is what a segment writer counted: its rows and its
// per-currency totals.
type SummarySegment struct {
	rowCount int64
	totals   map[string]*currencyTotal
}

// CloseSegment ends the last group and flushes, like Close without the
// totals, and returns what the segment counted.
func (s *SummaryWriter) CloseSegment() (SummarySegment, error) {
	if s.closed {
		return SummarySegment{}, ErrWriterClosed
	}
	s.closed = true
	if err := s.endGroup(); err != nil {
		return SummarySegment{}, err
	}
	if s.err == nil {
		if err := s.w.Flush(); err != nil {
			s.err = fmt.Errorf("writing report: %w", err)
		}
	}
	if s.err != nil {
		return SummarySegment{}, s.err
	}
	return SummarySegment{rowCount: s.rowCount, totals: s.totals}, nil
}

// Flush writes what the writer buffered (the header, before segments are
// written to the same output).
func (s *SummaryWriter) Flush() error {
	if s.err == nil {
		if err := s.w.Flush(); err != nil {
			s.err = fmt.Errorf("writing report: %w", err)
		}
	}
	return s.err
}

// AddSegment counts a segment written to this writer's output (after
// Flush) into the rows and the totals that Close writes. Segments must hold
// whole groups; no group may be open.
func (s *SummaryWriter) AddSegment(seg SummarySegment) error {
	if s.closed {
		return ErrWriterClosed
	}
	if s.inGroup {
		return errors.New("report: AddSegment with a group open")
	}
	s.rowCount += seg.rowCount
	for c, t := range seg.totals {
		mine := s.totals[c]
		if mine == nil {
			mine = &currencyTotal{}
			s.totals[c] = mine
		}
		mine.count += t.count
		mine.sum.addInt128(t.sum)
	}
	return nil
}

func (s *SummaryWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(b); err != nil {
		s.err = fmt.Errorf("writing report: %w", err)
	}
}

// WriteTransaction adds one transaction. Transactions must come in report
// order; a new (contract, currency, kind) closes the previous group.
func (s *SummaryWriter) WriteTransaction(t *Transaction) error {
	if s.closed {
		return ErrWriterClosed
	}
	if s.err != nil {
		return s.err
	}
	if !s.inGroup || t.ContractID != s.contract || t.Currency != s.currency || t.Kind != s.kind {
		if err := s.endGroup(); err != nil {
			return err
		}
		if err := s.checkCurrency(t.Currency); err != nil {
			return err
		}
		s.inGroup = true
		s.contract, s.currency, s.kind = t.ContractID, t.Currency, t.Kind
	}
	s.groupCount++
	s.groupSum.add(t.AmountMinor)
	s.rowCount++
	if !s.opts.LineItems {
		return nil
	}

	r := append(s.row[:0], "transaction,"...)
	r = appendTextField(r, t.ContractID)
	r = append(r, ',')
	r = appendField(r, t.Currency)
	r = append(r, ',')
	r = appendField(r, t.Kind)
	r = append(r, ',')
	r = t.OccurredAt.UTC().AppendFormat(r, time.RFC3339Nano)
	r = append(r, ',')
	r = appendTextField(r, t.ExternalID)
	r = append(r, ',')
	switch {
	case t.Counterparty == "":
	case s.opts.CounterpartyNames:
		r = appendTextField(r, t.Counterparty)
	default:
		r = s.pseudonyms.append(r, t.Counterparty) // "cp_" + hex: never needs quoting
	}
	r = append(r, ',')
	if s.opts.Descriptions {
		r = appendTextField(r, t.Description)
	}
	r = append(r, ",,"...)
	r = formatAmount(r, t.AmountMinor, t.Currency)
	r = append(r, '\n')
	s.row = r
	s.write(r)
	return s.err
}

// WriteGroup adds a whole group, as aggregated by the database, when line
// items are off. Groups must come in report order.
func (s *SummaryWriter) WriteGroup(g *Group) error {
	if s.closed {
		return ErrWriterClosed
	}
	if s.opts.LineItems {
		return errors.New("report: WriteGroup needs line items off")
	}
	if s.err != nil {
		return s.err
	}
	if err := s.endGroup(); err != nil {
		return err
	}
	if err := s.checkCurrency(g.Currency); err != nil {
		return err
	}
	var sum int128
	sum.add(g.SumMinor)
	s.rowCount += g.Count
	return s.writeSubtotal(g.ContractID, g.Currency, g.Kind, g.Count, sum)
}

// checkCurrency fails the writer, before any amount of currency is
// written, when Exponent does not know it.
func (s *SummaryWriter) checkCurrency(currency string) error {
	if _, ok := Exponent(currency); !ok {
		s.err = &UnknownCurrencyError{Currency: currency}
	}
	return s.err
}

// endGroup writes the subtotal of the open group, if any.
func (s *SummaryWriter) endGroup() error {
	if !s.inGroup {
		return nil
	}
	s.inGroup = false
	err := s.writeSubtotal(s.contract, s.currency, s.kind, s.groupCount, s.groupSum)
	s.groupCount, s.groupSum = 0, int128{}
	return err
}

func (s *SummaryWriter) writeSubtotal(contract, currency, kind string, count int64, sum int128) error {
	v, ok := sum.int64()
	if !ok {
		s.err = fmt.Errorf("%w: subtotal of contract %q, %s, %s", ErrAmountOverflow, contract, currency, kind)
		return s.err
	}
	t := s.totals[currency]
	if t == nil {
		t = &currencyTotal{}
		s.totals[currency] = t
	}
	t.count += count
	t.sum.add(v)

	r := append(s.row[:0], "subtotal,"...)
	r = appendTextField(r, contract)
	r = append(r, ',')
	r = appendField(r, currency)
	r = append(r, ',')
	r = appendField(r, kind)
	r = append(r, ",,,,,"...)
	r = strconv.AppendInt(r, count, 10)
	r = append(r, ',')
	r = formatAmount(r, v, currency)
	r = append(r, '\n')
	s.row = r
	s.write(r)
	return s.err
}

// Close ends the last group, writes the per-currency totals ordered by
// currency, and flushes. It does not close the underlying writer.
func (s *SummaryWriter) Close() (Summary, error) {
	if s.closed {
		return Summary{}, ErrWriterClosed
	}
	if err := s.endGroup(); err != nil {
		s.closed = true
		return Summary{}, err
	}
	s.closed = true
	if s.err != nil {
		return Summary{}, s.err
	}
	currencies := make([]string, 0, len(s.totals))
	for c := range s.totals {
		currencies = append(currencies, c)
	}
	slices.Sort(currencies)
	sum := Summary{RowCount: s.rowCount, Totals: make(map[string]CurrencyTotal, len(currencies))}
	for _, c := range currencies {
		t := s.totals[c]
		v, ok := t.sum.int64()
		if !ok {
			return Summary{}, fmt.Errorf("%w: total of %s", ErrAmountOverflow, c)
		}
		r := append(s.row[:0], "total,,"...)
		r = appendField(r, c)
		r = append(r, ",,,,,,"...)
		r = strconv.AppendInt(r, t.count, 10)
		r = append(r, ',')
		amount := len(r)
		r = formatAmount(r, v, c)
		sum.Totals[c] = CurrencyTotal{Count: t.count, Amount: string(r[amount:])}
		r = append(r, '\n')
		s.row = r
		s.write(r)
	}
	if s.err == nil {
		if err := s.w.Flush(); err != nil {
			s.err = fmt.Errorf("writing report: %w", err)
		}
	}
	if s.err != nil {
		return Summary{}, s.err
	}
	return sum, nil
}
