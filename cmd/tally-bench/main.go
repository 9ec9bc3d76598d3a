// Command tally-bench measures Tally against the limits of its own parts, in
// one run on one machine: it creates a database and a bucket of its own,
// seeds them, builds and starts the real tally-api and tally-worker
// processes, drives them over HTTP as the portal does, and measures beside
// each figure a baseline that does the same work without Tally (the same SQL
// without HTTP, COPY of the same SELECT, River no-op jobs, a direct MinIO
// GET). Each figure is the median of several runs; each run measures the
// figure and its baseline back to back. It prints a Markdown table and
// writes it, with the machine's description, to BENCHMARKS.md.
//
//	go run ./cmd/tally-bench            # full: 10k, 100k and 1M transactions (under 15 minutes)
//	go run ./cmd/tally-bench -quick     # smaller sizes and shorter phases
//
// Configuration comes from the environment of scripts/services.sh
// (DATABASE_URL names the server, whose database is left alone; S3_*).
// Progress goes to stderr, the table to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/internal/buildinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tally-bench:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	quick bool
	runs  int
	out   string
	keep  bool
	reuse bool         // -reuse: seed the scopes of rows 2 and 3 once, in reuseDatabase
	only  map[int]bool // rows to measure; empty: every row
	large bool         // -large: a 10M-transaction scope after the others

	workerBin string // a prebuilt tally-worker to run instead of this tree's (-worker-bin)
	apiBin    string // a prebuilt tally-api to run instead of this tree's (-api-bin)

	sizes        []int64       // transactions in scope of the time-to-ready reports
	smallReports int           // reports in the small-report throughput batch
	smallRows    int64         // transactions in scope of each small report
	smallWorkers []int         // worker processes of the small-report batches
	loadFor      time.Duration // measured duration of each load phase
	warmup       time.Duration // unmeasured load before each phase
	pickups      int           // reports created one at a time per pickup run
	version      bool          // print the version and exit
	pgss         bool          // -pgss: print pg_stat_statements per report of row 4's batches
}

func parseOptions(args []string) (*options, error) {
	fs := flag.NewFlagSet("tally-bench", flag.ContinueOnError)
	o := &options{}
	fs.BoolVar(&o.quick, "quick", false, "smaller sizes (10k and 100k transactions) and shorter load phases")
	fs.IntVar(&o.runs, "runs", 3, "runs per figure; the table shows medians")
	fs.StringVar(&o.out, "out", "BENCHMARKS.md", "file the table is written to; empty: stdout only")
	fs.BoolVar(&o.keep, "keep", false, "keep the bench database and bucket (for profiling by hand)")
	fs.BoolVar(&o.reuse, "reuse", false, "seed the scopes of rows 2 and 3 (-sizes, -large) into the database "+reuseDatabase+
		" once and read them again in later runs with -reuse (seeding 10M rows takes minutes); the database is kept")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	only := fs.String("only", "", "comma-separated row numbers to measure (e.g. 12,13); empty: every row")
	fs.BoolVar(&o.large, "large", false, "add a 10M-transaction scope to rows 2 and 3 (seeding it takes minutes; make bench-large)")
	fs.StringVar(&o.workerBin, "worker-bin", "", "run this prebuilt tally-worker instead of building this tree's (for before/after pairs)")
	fs.StringVar(&o.apiBin, "api-bin", "", "run this prebuilt tally-api instead of building this tree's (for before/after pairs)")
	fs.BoolVar(&o.pgss, "pgss", false, "print the top pg_stat_statements entries per report or job of each row 4 batch (needs the library preloaded)")
	smallReports := fs.Int("small-reports", 0, "reports in each row 4 batch (e.g. 3000 for a longer profile), instead of the default")
	smallWorkers := fs.String("small-workers", "", "comma-separated worker process counts of row 4 (e.g. 2), instead of the defaults")
	sizes := fs.String("sizes", "", "comma-separated scope sizes of rows 2 and 3 (e.g. 10000,100000), instead of the defaults")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.runs < 1 {
		return nil, errors.New("-runs must be at least 1")
	}
	o.only = map[int]bool{}
	for _, f := range strings.Split(*only, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > lastRow {
			return nil, fmt.Errorf("-only: %q is not a row number from 1 to %d", f, lastRow)
		}
		o.only[n] = true
	}
	if o.quick {
		o.sizes = []int64{10_000, 100_000}
		o.smallReports, o.smallRows = 200, 1_000
		o.smallWorkers = []int{1, 2}
		o.loadFor, o.warmup = 2*time.Second, 500*time.Millisecond
		o.pickups = 10
	} else {
		o.sizes = []int64{10_000, 100_000, 1_000_000}
		o.smallReports, o.smallRows = 1_000, 1_000
		o.smallWorkers = []int{1, 2, 4}
		o.loadFor, o.warmup = 5*time.Second, time.Second
		o.pickups = 20
	}
	if *sizes != "" {
		o.sizes = nil
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-sizes: %q is not a row count", f)
			}
			o.sizes = append(o.sizes, n)
		}
	}
	if *smallReports > 0 {
		o.smallReports = *smallReports
	}
	if *smallWorkers != "" {
		o.smallWorkers = nil
		for _, f := range strings.Split(*smallWorkers, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return nil, fmt.Errorf("-small-workers: %q is not a worker count", f)
			}
			o.smallWorkers = append(o.smallWorkers, n)
		}
	}
	if o.large {
		o.sizes = append(o.sizes, 10_000_000)
	}
	if o.only[9] || o.only[11] {
		o.only[2] = true // they read the largest report row 2 builds
	}
	if !o.wants(2, 3, 5, 9, 10, 11) {
		o.sizes = nil // no row reads the large scopes: do not seed them
	}
	return o, nil
}

// lastRow is the number of the table's last row.
const lastRow = 13

// wants reports whether any of the rows is to be measured.
func (o *options) wants(rows ...int) bool {
	if len(o.only) == 0 {
		return true
	}
	for _, n := range rows {
		if o.only[n] {
			return true
		}
	}
	return false
}

func run(ctx context.Context) error {
	opts, err := parseOptions(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if opts.version {
		fmt.Printf("tally-bench %s\n", buildinfo.Get())
		return nil
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := newProgress(os.Stderr)
	b := &bench{opts: opts, cfg: cfg, log: log}
	defer b.close()
	if err := b.setup(ctx); err != nil {
		return err
	}
	res, err := b.measure(ctx)
	if err != nil {
		return err
	}
	report := res.markdown(b.machine(ctx), opts)
	fmt.Print(report.table)
	if opts.out != "" {
		if err := os.WriteFile(opts.out, []byte(report.document), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", opts.out, err)
		}
		log.printf("wrote %s", opts.out)
	}
	log.printf("done in %s", log.elapsed().Round(time.Second))
	return nil
}

// progress prints timestamped progress lines.
type progress struct {
	w     *os.File
	start time.Time
}

func newProgress(w *os.File) *progress { return &progress{w: w, start: time.Now()} }

func (p *progress) elapsed() time.Duration { return time.Since(p.start) }

func (p *progress) printf(format string, args ...any) {
	d := p.elapsed()
	fmt.Fprintf(p.w, "[%02d:%02d] %s\n", int(d.Minutes()), int(d.Seconds())%60, fmt.Sprintf(format, args...))
}
