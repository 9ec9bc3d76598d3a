package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// Defaults of GeneratorOpts.
const (
	DefaultContracts = 20
	DefaultDays      = 365
	// DefaultStart is the earliest occurred_at of generated rows, RFC 3339.
	DefaultStart = "2025-01-01T00:00:00Z"
)

// Bounds of GeneratorOpts, so that every generated row is valid.
const (
	MaxContracts = 1_000_000
	MaxDays      = 100_000
)

// GeneratorOpts describes a synthetic data set. The same options (Seed,
// Count, Contracts, Start, Days) give the same rows, byte for byte, on every
// machine and Go version: the generator draws only raw 64-bit outputs of a
// PCG seeded with Seed. Rows come in occurred_at order.
type GeneratorOpts struct {
	// ApplicationID is the rows' application. It may be empty when the rows
	// are only written as CSV.
	ApplicationID string
	// Seed picks the data set. External ids are "seed-<Seed>-<n>", n
	// counting from 1 zero-padded to ten digits, so several seeds can go
	// into one application.
	Seed uint64
	// Count is the number of rows. Row i falls in the i-th of Count equal
	// slices of the period, so Count is part of what defines the data set.
	Count int64
	// Contracts is the number of contract ids, "contract-001" and on; zero
	// means DefaultContracts.
	Contracts int
	// Start is the earliest occurred_at and also every row's ingested_at, so
	// that a report created after it includes the rows; zero means
	// DefaultStart.
	Start time.Time
	// Days is the span of occurred_at: rows fall in [Start, Start+Days days).
	// Zero means DefaultDays.
	Days int
	// Progress, when set, is called with the number of rows generated so far
	// every few thousand rows and once at the end.
	Progress func(rows int64)
}

// currencies are the generated currencies, chosen to cover ISO 4217 minor
// unit exponents 2 (EUR, USD), 0 (JPY) and 3 (KWD). Amounts are in minor
// units between min and max.
var currencies = [...]struct {
	code     string
	weight   uint64
	min, max int64
}{
	{"EUR", 40, 100, 500_000},   // 1.00 to 5,000.00
	{"USD", 35, 100, 500_000},   // 1.00 to 5,000.00
	{"JPY", 15, 100, 500_000},   // 100 to 500,000
	{"KWD", 10, 100, 1_500_000}, // 0.100 to 1,500.000
}

// kinds are the generated kinds with their weights and the sign of their amounts.
var kinds = [...]struct {
	kind   string
	weight uint64
	sign   int64 // 0: either sign
}{
	{"payment", 60, 1},
	{"refund", 10, -1},
	{"fee", 12, -1},
	{"chargeback", 3, -1},
	{"payout", 10, -1},
	{"adjustment", 5, 0},
}

// counterparties exercise CSV quoting and Unicode: commas, quotes, accents,
// non-Latin scripts, an emoji, and an empty name.
var counterparties = [...]string{
	"Acme Corporation",
	"Müller & Söhne GmbH",
	"Smith, Jones & Partners LLP",
	`"Best" Widgets Ltd.`,
	"株式会社サンプル商事",
	"Café Ödön Kft.",
	"O'Brien Logistics",
	"Αθηνά Ναυτιλιακή Α.Ε.",
	"شركة الكويت للتجارة",
	"Ñandú Exportaciones S.A.",
	"Łódź Tekstil sp. z o.o.",
	`Straße & Co. "Berlin", KG`,
	"Emoji Shop 🛒",
	"Nordic Fjord AS",
	"",
	"Zürich Rückversicherung, AG",
}

// externalIDDigits is the width external id numbers are zero-padded to, so
// that their text order is their numeric order.
const externalIDDigits = 10

// Generator produces the rows GeneratorOpts describes, one at a time. It is a
// pgx.CopyFromSource, so rows stream into COPY without being collected.
type Generator struct {
	opts      GeneratorOpts
	rng       *rand.PCG
	start     time.Time
	spanMicro uint64
	contracts []string
	idPrefix  string
	i         int64
	t         db.Transaction
	done      bool
	buf       []byte
}

