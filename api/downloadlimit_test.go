package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tally-compliance/tally/api"
)

// floodResult is the answer to one download of a flood.
type floodResult struct {
	role       string
	status     int
	code       string
	limit      string
	retryAfter string
	err        error
}

// slowDownload starts a download as token and, once answered, reads its body
// at about 2 KB/s until ctx ends. answered receives the status as soon as
// the headers are in.
func (b *loadBundle) slowDownload(ctx context.Context, client *http.Client, role, path string, answered chan<- floodResult) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+path, nil)
	if err != nil {
		answered <- floodResult{role: role, err: err}
		return
	}
	req.Header.Set("Authorization", "Bearer "+b.fx.tokens[role])
	resp, err := client.Do(req)
	if err != nil {
		answered <- floodResult{role: role, err: err}
		return
	}
	defer resp.Body.Close()
	res := floodResult{role: role, status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode != http.StatusOK {
		var body struct {
			Error struct {
				Code    string         `json:"code"`
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		data, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(data, &body); err != nil {
			res.err = err
		}
		res.code = body.Error.Code
		res.limit, _ = body.Error.Details["limit"].(string)
		answered <- res
		return
	}
	answered <- res
	buf := make([]byte, 2<<10)
	for {
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// latencies times rounds of /auth/me and list calls by callers who take no
// part in the flood, and returns the non-200 answers as errors.
func (b *loadBundle) latencies(t *testing.T, rounds int) ([]time.Duration, []string) {
	t.Helper()
	calls := []struct{ role, path string }{
		{"list", "/auth/me"},
		{"list", "/api/applications/alpha/reports"},
		{"auditorB", "/auth/me"},
		{"auditorB", "/api/applications/gamma/reports"},
		{"ownerB", "/api/reports"},
	}
	var (
		mu     sync.Mutex
		took   []time.Duration
		failed []string
		wg     sync.WaitGroup
	)
	for _, call := range calls {
		wg.Go(func() {
			for range rounds {
				r := b.send(context.Background(), call.role, http.MethodGet, call.path, b.fx.tokens[call.role], "")
				mu.Lock()
				took = append(took, r.took)
				if r.err != nil || r.status != http.StatusOK {
					failed = append(failed, call.role+" GET "+call.path+": "+strconv.Itoa(r.status)+" "+string(r.body)+errString(r.err))
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(took)
	return took, failed
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " " + err.Error()
}

func median(d []time.Duration) time.Duration { return d[len(d)/2] }

// TestDownloadFloodLeavesOthersServed replays the attack of one user opening
// 64 downloads read at 2 KB/s, then two more users of the same organization
// opening 24 each, through a real HTTP server whose admission holds 16
// requests. Each user streams at most DownloadsPerUser files and the
// organization DownloadsPerOrg, the rest answer 429 too_many_downloads with
// Retry-After, and meanwhile everyone else's /auth/me and lists answer 200.
func TestDownloadFloodLeavesOthersServed(t *testing.T) {
	// Not parallel: it loads the machine with megabytes and a hundred
	// connections, and the load tests running beside it measure latency.
	const perUser, perOrg = 4, 8
	b := setupLoad(t, loadOpts{maxConns: 4, maxInFlight: 16, downloadsPerUser: perUser, downloadsPerOrg: perOrg})
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	// 12 MiB: more than the socket buffers between server and client hold,
	// so that a slow reader's download keeps streaming.
	content := bytes.Repeat([]byte("row,0123456789abcdef0123456789abcdef\n"), 12<<20/37)
	b.makeReady(t, id, content)
	appPath := "/api/applications/alpha/reports/" + id + "/download"
	orgPath := "/api/reports/" + id + "/download"

	start := time.Now()
	before, failed := b.latencies(t, 10)
	if len(failed) > 0 {
		t.Fatalf("before the flood: %v", failed)
	}

	attack, stop := context.WithCancel(context.Background())
	attacker := smallWindowClient() // no timeout: the readers are slow on purpose
	var readers sync.WaitGroup
	flood := func(role, path string, n int) []floodResult {
		answered := make(chan floodResult, n)
		for range n {
			readers.Go(func() { b.slowDownload(attack, attacker, role, path, answered) })
		}
		var out []floodResult
		timeout := time.After(20 * time.Second)
		for range n {
			select {
			case r := <-answered:
				out = append(out, r)
			case <-timeout:
				t.Errorf("%s: %d of %d downloads unanswered after 20s", role, n-len(out), n)
				return out
			}
		}
		return out
	}
	count := func(rs []floodResult, status int) int {
		n := 0
		for _, r := range rs {
			if r.status == status {
				n++
			}
		}
		return n
	}
	checkRefused := func(rs []floodResult, limit string) {
		t.Helper()
		for _, r := range rs {
			switch {
			case r.err != nil:
				t.Errorf("%s: %v", r.role, r.err)
			case r.status == http.StatusOK:
			case r.status != http.StatusTooManyRequests || r.code != api.CodeTooManyDownloads || r.retryAfter == "" || r.limit != limit:
				t.Errorf("%s: got %d %s limit=%q Retry-After=%q, want 200 or 429 %s limit=%s with Retry-After",
					r.role, r.status, r.code, r.limit, r.retryAfter, api.CodeTooManyDownloads, limit)
			}
		}
	}

	// One user first, then two more of the same organization: the second
	// fills the organization's streams, the third finds them full.
	for _, f := range []struct {
		role, path string
		n, want    int
		limit      string
	}{
		{"full", appPath, 64, perUser, "user"},
		{"download", appPath, 24, perOrg - perUser, "user"},
		{"owner", orgPath, 24, 0, "organization"},
	} {
		rs := flood(f.role, f.path, f.n)
		checkRefused(rs, f.limit)
		if got := count(rs, http.StatusOK); got != f.want {
			t.Errorf("%s's streams: got %d, want %d", f.role, got, f.want)
		}
	}

	t.Logf("flood answered after %v", time.Since(start))
	during, failed := b.latencies(t, 10)
	t.Logf("other callers before the flood: median %v, max %v; during: median %v, max %v (%d calls each)",
		median(before), before[len(before)-1], median(during), during[len(during)-1], len(during))
	if len(failed) > 0 {
		t.Errorf("during the flood, %d of %d calls failed, first: %s", len(failed), len(during), failed[0])
	}

	// The slots come back when the readers leave.
	stop()
	readers.Wait()
	t.Logf("readers gone after %v", time.Since(start))
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := b.send(context.Background(), "full", http.MethodGet, appPath, b.fx.tokens["full"], "")
		if r.status == http.StatusOK {
			if !bytes.Equal(r.body, content) {
				t.Errorf("download after the flood: %d bytes, want the %d of the file", len(r.body), len(content))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("download after the flood: got %d %s, want 200 once the readers left", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// smallWindowClient dials with a 16 KiB receive buffer, so that a client
// that stops reading stops the server's writes after a few socket buffers,
// not after megabytes. It asks for the file uncompressed: gzipped, the
// tests' repetitive files would fit in the socket buffers.
func smallWindowClient() *http.Client {
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10) })
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true, DisableCompression: true}}
}

// TestDownloadStalledClientCutOff checks that a client that stops reading is
// disconnected after the stall timeout, and that one reading with pauses
// shorter than it, faster than the minimum rate, gets its whole file.
func TestDownloadStalledClientCutOff(t *testing.T) {
	// Not parallel: it loads the machine with megabytes and a hundred
	// connections, and the load tests running beside it measure latency.
	const stall = 300 * time.Millisecond
	b := setupLoad(t, loadOpts{maxConns: 4, downloadMinRate: 32 << 10, downloadStallTimeout: stall})
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	content := bytes.Repeat([]byte("0123456789abcdef"), 8<<20/16) // 8 MiB, more than the socket buffers hold
	b.makeReady(t, id, content)
	path := "/api/applications/alpha/reports/" + id + "/download"
	get := func(rangeHeader string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, b.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+b.fx.tokens["full"])
		if rangeHeader != "" {
			req.Header.Set("Range", rangeHeader)
		}
		resp, err := smallWindowClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	t.Run("Stalled", func(t *testing.T) {
		resp := get("")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d, want 200", resp.StatusCode)
		}
		time.Sleep(10 * stall) // read nothing
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil || n >= int64(len(content)) {
			t.Fatalf("after stalling: read %d of %d bytes, err %v; want the server to have closed the connection", n, len(content), err)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("got %v, want an unexpected EOF or a reset: the server closing the connection", err)
		}
		t.Logf("stalled client: read %d of %d bytes before the server closed the connection (%v)", n, len(content), err)
		if got := counterValue(t, b, "tally_report_downloads_stalled_total"); got < 1 {
			t.Errorf("tally_report_downloads_stalled_total: got %v, want at least 1", got)
		}
	})

	t.Run("PausesShorterThanTimeout", func(t *testing.T) {
		const want = 1 << 20
		resp := get("bytes=0-" + strconv.Itoa(want-1))
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("got %d, want 206", resp.StatusCode)
		}
		var got bytes.Buffer
		buf := make([]byte, 64<<10)
		for {
			n, err := io.ReadFull(resp.Body, buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
			time.Sleep(stall / 3)
		}
		if !bytes.Equal(got.Bytes(), content[:want]) {
			t.Fatalf("read %d bytes, want the file's first %d", got.Len(), want)
		}
	})
}

// counterValue is the value of the API's counter name (summed over labels).
func counterValue(t *testing.T, b *loadBundle, name string) float64 {
	t.Helper()
	families, err := b.server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
