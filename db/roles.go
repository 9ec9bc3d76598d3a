package db

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Tally's database runs under two roles. The migrator owns the database and
// its schema and is the only one that changes it (tallyctl migrate); the
// runtime role is what the API, the workers and River UI connect as: it
// reads and writes rows, advances sequences and calls functions, and can
// change no table, index, trigger or grant. RolesOpts names them for
// EnsureRoles; GrantRuntime gives the runtime role its privileges.

// RolesOpts are the roles EnsureRoles creates.
type RolesOpts struct {
	Migrator string
	Runtime  string
	// Passwords, when set, become the roles' login passwords; empty keeps
	// a role's password as it is (none for a new role: certificate or
	// trust authentication, or set one later).
	MigratorPassword string
	RuntimePassword  string
}

// EnsureRoles creates the migrator and runtime roles when missing and makes
// the migrator the owner of the current database and of its current
// schema, so that what it creates there is its own. It runs as a superuser
// (or a role with CREATEROLE that owns the database) and may run again.
// Objects an earlier owner created stay that owner's: move them with
// REASSIGN OWNED BY <old owner> TO <migrator> when the old owner is not a
// superuser.
func EnsureRoles(ctx context.Context, pool *pgxpool.Pool, opts RolesOpts) error {
	if opts.Migrator == "" || opts.Runtime == "" || opts.Migrator == opts.Runtime {
		return errors.New("roles: the migrator and runtime roles need two different names")
	}
	if err := createRole(ctx, pool, opts.Migrator, opts.MigratorPassword); err != nil {
		return err
	}
	if err := createRole(ctx, pool, opts.Runtime, opts.RuntimePassword); err != nil {
		return err
	}
	var dbName, schema string
	if err := pool.QueryRow(ctx, `SELECT current_database(), current_schema()`).Scan(&dbName, &schema); err != nil {
		return fmt.Errorf("roles: reading the current database: %w", err)
	}
	m := pgx.Identifier{opts.Migrator}.Sanitize()
	for _, stmt := range []string{
		`ALTER DATABASE ` + pgx.Identifier{dbName}.Sanitize() + ` OWNER TO ` + m,
		`ALTER SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` OWNER TO ` + m,
		// Nobody else creates objects in the schema.
		`REVOKE CREATE ON SCHEMA ` + pgx.Identifier{schema}.Sanitize() + ` FROM PUBLIC`,
	} {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("roles: %s: %w", stmt, err)
		}
	}
	return nil
}

// createRole creates a login role without privileges, or leaves an existing
// one, and sets its password when one is given.
func createRole(ctx context.Context, pool *pgxpool.Pool, name, password string) error {
	_, err := pool.Exec(ctx, `CREATE ROLE `+pgx.Identifier{name}.Sanitize()+` LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION`)
	var pgErr *pgconn.PgError
	// duplicate_object, or unique_violation when two runs race on pg_authid.
	if err != nil && !(errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505")) {
		return fmt.Errorf("roles: creating role %s: %w", name, err)
	}
	if password == "" {
		return nil
	}
	// The server quotes the password (format %L): it never goes into a
	// statement built here.
	var stmt string
	if err := pool.QueryRow(ctx, `SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)`, name, password).Scan(&stmt); err != nil {
		return fmt.Errorf("roles: quoting the password of %s: %w", name, err)
	}
	if _, err := pool.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("roles: setting the password of %s: %w", name, err)
	}
	return nil
}

// GrantRuntime grants role what the services need on the current schema,
// now and (through default privileges of the role running it, the
// migrator) on what later migrations create: USAGE on the schema, SELECT,
// INSERT, UPDATE and DELETE on every table (River's included: its
// maintenance services elect a leader, delete old jobs and insert periodic
// ones; River UI reads and updates jobs), USAGE and SELECT on sequences,
// EXECUTE on functions, and CONNECT on the database. The migration
// bookkeeping tables (goose_db_version, river_migration) stay read-only.
// It grants no TRUNCATE, REFERENCES, TRIGGER, CREATE or ownership. Migrate
// calls it under the migration lock: concurrent GRANTs on one object fail.
func GrantRuntime(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if role == "" {
		return errors.New("grants: no runtime role named")
	}
	var dbName, schema, self string
	if err := pool.QueryRow(ctx, `SELECT current_database(), current_schema(), current_user`).Scan(&dbName, &schema, &self); err != nil {
		return fmt.Errorf("grants: reading the current database: %w", err)
	}
	if self == role {
		return fmt.Errorf("grants: the runtime role %s is the role migrating: use a migrator role of its own", role)
	}
	r, s := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
	stmts := []string{
		`GRANT CONNECT ON DATABASE ` + pgx.Identifier{dbName}.Sanitize() + ` TO ` + r,
		`GRANT USAGE ON SCHEMA ` + s + ` TO ` + r,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + s + ` TO ` + r,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ` + s + ` TO ` + r,
		`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ` + s + ` TO ` + r,
		`REVOKE INSERT, UPDATE, DELETE ON ` + s + `.goose_db_version, ` + s + `.river_migration FROM ` + r,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + s + ` GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ` + r,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + s + ` GRANT USAGE, SELECT ON SEQUENCES TO ` + r,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + s + ` GRANT EXECUTE ON FUNCTIONS TO ` + r,
	}
	for _, stmt := range stmts {
		if _, err := pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("grants: %s: %w", stmt, err)
		}
	}
	return nil
}
