// Package tallytest is the integration-test harness: every test gets its own
// PostgreSQL database, cloned in milliseconds from a template migrated once,
// and its own MinIO bucket.
//
// Services come from TALLY_TEST_DATABASE_URL and TALLY_TEST_S3_* when set
// (`make services` prints them); otherwise, when a Docker engine answers,
// from testcontainers-go; otherwise the test fails and says so. Nothing is
// skipped silently.
package tallytest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
)

const noServices = `no test services: set TALLY_TEST_DATABASE_URL and TALLY_TEST_S3_ENDPOINT, TALLY_TEST_S3_ACCESS_KEY_ID, TALLY_TEST_S3_SECRET_ACCESS_KEY (run "make services" and eval its output, or just "make test"), or start a Docker engine so that testcontainers-go can run postgres and minio`

// Services are the test database server and object store.
type Services struct {
	DatabaseURL string // an admin database on the server; tests get their own
	S3          storage.Opts
}

var (
	servicesOnce sync.Once
	services     *Services
	servicesErr  error
)

// GetServices returns the test services, starting containers once per test
// binary when the environment names none.
func GetServices(tb testing.TB) *Services {
	tb.Helper()
	servicesOnce.Do(func() { services, servicesErr = resolveServices() })
	if servicesErr != nil {
		tb.Fatalf("%v", servicesErr)
	}
	return services
}

func resolveServices() (*Services, error) {
	dbURL := os.Getenv("TALLY_TEST_DATABASE_URL")
	s3Endpoint := os.Getenv("TALLY_TEST_S3_ENDPOINT")
	if dbURL != "" && s3Endpoint != "" {
		return &Services{
			DatabaseURL: dbURL,
			S3: storage.Opts{
				Endpoint:        s3Endpoint,
				AccessKeyID:     os.Getenv("TALLY_TEST_S3_ACCESS_KEY_ID"),
				SecretAccessKey: os.Getenv("TALLY_TEST_S3_SECRET_ACCESS_KEY"),
				Region:          envOr("TALLY_TEST_S3_REGION", "us-east-1"),
				UseTLS:          os.Getenv("TALLY_TEST_S3_USE_TLS") == "true",
				SSE:             os.Getenv("TALLY_TEST_S3_SSE"),
				SSEKMSKeyID:     os.Getenv("TALLY_TEST_S3_SSE_KMS_KEY_ID"),
			},
		}, nil
	}
	if dbURL != "" || s3Endpoint != "" {
		return nil, errors.New("set both TALLY_TEST_DATABASE_URL and TALLY_TEST_S3_ENDPOINT, or neither; " + noServices)
	}
	return startContainers()
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// templateName names the migrated template after the migrations it holds
// (Tally's files and River's version), so a schema change gets a new template
// and an old one is never reused.
func templateName() (string, error) {
	h := sha256.New()
	entries, err := fs.Glob(db.MigrationsFS(), "migrations/*.sql")
	if err != nil || len(entries) == 0 {
		return "", fmt.Errorf("finding Tally's migrations: %d files, %v", len(entries), err)
	}
	sort.Strings(entries)
	for _, e := range entries {
		b, err := fs.ReadFile(db.MigrationsFS(), e)
		if err != nil {
			return "", err
		}
		h.Write([]byte(e))
		h.Write(b)
	}
	river, err := db.RiverMigrationVersion()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "river-%d", river)
	// The template's grants are part of what it holds.
	fmt.Fprintf(h, "runtime-role-%s", RuntimeRole)
	return "tally_tpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

var templateOnce sync.Once
var templateErr error

// ensureTemplate creates the migrated template database once. Test binaries
// of several packages run at the same time, so creation holds an advisory lock.
func ensureTemplate(ctx context.Context, s *Services, name string) error {
	templateOnce.Do(func() { templateErr = createTemplate(ctx, s, name) })
	return templateErr
}

func createTemplate(ctx context.Context, s *Services, name string) error {
	admin, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		return fmt.Errorf("connecting to test database server: %w", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(872346001)`); err != nil {
		return err
	}
	defer admin.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(872346001)`)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	building := name + "_building"
	if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+building+` WITH (FORCE)`); err != nil {
		return err
	}
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+building); err != nil {
		return fmt.Errorf("creating template database: %w", err)
	}
	if err := ensureRuntimeRole(ctx, admin); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(s.DatabaseURL, building))
	if err != nil {
		return err
	}
	_, err = db.MigrateWith(ctx, pool, db.MigrateOpts{RuntimeRole: RuntimeRole})
	pool.Close()
	if err != nil {
		return fmt.Errorf("migrating template database: %w", err)
	}
	if _, err := admin.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+name); err != nil {
		return err
	}
	_, err = admin.Exec(ctx, `ALTER DATABASE `+name+` WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`)
	return err
}

// RuntimeRole is the role the services connect as in tests, as in
// production: granted what they need (db.GrantRuntime) by the migration of
// the template, owner of nothing, able to change no schema. Tests that pass
// through DB or DatabaseURL therefore prove the grants are enough.
const RuntimeRole = "tally_test_runtime"

// runtimePassword is RuntimeRole's password, for servers that ask for one
// (testcontainers' PostgreSQL); a trust server ignores it.
const runtimePassword = "tally_test_runtime"

