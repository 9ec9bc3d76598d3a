package jobs

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
)

// A large scope's report order (contract, currency, kind, occurred_at, id)
// is not its table's: rows are stored as they were ingested, in time order,
// so reading the scope in report order, by the index, fetches its rows all
// over the table one at a time, and the database's sort of the whole scope
// (COPY's plan) spills to disk. Instead, writeSpilled reads the scope once
// in the order the database reads it fastest, puts each row into the bucket
// of its group (consecutive groups of about rangeRows rows, cut from the
// database's own count of every group, in report order) kept in a temporary
// file, and then sorts and formats the buckets, several at once, writing
// them out in order. The sort within a bucket is by (group, occurred_at,
// id): the groups' order is the database's (its collation), and the rest
// compares integers, so the file has the bytes of the sequential writer.
const (
	// bucketRowsMax, times rangeRows, is the most rows a bucket may hold
	// once read: a group larger than a bucket is cut into buckets of equal
	// time spans, and one whose rows crowd into one span past this is read
	// in ranges instead.
	bucketRowsMax = 8
	// spillBufferBytes is about how much the buckets buffer, all together,
	// before their bytes go to the file.
	spillBufferBytes = 4 << 20
	// spillChunkMin and spillChunkMax bound one bucket's buffer.
	spillChunkMin, spillChunkMax = 16 << 10, 256 << 10
	// bucketBlocks is how many segmentBlock blocks a bucket that is not
	// next holds before its worker waits: formatting a bucket outruns the
	// upload, and a waiting worker holds no connection.
	bucketBlocks = 4
)

// DefaultSpillMax is the default bound of a scope's temporary file, 1.5
// GiB: about 15M transactions with every disclosure flag (10M take 1 GB),
// and half the Helm chart's /tmp.
const DefaultSpillMax = 3 << 29

// errCannotSpill says that writeSpilled wrote nothing and the scope is to
// be read another way.
var errCannotSpill = errors.New("the scope cannot be spilled")

// spillDir, when set, is the directory of the temporary files instead of
// os.TempDir (tests).
var spillDir atomic.Pointer[string]

// spillMaxOverride, when set, replaces the workers' SpillMax (tests).
var spillMaxOverride atomic.Int64

// spilledScopes counts the scopes written from a spill.
var spilledScopes atomic.Int64

// writeSpilled writes the transaction summary of the scope sq read on tx
// (a snapshot transaction), formatting up to workers buckets at once;
// release, called once the scope is read, gives back the connections. It
// returns errCannotSpill, having written nothing to out, when a bucket
// would hold too many rows or no temporary file can hold the scope.
func writeSpilled(ctx context.Context, txs []pgx.Tx, sq db.ScopeParams, opts report.SummaryOpts, out io.Writer, p *parallelScan, release func()) (report.Summary, error) {
	if p.spillMax <= 0 {
		return report.Summary{}, fmt.Errorf("%w: temporary files are off", errCannotSpill)
	}
	workers := p.n
	sp, err := newSpill(ctx, txs[0], sq, cmp.Or(rangeRowsOverride.Load(), rangeRows), p.spillDir, cmp.Or(spillMaxOverride.Load(), p.spillMax))
	if err != nil {
		return report.Summary{}, err
	}
	defer sp.close()
	sp.descriptions = opts.Descriptions
	if err := sp.scan(ctx, txs, sq); err != nil {
		return report.Summary{}, err
	}
	release()
	spilledScopes.Add(1)
	// Each worker reuses its own buffers from bucket to bucket; they go
	// with the report.
	bufs := make([]bucketBuf, workers)
	return writeSegments(ctx, out, opts, len(sp.segments), workers, bucketBlocks, func(_ context.Context, w, i int, emit func(*report.Transaction) error) error {
		for _, b := range sp.segments[i] {
			if err := sp.emit(b, &bufs[w], opts.CounterpartyNames, emit); err != nil {
				return err
			}
		}
		return nil
	})
}

// scanPlanSettings make the scan of a scope that is a small part of its
// table a bitmap heap scan: left to itself, the planner reads the whole
// table (a parallel seq scan) for a scope of a tenth of it, or walks an
// index in its own order, fetching rows from all over the table.
const scanPlanSettings = `SET LOCAL enable_seqscan = off; SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off; SET LOCAL enable_tidscan = off`

// scanBlocksMin is the fewest table blocks (8 KiB each) a connection's
// share of a scan holds: a smaller table is read on one.
const scanBlocksMin = 1024

// scanBlocksMinOverride, when set, replaces scanBlocksMin, and a scope is
// cut into block ranges whatever part of the table it is (tests).
var scanBlocksMinOverride atomic.Int64

