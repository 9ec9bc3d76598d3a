package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// fleetReports is how many reports the two-process test creates.
const fleetReports = 200

// TestFleetTwoProcesses runs the real tally-worker binary twice against one
// database and bucket, creates reports through the API, and shows that both
// processes worked jobs, every report became ready with a stored file that
// matches its row, and no job ran to completion twice.
func TestFleetTwoProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the tally-worker binary; skipped with -short")
	}
	ctx := context.Background()
	bin := buildWorkerBinary(t)

	dbURL := tallytest.DatabaseURL(t)
	s3 := tallytest.S3Opts(t)
	pool, err := db.Connect(ctx, dbURL, &db.PoolOpts{MaxConns: 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store, err := storage.New(s3)
	if err != nil {
		t.Fatal(err)
	}
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}

	tenant, err := ingest.SeedDemo(ctx, pool, &ingest.DemoOpts{Transactions: 3000})
	if err != nil {
		t.Fatal(err)
	}
	auditor := tenant.User(ingest.DemoRoleAuditor)

	// The API as the portal sees it, in process: reports and their jobs go
	// in through the same handler and transaction as in production.
	inserter, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: quietLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Opts{Pool: pool, River: inserter, Store: store, Portal: portal, Logger: quietLogger(t),
		CreatePerMinute: 1e6})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(srv)
	t.Cleanup(apiSrv.Close)

	signingKey, err := evidence.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := signingKey.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.pem")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		// The test MinIO's key is the development one, which production refuses.
		"TALLY_ENV=development",
		"DATABASE_URL=" + dbURL,
		"TALLY_SIGNING_KEY_FILE=" + keyFile,
		"TALLY_PSEUDONYM_KEY=" + string(tallytest.PseudonymMasterKey),
		"S3_ENDPOINT=" + s3.Endpoint,
		"S3_ACCESS_KEY_ID=" + s3.AccessKeyID,
		"S3_SECRET_ACCESS_KEY=" + s3.SecretAccessKey,
		"S3_BUCKET=" + s3.Bucket,
		"S3_REGION=" + s3.Region,
		"S3_USE_TLS=" + strconv.FormatBool(s3.UseTLS),
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"TALLY_WORKER_CONCURRENCY=4",
		"TALLY_WORKER_LARGE_CONCURRENCY=1",
		"TALLY_FETCH_POLL_INTERVAL=100ms",
		"TALLY_SHUTDOWN_TIMEOUT=5s",
	}
	const shutdownBound = 5*time.Second + 10*time.Second + 5*time.Second // soft stop + stopGrace + slack
	workers := []*fleetProc{
		startFleetWorker(t, bin, "worker-a", env),
		startFleetWorker(t, bin, "worker-b", env),
	}
	for _, w := range workers {
		w.waitReady(t, 30*time.Second)
	}

	// Create the reports concurrently, mixing both cases and both types.
	type spec struct{ caseID, typ string }
	specs := make([]spec, fleetReports)
	for i := range specs {
		specs[i] = spec{tenant.Cases[i%len(tenant.Cases)].ID, "transaction_summary"}
		if i%5 == 4 {
			specs[i].typ = "activity_log"
		}
	}
	created := make([]string, fleetReports)
	var wg sync.WaitGroup
	errs := make(chan error, fleetReports)
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				id, err := createReport(apiSrv.URL, tenant.Application.ForeignID, auditor.Token, specs[i].caseID, specs[i].typ)
				if err != nil {
					errs <- fmt.Errorf("report %d: %w", i, err)
					continue
				}
				created[i] = id
			}
		})
	}
	for i := range fleetReports {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("created %d reports through the API", fleetReports)

	// Wait until every report is ready, logging progress.
	deadline := time.Now().Add(3 * time.Minute)
	lastLog := time.Time{}
	for {
		counts := map[string]int{}
		rows, err := pool.Query(ctx, `SELECT status, count(*) FROM reports GROUP BY status`)
		if err != nil {
			t.Fatal(err)
		}
		var status string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&status, &n}, func() error { counts[status] = n; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(lastLog) > 2*time.Second {
			t.Logf("reports by status: %v", counts)
			lastLog = time.Now()
		}
		if counts[db.ReportReady] == fleetReports {
			break
		}
		if counts[db.ReportFailed]+counts[db.ReportCanceled]+counts[db.ReportExpired] > 0 {
			t.Fatalf("some reports ended not ready: %v", counts)
		}
		for _, w := range workers {
			if w.exited() {
				t.Fatalf("%s exited early: %v\n%s", w.name, w.waitErr, w.tail(40))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports not all ready after 3 minutes: %v", counts)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Every report is ready, and its stored object is exactly the bytes the
	// row describes.
	for _, id := range created {
		r, err := db.GetReportByID(ctx, pool, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != db.ReportReady || r.ObjectKey == nil || r.SHA256 == nil || r.SizeBytes == nil {
			t.Errorf("report %s: status %s, object key %v: want ready with a file", id, r.Status, r.ObjectKey)
			continue
		}
		body, _, err := store.Get(ctx, *r.ObjectKey, 0, -1)
		if err != nil {
			t.Errorf("report %s: reading its object: %v", id, err)
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != *r.SHA256 || n != *r.SizeBytes {
			t.Errorf("report %s: object has SHA-256 %s and %d bytes, row says %s and %d", id, got, n, *r.SHA256, *r.SizeBytes)
		}
	}

	// Exactly one report.generated event per report.
	generated := map[string]int{}
	rows, err := pool.Query(ctx, `SELECT report_id, count(*) FROM activity_events WHERE kind = $1 GROUP BY report_id`, db.EventReportGenerated)
	if err != nil {
		t.Fatal(err)
	}
	var rid string
	var cnt int
	if _, err := pgx.ForEachRow(rows, []any{&rid, &cnt}, func() error { generated[rid] = cnt; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(generated) != fleetReports {
		t.Errorf("%d reports have a report.generated event, want %d", len(generated), fleetReports)
	}
	for id, n := range generated {
		if n != 1 {
			t.Errorf("report %s has %d report.generated events, want 1", id, n)
		}
	}

	// One job per report, completed on its first attempt by one client: no
	// job ran twice, let alone completed twice.
	type jobRow struct {
		ID          int64
		State       string
		Attempt     int
		AttemptedBy []string
		ReportID    string
	}
	rows, err = pool.Query(ctx, `SELECT id, state::text, attempt, coalesce(attempted_by, '{}'), args->>'report_id'
		FROM river_job WHERE kind = 'generate_report' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	jobList, err := pgx.CollectRows(rows, pgx.RowToStructByPos[jobRow])
	if err != nil {
		t.Fatal(err)
	}
	if len(jobList) != fleetReports {
		t.Errorf("%d generate_report jobs, want %d (one per report)", len(jobList), fleetReports)
	}
	clientOfJob := map[int64]string{}
	jobsByClient := map[string]int{}
	for _, j := range jobList {
		if j.State != "completed" || j.Attempt != 1 || len(j.AttemptedBy) != 1 {
			t.Errorf("job %d (report %s): state %s, attempt %d, attempted by %v: want completed once, on attempt 1",
				j.ID, j.ReportID, j.State, j.Attempt, j.AttemptedBy)
			continue
		}
		clientOfJob[j.ID] = j.AttemptedBy[0]
		jobsByClient[j.AttemptedBy[0]]++
	}
	t.Logf("jobs by River client id: %v", jobsByClient)

	// Both processes worked jobs: each process's "report ready" log lines name
	// the jobs it finished, and those jobs carry one client id per process,
	// different between the processes.
	clientOfProc := map[string]string{}
	finishedByProc := map[string]int{}
	for _, w := range workers {
		ids := w.readyJobIDs()
		finishedByProc[w.name] = len(ids)
		if len(ids) == 0 {
			t.Errorf("%s finished no report; want both processes to work jobs", w.name)
			continue
		}
		for _, id := range ids {
			c, ok := clientOfJob[id]
			if !ok {
				continue // reported above
			}
			if prev, seen := clientOfProc[w.name]; seen && prev != c {
				t.Errorf("%s logged jobs attempted by two client ids, %s and %s", w.name, prev, c)
			}
			clientOfProc[w.name] = c
		}
	}
	t.Logf("reports finished per process (from their logs): %v; client ids: %v", finishedByProc, clientOfProc)
	if finishedByProc["worker-a"]+finishedByProc["worker-b"] != fleetReports {
		t.Errorf("the processes logged %d finished reports in all, want %d (each exactly once)",
			finishedByProc["worker-a"]+finishedByProc["worker-b"], fleetReports)
	}
	if a, b := clientOfProc["worker-a"], clientOfProc["worker-b"]; a == "" || a == b {
		t.Errorf("client ids of the processes: %q and %q, want two different ones", a, b)
	}
	if len(jobsByClient) != 2 {
		t.Errorf("jobs were attempted by %d River clients, want 2", len(jobsByClient))
	}

	// SIGTERM stops both softly: exit status 0 within the shutdown bound.
	for _, w := range workers {
		if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range workers {
		select {
		case <-w.done:
			if w.waitErr != nil {
				t.Errorf("%s exited with %v after SIGTERM, want status 0\n%s", w.name, w.waitErr, w.tail(20))
			}
		case <-time.After(shutdownBound):
			t.Errorf("%s still running %v after SIGTERM", w.name, shutdownBound)
		}
	}
}

// buildWorkerBinary builds cmd/tally-worker into the test's temp directory.
func buildWorkerBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build tally-worker: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "tally-worker")
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/tally-compliance/tally/cmd/tally-worker")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tally-worker: %v\n%s", err, out)
	}
	t.Logf("built tally-worker in %v", time.Since(start).Round(time.Millisecond))
	return bin
}

// fleetProc is a tally-worker process whose JSON log lines are kept.
type fleetProc struct {
	name        string
	cmd         *exec.Cmd
	metricsPort int
	done        chan struct{}
	waitErr     error

	mu    sync.Mutex
	lines []map[string]any
	raw   []string
}

func startFleetWorker(t *testing.T, bin, name string, env []string) *fleetProc {
	t.Helper()
	p := &fleetProc{name: name, metricsPort: freePort(t), done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(slices.Clone(env),
		"TALLY_METRICS_PORT="+strconv.Itoa(p.metricsPort),
		"PATH="+os.Getenv("PATH"),
		"HOME="+os.Getenv("HOME"))
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = io.Discard
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			var m map[string]any
			_ = json.Unmarshal([]byte(line), &m)
			p.mu.Lock()
			p.raw = append(p.raw, line)
			if m != nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
		}
	}()
	go func() {
		<-scanned // Wait must follow the last read of the pipe
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("last log lines of %s:\n%s", p.name, p.tail(30))
		}
	})
	t.Logf("started %s (pid %d, metrics on :%d)", name, p.cmd.Process.Pid, p.metricsPort)
	return p
}

func (p *fleetProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady waits until the process's /readyz answers 200.
func (p *fleetProc) waitReady(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	url := "http://127.0.0.1:" + strconv.Itoa(p.metricsPort) + "/readyz"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if p.exited() {
			t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.waitErr, p.tail(30))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v\n%s", p.name, within, p.tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readyJobIDs returns the job ids of the process's "report ready" log lines.
func (p *fleetProc) readyJobIDs() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []int64
	for _, m := range p.lines {
		if m["msg"] != "report ready" {
			continue
		}
		if id, ok := m["job_id"].(float64); ok {
			ids = append(ids, int64(id))
		}
	}
	return ids
}

func (p *fleetProc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.raw[max(0, len(p.raw)-n):], "\n")
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// createReport posts a report as the portal does and returns its id.
func createReport(baseURL, foreignID, token, caseID, typ string) (string, error) {
	body, _ := json.Marshal(map[string]string{"case_id": caseID, "report_type": typ})
	req, err := http.NewRequest(http.MethodPost, baseURL+"/api/applications/"+foreignID+"/case-reports", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST case-reports = %d %s, want 202", resp.StatusCode, b)
	}
	var r api.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return "", err
	}
	if r.ID == "" {
		return "", errors.New("created report has no id")
	}
	return r.ID, nil
}

// quietLogger logs warnings and errors through t.Log.
func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(levelHandler{tallytest.Logger(t).Handler(), slog.LevelWarn})
}
