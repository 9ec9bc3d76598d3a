package jobs_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// A ready report rebuilds to its stored bytes; a stored object with one
// changed byte is a mismatch at that byte's offset.
func TestReproduceMatchesThenFindsTheChangedByte(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names"}})
	rep, _ := b.createReport(t, c, reportOpts{})
	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)

	got, err := jobs.Reproduce(b.ctx, b.pool, b.store, b.portal, tallytest.PseudonymKeys(t), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Match || got.FirstDiff != -1 || got.SHA256 != deref(r.SHA256) || got.Size != deref(r.SizeBytes) {
		t.Fatalf("Reproduce = %+v, want a match", got)
	}

	file := b.download(t, r)
	const at = 57
	file[at] ^= 0x20
	if _, err := b.store.Put(b.ctx, deref(r.ObjectKey), bytes.NewReader(file), deref(r.ContentType)); err != nil {
		t.Fatal(err)
	}
	got, err = jobs.Reproduce(b.ctx, b.pool, b.store, b.portal, tallytest.PseudonymKeys(t), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Match || got.FirstDiff != at {
		t.Errorf("Reproduce of a changed object = %+v, want a mismatch at byte %d", got, at)
	}
}

// TestRestorePutsBackAMissingFileAndLeavesAPresentOne: a ready report whose
// object was deleted gets it back, byte for byte, from its snapshot; a
// second run finds it and changes nothing; a rebuild that would differ
// from the report (its recorded digest altered here) stores nothing.
func TestRestorePutsBackAMissingFileAndLeavesAPresentOne(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items"}})
	rep, _ := b.createReport(t, c, reportOpts{})
	r := b.waitReport(t, rep.ID, 30*time.Second, db.ReportReady)
	want := b.download(t, r)
	keys := tallytest.PseudonymKeys(t)

	if got, err := jobs.Restore(b.ctx, b.pool, b.store, b.portal, keys, r.ID); err != nil || got.Restored {
		t.Fatalf("Restore with the file present = %+v, %v; want it left alone", got, err)
	}
	if err := b.store.Delete(b.ctx, deref(r.ObjectKey)); err != nil {
		t.Fatal(err)
	}
	got, err := jobs.Restore(b.ctx, b.pool, b.store, b.portal, keys, r.ID)
	if err != nil || !got.Restored || got.Size != int64(len(want)) {
		t.Fatalf("Restore of a missing file = %+v, %v; want it restored (%d bytes)", got, err, len(want))
	}
	if file := b.download(t, r); !bytes.Equal(file, want) {
		t.Errorf("restored file differs from the original (%d bytes, want %d)", len(file), len(want))
	}
	if got, err := jobs.Restore(b.ctx, b.pool, b.store, b.portal, keys, r.ID); err != nil || got.Restored {
		t.Errorf("Restore again = %+v, %v; want nothing done", got, err)
	}

	// A report whose recorded digest no rebuild can match.
	if err := b.store.Delete(b.ctx, deref(r.ObjectKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(b.ctx, `UPDATE reports SET sha256 = repeat('0', 64) WHERE id = $1`, r.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := jobs.Restore(b.ctx, b.pool, b.store, b.portal, keys, r.ID); err == nil {
		t.Fatalf("Restore against a different digest = %+v, want an error", got)
	}
	if _, err := tallytest.Stat(b.ctx, b.store, deref(r.ObjectKey)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("after a failed restore the object is %v, want it absent", err)
	}
}
