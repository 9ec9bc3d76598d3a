// Command tally-chaos is Tally's chaos run (make chaos). It proves, by
// trying, that no report is lost or changed when processes crash and
// dependencies go away:
//
//   - its own PostgreSQL cluster (initdb of the installed binaries into a
//     temporary directory, its own port, trust authentication; as root it
//     runs as the postgres user) and its own MinIO process on a free port
//     with a temporary data directory, so that crashing them disturbs
//     nobody;
//   - the API and two workers as real processes (the binaries built from this
//     checkout), with short job timeouts so that River's rescuer takes back
//     the jobs of killed workers within the run;
//   - a demo tenant with about 200k transactions and cases of mixed sizes,
//     and 300 reports created over HTTP as the demo auditor, spread over
//     time, each with its own Idempotency-Key across retries;
//   - meanwhile: small imports (ingest.Import) into the demo application,
//     committing at once, held open for seconds first, or rolled back; kill
//     -9 of a random worker every few seconds (restarted at once); a MinIO
//     crash (SIGKILL) of 15 s with downloads attempted through the API
//     while it is down; and a PostgreSQL crash: SIGKILL of the postmaster,
//     then a start on the same data directory, which runs crash recovery;
//   - then the zombie phase (zombie.go): a third worker is paused with
//     SIGSTOP while it runs a job, past the rescue deadline, until the
//     rescued run has completed the job, and resumed with SIGCONT, so that
//     its run, still alive, races the one that finished.
//
// With -postgres shared (or when no initdb is found) the database is one
// of the machine's shared cluster and its outage is simulated for that
// database only: ALTER DATABASE ... ALLOW_CONNECTIONS false refuses new
// connections, and pg_terminate_backend, repeated every 100 ms, kills every
// open one; after 5 s connections are allowed again.
//
// At the end, once every report is terminal (or the deadline passed), it
// checks that every report is ready exactly once (one report.generated event,
// one completed job), that every object's SHA-256 and size equal its row,
// that every committed import is whole and every rolled-back one absent,
// that no object lacks a ready report, and that downloads while MinIO was
// down got 503 with a JSON error. It prints a Markdown table and exits
// non-zero on any loss. Logs of every process are kept under
// artifacts/chaos/<run>/.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/internal/startup"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tally-chaos:", err)
		os.Exit(1)
	}
}

