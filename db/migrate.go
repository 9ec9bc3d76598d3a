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
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// MigrateResult says what a migration run applied.
type MigrateResult struct {
	RiverVersions []int   // River migration versions applied in this run
	TallyVersions []int64 // Tally migration versions applied in this run
}

// Migrate applies River's migrations and then Tally's embedded ones. Running
// it on an up-to-date database changes nothing. Deploys run it once; it is
// not safe to run from several processes at the same moment.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (*MigrateResult, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	res := &MigrateResult{}

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
	provider, err := goose.NewProvider(goose.DialectPostgres, sqlDB, sub)
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