// scan reads the scope into the buckets on txs at once, each a range of
// the table's blocks (the last one open, as the count of blocks is an
// estimate), then checks that each bucket holds the rows its groups
// counted. A scanner that fails lets the others finish, so that the
// connections stay usable for the range reads when the scope cannot spill.
func (sp *spill) scan(ctx context.Context, txs []pgx.Tx, sq db.ScopeParams) error {
	blocks, tuples, err := db.TransactionBlocks(ctx, txs[0])
	if err != nil {
		return fmt.Errorf("spilling the scope: %w", err)
	}
	var scope int64
	for _, g := range sp.groups {
		scope += g.Count
	}
	override := scanBlocksMinOverride.Load()
	n := min(int64(len(txs)), max(1, blocks/cmp.Or(override, scanBlocksMin)))
	if scope*2 < tuples && override == 0 {
		// A scope of a smaller part of the table is read on one
		// connection, from its index but in the table's order (a bitmap
		// heap scan): block ranges would each read the whole table.
		n = 1
		if _, err := txs[0].Exec(ctx, scanPlanSettings); err != nil {
			return fmt.Errorf("spilling the scope: %w", err)
		}
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		r := db.BlockRange{From: blocks * i / n, To: blocks * (i + 1) / n}
		if i == n-1 {
			r.To = 0
		}
		sc := &spillScanner{sp: sp, bufs: make([][]byte, len(sp.buckets)), seen: make([]int64, len(sp.buckets))}
		wg.Go(func() {
			err := db.StreamScopeUnordered(ctx, txs[i], sq, r, sc.add)
			if err == nil {
				err = sc.flushAll()
			}
			errs[i] = err
			sp.mu.Lock()
			for b, k := range sc.seen {
				sp.buckets[b].seen += k
			}
			sp.mu.Unlock()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, errCannotSpill) {
			return fmt.Errorf("spilling the scope: %w", err)
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	// Every group holds the rows it counted: a whole bucket's groups
	// together, a cut group over its buckets.
	seen := make([]int64, len(sp.groups))
	for i, b := range sp.buckets {
		if !b.split {
			if b.seen != b.rows {
				return fmt.Errorf("spilling the scope: bucket %d: read %d rows, its groups counted %d", i, b.seen, b.rows)
			}
			continue
		}
		b.rows = b.seen
		seen[b.first] += b.seen
	}
	for g, span := range sp.split {
		if span > 0 && seen[g] != sp.groups[g].Count {
			return fmt.Errorf("spilling the scope: group %d: read %d rows, it counted %d", g, seen[g], sp.groups[g].Count)
		}
	}
	for _, b := range sp.buckets {
		if b.rows > sp.maxRows {
			return errCannotSpill // a group's rows crowd into one time span
		}
	}
	return nil
}

// spill holds a scope's rows in buckets of whole groups, in a temporary
// file that is unlinked once created.
type spill struct {
	mu  sync.Mutex // the file, off, and the buckets' chunks, size and seen
	f   *os.File
	off int64 // the file's size
	// maxBytes bounds off: a scope that needs more cannot spill.
	maxBytes int64
	// descriptions says whether the report shows descriptions: the file
	// holds them only then.
	descriptions bool
	groups       []db.ScopeGroupSpan
	index        map[string]int32 // group key (contract NUL currency NUL kind) → group
	bucket       []int32          // group → its (first) bucket
	split        []int64          // group → the time span of each of its buckets (µs), 0 if it has one
	maxRows      int64            // the most rows a bucket may hold
	buckets      []*spillBucket
	// segments are the buckets formatted by one segment writer, in order:
	// one bucket of whole groups, or the buckets of one cut group (a
	// segment holds whole groups).
	segments [][]int
	chunk    int
}

// spillBucket is one bucket: consecutive groups, rows as the scope's
// groups counted them, the file's chunks that hold them, and the bytes not
// yet in the file.
type spillBucket struct {
	first, end int32 // its groups
	split      bool  // a time span of one group, whose rows it counts as it reads them
	rows, seen int64
	chunks     []spillChunk
	size       int64
}

type spillChunk struct {
	off int64
	n   int
}

// newSpill counts the scope's groups (in report order, with their time
// spans) and cuts them into buckets of about rowsPerBucket rows: runs of
// whole groups, and a larger group into buckets of equal time spans.
func newSpill(ctx context.Context, tx pgx.Tx, sq db.ScopeParams, rowsPerBucket int64, dir string, maxBytes int64) (*spill, error) {
	sp := &spill{index: make(map[string]int32), maxRows: bucketRowsMax * rowsPerBucket, maxBytes: maxBytes}
	err := db.StreamScopeGroupSpans(ctx, tx, sq, func(g *db.ScopeGroupSpan) error {
		sp.groups = append(sp.groups, *g)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counting the scope's groups: %w", err)
	}
	var cur *spillBucket
	for i, g := range sp.groups {
		sp.index[groupKey(g.ContractID, g.Currency, g.Kind)] = int32(i)
		if g.Count > rowsPerBucket {
			k := (g.Count + rowsPerBucket - 1) / rowsPerBucket
			sp.bucket = append(sp.bucket, int32(len(sp.buckets)))
			sp.split = append(sp.split, (g.LastMicros-g.FirstMicros)/k+1)
			var seg []int
			for range k {
				seg = append(seg, len(sp.buckets))
				sp.buckets = append(sp.buckets, &spillBucket{first: int32(i), end: int32(i) + 1, split: true})
			}
			sp.segments = append(sp.segments, seg)
			cur = nil
			continue
		}
		if cur == nil || cur.rows >= rowsPerBucket {
			cur = &spillBucket{first: int32(i)}
			sp.segments = append(sp.segments, []int{len(sp.buckets)})
			sp.buckets = append(sp.buckets, cur)
		}
		cur.rows += g.Count
		cur.end = int32(i) + 1
		sp.bucket = append(sp.bucket, int32(len(sp.buckets)-1))
		sp.split = append(sp.split, 0)
	}
	if len(sp.buckets) == 0 {
		sp.buckets = append(sp.buckets, &spillBucket{}) // an empty scope: one empty segment
		sp.segments = append(sp.segments, []int{0})
	}
	sp.chunk = min(max(spillBufferBytes/len(sp.buckets), spillChunkMin), spillChunkMax)
	if d := spillDir.Load(); d != nil {
		dir = *d
	}
	f, err := os.CreateTemp(dir, "tally-scope-*")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errCannotSpill, err)
	}
	// Unlinked at once: the file goes when it is closed, or with the process.
	_ = os.Remove(f.Name())
	sp.f = f
	return sp, nil
}

// groupKey is the key of a group in spill.index.
func groupKey(contract, currency, kind string) string {
	return contract + "\x00" + currency + "\x00" + kind
}

// spillScanner puts the rows one connection reads into the buckets: it
// buffers each bucket's bytes of its own and writes them to the spill's
// file in chunks.
type spillScanner struct {
	sp   *spill
	key  []byte
	bufs [][]byte // by bucket
	seen []int64  // by bucket
}

// add puts one row into its group's bucket: the group, occurred_at, id and
// amount, then the external id, counterparty and description, each after
// its length.
func (sc *spillScanner) add(r *db.ScopeRawRow) error {
	sp := sc.sp
	k := append(sc.key[:0], r.ContractID...)
	k = append(k, 0)
	k = append(k, r.Currency...)
	k = append(k, 0)
	k = append(k, r.Kind...)
	sc.key = k
	g, ok := sp.index[string(k)]
	if !ok {
		return fmt.Errorf("a row of group %q, which the scope's groups do not hold", k)
	}
	b := sp.bucket[g]
	if span := sp.split[g]; span > 0 {
		d := (r.OccurredAtMicros - sp.groups[g].FirstMicros) / span
		if r.OccurredAtMicros < sp.groups[g].FirstMicros || d >= int64(len(sp.buckets))-int64(b) || sp.buckets[b+int32(d)].first != g {
			return fmt.Errorf("a row of group %d outside the group's time span", g)
		}
		b += int32(d)
	}
	buf := sc.bufs[b]
	if buf == nil {
		buf = make([]byte, 0, sp.chunk+1024)
	}
	buf = binary.AppendUvarint(buf, uint64(g))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.OccurredAtMicros))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.ID))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(r.AmountMinor))
	desc := r.Description
	if !sp.descriptions {
		desc = nil // the report leaves the field empty: it stays off the disk
	}
	for _, s := range [3][]byte{r.ExternalID, r.Counterparty, desc} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	sc.bufs[b] = buf
	sc.seen[b]++
	if len(buf) >= sp.chunk {
		return sc.flush(b)
	}
	return nil
}