// options are the knobs of a run (flags; CHAOS_ARGS in make chaos).
type options struct {
	reports      int
	transactions int64
	createOver   time.Duration
	chaosFor     time.Duration
	killMin      time.Duration
	killMax      time.Duration
	minioAt      time.Duration
	minioFor     time.Duration
	pgAt         time.Duration
	pgFor        time.Duration
	deadline     time.Duration
	jobTimeout   time.Duration
	rescueAfter  time.Duration
	maxAttempts  int
	concurrency  int
	seed         uint64
	version      bool
	keep         bool
	out          string

	postgres      string
	pgBin         string
	importEvery   time.Duration
	importRowsMax int
	zombie        bool
	zombieAt      time.Duration
	zombieTimeout time.Duration
	sweepEvery    time.Duration
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("tally-chaos", flag.ContinueOnError)
	fs.IntVar(&o.reports, "reports", 300, "reports to create")
	fs.Int64Var(&o.transactions, "transactions", 200_000, "transactions of the demo application")
	fs.DurationVar(&o.createOver, "create-over", 80*time.Second, "spread the creations over this long")
	fs.DurationVar(&o.chaosFor, "chaos-for", 95*time.Second, "kill workers for this long from the start")
	fs.DurationVar(&o.killMin, "kill-min", 5*time.Second, "shortest pause between two worker kills")
	fs.DurationVar(&o.killMax, "kill-max", 9*time.Second, "longest pause between two worker kills")
	fs.DurationVar(&o.minioAt, "minio-at", 30*time.Second, "crash MinIO this long after the start")
	fs.DurationVar(&o.minioFor, "minio-for", 15*time.Second, "keep MinIO down this long")
	fs.DurationVar(&o.pgAt, "pg-at", 60*time.Second, "crash PostgreSQL (or cut it off, when shared) this long after the start")
	fs.DurationVar(&o.pgFor, "pg-for", 5*time.Second, "keep PostgreSQL cut off this long")
	fs.DurationVar(&o.deadline, "deadline", 8*time.Minute, "every report must be terminal this long after the start")
	fs.DurationVar(&o.jobTimeout, "job-timeout", 30*time.Second, "TALLY_JOB_TIMEOUT of the workers")
	fs.DurationVar(&o.rescueAfter, "rescue-after", 40*time.Second, "TALLY_RESCUE_STUCK_JOBS_AFTER of the workers")
	fs.IntVar(&o.maxAttempts, "max-attempts", 5, "TALLY_JOB_MAX_ATTEMPTS: each report job's attempt budget (the production default)")
	fs.IntVar(&o.concurrency, "concurrency", 3, "TALLY_WORKER_CONCURRENCY of each worker")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed of the report mix and the kills (0: from the clock)")
	fs.BoolVar(&o.keep, "keep", false, "keep the database and MinIO data for inspection")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")
	fs.StringVar(&o.out, "out", "", "directory for logs (default artifacts/chaos/<run>)")
	fs.StringVar(&o.postgres, "postgres", pgAuto, "PostgreSQL: private (a cluster of the run's own, crashed with SIGKILL), shared (the local cluster, outage simulated), auto (private when initdb is found)")
	fs.StringVar(&o.pgBin, "pg-bin", "/usr/lib/postgresql/15/bin", "directory of initdb and postgres for -postgres private (else initdb on PATH)")
	fs.DurationVar(&o.importEvery, "import-every", 1500*time.Millisecond, "start an import batch this often while reports are created (0: no imports)")
	fs.IntVar(&o.importRowsMax, "import-rows", 300, "largest import batch, in rows")
	fs.BoolVar(&o.zombie, "zombie", true, "run the zombie phase (a worker paused with SIGSTOP past the rescue deadline)")
	fs.DurationVar(&o.zombieAt, "zombie-at", 0, "start the zombie phase this long after the start (0: once the kills and the PostgreSQL outage are over)")
	fs.DurationVar(&o.zombieTimeout, "zombie-job-timeout", 5*time.Minute, "TALLY_JOB_TIMEOUT (and rescue) of the zombie worker, so that its run is still alive when it resumes")
	fs.DurationVar(&o.sweepEvery, "sweep-every", 20*time.Second, "TALLY_SWEEP_INTERVAL of the workers (the grace is their job timeout + 15 s)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	if o.killMax < o.killMin {
		o.killMax = o.killMin
	}
	switch o.postgres {
	case pgAuto, pgPrivate, pgShared:
	default:
		return o, fmt.Errorf("-postgres %q: want private, shared or auto", o.postgres)
	}
	if o.zombieAt == 0 {
		o.zombieAt = max(o.chaosFor, o.pgAt+o.pgFor+10*time.Second) + 2*time.Second
	}
	o.importRowsMax = max(o.importRowsMax, 1)
	return o, nil
}

// workerCount is how many worker processes run.
const workerCount = 2

// chaos is one run.
type chaos struct {
	opts   options
	cfg    *config.Config
	logger *slog.Logger
	runID  string
	outDir string
	rng    *rand.Rand
	rngMu  sync.Mutex

	pgMode    string   // pgPrivate or pgShared
	cluster   *cluster // the private cluster; nil when shared
	db        *chaosDB
	pool      *pgxpool.Pool
	minio     *minioServer
	s3        storage.Opts
	store     *storage.Store
	api       *proc
	apiPort   int
	workers   []*proc
	zombie    *proc // the zombie phase's worker; nil before it
	binDir    string
	commonEnv []string // environment of the API and the workers
	client    *apiClient
	tenant    *ingest.DemoTenant
	specs     []reportSpec
	t0        time.Time

	stopping atomic.Bool // set before the final stop: exits are expected
	pgDown   atomic.Bool // the simulated PostgreSQL outage is on

	mu            sync.Mutex
	kills         int
	killedPending map[*proc]bool // killed by the run, restart expected
	restarts      int
	crashes       []string // unexpected exits of API or workers
	minioDown     time.Time
	minioUp       time.Time
	pgOutage      outageResult
	pgCrash       crashResult
	imports       []importBatch
	zombieRes     zombieResult
	extraIDs      []string // reports created by the zombie phase
	pgOutageErr   error
	ids           []string
	createErrs    []error
	stopResults   []string
}

// rel is t relative to the start of the chaos phase: "+1m2.3s".
func (c *chaos) rel(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "+" + t.Sub(c.t0).Round(100*time.Millisecond).String()
}

func (c *chaos) since() time.Duration { return time.Since(c.t0).Round(100 * time.Millisecond) }

func (c *chaos) randDuration(lo, hi time.Duration) time.Duration {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(c.rng.Int64N(int64(hi-lo)))
}

