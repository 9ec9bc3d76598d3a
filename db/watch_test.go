package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// startWatcher runs a watcher on the bundle's database until the test ends
// and waits until it listens.
func (b *jobSyncBundle) startWatcher(t *testing.T, opts *db.WatcherOpts) *db.Watcher {
	t.Helper()
	if opts == nil {
		opts = &db.WatcherOpts{}
	}
	opts.Logger = tallytest.Logger(t)
	w := db.NewWatcher(b.pool.Config().ConnConfig, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(time.Minute)
	for !w.Status().Listening {
		if time.Now().After(deadline) {
			t.Fatal("the watcher does not listen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return w
}

// fired waits for a subscription to fire; the bound only keeps a broken
// test from hanging.
func fired(t *testing.T, s *db.Subscription, what string) {
	t.Helper()
	select {
	case <-s.C():
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no notification", what)
	}
}

func isFired(s *db.Subscription) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

// TestWatcherNotifiesStatusChangesOnly relies on PostgreSQL delivering
// notifications in commit order: when the later status change has been
// delivered, an earlier notification would have been too.
func TestWatcherNotifiesStatusChangesOnly(t *testing.T) {
	t.Parallel()
	b := setupJobSync(t)
	w := b.startWatcher(t, nil)
	ctx := context.Background()
	a, _ := b.newReport(t)
	c, jobC := b.newReport(t)
	subA, subC := w.Subscribe(a), w.Subscribe(c)
	defer subA.Close()

	// Not a status change; a status change rolled back.
	b.exec(t, `UPDATE reports SET error_message = 'x', updated_at = now() WHERE id = $1`, a)
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE reports SET status = 'running' WHERE id = $1`, a); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// A status change written by SQL: the job-sync trigger cancels c.
	b.exec(t, `UPDATE river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`, jobC)
	fired(t, subC, "report canceled by the job trigger")
	if isFired(subA) {
		t.Fatal("a non-status update or a rolled-back change notified")
	}

	// Go's status change of a.
	if ok, err := db.MarkReportRunning(ctx, b.pool, a, 0); err != nil || !ok {
		t.Fatalf("MarkReportRunning: %v %v", ok, err)
	}
	fired(t, subA, "report running")
	if s := w.Status(); s.Waiting != 0 || s.Connects != 1 {
		t.Errorf("status %+v, want no subscription left and one connection", s)
	}
}

// TestWatcherHealthCheckKeepsTheConnection: a silent connection is pinged
// at each health interval, not replaced.
func TestWatcherHealthCheckKeepsTheConnection(t *testing.T) {
	t.Parallel()
	b := setupJobSync(t)
	w := b.startWatcher(t, &db.WatcherOpts{HealthInterval: 20 * time.Millisecond})
	id, _ := b.newReport(t)
	time.Sleep(300 * time.Millisecond) // several health intervals, silent
	sub := w.Subscribe(id)
	defer sub.Close()
	if ok, err := db.MarkReportRunning(context.Background(), b.pool, id, 0); err != nil || !ok {
		t.Fatalf("MarkReportRunning: %v %v", ok, err)
	}
	fired(t, sub, "report running")
	if s := w.Status(); s.Connects != 1 || !s.Listening {
		t.Errorf("status %+v after health checks, want the first connection still listening", s)
	}
}

// TestWatcherReconnectWakesEveryone: after its connection is terminated the
// watcher reconnects and fires every subscription (changes meanwhile were
// not heard), then delivers later changes.
func TestWatcherReconnectWakesEveryone(t *testing.T) {
	t.Parallel()
	b := setupJobSync(t)
	w := b.startWatcher(t, &db.WatcherOpts{MinBackoff: 10 * time.Millisecond})
	id, _ := b.newReport(t)
	sub := w.Subscribe(id)
	first := w.Status()
	b.exec(t, `SELECT pg_terminate_backend($1)`, first.PID)
	fired(t, sub, "reconnection")
	if s := w.Status(); s.Connects != 2 || s.PID == first.PID {
		t.Fatalf("status %+v, want a second connection", s)
	}
	sub = w.Subscribe(id)
	defer sub.Close()
	if ok, err := db.MarkReportRunning(context.Background(), b.pool, id, 0); err != nil || !ok {
		t.Fatalf("MarkReportRunning: %v %v", ok, err)
	}
	fired(t, sub, "report running after the reconnection")
}