// flush writes bucket b's buffer to the file, as a chunk of the bucket.
func (sc *spillScanner) flush(b int32) error {
	buf := sc.bufs[b]
	if len(buf) == 0 {
		return nil
	}
	sp := sc.sp
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.off+int64(len(buf)) > sp.maxBytes {
		return fmt.Errorf("%w: the scope needs more than %d bytes of temporary file", errCannotSpill, sp.maxBytes)
	}
	if _, err := sp.f.Write(buf); err != nil {
		return fmt.Errorf("%w: %w", errCannotSpill, err)
	}
	bk := sp.buckets[b]
	bk.chunks = append(bk.chunks, spillChunk{off: sp.off, n: len(buf)})
	sp.off += int64(len(buf))
	bk.size += int64(len(buf))
	sc.bufs[b] = buf[:0]
	return nil
}

// flushAll writes what the scanner still buffers, and lets go of its
// buffers.
func (sc *spillScanner) flushAll() error {
	for b := range sc.bufs {
		if err := sc.flush(int32(b)); err != nil {
			return err
		}
		sc.bufs[b] = nil
	}
	return nil
}

func (sp *spill) close() { _ = sp.f.Close() }

// spillRow is a row of a bucket being sorted: its strings are in the
// bucket's bytes.
type spillRow struct {
	group            int32
	at, id, amount   int64
	ext, cp, desc    uint32 // offsets in the bucket's bytes
	extN, cpN, descN uint32
}

