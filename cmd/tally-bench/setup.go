package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/startup"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// apiMaxConns is the API's default pool size (TALLY_API_DB_MAX_CONNS); the
// baselines get a pool of the same size.
const apiMaxConns = 16

// apiFetchCooldown is the FetchCooldown of tally-api's insert-only River
// client (cmd/tally-api): how often it may notify the workers of inserts.
const apiFetchCooldown = 5 * time.Millisecond

// bench is one benchmark run: its database, bucket, fixture and processes.
type bench struct {
	opts *options
	cfg  *config.Config
	log  *progress

	adminURL  string // the server's database named by DATABASE_URL
	dbName    string
	dbURL     string
	bucket    string
	tmp       string // binaries and process logs
	loadStart string

	ctl      *pgxpool.Pool // setup and bookkeeping queries
	seq      *pgxpool.Pool // the activity chain sequencer, one connection as in a worker
	base     *pgxpool.Pool // baselines: the API's pool size
	inserter *river.Client[pgx.Tx]
	minio    *minio.Client
	portal   *config.Portal

	fx      *fixture
	bin     binaries
	api     *proc
	client  *apiClient
	workers []*proc

	lastSmallCPU cpuUse // CPU use of the last small-report batch
	pgssOn       bool   // -pgss: the extension is created in the bench database
}

// scopeSet is one application with its seeded transactions and two approved
// cases over all of them: one with line items (and every disclosure flag),
// one with subtotals only.
type scopeSet struct {
	label    string
	rows     int64
	app      *db.Application
	lineCase *db.Case
	subCase  *db.Case
	query    db.ScopeParams // the scope both cases select, for the baselines
}

type fixture struct {
	org     *db.Organization
	auditor *db.User
	token   string
	create  *scopeSet   // POSTs of the create and polling rows
	small   *scopeSet   // small reports and pickup latency
	sizes   []*scopeSet // time to ready, memory, download
	list    *scopeSet   // the unpaged list (row 13): reports only, seeded by the row
}

func (b *bench) setup(ctx context.Context) error {
	b.loadStart = loadAvg()
	stamp := time.Now().UTC().Format("20060102_150405")
	b.adminURL = b.cfg.DatabaseURL.Reveal()
	b.dbName = "tally_bench_" + stamp
	b.bucket = "tally-bench-" + strings.ReplaceAll(stamp, "_", "-")
	var err error
	if b.dbURL, err = withDatabase(b.adminURL, b.dbName); err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "tally-bench-"); err != nil {
		return err
	}

	b.log.printf("building tally-api and tally-worker into %s", b.tmp)
	if b.bin, err = buildBinaries(ctx, b.tmp); err != nil {
		return err
	}
	if b.opts.workerBin != "" {
		b.bin.worker = b.opts.workerBin
	}
	if b.opts.apiBin != "" {
		b.bin.api = b.opts.apiBin
	}

	if b.opts.reuse {
		b.dbName = reuseDatabase
		if b.dbURL, err = withDatabase(b.adminURL, b.dbName); err != nil {
			return err
		}
	}
	exists := false
	if b.opts.reuse {
		if exists, err = databaseExists(ctx, b.adminURL, b.dbName); err != nil {
			return err
		}
	}
	b.log.printf("creating database %s (exists: %v) and bucket %s", b.dbName, exists, b.bucket)
	if !exists {
		if err := execAdmin(ctx, b.adminURL, "CREATE DATABASE "+pgx.Identifier{b.dbName}.Sanitize()); err != nil {
			b.dbName = ""
			return fmt.Errorf("creating the bench database: %w", err)
		}
	}
	if b.ctl, err = db.Connect(ctx, b.dbURL, &db.PoolOpts{MaxConns: 4, ApplicationName: "tally-bench-ctl"}); err != nil {
		return err
	}
	if b.base, err = db.Connect(ctx, b.dbURL, &db.PoolOpts{MaxConns: apiMaxConns, ApplicationName: "tally-bench-baseline"}); err != nil {
		return err
	}
	if b.seq, err = db.Connect(ctx, b.dbURL, &db.PoolOpts{MaxConns: 1, ApplicationName: "tally-bench-sequencer"}); err != nil {
		return err
	}
	// The create row's baseline is the handler's transaction: River sends
	// its insert notification in that transaction at most once per
	// FetchCooldown, so the inserter has tally-api's (5 ms), not River's
	// default (100 ms).
	if b.inserter, err = river.NewClient(riverpgxv5.New(b.base), &river.Config{FetchCooldown: apiFetchCooldown}); err != nil {
		return fmt.Errorf("creating River client: %w", err)
	}
	if b.portal, err = config.LoadPortal(""); err != nil {
		return err
	}
	s3 := b.cfg.S3
	if b.minio, err = minio.New(s3.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(s3.AccessKeyID, s3.SecretAccessKey.Reveal(), ""), Secure: s3.UseTLS, Region: s3.Region,
	}); err != nil {
		return fmt.Errorf("creating MinIO client: %w", err)
	}
	store, err := storage.New(b.storageOpts())
	if err != nil {
		return err
	}
	if err := store.EnsureBucket(ctx); err != nil {
		b.bucket = ""
		return fmt.Errorf("creating the bench bucket: %w", err)
	}

	b.log.printf("migrating")
	if _, err := db.Migrate(ctx, b.ctl, nil); err != nil {
		return err
	}
	if err := b.seed(ctx); err != nil {
		return err
	}
	return nil
}

