package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// loadOpts configure the API of a load test.
type loadOpts struct {
	maxConns       int32
	maxInFlight    int
	admissionWait  time.Duration
	requestTimeout time.Duration

	downloadsPerUser, downloadsPerOrg int
	downloadMinRate                   int64
	downloadStallTimeout              time.Duration
}

// loadBundle is a real HTTP server over the API with a small pool.
type loadBundle struct {
	*testBundle
	url    string
	dbURL  string
	client *http.Client
}

func setupLoad(t *testing.T, o loadOpts) *loadBundle {
	t.Helper()
	ctx := context.Background()
	dbURL := tallytest.DatabaseURL(t)
	pool, err := db.Connect(ctx, dbURL, &db.PoolOpts{MaxConns: o.maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := tallytest.Store(t)
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Opts{
		Pool: pool, River: rc, Store: store, Portal: portal, Logger: logger,
		MaxInFlight: o.maxInFlight, AdmissionWait: o.admissionWait, RequestTimeout: o.requestTimeout,
		DownloadsPerUser: o.downloadsPerUser, DownloadsPerOrg: o.downloadsPerOrg,
		DownloadMinRate: o.downloadMinRate, DownloadStallTimeout: o.downloadStallTimeout,
		CreatePerMinute: 1e6, // the limiter is not under test: every create reaches the database
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	// Uncompressed downloads: these tests measure admission and the pool,
	// and gzip under the race detector would stretch every stream.
	transport := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &loadBundle{
		testBundle: &testBundle{pool: pool, store: store, server: srv, fx: newFixture(t, pool), now: time.Now()},
		url:        hs.URL,
		dbURL:      dbURL,
		// The client's timeout only catches a hang; the assertions use a
		// tighter bound.
		client: &http.Client{Timeout: 30 * time.Second, Transport: transport},
	}
}

// loadResult is one request of a load run.
type loadResult struct {
	op       string
	phase    string
	status   int
	took     time.Duration
	err      error
	body     []byte
	header   http.Header
	started  time.Time
	finished time.Time
}

func (b *loadBundle) send(ctx context.Context, op, method, path, token, body string) loadResult {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, rd)
	if err != nil {
		return loadResult{op: op, err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := b.client.Do(req)
	if err != nil {
		return loadResult{op: op, err: err, took: time.Since(start), started: start, finished: time.Now()}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return loadResult{op: op, status: resp.StatusCode, took: time.Since(start), err: err, body: data,
		header: resp.Header, started: start, finished: time.Now()}
}

// check503 says what is wrong with a 503, if anything: it must be the JSON
// error shape with a code and a Retry-After header.
func check503(r loadResult, codes ...string) error {
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		return fmt.Errorf("body %q is not the JSON error: %v", r.body, err)
	}
	if !slices.Contains(codes, body.Error.Code) {
		return fmt.Errorf("code %q, want one of %v", body.Error.Code, codes)
	}
	if r.header.Get("Retry-After") == "" {
		return fmt.Errorf("no Retry-After header")
	}
	return nil
}

// TestLoadFailsFastAndKeepsAnswering fires many concurrent creates, lists and
// downloads at an API with four admission slots and a three-connection pool,
// first as is, then with every pool connection held by someone else (the
// pool exhausted), then released. Every answer is a success or a 503 JSON
// error with Retry-After, none takes longer than a hang bound, /healthz
// answers throughout, and the API recovers once the pool is free.
func TestLoadFailsFastAndKeepsAnswering(t *testing.T) {
	t.Parallel()
	const (
		maxConns       = 3
		requestTimeout = time.Second
		admissionWait  = 100 * time.Millisecond
		clients        = 32
		hangBound      = 5 * time.Second
		deadlineBound  = requestTimeout + admissionWait + 2*time.Second
	)
	// One user runs every client here, so the per-user and per-organization
	// download caps (TestDownloadFloodLeavesOthersServed covers them) are lifted: this test is
	// about admission and the pool.
	b := setupLoad(t, loadOpts{maxConns: maxConns, maxInFlight: 4, admissionWait: admissionWait, requestTimeout: requestTimeout,
		downloadsPerUser: clients, downloadsPerOrg: clients})
	ctx := context.Background()
	token := b.fx.tokens["full"]

	content := []byte("row_type,contract_id\n" + strings.Repeat("line,of,a,report\n", 20000))
	readyID := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	b.makeReady(t, readyID, content)
	sum := sha256.Sum256(content)
	wantSHA := hex.EncodeToString(sum[:])
	createBody := `{"case_id":"` + b.fx.caseOK.ID + `","report_type":"transaction_summary"}`

	var mu sync.Mutex
	var results []loadResult
	phase := "normal"
	record := func(r loadResult) {
		mu.Lock()
		r.phase = phase
		results = append(results, r)
		mu.Unlock()
	}
	setPhase := func(p string) {
		mu.Lock()
		phase = p
		mu.Unlock()
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				switch (i + n) % 3 {
				case 0:
					record(b.send(ctx, "create", http.MethodPost, "/api/applications/alpha/case-reports", token, createBody))
				case 1:
					record(b.send(ctx, "list", http.MethodGet, "/api/applications/alpha/reports?limit=20", token, ""))
				case 2:
					record(b.send(ctx, "download", http.MethodGet, "/api/applications/alpha/reports/"+readyID+"/download", token, ""))
				}
			}
		})
	}
	var health []loadResult
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			r := b.send(ctx, "healthz", http.MethodGet, "/healthz", "", "")
			mu.Lock()
			health = append(health, r)
			mu.Unlock()
		}
	})

	time.Sleep(2 * time.Second)

	// Exhaust the pool: hold every connection for longer than the request
	// timeout, so requests that got in wait for a connection until their
	// deadline and the rest are turned away at admission.
	setPhase("exhausted")
	acqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	var held []*pgxpool.Conn
	for range maxConns {
		c, err := b.pool.Acquire(acqCtx)
		if err != nil {
			cancel()
			t.Fatalf("holding pool connections: %v", err)
		}
		held = append(held, c)
	}
	cancel()
	exhaustedAt := time.Now()
	time.Sleep(3 * time.Second)
	for _, c := range held {
		c.Release()
	}
	releasedAt := time.Now()
	setPhase("recovered")
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	type key struct{ phase, op string }
	counts := map[key]map[int]int{}
	maxTook := map[key]time.Duration{}
	for _, r := range results {
		k := key{r.phase, r.op}
		if counts[k] == nil {
			counts[k] = map[int]int{}
		}
		counts[k][r.status]++
		maxTook[k] = max(maxTook[k], r.took)
		switch {
		case r.err != nil:
			t.Errorf("%s %s: %v after %v", r.phase, r.op, r.err, r.took)
			continue
		case r.took > hangBound:
			t.Errorf("%s %s took %v (status %d), want under %v", r.phase, r.op, r.took, r.status, hangBound)
		case r.op != "download" && r.took > deadlineBound:
			// Creates and lists end by their deadline. Downloads only get
			// the hang bound: their whole request, database lookups
			// included, runs under the long download timeout, so one
			// admitted while the pool is held waits for the pool.
			t.Errorf("%s %s took %v (status %d), want under %v (request timeout + admission wait + slack)",
				r.phase, r.op, r.took, r.status, deadlineBound)
		}
		want := map[string]int{"create": http.StatusAccepted, "list": http.StatusOK, "download": http.StatusOK}[r.op]
		switch r.status {
		case want:
			if r.op == "download" {
				got := sha256.Sum256(r.body)
				if hex.EncodeToString(got[:]) != wantSHA {
					t.Errorf("%s download: 200 with %d bytes that do not match the file", r.phase, len(r.body))
				}
			}
		case http.StatusServiceUnavailable:
			if err := check503(r, api.CodeServiceUnavailable, api.CodeRequestTimeout); err != nil {
				t.Errorf("%s %s: 503: %v", r.phase, r.op, err)
			}
		default:
			t.Errorf("%s %s: status %d %s, want %d or 503", r.phase, r.op, r.status, r.body, want)
		}
	}
	for _, p := range []string{"normal", "exhausted", "recovered"} {
		for _, op := range []string{"create", "list", "download"} {
			k := key{p, op}
			t.Logf("%-9s %-8s statuses %v, slowest %v", p, op, counts[k], maxTook[k].Round(time.Millisecond))
		}
	}

	// While the pool was held, requests were refused rather than served
	// or queued: some 503s, and nothing that needs the database succeeded
	// in the middle of the outage.
	exhausted503 := 0
	for _, r := range results {
		if r.phase != "exhausted" {
			continue
		}
		if r.status == http.StatusServiceUnavailable {
			exhausted503++
		}
		mid := exhaustedAt.Add(requestTimeout + admissionWait + 500*time.Millisecond)
		if r.status/100 == 2 && r.started.After(mid) && r.finished.Before(releasedAt) {
			t.Errorf("%s succeeded (%d) while every pool connection was held", r.op, r.status)
		}
	}
	if exhausted503 == 0 {
		t.Error("no 503 while the pool was exhausted; want requests turned away")
	}
	// Recovered: every operation succeeds again once the pool is free.
	for _, op := range []string{"create", "list", "download"} {
		want := map[string]int{"create": http.StatusAccepted, "list": http.StatusOK, "download": http.StatusOK}[op]
		if counts[key{"recovered", op}][want] == 0 {
			t.Errorf("no %s answered %d after the pool was released", op, want)
		}
	}

	// /healthz answered throughout, quickly.
	if len(health) < 50 {
		t.Errorf("only %d /healthz probes ran in 7 s", len(health))
	}
	for _, r := range health {
		if r.err != nil || r.status != http.StatusOK || r.took > 2*time.Second {
			t.Errorf("/healthz at %s: status %d after %v (%v), want 200 within 2s",
				r.started.Format("15:04:05.000"), r.status, r.took, r.err)
		}
	}
}

