package db_test

import (
	"context"
	"io/fs"
	"slices"
	"sync"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func TestMigrateTwiceIsNoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.OwnerDB(t) // cloned from a migrated template; migrating is the owner's

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

// TestMigrateConcurrently runs several migrations at once on a fresh
// database, each from a pool of its own as separate processes would (a
// retried Helm hook, two deploys racing): all succeed, and each migration
// is applied by exactly one of them.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := tallytest.EmptyDB(t).Config().ConnString()

	const runs = 4
	results := make([]*db.MigrateResult, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		pool, err := db.Connect(ctx, url, &db.PoolOpts{MaxConns: 2}) // as tally-chaos migrates
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		wg.Go(func() { results[i], errs[i] = db.Migrate(ctx, pool, nil) })
	}
	wg.Wait()

	var river []int
	var tally []int64
	for i := range runs {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
			continue
		}
		river = append(river, results[i].RiverVersions...)
		tally = append(tally, results[i].TallyVersions...)
	}
	slices.Sort(river)
	slices.Sort(tally)
	files, err := fs.Glob(db.MigrationsFS(), "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	wantRiver, err := db.RiverMigrationVersion()
	if err != nil {
		t.Fatal(err)
	}
	if len(tally) != len(files) || len(slices.Compact(slices.Clone(tally))) != len(tally) {
		t.Errorf("Tally migrations applied %v across the runs, want each of the %d files once", tally, len(files))
	}
	if len(river) != wantRiver || len(slices.Compact(slices.Clone(river))) != len(river) {
		t.Errorf("River migrations applied %v across the runs, want 1..%d once each", river, wantRiver)
	}

	pool, err := db.Connect(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var gooseVersion int64
	if err := pool.QueryRow(ctx, `SELECT max(version_id) FROM goose_db_version WHERE is_applied`).Scan(&gooseVersion); err != nil {
		t.Fatal(err)
	}
	if want := tally[len(tally)-1]; gooseVersion != want {
		t.Errorf("goose_db_version at %d, want %d", gooseVersion, want)
	}
	var riverVersion int
	if err := pool.QueryRow(ctx, `SELECT max(version) FROM river_migration`).Scan(&riverVersion); err != nil {
		t.Fatal(err)
	}
	if riverVersion != wantRiver {
		t.Errorf("river_migration at %d, want %d", riverVersion, wantRiver)
	}
}