func (c *chaos) randIntN(n int) int {
	c.rngMu.Lock()
	defer c.rngMu.Unlock()
	return c.rng.IntN(n)
}

func run(ctx context.Context) error {
	opts, err := parseOptions(os.Args[1:])
	if err != nil {
		return err
	}
	if opts.version {
		fmt.Printf("tally-chaos %s\n", buildinfo.Get())
		return nil
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	started := time.Now()
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	c := &chaos{
		opts: opts, cfg: cfg, logger: logger, runID: started.UTC().Format("20060102_150405"),
		rng:           rand.New(rand.NewPCG(opts.seed, opts.seed>>1|1)),
		killedPending: map[*proc]bool{},
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	c.outDir = opts.out
	if c.outDir == "" {
		c.outDir = filepath.Join(root, "artifacts", "chaos", c.runID)
	}
	if err := os.MkdirAll(c.outDir, 0o755); err != nil {
		return err
	}
	logger.Info("chaos run", slog.String("run", c.runID), slog.String("logs", c.outDir), slog.Uint64("seed", opts.seed),
		slog.Int("reports", opts.reports), slog.Int64("transactions", opts.transactions))

	// Cleanup runs on every return, Ctrl-C included; registered in reverse
	// order of need.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	// Binaries.
	tmp, err := os.MkdirTemp("", "tally-chaos-")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		if opts.keep {
			logger.Info("kept temporary directory", slog.String("dir", tmp))
			return
		}
		_ = os.RemoveAll(tmp)
	})
	binDir := filepath.Join(tmp, "bin")
	t := time.Now()
	if err := buildBinaries(ctx, root, binDir); err != nil {
		return err
	}
	logger.Info("built tally-api and tally-worker", slog.Duration("took", time.Since(t).Round(time.Millisecond)))

	// Database: on a private cluster, or on the shared one.
	pgCleanup, err := c.setupPostgres(ctx, cfg)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, pgCleanup)
	if err := c.db.migrate(ctx, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("migrating %s: %w", c.db.name, err)
	}
	logger.Info("created and migrated database", slog.String("database", c.db.name))
	c.pool, err = poolFor(ctx, c.db.url)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, c.pool.Close)

	// MinIO of our own.
	minioBin, err := minioBinary(ctx, root, logger)
	if err != nil {
		return err
	}
	dataDir := filepath.Join(tmp, "minio-data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	c.minio, err = newMinIO(minioBin, dataDir, filepath.Join(c.outDir, "minio.log"), cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey.Reveal())
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() { c.minio.stop(10 * time.Second) })
	if err := c.minio.startAndWait(ctx, 60*time.Second); err != nil {
		return err
	}
	// The private MinIO: the configured credentials and region, its own
	// address and bucket, no TLS.
	c.s3 = startup.StorageOpts(cfg.S3)
	c.s3.Endpoint, c.s3.Bucket, c.s3.UseTLS = c.minio.addr, "tally-chaos", false
	if c.store, err = storage.New(c.s3); err != nil {
		return err
	}
	if err := c.store.EnsureBucket(ctx); err != nil {
		return fmt.Errorf("creating bucket: %w", err)
	}
	logger.Info("started a private MinIO", slog.String("addr", c.minio.addr), slog.Int("pid", c.minio.pid()))

	// Tenant and report mix.
	if err := c.seed(ctx); err != nil {
		return err
	}

	// API and workers.
	cleanups = append(cleanups, c.stopAll)
	if err := c.startProcesses(ctx, binDir); err != nil {
		return err
	}

	// The chaos phase.
	if err := c.chaosPhase(ctx); err != nil {
		return err
	}

	// Verification, with everything up.
	v, err := c.verify(ctx)
	if err != nil {
		return fmt.Errorf("verifying: %w", err)
	}
	c.stopAll()
	v.add("graceful stop (SIGTERM)", joinOr(c.stopResults, "-"))
	v.add("wall time", time.Since(started).Round(time.Second).String())
	v.print(os.Stdout)
	if len(v.problems) > 0 {
		return fmt.Errorf("%d problem(s); logs in %s", len(v.problems), c.outDir)
	}
	logger.Info("chaos run passed", slog.String("logs", c.outDir))
	return nil
}