// ensureRuntimeRole creates RuntimeRole on the server when missing. Roles
// belong to the whole server, and test binaries race to create it.
func ensureRuntimeRole(ctx context.Context, admin *pgx.Conn) error {
	_, err := admin.Exec(ctx, `CREATE ROLE `+RuntimeRole+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD '`+runtimePassword+`'`)
	var pgErr *pgconn.PgError
	if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")) {
		return fmt.Errorf("creating role %s: %w", RuntimeRole, err)
	}
	return nil
}

func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + name
	return u.String()
}

// asRuntime returns rawURL connecting as RuntimeRole.
func asRuntime(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(err)
	}
	u.User = url.UserPassword(RuntimeRole, runtimePassword)
	return u.String()
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// DatabaseURL creates a fresh, migrated database for the test and returns its
// URL, connecting as RuntimeRole: what the API and workers get. The database
// is dropped when the test ends (kept when TALLY_TEST_KEEP_DB=1, for
// debugging).
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	return asRuntime(OwnerDatabaseURL(tb))
}

// OwnerDatabaseURL is DatabaseURL connecting as the test server's admin
// user, for what only the schema's owner or a superuser does: migrations,
// tallyctl (an operator's tool), a forger with the database.
func OwnerDatabaseURL(tb testing.TB) string {
	tb.Helper()
	s := GetServices(tb)
	ctx := context.Background()
	tpl, err := templateName()
	if err != nil {
		tb.Fatalf("naming template database: %v", err)
	}
	if err := ensureTemplate(ctx, s, tpl); err != nil {
		tb.Fatalf("preparing template database: %v", err)
	}
	name := "tally_t_" + randomSuffix()
	admin, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		tb.Fatalf("connecting to test database server: %v", err)
	}
	defer admin.Close(ctx)
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, `CREATE DATABASE `+name+` TEMPLATE `+tpl)
		if err == nil || attempt == 20 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("cloning test database: %v", err)
	}
	tb.Cleanup(func() {
		if os.Getenv("TALLY_TEST_KEEP_DB") == "1" {
			tb.Logf("kept test database %s", name)
			return
		}
		ctx := context.Background()
		admin, err := pgx.Connect(ctx, s.DatabaseURL)
		if err != nil {
			tb.Errorf("dropping test database: %v", err)
			return
		}
		defer admin.Close(ctx)
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			tb.Errorf("dropping test database %s: %v", name, err)
		}
	})
	return withDatabase(s.DatabaseURL, name)
}

// DB returns a pool on a fresh, migrated database for the test, connected
// as RuntimeRole, as the services are.
func DB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return connect(tb, DatabaseURL(tb))
}

// OwnerDB is DB connected as the test server's admin user (see
// OwnerDatabaseURL).
func OwnerDB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return connect(tb, OwnerDatabaseURL(tb))
}

// AsOwner returns a pool on pool's database connected as the test server's
// admin user, for test setup that stands in for what the database's owner
// does in production (ANALYZE, as autovacuum does; VACUUM).
func AsOwner(tb testing.TB, pool *pgxpool.Pool) *pgxpool.Pool {
	tb.Helper()
	return connect(tb, withDatabase(GetServices(tb).DatabaseURL, pool.Config().ConnConfig.Database))
}

func connect(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := db.Connect(context.Background(), url, &db.PoolOpts{MaxConns: 20})
	if err != nil {
		tb.Fatalf("connecting to test database: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// S3Opts returns connection settings for a fresh bucket of the test's own,
// created now and emptied and removed when the test ends.
func S3Opts(tb testing.TB) storage.Opts {
	tb.Helper()
	opts := S3OptsNoBucket(tb)
	store, err := storage.New(opts)
	if err != nil {
		tb.Fatalf("creating store: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := store.EnsureBucket(ctx); err != nil {
		tb.Fatalf("creating test bucket %s: %v", opts.Bucket, err)
	}
	return opts
}

// S3OptsNoBucket returns connection settings for a bucket name of the
// test's own that does not exist yet; whatever the test creates there is
// removed when it ends.
func S3OptsNoBucket(tb testing.TB) storage.Opts {
	tb.Helper()
	opts := GetServices(tb).S3
	opts.Bucket = "tally-t-" + randomSuffix()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := removeBucket(ctx, opts); err != nil {
			tb.Errorf("removing test bucket %s: %v", opts.Bucket, err)
		}
	})
	return opts
}

// Store returns a Store on a fresh bucket of the test's own.
func Store(tb testing.TB) *storage.Store {
	tb.Helper()
	store, err := storage.New(S3Opts(tb))
	if err != nil {
		tb.Fatalf("creating store: %v", err)
	}
	return store
}

// Logger returns a logger that writes through t.Log, at debug level.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// EmptyDB returns a pool on a fresh database with no schema at all, for
// tests of the migrations themselves.
func EmptyDB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	s := GetServices(tb)
	ctx := context.Background()
	name := "tally_e_" + randomSuffix()
	admin, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		tb.Fatalf("connecting to test database server: %v", err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		tb.Fatalf("creating empty database: %v", err)
	}
	pool, err := db.Connect(ctx, withDatabase(s.DatabaseURL, name), nil)
	if err != nil {
		tb.Fatalf("connecting: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		admin, err := pgx.Connect(ctx, s.DatabaseURL)
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
	})
	return pool
}

// PseudonymMasterKey is the pseudonym master key of test workers. Tests that
// compute expected files derive report keys from it independently.
var PseudonymMasterKey = []byte("tally test pseudonym master key, not a secret")

// WebhookSealer returns the webhook secret sealer of test workers, over
// PseudonymMasterKey as cmd/tally-worker derives it from the pseudonym keys.
func WebhookSealer(tb testing.TB) *webhook.Sealer {
	tb.Helper()
	s, err := webhook.NewSealer(PseudonymMasterKey)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// PseudonymKeys returns the key set of test workers: PseudonymMasterKey,
// current.
func PseudonymKeys(tb testing.TB) *report.PseudonymKeys {
	tb.Helper()
	k, err := report.NewPseudonymKeys(PseudonymMasterKey)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
