package api_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
)

// generous bounds a wait that must end well before Prefer: wait=30 would:
// a correctness check (the answer did not come from the timeout), not a
// speed requirement.
const generous = 20 * time.Second

func TestGetReportBothScopes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	b.makeReady(t, id, []byte("row_type\n"))
	betaID := decode[api.Report](t, b.create(t, "full", "beta", b.fx.caseBeta.ID, "transaction_summary")).ID
	otherOrg := decode[api.Report](t, b.create(t, "auditorB", "gamma", b.fx.caseB.ID, "transaction_summary")).ID

	// The same object as the list's, for each caller and scope.
	for _, tt := range []struct{ role, list, one string }{
		{"full", "/api/applications/alpha/reports", "/api/applications/alpha/reports/" + id},
		{"list", "/api/applications/alpha/reports", "/api/applications/alpha/reports/" + id},
		{"owner", "/api/reports", "/api/reports/" + id},
	} {
		var fromList api.Report
		for _, r := range decode[[]api.Report](t, b.do(t, "GET", tt.list, b.fx.tokens[tt.role], nil)) {
			if r.ID == id {
				fromList = r
			}
		}
		r := b.do(t, "GET", tt.one, b.fx.tokens[tt.role], nil)
		if r.Code != 200 {
			t.Fatalf("%s GET %s: %d %s", tt.role, tt.one, r.Code, r.Body)
		}
		if diff := cmp.Diff(fromList, decode[api.Report](t, r)); diff != "" {
			t.Errorf("%s: report mismatch with the list (-list +one):\n%s", tt.role, diff)
		}
		if r.Header().Get("Preference-Applied") != "" {
			t.Errorf("Preference-Applied without Prefer: %q", r.Header().Get("Preference-Applied"))
		}
		// ETag and 304.
		etag := r.Header().Get("ETag")
		again := b.do(t, "GET", tt.one, b.fx.tokens[tt.role], nil, withHeader("If-None-Match", etag))
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("%s If-None-Match: %d %q, want 304 with no body", tt.role, again.Code, again.Body)
		}
	}
	if got := decode[api.Report](t, b.do(t, "GET", "/api/applications/alpha/reports/"+id, b.fx.tokens["list"], nil)); got.SHA256 != nil {
		t.Errorf("a caller without reports:download sees sha256 %v", *got.SHA256)
	}

	// Outside the scope: 404 report_not_found, like a report that does not exist.
	for _, tt := range []struct{ name, role, path string }{
		{"SiblingAppViaOwnApp", "full", "/api/applications/alpha/reports/" + betaID},
		{"OtherOrgViaOwnApp", "full", "/api/applications/alpha/reports/" + otherOrg},
		{"OtherOrgAtOrgScope", "owner", "/api/reports/" + otherOrg},
		{"OwnOrgFromOtherOrgOwner", "ownerB", "/api/reports/" + id},
		{"Unknown", "full", "/api/applications/alpha/reports/rpt_01aaaaaaaaaaaaaaaaaaaaaaaa"},
		{"NotAnID", "owner", "/api/reports/x'1"},
		{"UnknownWaiting", "owner", "/api/reports/rpt_01aaaaaaaaaaaaaaaaaaaaaaaa"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, "GET", tt.path, b.fx.tokens[tt.role], nil, withHeader("Prefer", "wait=1"))
			if r.Code != 404 || r.errorCode(t) != api.CodeReportNotFound {
				t.Fatalf("got %d %s, want 404 report_not_found", r.Code, r.Body)
			}
		})
	}

	// A change of the report changes its ETag.
	first := b.do(t, "GET", "/api/reports/"+id, b.fx.tokens["owner"], nil)
	if _, err := db.MarkReportExpired(context.Background(), b.pool, id); err != nil {
		t.Fatal(err)
	}
	after := b.do(t, "GET", "/api/reports/"+id, b.fx.tokens["owner"], nil, withHeader("If-None-Match", first.Header().Get("ETag")))
	if after.Code != 200 || decode[api.Report](t, after).Status != db.ReportExpired {
		t.Fatalf("after expiry: %d %s, want 200 expired", after.Code, after.Body)
	}
}

// startWait sends a GET with Prefer: wait in the background.
func (b *testBundle) startWait(t *testing.T, path, token, prefer string) <-chan response {
	out := make(chan response, 1)
	go func() {
		out <- b.do(t, "GET", path, token, nil, withHeader("Prefer", prefer))
	}()
	return out
}

// until polls cond (a state of the server, not a time) for up to a minute.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitingNow reads the gauge of requests holding with Prefer: wait: they
// count once they gave their admission slot back.
func waitingNow(t *testing.T, s *api.Server) int {
	t.Helper()
	return int(metricValue(t, s, "tally_report_waits_in_progress"))
}