// seed creates the demo tenant, cases of mixed sizes, and the report mix.
func (c *chaos) seed(ctx context.Context) error {
	t := time.Now()
	last := time.Now()
	tenant, err := ingest.SeedDemo(ctx, c.pool, &ingest.DemoOpts{
		Transactions: c.opts.transactions,
		Progress: func(rows int64) {
			if time.Since(last) > 5*time.Second {
				c.logger.Info("seeding", slog.Int64("rows", rows))
				last = time.Now()
			}
		},
	})
	if err != nil {
		return err
	}
	if _, err := c.pool.Exec(ctx, `ANALYZE transactions`); err != nil {
		return err
	}
	c.tenant = tenant
	owner, auditor := tenant.User(ingest.DemoRoleOwner), tenant.User(ingest.DemoRoleAuditor)
	all, twoContracts := tenant.Cases[0], tenant.Cases[1]

	// More cases: subtotals only over everything; one contract's month with
	// every flag; six contracts' subtotals with counterparty names.
	mk := func(title string, flags, filters []string, start, end time.Time) (string, error) {
		cs, err := db.CreateCase(ctx, c.pool, db.CreateCaseParams{
			ApplicationID: tenant.Application.ID, Title: title, PeriodStart: start, PeriodEnd: end,
			DisclosureFlags: flags, ContractFilters: filters,
			AccessWindowStart: all.AccessWindowStart, AccessWindowEnd: all.AccessWindowEnd,
		})
		if err != nil {
			return "", err
		}
		if _, err := db.ApproveCase(ctx, c.pool, cs.ID, owner.ID); err != nil {
			return "", err
		}
		return cs.ID, db.AssignCase(ctx, c.pool, cs.ID, auditor.ID)
	}
	subtotalsAll, err := mk("Chaos: subtotals of every contract", []string{}, []string{}, all.PeriodStart, all.PeriodEnd)
	if err != nil {
		return err
	}
	oneMonth, err := mk("Chaos: one contract, one month, every flag",
		[]string{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions}, []string{"contract-007"},
		all.PeriodStart.AddDate(0, 2, 0), all.PeriodStart.AddDate(0, 3, 0))
	if err != nil {
		return err
	}
	sixContracts, err := mk("Chaos: six contracts, subtotals with names", []string{report.FlagCounterpartyNames},
		[]string{"contract-003", "contract-004", "contract-005", "contract-006", "contract-008", "contract-009"},
		all.PeriodStart, all.PeriodEnd)
	if err != nil {
		return err
	}
	kinds := []reportSpec{
		{"huge: line items of every transaction", all.ID, "transaction_summary"},
		{"medium: line items of two contracts", twoContracts.ID, "transaction_summary"},
		{"subtotals of every contract", subtotalsAll, "transaction_summary"},
		{"small: one contract, one month", oneMonth, "transaction_summary"},
		{"subtotals of six contracts", sixContracts, "transaction_summary"},
		{"activity log", twoContracts.ID, "activity_log"},
	}
	weights := []int{4, 12, 20, 32, 16, 16}
	c.rngMu.Lock()
	c.specs = mix(c.opts.reports, kinds, weights, c.rng)
	c.rngMu.Unlock()
	c.logger.Info("seeded the demo tenant", slog.Int64("transactions", tenant.Transactions),
		slog.Int("cases", len(tenant.Cases)+3), slog.Duration("took", time.Since(t).Round(time.Millisecond)))
	return nil
}

