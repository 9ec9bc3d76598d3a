package api_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/worker"
)

// runWorker runs a real worker until the returned function stops it. Its
// options are the tests' defaults (the test pseudonym keys, a development
// signing key), changed by tweak when it is not nil.
func (b *testBundle) runWorker(t *testing.T, tweak func(*worker.Opts)) (stop func()) {
	t.Helper()
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	opts := worker.Opts{
		Pool: b.pool, Store: b.store, Portal: portal, Logger: tallytest.Logger(t), PseudonymKeys: tallytest.PseudonymKeys(t),
		JobTimeout: time.Minute, ShutdownTimeout: 5 * time.Second, FetchPollInterval: 100 * time.Millisecond, TestOnly: true,
	}
	if tweak != nil {
		tweak(&opts)
	}
	w, err := worker.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitReady waits until the report is ready with a completed_at after since.
func (b *testBundle) waitReady(t *testing.T, id string, since time.Time) *db.Report {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r, err := db.GetReportByID(context.Background(), b.pool, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == db.ReportReady && r.CompletedAt.After(since) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %s is %s, want ready", id, r.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPseudonymsCannotBeMatchedWithTheReportID: whoever holds a file and its
// report id cannot match candidate names against its pseudonyms, and a
// rebuild after a key rotation writes the same bytes with the key the report
// recorded.
func TestPseudonymsCannotBeMatchedWithTheReportID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	app, txs := seedE2E(t, b)
	c := b.newCase(t, app, []string{"line_items"}, nil)
	oldMaster := []byte("the master key before the rotation, 32+ bytes")
	oldKeys, err := report.NewPseudonymKeys(oldMaster)
	if err != nil {
		t.Fatal(err)
	}
	stop := b.runWorker(t, func(o *worker.Opts) { o.PseudonymKeys = oldKeys })

	r := b.create(t, "full", "e2e", c.ID, "transaction_summary")
	if r.Code != http.StatusAccepted {
		t.Fatalf("create: %d %s", r.Code, r.Body)
	}
	id := decode[api.Report](t, r).ID
	rep := b.waitReady(t, id, time.Time{})
	stop()
	dl := b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+id+"/download", b.fx.tokens["full"], nil)
	if dl.Code != http.StatusOK {
		t.Fatalf("download: %d %s", dl.Code, dl.Body)
	}
	file := dl.Body.Bytes()

	// The attacker's guess: HMAC-SHA256 keyed by the report id, for every
	// real counterparty name.
	names := map[string]bool{}
	for _, tx := range txs {
		if tx.Counterparty != "" {
			names[tx.Counterparty] = true
		}
	}
	var pseudonyms int
	for name := range names {
		m := hmac.New(sha256.New, []byte(id))
		m.Write([]byte(name))
		guess := "cp_" + hex.EncodeToString(m.Sum(nil))[:12]
		if bytes.Contains(file, []byte(guess)) {
			t.Errorf("the name %q is matched by HMAC(report id, name) = %s", name, guess)
		}
		key, _ := report.DerivePseudonymKey(oldMaster, id)
		if bytes.Contains(file, []byte(report.Pseudonym(key, name))) {
			pseudonyms++
		}
	}
	if pseudonyms == 0 {
		t.Fatalf("no pseudonym of the master key in the file:\n%s", file)
	}
	var meta struct {
		PseudonymKeyID string `json:"pseudonym_key_id"`
	}
	if err := json.Unmarshal(rep.Metadata, &meta); err != nil || meta.PseudonymKeyID != report.PseudonymKeyID(oldMaster) {
		t.Fatalf("metadata %s: pseudonym_key_id %q, want %q", rep.Metadata, meta.PseudonymKeyID, report.PseudonymKeyID(oldMaster))
	}

	// Rotation: a new current key, the old one retired. An administrator
	// retries the report's job; the rebuild uses the recorded key.
	newKeys, err := report.NewPseudonymKeys([]byte("the master key after the rotation, 32+ bytes"), oldMaster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE reports SET status = 'failed', error_code = 'build_failed' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	rc, err := river.NewClient(riverpgxv5.New(b.pool), &river.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.JobRetry(ctx, *rep.JobID); err != nil {
		t.Fatal(err)
	}
	b.runWorker(t, func(o *worker.Opts) { o.PseudonymKeys = newKeys })
	rebuilt := b.waitReady(t, id, *rep.CompletedAt)
	again := b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+id+"/download", b.fx.tokens["full"], nil).Body.Bytes()
	if !bytes.Equal(again, file) || *rebuilt.SHA256 != *rep.SHA256 {
		t.Fatalf("the rebuild after the rotation differs:\n--- before\n%s\n--- after\n%s", file, again)
	}
}

// TestContentOnlyForDownloaders: a ready report's size, hash, row count and
// totals are shown only to callers holding reports:download in the scope
// they asked through; others see its identity, scope and status. Cells:
// "content", "scope" (no content fields) or the status when not 2xx.
func TestContentOnlyForDownloaders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	fx := b.fx
	// Extra callers: an auditor with list and download but not create, an
	// owner with list only.
	listDl := must[*db.User](t)(db.CreateUser(ctx, b.pool, db.CreateUserParams{OrgID: fx.orgA.ID, Email: "listdl@a.test", Name: "LD"}))
	if err := db.GrantPermissions(ctx, b.pool, listDl.ID, fx.alpha.ID, []string{db.PermReportsList, db.PermReportsDownload}); err != nil {
		t.Fatal(err)
	}
	ownerList := must[*db.User](t)(db.CreateUser(ctx, b.pool, db.CreateUserParams{OrgID: fx.orgA.ID, Email: "ownerlist@a.test", Name: "OL",
		OwnerPermissions: []string{db.PermReportsList}}))
	tokens := map[string]string{"full": fx.tokens["full"], "create": fx.tokens["create"], "list": fx.tokens["list"], "owner": fx.tokens["owner"]}
	for role, u := range map[string]*db.User{"listDl": listDl, "ownerList": ownerList} {
		_, tok, err := db.CreateSession(ctx, b.pool, u.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
	}

	// Each creator posts with an Idempotency-Key, the report becomes ready,
	// and the replay shows it as it is now.
	replays := map[string]response{}
	for _, role := range []string{"full", "create"} {
		key := withHeader("Idempotency-Key", "content-"+role)
		r := b.create(t, role, "alpha", fx.caseOK.ID, "transaction_summary", key)
		if r.Code != http.StatusAccepted {
			t.Fatalf("create as %s: %d %s", role, r.Code, r.Body)
		}
		b.makeReady(t, decode[api.Report](t, r).ID, []byte("row_type\n"))
		if _, err := b.pool.Exec(ctx, `UPDATE reports SET metadata = metadata || '{"totals": {"EUR": {"count": 1, "amount": "1.00"}}}' WHERE status = 'ready'`); err != nil {
			t.Fatal(err)
		}
		replays[role] = b.create(t, role, "alpha", fx.caseOK.ID, "transaction_summary", key)
	}

	shown := func(rep api.Report) string {
		var meta map[string]any
		_ = json.Unmarshal(rep.Metadata, &meta)
		_, rows := meta["row_count"]
		_, totals := meta["totals"]
		switch {
		case rep.SHA256 != nil && rep.SizeBytes != nil && rows && totals:
			return "content"
		case rep.SHA256 == nil && rep.SizeBytes == nil && !rows && !totals && meta["case_id"] == fx.caseOK.ID:
			return "scope"
		}
		return "mixed: " + string(rep.Metadata)
	}
	cell := func(t *testing.T, r response, list bool) string {
		t.Helper()
		if r.Code >= 300 {
			return http.StatusText(r.Code)
		}
		if !list {
			return shown(decode[api.Report](t, r))
		}
		out := ""
		for _, rep := range decode[[]api.Report](t, r) {
			if rep.Status != db.ReportReady {
				continue
			}
			if s := shown(rep); out == "" || out == s {
				out = s
			} else {
				return "mixed"
			}
		}
		return out
	}
	forbidden := http.StatusText(http.StatusForbidden)
	tests := []struct {
		name, role string
		res        func() response
		list       bool
		want       string
	}{
		{"ListAppFull", "full", nil, true, "content"},
		{"ListAppListOnly", "list", nil, true, "scope"},
		{"ListAppListAndDownload", "listDl", nil, true, "content"},
		{"ListAppOwnerWithoutGrant", "owner", nil, true, http.StatusText(http.StatusNotFound)},
		{"ListOrgOwner", "owner", nil, true, "content"},
		{"ListOrgOwnerListOnly", "ownerList", nil, true, "scope"},
		{"ListOrgAuditor", "full", nil, true, forbidden},
		{"ReplayFull", "full", func() response { return replays["full"] }, false, "content"},
		{"ReplayCreateOnly", "create", func() response { return replays["create"] }, false, "scope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r response
			switch {
			case tt.res != nil:
				r = tt.res()
			case strings.HasPrefix(tt.name, "ListOrg"):
				r = b.do(t, http.MethodGet, "/api/reports", tokens[tt.role], nil)
			default:
				r = b.do(t, http.MethodGet, "/api/applications/alpha/reports", tokens[tt.role], nil)
			}
			if got := cell(t, r, tt.list); got != tt.want {
				t.Fatalf("%s: got %s, want %s (%d %s)", tt.name, got, tt.want, r.Code, r.Body)
			}
		})
	}
}

// TestDownloadCaseRules: auditor downloads follow the case rules of
// creation, each refusal is an activity event, and owner-level downloads are
// not subject to them.
func TestDownloadCaseRules(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		after func(c *db.Case)
		code  string
	}{
		{"Revoked", func(c *db.Case) { must[*db.Case](t)(db.RevokeCase(ctx, b.pool, c.ID)) }, api.CodeCaseRevoked},
		{"Closed", func(c *db.Case) { must[*db.Case](t)(db.CloseCase(ctx, b.pool, c.ID)) }, api.CodeCaseClosed},
		{"WindowEnded", func(c *db.Case) {
			if _, err := b.pool.Exec(ctx, `UPDATE cases SET access_window_end = now() - interval '1 minute',
				access_window_start = now() - interval '1 hour' WHERE id = $1`, c.ID); err != nil {
				t.Fatal(err)
			}
		}, api.CodeAccessWindowClosed},
		{"Unassigned", func(c *db.Case) {
			if _, err := b.pool.Exec(ctx, `DELETE FROM case_assignments WHERE case_id = $1 AND user_id = $2`, c.ID, b.fx.users["full"].ID); err != nil {
				t.Fatal(err)
			}
		}, api.CodeCaseNotAssigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := b.newCaseOn(t, b.fx.alpha, "full")
			id := decode[api.Report](t, b.create(t, "full", "alpha", c.ID, "transaction_summary")).ID
			b.makeReady(t, id, []byte("row_type\n"))
			path := "/api/applications/alpha/reports/" + id + "/download"
			if r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil); r.Code != http.StatusOK {
				t.Fatalf("before: %d %s", r.Code, r.Body)
			}
			tt.after(c)
			r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("User-Agent", "auditor-tool/2"))
			if r.Code != http.StatusForbidden || r.errorCode(t) != tt.code {
				t.Fatalf("after: got %d %s, want 403 %s", r.Code, r.Body, tt.code)
			}
			if r := b.do(t, http.MethodHead, path, b.fx.tokens["full"], nil); r.Code != http.StatusForbidden {
				t.Errorf("HEAD after: got %d, want 403", r.Code)
			}
			if r := b.do(t, http.MethodGet, "/api/reports/"+id+"/download", b.fx.tokens["owner"], nil); r.Code != http.StatusOK {
				t.Errorf("owner-level download after: got %d %s, want 200", r.Code, r.Body)
			}
			evs, err := tallytest.ListReportEvents(ctx, b.pool, id)
			if err != nil {
				t.Fatal(err)
			}
			var refused []map[string]any
			for _, e := range evs {
				if e.Kind == db.EventReportDownloadRefused {
					var d map[string]any
					_ = json.Unmarshal(e.Details, &d)
					if e.ActorID == nil || *e.ActorID != b.fx.users["full"].ID {
						t.Errorf("refusal actor %v, want the auditor", e.ActorID)
					}
					refused = append(refused, d)
				}
			}
			if len(refused) != 1 || refused[0]["code"] != tt.code || refused[0]["user_agent"] != "auditor-tool/2" {
				t.Fatalf("refusal events %v, want one with code %s (HEAD records none)", refused, tt.code)
			}
		})
	}
}