func (b *bench) storageOpts() storage.Opts {
	opts := startup.StorageOpts(b.cfg.S3)
	opts.Bucket = b.bucket
	return opts
}

// seed creates the organization, the auditor and one application per scope
// size, each with its generated transactions and two cases.
func (b *bench) seed(ctx context.Context) error {
	fx := &fixture{}
	owner, reused, err := b.reusedFixture(ctx, fx)
	if err != nil {
		return err
	}
	if !reused {
		if fx.org, err = db.CreateOrganization(ctx, b.ctl, "Bench Org"); err != nil {
			return err
		}
		owner, err = db.CreateUser(ctx, b.ctl, db.CreateUserParams{OrgID: fx.org.ID, Email: "owner@bench.tally.test", Name: "Bench Owner",
			OwnerPermissions: []string{db.PermReportsList, db.PermReportsDownload}})
		if err != nil {
			return err
		}
		if fx.auditor, err = db.CreateUser(ctx, b.ctl, db.CreateUserParams{OrgID: fx.org.ID, Email: "auditor@bench.tally.test", Name: "Bench Auditor"}); err != nil {
			return err
		}
	}
	if _, fx.token, err = db.CreateSession(ctx, b.ctl, fx.auditor.ID, 24*time.Hour); err != nil {
		return err
	}

	type spec struct {
		label string
		rows  int64
		dst   **scopeSet
		seed  uint64
	}
	// With -reuse, the sets of other rows are new in each run (their
	// reports would pile up): their labels carry the run's stamp.
	other := ""
	if b.opts.reuse {
		other = "-" + strings.TrimPrefix(b.bucket, "tally-bench-")
	}
	specs := []spec{{"create" + other, b.opts.smallRows, &fx.create, 1}, {"small" + other, b.opts.smallRows, &fx.small, 2}}
	if b.opts.wants(13) {
		specs = append(specs, spec{"list" + other, 1, &fx.list, 3})
	}
	fx.sizes = make([]*scopeSet, len(b.opts.sizes))
	for i, n := range b.opts.sizes {
		// The seed is the size's own, so a reused set is the one a fresh
		// run would seed.
		specs = append(specs, spec{countLabel(n), n, &fx.sizes[i], uint64(n)})
	}
	for _, sp := range specs {
		set, err := b.seedSet(ctx, fx, owner, sp.label, sp.rows, sp.seed)
		if err != nil {
			return err
		}
		*sp.dst = set
	}
	// Autovacuum would get there on its own: the visibility map makes the
	// subtotals an index-only scan, and the statistics route big reports to
	// the large queue.
	b.log.printf("VACUUM ANALYZE")
	if _, err := b.ctl.Exec(ctx, `VACUUM ANALYZE transactions`); err != nil {
		return fmt.Errorf("vacuuming: %w", err)
	}
	b.fx = fx
	return nil
}

