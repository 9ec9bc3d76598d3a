package jobs_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

func TestExpireReportsDeletesFilesKeepsRowsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	_, stop := startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{})
	var ids []string
	for range 4 {
		rep, _ := b.createReport(t, c, reportOpts{})
		ids = append(ids, rep.ID)
	}
	for _, id := range ids {
		b.waitReport(t, id, 30*time.Second, db.ReportReady)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	due, kept, fileGone := ids[:3], ids[3], ids[2]
	if _, err := b.pool.Exec(b.ctx, `UPDATE reports SET expires_at = now() - interval '1 minute' WHERE id = ANY($1)`, due); err != nil {
		t.Fatal(err)
	}
	// One file is already gone: expiring its report still works.
	r, _ := db.GetReportByID(b.ctx, b.pool, fileGone)
	if err := b.store.Delete(b.ctx, *r.ObjectKey); err != nil {
		t.Fatal(err)
	}

	w := &jobs.ExpireReportsWorker{Pool: b.pool, Store: b.store, Logger: testLogger(t), BatchSize: 2}
	job := &river.Job[jobs.ExpireReportsArgs]{JobRow: &rivertype.JobRow{ID: 4242, Attempt: 1}}
	for run := 1; run <= 2; run++ { // the second run finds nothing to do
		if err := w.Work(b.ctx, job); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}

	for _, id := range due {
		r, err := db.GetReportByID(b.ctx, b.pool, id)
		if err != nil {
			t.Fatalf("report row %s is gone: %v", id, err)
		}
		if r.Status != db.ReportExpired || deref(r.ErrorCode) != "report_expired" || r.SHA256 == nil {
			t.Errorf("report %s: status %s code %q sha %v, want expired, report_expired, sha kept", id, r.Status, deref(r.ErrorCode), r.SHA256)
		}
		if _, err := tallytest.Stat(b.ctx, b.store, *r.ObjectKey); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("report %s: file still there (err %v)", id, err)
		}
		evs := b.events(t, id)
		if diff := cmp.Diff([]string{"report.created", "report.generated", "report.expired"}, eventKinds(evs)); diff != "" {
			t.Errorf("report %s events mismatch (-want +got):\n%s", id, diff)
		}
	}
	r, _ = db.GetReportByID(b.ctx, b.pool, kept)
	if r.Status != db.ReportReady {
		t.Errorf("report not yet due is %s, want ready", r.Status)
	}
	if _, err := tallytest.Stat(b.ctx, b.store, *r.ObjectKey); err != nil {
		t.Errorf("file of the report not yet due: %v", err)
	}
}