// NewGenerator checks opts and returns a Generator of its rows.
func NewGenerator(opts GeneratorOpts) (*Generator, error) {
	if opts.Count < 0 {
		return nil, fmt.Errorf("count must not be negative, got %d", opts.Count)
	}
	if opts.Contracts == 0 {
		opts.Contracts = DefaultContracts
	}
	if opts.Contracts < 1 || opts.Contracts > MaxContracts {
		return nil, fmt.Errorf("contracts must be between 1 and %d, got %d", MaxContracts, opts.Contracts)
	}
	if opts.Days == 0 {
		opts.Days = DefaultDays
	}
	if opts.Days < 1 || opts.Days > MaxDays {
		return nil, fmt.Errorf("days must be between 1 and %d, got %d", MaxDays, opts.Days)
	}
	if opts.Start.IsZero() {
		opts.Start, _ = time.Parse(time.RFC3339, DefaultStart)
	}
	g := &Generator{
		opts: opts,
		// The second PCG word is fixed: it only selects the stream.
		rng:       rand.NewPCG(opts.Seed, 0x7461_6c6c_7973_6565),
		start:     opts.Start.UTC().Truncate(time.Microsecond), // PostgreSQL keeps microseconds
		spanMicro: uint64(opts.Days) * 24 * uint64(time.Hour/time.Microsecond),
		contracts: make([]string, opts.Contracts),
		idPrefix:  "seed-" + strconv.FormatUint(opts.Seed, 10) + "-",
	}
	for i := range g.contracts {
		g.contracts[i] = fmt.Sprintf("contract-%03d", i+1)
	}
	return g, nil
}

// Period returns the half-open interval the rows' occurred_at fall in.
func (g *Generator) Period() (start, end time.Time) {
	return g.start, g.start.Add(time.Duration(g.spanMicro) * time.Microsecond)
}

// Contracts returns the contract ids rows are spread over, in order.
func (g *Generator) Contracts() []string { return append([]string(nil), g.contracts...) }

// Next generates the next row and reports whether there was one.
func (g *Generator) Next() bool {
	if g.i >= g.opts.Count {
		if !g.done {
			g.done = true
			if g.opts.Progress != nil {
				g.opts.Progress(g.i)
			}
		}
		return false
	}
	g.generate()
	g.i++
	if g.opts.Progress != nil && g.i%progressEvery == 0 {
		g.opts.Progress(g.i)
	}
	return true
}

// Transaction returns the current row; it is overwritten by Next.
func (g *Generator) Transaction() *db.Transaction { return &g.t }

// Values returns the current row as COPY values.
func (g *Generator) Values() ([]any, error) { return db.TransactionValues(&g.t), nil }

// Err always returns nil: generating cannot fail.
func (g *Generator) Err() error { return nil }

// uniform returns a number in [0, n) from the next PCG output. The multiply
// and shift mapping has a bias of at most n/2⁶⁴, far below anything a
// synthetic data set could show.
func (g *Generator) uniform(n uint64) uint64 {
	hi, _ := bits.Mul64(g.rng.Uint64(), n)
	return hi
}

// offset returns row i's occurred_at, in microseconds after the start: a
// uniform draw within the i-th of Count equal slices of the span. Rows thus
// come in time order, yet look random within their slice.
//
// Time order is what makes seeding fast: with external ids numbered in the
// same order, every index of the transactions table is appended to at a few
// hot pages instead of written at random places, which COPY into a table of
// millions of rows otherwise spends most of its time on.
func (g *Generator) offset(i uint64) uint64 {
	n := uint64(g.opts.Count)
	hi, lo := bits.Mul64(i, g.spanMicro)
	lo, carry := bits.Add64(lo, g.uniform(g.spanMicro), 0)
	q, _ := bits.Div64(hi+carry, lo, n) // i < n, so the quotient is below spanMicro
	return q
}