// startProcesses starts the API and the workers and waits until all are ready.
func (c *chaos) startProcesses(ctx context.Context, binDir string) error {
	var err error
	if c.apiPort, err = freePort(); err != nil {
		return err
	}
	common := []string{
		"DATABASE_URL=" + c.db.url,
		"S3_ENDPOINT=" + c.s3.Endpoint,
		"S3_ACCESS_KEY_ID=" + c.s3.AccessKeyID,
		"S3_SECRET_ACCESS_KEY=" + c.s3.SecretAccessKey,
		"S3_BUCKET=" + c.s3.Bucket,
		"S3_REGION=" + c.s3.Region,
		"S3_USE_TLS=false",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"TALLY_JOB_MAX_ATTEMPTS=" + strconv.Itoa(c.opts.maxAttempts),
		"TALLY_SHUTDOWN_TIMEOUT=5s",
		"TALLY_PSEUDONYM_KEY=" + chaosPseudonymKey,
		"TALLY_ENV=development", // manifests signed with an ephemeral key
		"HOME=" + os.Getenv("HOME"),
		"PATH=" + os.Getenv("PATH"),
	}
	apiEnv := append(append([]string(nil), common...),
		"PORT="+strconv.Itoa(c.apiPort),
		"TALLY_REQUEST_TIMEOUT=10s",
		// One auditor creates every report: the per-user limit is not under test.
		"TALLY_CREATE_RATE_PER_MINUTE=100000",
		// The huge case (every transaction) goes to the large queue.
		"TALLY_LARGE_REPORT_ROWS="+strconv.FormatInt(c.opts.transactions/2, 10),
	)
	c.api = newProc("api", filepath.Join(binDir, "tally-api"), nil, apiEnv, filepath.Join(c.outDir, "api.log"))
	if err := c.api.start(); err != nil {
		return err
	}
	go c.supervise(ctx, c.api)
	c.binDir, c.commonEnv = binDir, common
	for i := range workerCount {
		w, readyURL, err := c.newWorker(fmt.Sprintf("worker-%d", i+1), c.opts.concurrency, c.opts.jobTimeout, c.opts.rescueAfter)
		if err != nil {
			return err
		}
		if err := w.start(); err != nil {
			return err
		}
		c.workers = append(c.workers, w)
		go c.supervise(ctx, w)
		if err := waitHTTP(ctx, readyURL, 30*time.Second, w); err != nil {
			return fmt.Errorf("%s: %w", w.name, err)
		}
	}
	if err := waitHTTP(ctx, "http://127.0.0.1:"+strconv.Itoa(c.apiPort)+"/readyz", 30*time.Second, c.api); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	c.client = &apiClient{
		base:      "http://127.0.0.1:" + strconv.Itoa(c.apiPort),
		foreignID: c.tenant.Application.ForeignID,
		token:     c.tenant.User(ingest.DemoRoleAuditor).Token,
		http:      &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16}},
	}
	c.logger.Info("API and workers ready", slog.String("api", c.client.base), slog.Int("api_pid", c.api.pid()),
		slog.Int("worker_1_pid", c.workers[0].pid()), slog.Int("worker_2_pid", c.workers[1].pid()))
	return nil
}

// newWorker returns a tally-worker process, not started, and the URL of
// its /readyz.
func (c *chaos) newWorker(name string, concurrency int, jobTimeout, rescueAfter time.Duration) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	env := append(append([]string(nil), c.commonEnv...),
		"TALLY_METRICS_PORT="+strconv.Itoa(port),
		"TALLY_WORKER_CONCURRENCY="+strconv.Itoa(concurrency),
		"TALLY_WORKER_LARGE_CONCURRENCY=1",
		"TALLY_JOB_TIMEOUT="+jobTimeout.String(),
		"TALLY_RESCUE_STUCK_JOBS_AFTER="+rescueAfter.String(),
		"TALLY_FETCH_POLL_INTERVAL=500ms",
		// sweep_objects runs during the chaos too, racing the runs, with
		// the shortest safe grace: a run cannot commit its file once its
		// job timeout passed.
		"TALLY_SWEEP_INTERVAL="+c.opts.sweepEvery.String(),
		"TALLY_SWEEP_GRACE="+(jobTimeout+15*time.Second).String(),
	)
	w := newProc(name, filepath.Join(c.binDir, "tally-worker"), nil, env, filepath.Join(c.outDir, name+".log"))
	return w, "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz", nil
}

// waitHTTP waits until url answers 200, failing early if p exits.
func waitHTTP(ctx context.Context, url string, within time.Duration, p *proc) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !p.running() {
			return fmt.Errorf("exited while starting (%v); see %s", p.exitErr(), p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; see %s", url, within, p.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *chaos) sinceT0() string {
	if c.t0.IsZero() {
		return "setup"
	}
	return c.since().String()
}

// stopAll stops the API and the workers with SIGTERM and records how each
// ended. It is safe to call twice.
func (c *chaos) stopAll() {
	if c.stopping.Swap(true) {
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	all := append([]*proc{}, c.workers...)
	if c.zombie != nil {
		all = append(all, c.zombie)
	}
	if c.api != nil {
		all = append(all, c.api)
	}
	for _, p := range all {
		wg.Go(func() {
			// A supervisor may have been restarting p as stopping was set;
			// give it the time to give up or finish.
			time.Sleep(100 * time.Millisecond)
			if !p.running() {
				return
			}
			_ = p.signal(syscall.SIGCONT) // a paused zombie must hear SIGTERM
			clean := p.stop(20 * time.Second)
			res := fmt.Sprintf("%s: exit 0", p.name)
			if !clean {
				res = fmt.Sprintf("%s: SIGKILL after 20 s", p.name)
			} else if err := p.exitErr(); err != nil {
				res = fmt.Sprintf("%s: %v", p.name, err)
			}
			mu.Lock()
			c.stopResults = append(c.stopResults, res)
			mu.Unlock()
		})
	}
	wg.Wait()
}