// bucketBuf holds the bytes and the rows of the buckets a worker sorts.
type bucketBuf struct {
	data []byte
	rows []spillRow
}

// emit reads bucket i back, sorts its rows into report order and gives
// them to emit.
func (sp *spill) emit(i int, buf *bucketBuf, keepsNames bool, emit func(*report.Transaction) error) error {
	b := sp.buckets[i]
	buf.data = grow(buf.data, int(b.size))
	data := buf.data
	var pos int64
	for _, c := range b.chunks {
		if _, err := sp.f.ReadAt(data[pos:pos+int64(c.n)], c.off); err != nil {
			return fmt.Errorf("reading the spilled scope: %w", err)
		}
		pos += int64(c.n)
	}
	// Each group's rows go to the group's place (the groups counted
	// them), then each group is sorted by (occurred_at, id): the rows
	// came in the table's order, which is nearly that.
	buf.rows = grow(buf.rows, int(b.rows))
	rows := buf.rows
	count := func(g int32) int64 {
		if b.split {
			return b.rows // the bucket's part of its one group
		}
		return sp.groups[g].Count
	}
	next := make([]int64, b.end-b.first+1) // next[g-first]: where group g's next row goes
	for g := b.first; g < b.end; g++ {
		next[g-b.first+1] = next[g-b.first] + count(g)
	}
	for p := 0; p < len(data); {
		var r spillRow
		g, n := binary.Uvarint(data[p:])
		if n <= 0 || p+n+24 > len(data) {
			return errors.New("reading the spilled scope: a truncated row")
		}
		p += n
		if g < uint64(b.first) || g >= uint64(b.end) {
			return fmt.Errorf("reading the spilled scope: a row of group %d in bucket %d", g, i)
		}
		r.group = int32(g)
		r.at = int64(binary.LittleEndian.Uint64(data[p:]))
		r.id = int64(binary.LittleEndian.Uint64(data[p+8:]))
		r.amount = int64(binary.LittleEndian.Uint64(data[p+16:]))
		p += 24
		for _, f := range [3]struct{ off, n *uint32 }{{&r.ext, &r.extN}, {&r.cp, &r.cpN}, {&r.desc, &r.descN}} {
			l, n := binary.Uvarint(data[p:])
			if n <= 0 || uint64(len(data)-p-n) < l {
				return errors.New("reading the spilled scope: a truncated row")
			}
			p += n
			*f.off, *f.n = uint32(p), uint32(l)
			p += int(l)
		}
		k := &next[g-uint64(b.first)]
		if *k >= b.rows {
			return fmt.Errorf("reading the spilled scope: bucket %d holds more rows than its groups counted", i)
		}
		rows[*k] = r
		*k++
	}
	var from int64
	for g := b.first; g < b.end; g++ {
		to := from + count(g)
		if next[g-b.first] != to {
			return fmt.Errorf("reading the spilled scope: group %d has %d rows, it counted %d", g, next[g-b.first]-from, count(g))
		}
		slices.SortFunc(rows[from:to], func(a, b spillRow) int {
			return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id))
		})
		from = to
	}
	str := func(off, n uint32) string {
		if n == 0 {
			return ""
		}
		// The bytes stay as they are until emit returns; the writer
		// copies what it keeps.
		return unsafe.String(&data[off], n)
	}
	var t report.Transaction
	for _, r := range rows {
		g := &sp.groups[r.group]
		t = report.Transaction{
			ContractID: g.ContractID, Currency: g.Currency, Kind: g.Kind,
			OccurredAt: time.UnixMicro(r.at).UTC(),
			ExternalID: str(r.ext, r.extN), Description: str(r.desc, r.descN),
			AmountMinor: r.amount,
		}
		if keepsNames {
			t.Counterparty = str(r.cp, r.cpN)
		} else {
			// Pseudonyms are cached by name: the name must outlive data.
			t.Counterparty = string(data[r.cp : r.cp+r.cpN])
		}
		if err := emit(&t); err != nil {
			return err
		}
	}
	return nil
}

// grow returns s resliced to n elements, or a new slice with room for a
// quarter more when s is too small: buckets differ in size, and a pooled
// slice grown to each larger one in turn would leave one behind each time.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	return make([]T, n, n+n/4)
}