func (b *bench) seedSet(ctx context.Context, fx *fixture, owner *db.User, label string, rows int64, seed uint64) (*scopeSet, error) {
	gopts := ingest.GeneratorOpts{Seed: seed, Count: rows}
	app, err := b.reusedApp(ctx, fx, label, rows)
	if err != nil {
		return nil, err
	}
	if app != nil {
		b.log.printf("reusing %s: %d transactions of %s", label, rows, app.ID)
		gopts.ApplicationID = app.ID
		return b.scopeCases(ctx, fx, owner, app, label, rows, gopts)
	}
	if app, err = db.CreateApplication(ctx, b.ctl, db.CreateApplicationParams{OrgID: fx.org.ID, ForeignID: "bench-" + label, Name: "Bench " + label}); err != nil {
		return nil, err
	}
	if err := db.GrantPermissions(ctx, b.ctl, fx.auditor.ID, app.ID,
		[]string{db.PermReportsCreate, db.PermReportsList, db.PermReportsDownload}); err != nil {
		return nil, err
	}
	gopts.ApplicationID = app.ID
	started := time.Now()
	next := int64(250_000)
	gopts.Progress = func(n int64) {
		if n >= next {
			b.log.printf("  %s: %d rows", label, n)
			next += 250_000
		}
	}
	b.log.printf("seeding %s: %d transactions", label, rows)
	if _, err := ingest.Seed(ctx, b.ctl, gopts); err != nil {
		return nil, err
	}
	b.log.printf("  seeded %s in %s", label, time.Since(started).Round(time.Millisecond))
	return b.scopeCases(ctx, fx, owner, app, label, rows, gopts)
}

// scopeCases returns the set of app's seeded transactions, with two new
// cases over them.
func (b *bench) scopeCases(ctx context.Context, fx *fixture, owner *db.User, app *db.Application, label string, rows int64, gopts ingest.GeneratorOpts) (*scopeSet, error) {
	gen, err := ingest.NewGenerator(gopts)
	if err != nil {
		return nil, err
	}
	start, end := gen.Period()
	now := time.Now().UTC().Truncate(time.Second)
	mkCase := func(title string, flags []string) (*db.Case, error) {
		c, err := db.CreateCase(ctx, b.ctl, db.CreateCaseParams{
			ApplicationID: app.ID, Title: title, PeriodStart: start, PeriodEnd: end,
			DisclosureFlags: flags, ContractFilters: []string{},
			AccessWindowStart: now.Add(-time.Hour), AccessWindowEnd: now.Add(7 * 24 * time.Hour),
		})
		if err != nil {
			return nil, err
		}
		if _, err := db.ApproveCase(ctx, b.ctl, c.ID, owner.ID); err != nil {
			return nil, err
		}
		if err := db.AssignCase(ctx, b.ctl, c.ID, fx.auditor.ID); err != nil {
			return nil, err
		}
		return c, nil
	}
	// The baselines read the scope as a report does: through a creation
	// snapshot taken after the seed committed.
	var snapshot string
	if err := b.ctl.QueryRow(ctx, `SELECT pg_current_snapshot()::text`).Scan(&snapshot); err != nil {
		return nil, err
	}
	set := &scopeSet{label: label, rows: rows, app: app,
		query: db.ScopeParams{ApplicationID: app.ID, PeriodStart: start, PeriodEnd: end, ContractFilters: []string{},
			DataAsOf: now.Add(time.Hour), Snapshot: snapshot}}
	if set.lineCase, err = mkCase("bench "+label+" line items", []string{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions}); err != nil {
		return nil, err
	}
	if set.subCase, err = mkCase("bench "+label+" subtotals", []string{}); err != nil {
		return nil, err
	}
	return set, nil
}

