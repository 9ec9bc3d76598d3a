package jobs_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// pausingStore holds every upload until release is closed, like a worker
// paused (SIGSTOP, a slow network) between building and uploading.
type pausingStore struct {
	*storage.Store
	paused  chan struct{} // closed when the first upload is held
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	keys    []string // keys written after the release
}

func (s *pausingStore) Write(ctx context.Context, key, contentType string, write func(io.Writer) error) (storage.Written, error) {
	s.once.Do(func() { close(s.paused) })
	<-s.release
	w, err := s.Store.Write(ctx, key, contentType, write)
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	return w, err
}

func (s *pausingStore) written() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys)
}

// TestLateRunCannotChangeCommittedFile: run A takes the job and pauses
// before its upload; the job is rescued and run B builds, uploads and
// commits; then A wakes up and uploads a file with other bytes (its report
// row was read before the scope changed). The committed object must still be
// B's, byte for byte, with the report's SHA-256, and A's object must be gone.
func TestLateRunCannotChangeCommittedFile(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{Flags: []string{"line_items"}})
	rep, jobID := b.createReport(t, c, reportOpts{})

	// Run A: a River client of its own whose store pauses uploads.
	store := &pausingStore{Store: b.store, paused: make(chan struct{}), release: make(chan struct{})}
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.GenerateReportWorker{Pool: b.pool, Store: store, Portal: b.portal, PseudonymKeys: tallytest.PseudonymKeys(t),
		Logger: testLogger(t), JobTimeout: time.Minute})
	clientA, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{
		ID: "run-a", Queues: map[string]river.QueueConfig{jobs.QueueReports: {MaxWorkers: 1}}, Workers: workers,
		FetchCooldown: 10 * time.Millisecond, FetchPollInterval: 50 * time.Millisecond, JobTimeout: time.Minute,
		LeaderElectionDisabled: true, TestOnly: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancelA()
		stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = clientA.StopAndCancel(stopCtx)
	})
	if err := clientA.Start(ctxA); err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.paused:
	case <-time.After(30 * time.Second):
		t.Fatal("run A never reached its upload")
	}
	// The scope changes after A read the report (a rerun that would give
	// other bytes), and the rescuer hands the job to run B, which commits.
	if _, err := b.pool.Exec(b.ctx, `UPDATE reports SET metadata = jsonb_set(metadata, '{disclosure_flags}', '["line_items","counterparty_names"]') WHERE id = $1`, rep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE river_job SET state = 'available', scheduled_at = now() WHERE id = $1`, jobID); err != nil {
		t.Fatal(err)
	}
	opts := b.workerOpts(t)
	opts.ID = "run-b"
	_, stopB := startWorker(t, opts)
	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
	b.waitJob(t, jobID, 10*time.Second, rivertype.JobStateCompleted)
	if err := stopB(); err != nil {
		t.Fatal(err)
	}
	want := expectedSummary(t, b.seeded, b.app.ID, r.ID, scopeOf(&db.Case{ID: c.ID, PeriodStart: c.PeriodStart, PeriodEnd: c.PeriodEnd,
		DisclosureFlags: []string{"line_items", "counterparty_names"}}, b.dataAsOf))

	// Run A wakes up, uploads its (different) file and tries to finish.
	close(store.release)
	deadline := time.Now().Add(30 * time.Second)
	for len(store.written()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("run A never uploaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	lateKey := store.written()[0]
	// A's attempt ends (it lost the job); its object is deleted.
	for {
		_, err := tallytest.Stat(b.ctx, b.store, lateKey)
		if errors.Is(err, storage.ErrNotFound) && lateKey != deref(r.ObjectKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("run A's object %s still there (err %v), report key %s", lateKey, err, deref(r.ObjectKey))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	r, err = db.GetReportByID(b.ctx, b.pool, rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	b.checkReady(t, r, jobID, want)
	got := b.download(t, r)
	if sha256Hex(got) != deref(r.SHA256) || int64(len(got)) != deref(r.SizeBytes) {
		t.Errorf("committed object: sha %s, %d bytes; report says %s, %d bytes", sha256Hex(got), len(got), deref(r.SHA256), deref(r.SizeBytes))
	}
	if keys := b.reportObjects(t, r); !slices.Equal(keys, []string{deref(r.ObjectKey)}) {
		t.Errorf("objects %v, want only the committed %s", keys, deref(r.ObjectKey))
	}
}
