package jobs_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// The test binary doubles as a worker process that a test can kill: with
// helperEnv set, it runs runVanishingWorker instead of the tests.
const (
	helperEnv      = "TALLY_JOBS_TEST_HELPER"
	helperUploaded = "UPLOADED"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := runVanishingWorker(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runVanishingWorker works report jobs with the real GenerateReportWorker
// and, once a file is uploaded, announces it on stdout and hangs before the
// finishing transaction, waiting to be killed.
func runVanishingWorker() error {
	ctx := context.Background()
	pool, err := db.Connect(ctx, os.Getenv("HELPER_DATABASE_URL"), &db.PoolOpts{MaxConns: 5, ApplicationName: "vanishing-worker"})
	if err != nil {
		return err
	}
	store, err := storage.New(storage.Opts{
		Endpoint: os.Getenv("HELPER_S3_ENDPOINT"), AccessKeyID: os.Getenv("HELPER_S3_ACCESS_KEY_ID"),
		SecretAccessKey: os.Getenv("HELPER_S3_SECRET_ACCESS_KEY"), Bucket: os.Getenv("HELPER_S3_BUCKET"),
		Region: os.Getenv("HELPER_S3_REGION"),
	})
	if err != nil {
		return err
	}
	portal, err := config.LoadPortal("")
	if err != nil {
		return err
	}
	keys, err := report.NewPseudonymKeys(tallytest.PseudonymMasterKey)
	if err != nil {
		return err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &jobs.GenerateReportWorker{
		Pool: pool, Store: store, Portal: portal, PseudonymKeys: keys, JobTimeout: 3 * time.Second,
		AfterUploadFunc: func(ctx context.Context, job *river.Job[jobs.GenerateReportArgs]) error {
			fmt.Println(helperUploaded, job.ID)
			select {} // the process is about to vanish
		},
	})
	river.AddWorker(workers, &jobs.ExpireReportsWorker{Pool: pool, Store: store})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		ID:      "vanishing-worker",
		Queues:  map[string]river.QueueConfig{jobs.QueueReports: {MaxWorkers: 1}},
		Workers: workers,
		// Never the leader, so that the test's second worker is elected at
		// once and its rescuer runs on start.
		LeaderElectionDisabled: true,
		FetchCooldown:          10 * time.Millisecond,
		FetchPollInterval:      50 * time.Millisecond,
		JobTimeout:             3 * time.Second,
		TestOnly:               true,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}
	select {}
}

func TestGenerateReportWorkerKilledAfterUploadEndsReadyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names"}})
	rep, jobID := b.createReport(t, c, reportOpts{})

	// Worker process A picks the job up, uploads the file, and is killed
	// before it can commit.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"HELPER_DATABASE_URL="+b.pool.Config().ConnString(),
		"HELPER_S3_ENDPOINT="+b.s3.Endpoint, "HELPER_S3_ACCESS_KEY_ID="+b.s3.AccessKeyID,
		"HELPER_S3_SECRET_ACCESS_KEY="+b.s3.SecretAccessKey, "HELPER_S3_BUCKET="+b.s3.Bucket,
		"HELPER_S3_REGION="+b.s3.Region)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	uploaded := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), helperUploaded) {
				uploaded <- sc.Text()
				return
			}
		}
		close(uploaded)
	}()
	select {
	case line, ok := <-uploaded:
		if !ok {
			t.Fatalf("worker process exited before uploading; stderr:\n%s", stderr.String())
		}
		t.Logf("worker process A: %s; killing it", line)
	case <-time.After(60 * time.Second):
		t.Fatalf("worker process never uploaded; stderr:\n%s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	job, err := b.inserter.JobGet(b.ctx, jobID)
	if err != nil {
		t.Fatal(err)
	}
	r, err := db.GetReportByID(b.ctx, b.pool, rep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != rivertype.JobStateRunning || r.Status != db.ReportRunning {
		t.Fatalf("after the kill: job %s, report %s; want both running", job.State, r.Status)
	}
	deadKeys := b.reportObjects(t, r)
	if len(deadKeys) != 1 {
		t.Fatalf("after the kill: objects %v, want the dead worker's upload", deadKeys)
	}
	key := deadKeys[0]

	// Worker B starts once the job is overdue; as leader its rescuer gives
	// the job back to the queue, and B finishes it.
	opts := b.workerOpts(t)
	opts.JobTimeout = 3 * time.Second
	opts.RescueStuckJobsAfter = 3 * time.Second
	opts.ID = "worker-b"
	time.Sleep(time.Until(job.AttemptedAt.Add(opts.RescueStuckJobsAfter + 200*time.Millisecond)))
	startWorker(t, opts)

	r = b.waitReport(t, rep.ID, 60*time.Second, db.ReportReady, db.ReportFailed)
	if r.Status != db.ReportReady {
		t.Fatalf("status %s (%s), want ready", r.Status, deref(r.ErrorMessage))
	}
	b.checkReady(t, r, jobID, expectedSummary(t, b.seeded, b.app.ID, r.ID, scopeOf(c, b.dataAsOf)))
	// The rescued run wrote a key of its own; the dead run's object is
	// left for the sweep, which deletes it at once: its report is ready with
	// another file.
	if deref(r.ObjectKey) == key {
		t.Errorf("object key %s is the dead run's; want the rescued run's own", key)
	}
	sw := &jobs.SweepObjectsWorker{Pool: b.pool, Store: b.store, Logger: testLogger(t)}
	if _, err := sw.Sweep(b.ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{deref(r.ObjectKey)}, b.reportObjects(t, r)); diff != "" {
		t.Errorf("objects after the sweep mismatch (-want +got):\n%s", diff)
	}
	job = b.waitJob(t, jobID, 10*time.Second, rivertype.JobStateCompleted)
	if job.Attempt != 2 || len(job.AttemptedBy) != 2 || job.AttemptedBy[0] != "vanishing-worker" || job.AttemptedBy[1] != "worker-b" {
		t.Errorf("job attempt %d attempted_by %v, want 2 by [vanishing-worker worker-b]", job.Attempt, job.AttemptedBy)
	}
	if len(job.Errors) != 1 || !strings.Contains(job.Errors[0].Error, "Stuck job rescued") {
		t.Errorf("job errors %+v, want the rescuer's one", job.Errors)
	}
}