func (g *Generator) generate() {
	t := &g.t
	i := g.i
	t.ApplicationID = g.opts.ApplicationID
	t.IngestedAt = g.start
	g.buf = appendPadded(append(g.buf[:0], g.idPrefix...), uint64(i)+1, externalIDDigits)
	t.ExternalID = string(g.buf)
	t.ContractID = g.contracts[g.uniform(uint64(len(g.contracts)))]
	t.OccurredAt = g.start.Add(time.Duration(g.offset(uint64(i))) * time.Microsecond)

	c := &currencies[0]
	for w, j := g.uniform(100), 0; j < len(currencies); j++ {
		c = &currencies[j]
		if w < c.weight {
			break
		}
		w -= c.weight
	}
	t.Currency = c.code
	amount := c.min + int64(g.uniform(uint64(c.max-c.min+1)))

	k := &kinds[0]
	for w, j := g.uniform(100), 0; j < len(kinds); j++ {
		k = &kinds[j]
		if w < k.weight {
			break
		}
		w -= k.weight
	}
	t.Kind = k.kind
	switch k.kind {
	case "fee":
		amount = max(1, amount/40)
	case "adjustment":
		amount /= 10
	}
	sign := k.sign
	if sign == 0 {
		sign = 1 - 2*int64(g.uniform(2))
	}
	t.AmountMinor = sign * amount

	t.Counterparty = counterparties[g.uniform(uint64(len(counterparties)))]
	t.Description = g.description(k.kind, g.uniform(1_000_000))
}

// description returns a description for a row of kind; n varies it. Some
// hold commas, double quotes, a dash or a line break, so that exports must
// quote them.
func (g *Generator) description(kind string, n uint64) string {
	b := g.buf[:0]
	switch kind {
	case "payment":
		switch n % 3 {
		case 0:
			b = append(b, "Invoice INV-"...)
			b = appendPadded(b, n, 6)
		case 1:
			b = append(b, "Order #"...)
			b = strconv.AppendUint(b, n, 10)
			b = append(b, ", "...)
			b = strconv.AppendUint(b, n%9+1, 10)
			b = append(b, " items"...)
		default:
			b = append(b, `Subscription renewal — plan "Pro"`...)
		}
	case "refund":
		b = append(b, "Refund for order #"...)
		b = strconv.AppendUint(b, n, 10)
		b = append(b, `: "damaged in transit"`...)
	case "fee":
		b = append(b, "Processing fee, "...)
		b = strconv.AppendUint(b, n%500+1, 10)
		b = append(b, " transactions"...)
	case "chargeback":
		b = append(b, "Chargeback: reason code "...)
		b = strconv.AppendUint(b, 4800+n%60, 10)
	case "payout":
		if n%4 == 0 {
			return "" // descriptions are optional
		}
		b = append(b, "Payout to IBAN DE89 3704 **** "...)
		b = appendPadded(b, n%10000, 4)
	default:
		b = append(b, "Manual adjustment\nsee ticket T-"...)
		b = strconv.AppendUint(b, n, 10)
	}
	g.buf = b
	return string(b)
}

func appendPadded(b []byte, n uint64, width int) []byte {
	var digits [20]byte
	s := strconv.AppendUint(digits[:0], n, 10)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// WriteCSV writes the generator's remaining rows as an import file, header
// first, and returns how many rows it wrote.
func (g *Generator) WriteCSV(w io.Writer) (int64, error) {
	cw := NewWriter(w)
	var n int64
	for g.Next() {
		if err := cw.Write(&g.t); err != nil {
			return n, err
		}
		n++
	}
	return n, cw.Flush()
}

// Seed generates the rows opts describes into opts.ApplicationID with COPY,
// in one transaction: all rows or none.
func Seed(ctx context.Context, q db.DBTX, opts GeneratorOpts) (int64, error) {
	if opts.ApplicationID == "" {
		return 0, errors.New("seeding: no application id")
	}
	g, err := NewGenerator(opts)
	if err != nil {
		return 0, fmt.Errorf("seeding: %w", err)
	}
	var n int64
	err = db.WithTx(ctx, q, func(tx pgx.Tx) error {
		n, err = db.CopyTransactions(ctx, tx, g)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("seeding %d transactions into %s: %w", opts.Count, opts.ApplicationID, err)
	}
	return n, nil
}
