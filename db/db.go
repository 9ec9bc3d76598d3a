// Package db is Tally's data layer: the embedded schema migrations, the
// connection pool, the one transaction helper, and every SQL query the
// service runs. Nothing above this package imports pgx error types: driver
// errors become the sentinels declared here.
package db

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors returned by this package.
var (
	// ErrNotFound means no row matched, including rows that exist but belong
	// to another tenant.
	ErrNotFound = errors.New("db: not found")
	// ErrConflict means a unique constraint rejected the write.
	ErrConflict = errors.New("db: conflict")
	// ErrInvalid means a check or foreign-key constraint rejected the write.
	ErrInvalid = errors.New("db: invalid")
	// ErrUnavailable means the database could not be reached or the pool
	// had no free connection in time.
	ErrUnavailable = errors.New("db: unavailable")
	// ErrOutOfRange means a computed value does not fit its type, such as a
	// sum of amounts cast back to bigint.
	ErrOutOfRange = errors.New("db: value out of range")
)

// DBTX is what queries run on: a *pgxpool.Pool, a *pgxpool.Conn or a pgx.Tx.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// PoolOpts tunes a pool. A nil *PoolOpts keeps pgx defaults.
type PoolOpts struct {
	// MaxConns caps the pool; zero keeps the URL's pool_max_conns or pgx's default.
	MaxConns int32
	// ApplicationName is shown in pg_stat_activity.
	ApplicationName string
	// Tracer traces the pool's queries (telemetry.PGXTracer); nil: none.
	Tracer pgx.QueryTracer
}

// Connect opens a pool to url and checks that the server answers.
func Connect(ctx context.Context, url string, opts *PoolOpts) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parsing database URL: %w", err)
	}
	if opts != nil {
		if opts.MaxConns > 0 {
			cfg.MaxConns = opts.MaxConns
		}
		if opts.ApplicationName != "" {
			cfg.ConnConfig.RuntimeParams["application_name"] = opts.ApplicationName
		}
		if opts.Tracer != nil {
			cfg.ConnConfig.Tracer = opts.Tracer
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("creating pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pinging database: %w", translate(err))
	}
	return pool, nil
}

// WithTx runs fn in a transaction on q, committing when fn returns nil and
// rolling back otherwise. On a pgx.Tx it nests as a savepoint. An error of
// fn is translated, so fn may return driver errors (River's *Tx calls) as
// they come.
func WithTx(ctx context.Context, q DBTX, fn func(tx pgx.Tx) error) error {
	tx, err := q.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return translate(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing transaction: %w", translate(err))
	}
	return nil
}

// ReadSnapshot runs fn in a read-only REPEATABLE READ transaction on q:
// every query of fn sees the same snapshot of the database.
func ReadSnapshot(ctx context.Context, q DBTX, fn func(tx pgx.Tx) error) error {
	var tx pgx.Tx
	var err error
	if b, ok := q.(interface {
		BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	}); ok {
		tx, err = b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	} else {
		tx, err = q.Begin(ctx) // a savepoint in an outer transaction: its snapshot
	}
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", translate(err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return translate(err)
	}
	return nil
}

// Now returns the database's clock: on a transaction, the time it began,
// which every now() of that transaction's statements also reads.
func Now(ctx context.Context, q DBTX) (time.Time, error) {
	var now time.Time
	if err := q.QueryRow(ctx, `SELECT now()`).Scan(&now); err != nil {
		return time.Time{}, fmt.Errorf("reading clock: %w", translate(err))
	}
	return now.UTC(), nil
}

// translate maps pgx and PostgreSQL errors to this package's sentinels,
// keeping the original error in the chain for logs. An error that already
// holds a sentinel is returned as it is.
func translate(err error) error {
	if err == nil || isTranslated(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	// Any failure to connect, including the server's own refusal (a FATAL
	// such as "database is not currently accepting connections", 55000),
	// means the database is unavailable.
	if isConnectError(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case pgErr.Code == "23503", pgErr.Code == "23514", pgErr.Code == "23502",
			pgErr.Code == "22P02", pgErr.Code == "22001", pgErr.Code == "22007", pgErr.Code == "22008":
			return fmt.Errorf("%w: %s", ErrInvalid, pgErr.Message)
		case pgErr.Code == "22003":
			return fmt.Errorf("%w: %s", ErrOutOfRange, pgErr.Message)
		case pgErr.Code[:2] == "08", pgErr.Code == "57P01", pgErr.Code == "57P03", pgErr.Code == "53300":
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) || isConnectError(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	return errors.As(err, &ce)
}

func isTranslated(err error) bool {
	for _, sentinel := range []error{ErrNotFound, ErrConflict, ErrInvalid, ErrUnavailable, ErrOutOfRange} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}
