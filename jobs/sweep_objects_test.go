package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// sweepMetrics records what the sweep counted.
type sweepMetrics struct {
	objects map[string]int
	uploads int
}

func (m *sweepMetrics) ObjectsSwept(reason string, n int) { m.objects[reason] += n }
func (m *sweepMetrics) UploadsAborted(n int)              { m.uploads += n }

// TestSweepObjects: against real MinIO, the sweep keeps a ready report's
// file and what is younger than the grace period, and deletes the files of
// failed, canceled and expired reports, a losing run's file of a ready
// report, orphans and stale runs' files older than the grace period, and
// aborts old incomplete multipart uploads.
func TestSweepObjects(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{})
	ready, _ := b.createReport(t, c, reportOpts{})
	ready = b.waitReport(t, ready.ID, 30*time.Second, db.ReportReady)

	// Reports in each other state; the worker is stopped before they run.
	var reports []*db.Report
	for range 4 {
		r, _ := b.createReport(t, c, reportOpts{})
		reports = append(reports, b.waitReport(t, r.ID, 30*time.Second, db.ReportReady))
	}
	failed, canceled, expired, running := reports[0], reports[1], reports[2], reports[3]
	set := func(r *db.Report, sql string) {
		t.Helper()
		if _, err := b.pool.Exec(b.ctx, sql, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	set(failed, `UPDATE reports SET status = 'failed', error_code = 'build_failed', object_key = NULL WHERE id = $1`)
	set(canceled, `UPDATE reports SET status = 'canceled', error_code = 'canceled', object_key = NULL WHERE id = $1`)
	set(expired, `UPDATE reports SET status = 'expired', error_code = 'report_expired' WHERE id = $1`)
	set(running, `UPDATE reports SET status = 'running', object_key = NULL WHERE id = $1`)

	put := func(key string) string {
		t.Helper()
		if _, err := b.store.Put(b.ctx, key, bytes.NewReader([]byte("x\n")), "text/csv"); err != nil {
			t.Fatal(err)
		}
		return key
	}
	runKey := func(r *db.Report) string {
		return storage.ReportKey(r.OrgID, r.ApplicationID, r.ID, db.NewID(db.PrefixRun), "csv")
	}
	orphanOld := put(storage.ReportKey(b.org.ID, b.app.ID, db.NewID(db.PrefixReport), db.NewID(db.PrefixRun), "csv"))
	runningOld := put(runKey(running))
	loserOfReady := put(runKey(ready))
	failedOld := put(runKey(failed))
	canceledOld := put(runKey(canceled))

	// An incomplete multipart upload, as a killed worker leaves it.
	core := minio.Core{Client: minioClient(t, b.s3)}
	uploadKey := runKey(running)
	uploadID, err := core.NewMultipartUpload(b.ctx, b.s3.Bucket, uploadKey, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.PutObjectPart(b.ctx, b.s3.Bucket, uploadKey, uploadID, 1, bytes.NewReader(make([]byte, 1024)), 1024, minio.PutObjectPartOptions{}); err != nil {
		t.Fatal(err)
	}

	// The sweep's clock is pinned just after the fresh objects are made,
	// so that a slow machine cannot age them past the grace period; the old
	// ones are older than it by a second (object times may be truncated to
	// seconds).
	const grace = 2 * time.Second
	time.Sleep(grace + time.Second)
	freshFrom := time.Now()
	// Younger than the grace period: runs that may still commit.
	orphanFresh := put(storage.ReportKey(b.org.ID, b.app.ID, db.NewID(db.PrefixReport), db.NewID(db.PrefixRun), "csv"))
	runningFresh := put(runKey(running))
	failedFresh := put(runKey(failed))
	freshUploadKey := runKey(running)
	freshUploadID, err := core.NewMultipartUpload(b.ctx, b.s3.Bucket, freshUploadKey, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}

	m := &sweepMetrics{objects: map[string]int{}}
	sw := &jobs.SweepObjectsWorker{Pool: b.pool, Store: b.store, Logger: testLogger(t), Grace: grace, Metrics: m,
		NowFunc: func() time.Time { return freshFrom.Add(500 * time.Millisecond) }}
	res, err := sw.Sweep(b.ctx)
	if err != nil {
		t.Fatal(err)
	}

	exists := func(key string) bool {
		_, err := tallytest.Stat(b.ctx, b.store, key)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, tt := range []struct {
		name string
		key  string
		keep bool
	}{
		{"ReadyReportsFile", *ready.ObjectKey, true},
		{"LosingRunOfReadyReport", loserOfReady, false},
		{"FailedReportsFile", *failed.ObjectKey, false},
		{"FailedReportOld", failedOld, false},
		{"FailedReportFresh", failedFresh, true},
		{"CanceledReportsFile", *canceled.ObjectKey, false},
		{"CanceledReportOld", canceledOld, false},
		{"ExpiredReportsFile", *expired.ObjectKey, false},
		{"RunningReportOld", runningOld, false},
		{"RunningReportFresh", runningFresh, true},
		{"OrphanOld", orphanOld, false},
		{"OrphanFresh", orphanFresh, true},
	} {
		if got := exists(tt.key); got != tt.keep {
			t.Errorf("%s: object exists = %v, want %v", tt.name, got, tt.keep)
		}
	}
	wantObjects := map[string]int{
		jobs.SweepReasonSuperseded: 1, jobs.SweepReasonFailed: 2, jobs.SweepReasonCanceled: 2,
		jobs.SweepReasonExpired: 1, jobs.SweepReasonUnfinished: 2, jobs.SweepReasonOrphan: 1,
	}
	// The running report's object committed by the worker is the second
	// "unfinished" one: the row no longer points at it.
	if diff := cmp.Diff(wantObjects, res.Objects); diff != "" {
		t.Errorf("swept objects mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantObjects, m.objects); diff != "" {
		t.Errorf("metrics mismatch (-want +got):\n%s", diff)
	}
	if res.Uploads != 1 || m.uploads != 1 {
		t.Errorf("aborted %d uploads (metric %d), want 1", res.Uploads, m.uploads)
	}
	var uploads []string
	if err := b.store.ListUploads(b.ctx, storage.ReportsPrefix, func(u storage.Upload) error {
		uploads = append(uploads, u.UploadID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{freshUploadID}, uploads); diff != "" {
		t.Errorf("incomplete uploads mismatch (-want +got):\n%s", diff)
	}
	_ = core.AbortMultipartUpload(context.Background(), b.s3.Bucket, freshUploadKey, freshUploadID)

	// A second sweep finds nothing more to do.
	res, err = sw.Sweep(b.ctx)
	if err != nil || len(res.Objects) != 0 || res.Uploads != 0 {
		t.Errorf("second sweep: %+v, %v; want nothing", res, err)
	}
}

func minioClient(t *testing.T, o storage.Opts) *minio.Client {
	t.Helper()
	c, err := minio.New(o.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(o.AccessKeyID, o.SecretAccessKey, ""),
		Secure: o.UseTLS, Region: o.Region})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
