package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrateLockID is the session advisory lock that one migration run holds
// from before River's migrations until after the grants, so that runs from
// several processes (a Helm hook retried, two deploys racing) apply each
// migration once, one after the other. Goose's own session lock (another
// key, taken inside this one) guards its table against goose run by hand.
const migrateLockID int64 = 0x7461_6c6c_795f_6d67 // "tally_mg"

// MigrateResult says what a migration run applied.
type MigrateResult struct {
	RiverVersions []int   // River migration versions applied in this run
	TallyVersions []int64 // Tally migration versions applied in this run
}

// MigrateOpts configures MigrateWith; the zero value is Migrate.
type MigrateOpts struct {
	Logger *slog.Logger // nil: discard
	// RuntimeRole, when set, is granted what the services need on the
	// schema once it is migrated (GrantRuntime).
	RuntimeRole string
}

// Migrate applies River's migrations and then Tally's embedded ones. Running
// it on an up-to-date database changes nothing, and runs from several
// processes at once are safe: they take turns on one advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (*MigrateResult, error) {
	return MigrateWith(ctx, pool, MigrateOpts{Logger: logger})
}

// MigrateWith is Migrate with options. The pool needs two connections: the
// lock's and the one migrating (goose holds its own lock on that one).
func MigrateWith(ctx context.Context, pool *pgxpool.Pool, opts MigrateOpts) (res *MigrateResult, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("acquiring the migration lock's connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockID); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockID); uerr != nil {
			// A connection that cannot unlock must not go back to the pool
			// holding the lock.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
			err = errors.Join(err, fmt.Errorf("releasing the migration lock: %w", uerr))
		}
	}()

	res = &MigrateResult{}
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("creating River migrator: %w", err)
	}
	rres, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return nil, fmt.Errorf("applying River migrations: %w", err)
	}
	for _, v := range rres.Versions {
		res.RiverVersions = append(res.RiverVersions, v.Version)
	}

	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	defer sqlDB.Close()
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("creating goose's session locker: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("creating migration provider: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("applying Tally migrations: %w", err)
	}
	for _, r := range results {
		res.TallyVersions = append(res.TallyVersions, r.Source.Version)
		logger.InfoContext(ctx, "applied migration", slog.Int64("version", r.Source.Version), slog.Duration("duration", r.Duration))
	}
	if opts.RuntimeRole != "" {
		if err := GrantRuntime(ctx, pool, opts.RuntimeRole); err != nil {
			return nil, err
		}
		logger.InfoContext(ctx, "granted the runtime role", slog.String("role", opts.RuntimeRole))
	}
	return res, nil
}

// MigrationsFS returns the embedded migration files, for tools that fingerprint them.
func MigrationsFS() fs.FS { return migrations }

// RiverMigrationVersion returns the version of River's schema that Migrate
// brings the database to: the highest of River's migrations, read from the
// River release this binary is built with, so that it follows an upgrade.
// The test harness keys its template database on it.
func RiverMigrationVersion() (int, error) {
	// The driver only lends its embedded migration files: no pool needed.
	migrator, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return 0, fmt.Errorf("creating River migrator: %w", err)
	}
	all := migrator.AllVersions()
	if len(all) == 0 {
		return 0, errors.New("River has no migrations")
	}
	return all[len(all)-1].Version, nil
}