// TestAuditContext: report.created and report.downloaded record the client
// address (X-Forwarded-For only from a trusted proxy) and the User-Agent,
// and the activity_log report shows them.
func TestAuditContext(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{trustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	ctx := context.Background()
	longUA := strings.Repeat("x", 1000)
	viaProxy := func(r *http.Request) {
		r.RemoteAddr = "192.0.2.10:4000"
		r.Header.Set("X-Forwarded-For", "203.0.113.7, 192.0.2.11")
	}
	spoofed := func(r *http.Request) {
		r.RemoteAddr = "198.51.100.20:4000"
		r.Header.Set("X-Forwarded-For", "203.0.113.66")
	}

	created := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", viaProxy, withHeader("User-Agent", "portal/1.0"))
	id := decode[api.Report](t, created).ID
	b.makeReady(t, id, []byte("row_type\n"))
	path := "/api/applications/alpha/reports/" + id + "/download"
	if r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, spoofed, withHeader("User-Agent", longUA)); r.Code != http.StatusOK {
		t.Fatalf("download: %d %s", r.Code, r.Body)
	}
	evs, err := tallytest.ListReportEvents(ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, e := range evs {
		var d struct {
			ClientIP  string `json:"client_ip"`
			UserAgent string `json:"user_agent"`
		}
		_ = json.Unmarshal(e.Details, &d)
		got[e.Kind] = [2]string{d.ClientIP, d.UserAgent}
	}
	if want := [2]string{"203.0.113.7", "portal/1.0"}; got[db.EventReportCreated] != want {
		t.Errorf("report.created: got %q, want %q", got[db.EventReportCreated], want)
	}
	dl := got[db.EventReportDownloaded]
	if dl[0] != "198.51.100.20" || len(dl[1]) > 260 || !strings.HasPrefix(dl[1], "xxxx") {
		t.Errorf("report.downloaded: got ip %q and a %d-byte user agent, want the peer 198.51.100.20 and at most 260 bytes", dl[0], len(dl[1]))
	}

	// The activity log of the case shows them in its last two columns.
	b.startWorker(t, nil)
	logID := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "activity_log")).ID
	b.waitFinal(t, "full", "alpha", []string{logID})
	file := b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+logID+"/download", b.fx.tokens["full"], nil).Body.Bytes()
	records, err := csv.NewReader(bytes.NewReader(file)).ReadAll()
	if err != nil {
		t.Fatalf("activity log: %v\n%s", err, file)
	}
	if h := strings.Join(records[0], ","); !strings.HasSuffix(h, ",client_ip,user_agent,hash") {
		t.Fatalf("header %s, want client_ip and user_agent, then the chain hash, last", h)
	}
	var seen int
	for _, rec := range records[1:] {
		if rec[2] != id {
			continue
		}
		ip, ua := rec[len(rec)-3], rec[len(rec)-2]
		switch rec[1] {
		case db.EventReportCreated:
			if ip != "203.0.113.7" || ua != "portal/1.0" {
				t.Errorf("created row: %q", rec)
			}
			seen++
		case db.EventReportDownloaded:
			if ip != "198.51.100.20" || !strings.HasPrefix(ua, "xxxx") {
				t.Errorf("downloaded row: %q", rec)
			}
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("found %d of the report's created and downloaded rows, want 2:\n%s", seen, file)
	}
}