// TestRequestTimeout503WhenQueryBlocks holds an ACCESS EXCLUSIVE lock on
// reports in another connection, so the list query blocks: the request ends
// at its deadline with 503 request_timeout instead of hanging, and once the
// lock is gone the same request succeeds.
func TestRequestTimeout503WhenQueryBlocks(t *testing.T) {
	t.Parallel()
	const requestTimeout = time.Second // roomy: the list before the lock must finish inside it on a loaded machine
	b := setupLoad(t, loadOpts{maxConns: 4, requestTimeout: requestTimeout})
	ctx := context.Background()
	token := b.fx.tokens["full"]
	list := func() loadResult {
		return b.send(ctx, "list", http.MethodGet, "/api/applications/alpha/reports", token, "")
	}
	if r := list(); r.status != http.StatusOK {
		t.Fatalf("list before the lock: %d %s", r.status, r.body)
	}

	locker, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(ctx)
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE reports IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}

	r := list()
	if r.err != nil {
		t.Fatalf("list under the lock: %v after %v", r.err, r.took)
	}
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("list under the lock: %d %s, want 503", r.status, r.body)
	} else if err := check503(r, api.CodeRequestTimeout); err != nil {
		t.Errorf("list under the lock: %v", err)
	}
	if r.took < requestTimeout || r.took > requestTimeout+2*time.Second {
		t.Errorf("list under the lock answered after %v, want just after the %v request timeout", r.took, requestTimeout)
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := list(); r.status != http.StatusOK {
		t.Errorf("list after the lock: %d %s, want 200", r.status, r.body)
	}
}
