package report

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// ScopeInfo is what the workbook and the attestation print about a
// report's snapshot. Every field comes from the report row, so a rerun
// prints the same.
type ScopeInfo struct {
	ReportID        string
	CaseID          string
	PeriodStart     time.Time
	PeriodEnd       time.Time
	DisclosureFlags []string
	ContractFilters []string
	DataAsOf        time.Time
	// GeneratedAt is when the report was requested (not when a worker
	// happened to build it), so that a rebuilt file has the same bytes.
	GeneratedAt time.Time
	// GeneratedBy names the user who requested the report.
	GeneratedBy string
}

func (s *ScopeInfo) flags() string {
	if len(s.DisclosureFlags) == 0 {
		return "none (subtotals only, counterparties pseudonymised, no descriptions)"
	}
	return strings.Join(s.DisclosureFlags, ", ")
}

func (s *ScopeInfo) contracts() string {
	if len(s.ContractFilters) == 0 {
		return "all contracts"
	}
	return strings.Join(s.ContractFilters, ", ")
}

// MaxExactMinor is the largest magnitude of minor units that a spreadsheet's
// IEEE 754 double holds exactly (2^53). Larger amounts are written as text.
const MaxExactMinor = 1 << 53

// exactAsNumber reports whether minor units survive conversion to a double.
func exactAsNumber(minor int64) bool {
	return minor >= -MaxExactMinor && minor <= MaxExactMinor
}

// pow10 returns 10^exp as a float64 for exponents 0 to 4.
func pow10(exp int) float64 {
	return [...]float64{1, 10, 100, 1000, 10000}[exp]
}

// groupTotals accumulates the per-currency totals from subtotals in the
// way SummaryWriter does, so that every format of a case agrees (and fails
// on the same overflow).
type groupTotals struct {
	totals map[string]*currencyTotal
}

func (g *groupTotals) add(currency string, count, sum int64) {
	if g.totals == nil {
		g.totals = make(map[string]*currencyTotal)
	}
	t := g.totals[currency]
	if t == nil {
		t = &currencyTotal{}
		g.totals[currency] = t
	}
	t.count += count
	t.sum.add(sum)
}

// currencyLine is one line of the totals per currency.
type currencyLine struct {
	currency string
	count    int64
	minor    int64
}

// lines returns the totals ordered by currency, and the Summary of them.
func (g *groupTotals) lines(rowCount int64) ([]currencyLine, Summary, error) {
	currencies := make([]string, 0, len(g.totals))
	for c := range g.totals {
		currencies = append(currencies, c)
	}
	slices.Sort(currencies)
	out := make([]currencyLine, 0, len(currencies))
	sum := Summary{RowCount: rowCount, Totals: make(map[string]CurrencyTotal, len(currencies))}
	for _, c := range currencies {
		t := g.totals[c]
		v, ok := t.sum.int64()
		if !ok {
			return nil, Summary{}, fmt.Errorf("%w: total of %s", ErrAmountOverflow, c)
		}
		out = append(out, currencyLine{currency: c, count: t.count, minor: v})
		sum.Totals[c] = CurrencyTotal{Count: t.count, Amount: string(formatAmount(nil, v, c))}
	}
	return out, sum, nil
}
