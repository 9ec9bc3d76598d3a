package db_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// TestRuntimeRoleChangesNoSchema: the services' role (the harness connects
// DB as it) reads and writes rows but can create, change, truncate or drop
// nothing, nor rewrite the migration bookkeeping.
func TestRuntimeRoleChangesNoSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t)
	var user string
	if err := pool.QueryRow(ctx, `SELECT current_user`).Scan(&user); err != nil {
		t.Fatal(err)
	}
	if user != tallytest.RuntimeRole {
		t.Fatalf("DB connects as %s, want %s", user, tallytest.RuntimeRole)
	}
	if _, err := db.CreateOrganization(ctx, pool, "Runtime Org"); err != nil {
		t.Fatalf("inserting a row as the runtime role: %v", err)
	}
	for _, stmt := range []string{
		`CREATE TABLE evil (id int)`,
		`ALTER TABLE reports ADD COLUMN evil int`,
		`DROP TABLE activity_events`,
		`TRUNCATE activity_events`,
		`CREATE INDEX evil ON reports (id)`,
		`DROP TRIGGER tally_sync_report_from_job_update ON river_job`,
		`CREATE OR REPLACE FUNCTION tally_sync_report_from_job() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
		`DELETE FROM goose_db_version`,
		`INSERT INTO river_migration (line, version) VALUES ('main', 9999)`,
	} {
		_, err := pool.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		// 42501 insufficient_privilege; 42809/42P01 do not occur: every
		// object named exists.
		if !errors.As(err, &pgErr) || (pgErr.Code != "42501" && !strings.Contains(pgErr.Message, "must be owner")) {
			t.Errorf("%s as the runtime role: %v, want permission denied", stmt, err)
		}
	}
}

// TestRolesMigratorOwnsRuntimeUses: tallyctl db roles (EnsureRoles) as a
// superuser, then a migration as the migrator granting the runtime role:
// the migrator owns what it created, the runtime role can use it, and a
// second EnsureRoles changes nothing.
func TestRolesMigratorOwnsRuntimeUses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	super := tallytest.EmptyDB(t)
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	opts := db.RolesOpts{
		Migrator: "tally_test_m_" + hex.EncodeToString(suffix[:]), Runtime: "tally_test_r_" + hex.EncodeToString(suffix[:]),
		MigratorPassword: "it's a 'quoted' one; DROP ROLE postgres; --", RuntimePassword: "r",
	}
	dbName := super.Config().ConnConfig.Database
	t.Cleanup(func() {
		admin, err := pgx.Connect(ctx, tallytest.GetServices(t).DatabaseURL)
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close(ctx)
		for _, stmt := range []string{`DROP DATABASE IF EXISTS ` + dbName + ` WITH (FORCE)`, `DROP ROLE IF EXISTS ` + opts.Runtime, `DROP ROLE IF EXISTS ` + opts.Migrator} {
			if _, err := admin.Exec(ctx, stmt); err != nil {
				t.Errorf("%s: %v", stmt, err)
			}
		}
	})
	for range 2 {
		if err := db.EnsureRoles(ctx, super, opts); err != nil {
			t.Fatalf("EnsureRoles: %v", err)
		}
	}

	var hasPassword bool
	if err := super.QueryRow(ctx, `SELECT rolpassword IS NOT NULL FROM pg_authid WHERE rolname = $1`, opts.Migrator).Scan(&hasPassword); err != nil || !hasPassword {
		t.Errorf("the migrator's password is not set (%v)", err)
	}

	urlAs := func(role string) string {
		u, err := url.Parse(super.Config().ConnString())
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.User(role) // the test server trusts local connections
		return u.String()
	}
	as := func(role string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, urlAs(role))
		if err != nil {
			t.Fatalf("connecting as %s: %v", role, err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	migratorPool, err := db.Connect(ctx, urlAs(opts.Migrator), &db.PoolOpts{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer migratorPool.Close()
	if _, err := db.MigrateWith(ctx, migratorPool, db.MigrateOpts{RuntimeRole: opts.Runtime}); err != nil {
		t.Fatalf("migrating as the migrator: %v", err)
	}
	migratorPool.Close()

	var notOwned []string
	rows, err := as(opts.Migrator).Query(ctx, `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'p') AND pg_get_userbyid(c.relowner) <> $1`, opts.Migrator)
	if err != nil {
		t.Fatal(err)
	}
	if notOwned, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		t.Fatal(err)
	}
	if len(notOwned) > 0 {
		t.Errorf("not owned by the migrator: %v", notOwned)
	}

	runtime := as(opts.Runtime)
	if _, err := runtime.Exec(ctx, `INSERT INTO organizations (id, name) VALUES ('org_00000000000000000000000001', 'x')`); err != nil {
		t.Errorf("inserting as the runtime role: %v", err)
	}
	if _, err := runtime.Exec(ctx, `CREATE TABLE evil (id int)`); err == nil {
		t.Error("the runtime role created a table")
	}
}