// close stops the processes and drops the database and bucket (unless -keep).
func (b *bench) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b.stopWorkers()
	if b.api != nil {
		_ = b.api.stop(30 * time.Second)
	}
	if b.ctl != nil {
		b.ctl.Close()
	}
	if b.base != nil {
		b.base.Close()
	}
	if b.seq != nil {
		b.seq.Close()
	}
	if b.opts.keep {
		b.log.printf("kept database %s and bucket %s (-keep); logs in %s", b.dbName, b.bucket, b.tmp)
		return
	}
	if b.opts.reuse {
		b.log.printf("kept database %s for the next -reuse", b.dbName)
	} else if b.dbName != "" {
		if err := execAdmin(ctx, b.adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
			b.log.printf("dropping database %s: %v", b.dbName, err)
		}
	}
	if b.bucket != "" && b.minio != nil {
		if err := removeBucket(ctx, b.minio, b.bucket); err != nil {
			b.log.printf("removing bucket %s: %v", b.bucket, err)
		}
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}

// removeBucket deletes every object (in batches of 1,000) and the bucket.
func removeBucket(ctx context.Context, c *minio.Client, bucket string) error {
	objects := make(chan minio.ObjectInfo)
	go func() {
		defer close(objects)
		for o := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				return
			}
			objects <- o
		}
	}()
	for e := range c.RemoveObjects(ctx, bucket, objects, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return e.Err
		}
	}
	return c.RemoveBucket(ctx, bucket)
}

func execAdmin(ctx context.Context, url, sql string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", redact(url), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns the URL of another database on the same server.
func withDatabase(raw, name string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("DATABASE_URL must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "the database"
	}
	return u.Redacted()
}

// countName names a row count for people: 1M, 100k, 1000.
func countName(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1_000 && n%1_000 == 0:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return fmt.Sprint(n)
}

// countLabel names a row count in identifiers: 1m, 100k.
func countLabel(n int64) string { return strings.ToLower(countName(n)) }

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }

// reuseDatabase is the database -reuse seeds once and reads again.
const reuseDatabase = "tally_bench_reuse"

// databaseExists says whether the server has a database of that name.
func databaseExists(ctx context.Context, adminURL, name string) (bool, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return false, fmt.Errorf("connecting to %s: %w", redact(adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var ok bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&ok)
	return ok, err
}

// reusedFixture fills in fx's organization and auditor (and returns the
// owner) from an earlier -reuse run's database, with a new session; reused
// is false when there is none (or no -reuse).
func (b *bench) reusedFixture(ctx context.Context, fx *fixture) (owner *db.User, reused bool, err error) {
	if !b.opts.reuse {
		return nil, false, nil
	}
	owner, err = db.GetUserByEmail(ctx, b.ctl, "owner@bench.tally.test")
	if errors.Is(err, db.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if fx.auditor, err = db.GetUserByEmail(ctx, b.ctl, "auditor@bench.tally.test"); err != nil {
		return nil, false, err
	}
	fx.org = &db.Organization{}
	if err := b.ctl.QueryRow(ctx, `SELECT org_id FROM applications WHERE name LIKE 'Bench %' LIMIT 1`).Scan(&fx.org.ID); err != nil {
		return nil, false, fmt.Errorf("finding the reused organization: %w", err)
	}
	b.log.printf("reusing organization %s of %s", fx.org.ID, reuseDatabase)
	return owner, true, nil
}

// reusedApp returns the application of an earlier -reuse run that holds
// exactly rows seeded transactions under label, or nil.
func (b *bench) reusedApp(ctx context.Context, fx *fixture, label string, rows int64) (*db.Application, error) {
	if !b.opts.reuse || fx.org == nil {
		return nil, nil
	}
	app, err := db.GetApplicationByForeignID(ctx, b.ctl, fx.org.ID, "bench-"+label)
	if errors.Is(err, db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var n int64
	if err := b.ctl.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE application_id = $1`, app.ID).Scan(&n); err != nil {
		return nil, err
	}
	if n != rows {
		return nil, fmt.Errorf("-reuse: %s holds %d transactions, not %d: drop database %s", app.ID, n, rows, reuseDatabase)
	}
	return app, nil
}
