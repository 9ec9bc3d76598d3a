package jobs_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// syncBuffer is a bytes.Buffer that the worker's goroutines may write while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFailedAttemptLogsOneLine: each failed attempt of a report job is
// logged once, at the production level (info), by the job itself, with
// report_id, job_id, attempt, code and error; neither River nor the
// worker's error handler repeats it.
func TestFailedAttemptLogsOneLine(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var out syncBuffer
	opts := b.workerOpts(t)
	opts.Logger = slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo}))
	missing := b.s3
	missing.Bucket = "tally-missing-" + strings.ToLower(db.NewID(""))[:12]
	var err error
	if opts.Store, err = storage.New(missing); err != nil {
		t.Fatal(err)
	}
	_, stop := startWorker(t, opts)
	c := b.createCase(t, caseOpts{})
	rep, jobID := b.createReport(t, c, reportOpts{MaxAttempts: 2})
	b.waitReport(t, rep.ID, 30*time.Second, db.ReportFailed, db.ReportReady)
	b.waitJob(t, jobID, 10*time.Second, rivertype.JobStateDiscarded)
	if err := stop(); err != nil { // every log line of the attempts is written
		t.Fatal(err)
	}

	type line struct {
		Msg      string  `json:"msg"`
		ReportID string  `json:"report_id"`
		JobID    float64 `json:"job_id"`
		Attempt  float64 `json:"attempt"`
		Code     string  `json:"code"`
		Error    string  `json:"error"`
	}
	var got []line
	for _, raw := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("log line %q: %v", raw, err)
		}
		if l.Error != "" && (l.JobID == float64(jobID) || l.ReportID == rep.ID) {
			l.Error = "set" // the text is the store's
			got = append(got, l)
		}
	}
	want := []line{
		{Msg: "report generation failed; River will retry", ReportID: rep.ID, JobID: float64(jobID), Attempt: 1, Code: jobs.CodeStorageUnavailable, Error: "set"},
		{Msg: "report generation failed for good", ReportID: rep.ID, JobID: float64(jobID), Attempt: 2, Code: jobs.CodeStorageUnavailable, Error: "set"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines about the failed attempts mismatch (-want +got):\n%s\nall lines:\n%s", diff, out.String())
	}
}