// metricValue reads an unlabelled gauge or counter of the API's registry.
func metricValue(t *testing.T, s *api.Server, name string) float64 {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// runningReport creates a report on alpha and moves it to running.
func (b *testBundle) runningReport(t *testing.T) string {
	t.Helper()
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	if ok, err := db.MarkReportRunning(context.Background(), b.pool, id, 0); err != nil || !ok {
		t.Fatalf("MarkReportRunning: %v %v", ok, err)
	}
	return id
}

func TestWaitAnswersWhenReady(t *testing.T) {
	t.Parallel()
	b := setup(t)
	appID, orgID := b.runningReport(t), b.runningReport(t)
	start := time.Now()
	appWait := b.startWait(t, "/api/applications/alpha/reports/"+appID, b.fx.tokens["full"], "wait=30")
	orgWait := b.startWait(t, "/api/reports/"+orgID, b.fx.tokens["owner"], "wait=30")
	until(t, "both requests waiting", func() bool { return waitingNow(t, b.server) == 2 })

	// Real status-changing transactions, as the worker commits them.
	b.makeReady(t, appID, []byte("row_type\n"))
	b.makeReady(t, orgID, []byte("row_type\n"))
	for _, c := range []<-chan response{appWait, orgWait} {
		r := <-c
		if r.Code != 200 {
			t.Fatalf("got %d %s", r.Code, r.Body)
		}
		if got := decode[api.Report](t, r).Status; got != db.ReportReady {
			t.Errorf("status %s, want ready", got)
		}
		if got := r.Header().Get("Preference-Applied"); got != "wait=30" {
			t.Errorf("Preference-Applied = %q, want wait=30", got)
		}
	}
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("answered after %s: the change did not end the wait", elapsed)
	}
}

func TestWaitUnchangedAnswersCurrentObject(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	plain := b.do(t, "GET", "/api/applications/alpha/reports/"+id, b.fx.tokens["full"], nil)
	r := b.do(t, "GET", "/api/applications/alpha/reports/"+id, b.fx.tokens["full"], nil, withHeader("Prefer", "respond-async, wait=1"))
	if r.Code != 200 || r.Body.String() != plain.Body.String() {
		t.Fatalf("got %d %s, want 200 %s", r.Code, r.Body, plain.Body)
	}
	if got := r.Header().Get("Preference-Applied"); got != "wait=1" {
		t.Errorf("Preference-Applied = %q, want wait=1", got)
	}
	if r.Header().Get("ETag") != plain.Header().Get("ETag") {
		t.Errorf("ETag %s, want the unchanged %s", r.Header().Get("ETag"), plain.Header().Get("ETag"))
	}
	// A malformed wait is ignored: answered at once, no Preference-Applied.
	m := b.do(t, "GET", "/api/applications/alpha/reports/"+id, b.fx.tokens["full"], nil, withHeader("Prefer", "wait=soon"))
	if m.Code != 200 || m.Header().Get("Preference-Applied") != "" {
		t.Errorf("malformed wait: %d Preference-Applied=%q, want 200 without it", m.Code, m.Header().Get("Preference-Applied"))
	}
}

func TestWaitTerminalAnswersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	b.makeReady(t, id, []byte("row_type\n"))
	start := time.Now()
	r := b.do(t, "GET", "/api/reports/"+id, b.fx.tokens["owner"], nil, withHeader("Prefer", "wait=3600"))
	if r.Code != 200 || decode[api.Report](t, r).Status != db.ReportReady || r.Header().Get("Preference-Applied") != "wait=30" {
		t.Fatalf("got %d %s Preference-Applied=%q, want 200 ready with wait=30 (clamped)", r.Code, r.Body, r.Header().Get("Preference-Applied"))
	}
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("a ready report was answered after %s", elapsed)
	}
}

func TestWaitCapPerUser429AndShutdownEndsWaiters(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{waitsPerUser: 2, maxInFlight: 1})
	id := b.runningReport(t)
	path := "/api/applications/alpha/reports/" + id
	// One at a time: each needs the one admission slot until it waits.
	w1 := b.startWait(t, path, b.fx.tokens["full"], "wait=30")
	until(t, "one request waiting", func() bool { return waitingNow(t, b.server) == 1 })
	w2 := b.startWait(t, path, b.fx.tokens["full"], "wait=30")
	until(t, "two requests waiting", func() bool { return waitingNow(t, b.server) == 2 })

	// Waiting requests hold no admission slot: with one slot in all, others
	// are still served.
	if r := b.do(t, "GET", "/auth/me", b.fx.tokens["full"], nil); r.Code != 200 {
		t.Fatalf("GET /auth/me while two requests wait: %d %s", r.Code, r.Body)
	}
	// A third wait of the same user: 429 too_many_waits; another user waits.
	r := b.do(t, "GET", path, b.fx.tokens["full"], nil, withHeader("Prefer", "wait=30"))
	if r.Code != http.StatusTooManyRequests || r.errorCode(t) != api.CodeTooManyWaits || r.Header().Get("Retry-After") == "" {
		t.Fatalf("third wait: %d %s, want 429 too_many_waits with Retry-After", r.Code, r.Body)
	}
	w3 := b.startWait(t, "/api/reports/"+id, b.fx.tokens["owner"], "wait=30")
	until(t, "the owner waiting", func() bool { return waitingNow(t, b.server) == 3 })

	// Shutdown answers every waiter with the current state.
	start := time.Now()
	b.server.StopWaiting()
	for _, c := range []<-chan response{w1, w2, w3} {
		r := <-c
		if r.Code != 200 || decode[api.Report](t, r).Status != db.ReportRunning {
			t.Errorf("after shutdown: %d %s, want 200 running", r.Code, r.Body)
		}
	}
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("waiters answered %s after shutdown", elapsed)
	}
	// The slots are free again, and a new wait does not wait.
	if r := b.do(t, "GET", path, b.fx.tokens["full"], nil, withHeader("Prefer", "wait=30")); r.Code != 200 {
		t.Errorf("wait after shutdown: %d %s", r.Code, r.Body)
	}
}

func TestWaitSurvivesListenerReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	until(t, "the listener", func() bool { return b.server.WatcherStatus().Listening })
	before := b.server.WatcherStatus()
	early, late := b.runningReport(t), b.runningReport(t)
	earlyWait := b.startWait(t, "/api/applications/alpha/reports/"+early, b.fx.tokens["full"], "wait=30")
	until(t, "one request waiting", func() bool { return waitingNow(t, b.server) == 1 })

	var killed bool
	if err := b.pool.QueryRow(context.Background(), `SELECT pg_terminate_backend($1)`, before.PID).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d): %v %v", before.PID, killed, err)
	}
	until(t, "the listener to reconnect", func() bool {
		s := b.server.WatcherStatus()
		return s.Listening && s.Connects > before.Connects && s.PID != before.PID
	})
	if got := metricValue(t, b.server, "tally_report_status_listener_connects_total"); got != float64(before.Connects+1) {
		t.Errorf("tally_report_status_listener_connects_total = %v, want %d", got, before.Connects+1)
	}
	// The reconnection woke the waiter to read again; it is waiting again.
	until(t, "the early request to wait again", func() bool { return b.server.WatcherStatus().Waiting == 1 })
	lateWait := b.startWait(t, "/api/reports/"+late, b.fx.tokens["owner"], "wait=30")
	until(t, "two requests waiting", func() bool { return b.server.WatcherStatus().Waiting == 2 })

	start := time.Now()
	b.makeReady(t, early, []byte("row_type\n"))
	b.makeReady(t, late, []byte("row_type\n"))
	for _, c := range []<-chan response{earlyWait, lateWait} {
		r := <-c
		if r.Code != 200 || decode[api.Report](t, r).Status != db.ReportReady {
			t.Errorf("got %d %s, want 200 ready", r.Code, r.Body)
		}
	}
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("answered %s after the change: the notification after the reconnect was missed", elapsed)
	}
}

func TestWaitCanceledBySQL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	c := b.startWait(t, "/api/applications/alpha/reports/"+id, b.fx.tokens["list"], "wait=30")
	until(t, "one request waiting", func() bool { return waitingNow(t, b.server) == 1 })
	// An admin's SQL, not Go: the trigger notifies all the same.
	if _, err := b.pool.Exec(context.Background(), `UPDATE reports SET status = 'canceled', error_code = 'canceled',
		error_message = 'canceled by hand', updated_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := <-c
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("answered %s after the change", elapsed)
	}
	var got api.Report
	if err := json.Unmarshal(r.Body.Bytes(), &got); err != nil || r.Code != 200 || got.Status != db.ReportCanceled {
		t.Fatalf("got %d %s, want 200 canceled", r.Code, r.Body)
	}
}

// TestWaitEndsOnGracefulShutdown: http.Server.Shutdown of the API's own
// server (as tally-api does on SIGTERM) answers a waiting request with the
// report as it is instead of waiting for it.
func TestWaitEndsOnGracefulShutdown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.runningReport(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := b.server.HTTPServer(ln.Addr().String())
	go func() { _ = hs.Serve(ln) }()

	type answer struct {
		status int
		report api.Report
		err    error
	}
	out := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/api/reports/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+b.fx.tokens["owner"])
		req.Header.Set("Prefer", "wait=30")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var a answer
		a.status, a.err = resp.StatusCode, json.NewDecoder(resp.Body).Decode(&a.report)
		out <- a
	}()
	until(t, "the request waiting", func() bool { return waitingNow(t, b.server) == 1 })

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	a := <-out
	if a.err != nil || a.status != 200 || a.report.Status != db.ReportRunning {
		t.Fatalf("got %d %+v %v, want 200 running", a.status, a.report, a.err)
	}
	if elapsed := time.Since(start); elapsed > generous {
		t.Errorf("shutdown took %s: it waited for the waiting request", elapsed)
	}
}
