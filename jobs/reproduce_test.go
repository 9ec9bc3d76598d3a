package jobs_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
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
