package db_test

import (
	"context"
	"io/fs"
	"slices"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t) // cloned from a migrated template

	res, err := db.Migrate(ctx, pool, nil)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if len(res.RiverVersions) != 0 || len(res.TallyVersions) != 0 {
		t.Fatalf("second migration applied river=%v tally=%v, want nothing", res.RiverVersions, res.TallyVersions)
	}
	for _, table := range []string{"organizations", "applications", "users", "memberships", "application_grants",
		"sessions", "cases", "case_assignments", "transactions", "reports", "activity_events", "idempotency_keys", "river_job"} {
		var ok bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&ok); err != nil || !ok {
			t.Errorf("table %s missing (err %v)", table, err)
		}
	}
}

func TestMigrateFreshDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.EmptyDB(t)
	res, err := db.Migrate(ctx, pool, nil)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	files, err := fs.Glob(db.MigrationsFS(), "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RiverVersions) == 0 || len(res.TallyVersions) != len(files) {
		t.Fatalf("fresh migration applied river=%v tally=%v, want river's and tally's", res.RiverVersions, res.TallyVersions)
	}
	want, err := db.RiverMigrationVersion()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Max(res.RiverVersions); got != want {
		t.Errorf("River schema at version %d, RiverMigrationVersion says %d", got, want)
	}
	res, err = db.Migrate(ctx, pool, nil)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(res.RiverVersions)+len(res.TallyVersions) != 0 {
		t.Fatalf("second migration applied river=%v tally=%v, want nothing", res.RiverVersions, res.TallyVersions)
	}
}
