package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// Admin credentials of the River UI tests.
const (
	testAdminUser     = "ops-admin"
	testAdminPassword = "correct horse battery staple"
)

// setupAdmin is setup with River UI on.
func setupAdmin(t *testing.T) *testBundle {
	t.Helper()
	return setupWith(t, setupOpts{adminUser: testAdminUser, adminPassword: testAdminPassword})
}

func basicAuthValue(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func basicAuth(user, password string) reqOpt {
	return withHeader("Authorization", basicAuthValue(user, password))
}

// asAdmin authenticates a request with the test admin credentials.
var asAdmin = basicAuth(testAdminUser, testAdminPassword)

// createReportJob creates a report through the API and returns it with the id
// of its generate_report job.
func (b *testBundle) createReportJob(t *testing.T) (reportID string, jobID int64) {
	t.Helper()
	r := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
	if r.Code != http.StatusAccepted {
		t.Fatalf("creating report: got %d %s, want 202", r.Code, r.Body)
	}
	reportID = decode[api.Report](t, r).ID
	rep, err := db.GetReportByID(context.Background(), b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.JobID == nil {
		t.Fatalf("report %s has no job", reportID)
	}
	return reportID, *rep.JobID
}

func (b *testBundle) reportStatus(t *testing.T, reportID string) (status, code string) {
	t.Helper()
	rep, err := db.GetReportByID(context.Background(), b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ErrorCode != nil {
		code = *rep.ErrorCode
	}
	return rep.Status, code
}

func (b *testBundle) jobState(t *testing.T, jobID int64) string {
	t.Helper()
	var state string
	err := b.pool.QueryRow(context.Background(), `SELECT state FROM river_job WHERE id = $1`, jobID).Scan(&state)
	if err != nil {
		return "deleted? " + err.Error()
	}
	return state
}

// discardJob makes the job discarded the way River does after its last
// failed attempt.
func (b *testBundle) discardJob(t *testing.T, jobID int64) {
	t.Helper()
	attemptErr, _ := json.Marshal(map[string]any{"at": time.Now().UTC(), "attempt": 1, "error": "storage unreachable", "trace": ""})
	_, err := b.pool.Exec(context.Background(), `UPDATE river_job SET state = 'discarded', finalized_at = now(),
		attempt = greatest(attempt, 1), errors = array_append(errors, $2::jsonb) WHERE id = $1`, jobID, attemptErr)
	if err != nil {
		t.Fatal(err)
	}
}

// riverUIJob is the part of River UI's job JSON the tests read.
type riverUIJob struct {
	ID    int64    `json:"id"`
	Args  string   `json:"args"` // River UI sends the encoded args as a string
	Kind  string   `json:"kind"`
	Queue string   `json:"queue"`
	State string   `json:"state"`
	Tags  []string `json:"tags"`
}

// TestRiverUI404WhenNotConfigured checks that River UI is off, not open,
// without admin credentials, whatever the request carries.
func TestRiverUI404WhenNotConfigured(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts setupOpts
	}{
		{"NoCredentials", setupOpts{}},
		{"UserOnly", setupOpts{adminUser: testAdminUser}},
		{"PasswordOnly", setupOpts{adminPassword: testAdminPassword}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupWith(t, tt.opts)
			for _, req := range []struct{ method, path string }{
				{http.MethodGet, "/admin/riverui/"},
				{http.MethodGet, "/admin/riverui"},
				{http.MethodGet, "/admin/riverui/api/jobs?state=available"},
				{http.MethodGet, "/admin/riverui/jobs/1"},
				{http.MethodPost, "/admin/riverui/api/jobs/cancel"},
			} {
				for _, opt := range []reqOpt{asAdmin, func(*http.Request) {}} {
					r := b.do(t, req.method, req.path, "", nil, opt)
					if r.Code != http.StatusNotFound || r.errorCode(t) != "not_found" {
						t.Errorf("%s %s: got %d %s, want 404 not_found", req.method, req.path, r.Code, r.Body)
					}
					if h := r.Header().Get("WWW-Authenticate"); h != "" {
						t.Errorf("%s %s: WWW-Authenticate %q on a 404", req.method, req.path, h)
					}
				}
			}
		})
	}
}

// TestRiverUI401 checks that only the admin's basic credentials open River
// UI: not wrong ones, and not the bearer tokens of portal users.
func TestRiverUI401(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t)
	reportID, jobID := b.createReportJob(t)
	tests := []struct {
		name  string
		token string
		opt   reqOpt
	}{
		{name: "NoCredentials"},
		{name: "WrongPassword", opt: basicAuth(testAdminUser, "wrong")},
		{name: "PasswordPrefix", opt: basicAuth(testAdminUser, testAdminPassword[:len(testAdminPassword)-1])},
		{name: "PasswordLonger", opt: basicAuth(testAdminUser, testAdminPassword+"x")},
		{name: "EmptyPassword", opt: basicAuth(testAdminUser, "")},
		{name: "WrongUser", opt: basicAuth("admin", testAdminPassword)},
		{name: "UserCase", opt: basicAuth(strings.ToUpper(testAdminUser), testAdminPassword)},
		{name: "Swapped", opt: basicAuth(testAdminPassword, testAdminUser)},
		{name: "MalformedBasic", opt: withHeader("Authorization", "Basic not-base64!")},
		{name: "AuditorBearer", token: b.fx.tokens["full"]},
		{name: "OwnerBearer", token: b.fx.tokens["owner"]},
		{name: "PasswordAsBearer", opt: withHeader("Authorization", "Bearer "+testAdminPassword)},
	}
	requests := []struct{ method, path, body string }{
		{http.MethodGet, "/admin/riverui/", ""},
		{http.MethodGet, "/admin/riverui", ""},
		{http.MethodGet, fmt.Sprintf("/admin/riverui/jobs/%d", jobID), ""},
		{http.MethodGet, "/admin/riverui/api/jobs?state=available", ""},
		{http.MethodGet, "/admin/riverui/api/health-checks/complete", ""},
		{http.MethodPost, "/admin/riverui/api/jobs/cancel", fmt.Sprintf(`{"ids":["%d"]}`, jobID)},
		{http.MethodPost, "/admin/riverui/api/jobs/delete", fmt.Sprintf(`{"ids":["%d"]}`, jobID)},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for j, req := range requests {
				var body any
				if req.body != "" {
					body = req.body
				}
				// Each from its own address: failed logins from one are
				// limited (TestRiverUI429AfterFailedLogins).
				opts := []reqOpt{fromAddr(fmt.Sprintf("10.0.%d.%d:1234", i, j))}
				if tt.opt != nil {
					opts = append(opts, tt.opt)
				}
				r := b.do(t, req.method, req.path, tt.token, body, opts...)
				if r.Code != http.StatusUnauthorized || r.errorCode(t) != "admin_auth_required" {
					t.Errorf("%s %s: got %d %s, want 401 admin_auth_required", req.method, req.path, r.Code, r.Body)
					continue
				}
				if got := r.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="tally-admin"`) {
					t.Errorf("%s %s: WWW-Authenticate %q, want a Basic challenge", req.method, req.path, got)
				}
				if got := r.Header().Get("Cache-Control"); got != "no-store" {
					t.Errorf("%s %s: Cache-Control %q, want no-store", req.method, req.path, got)
				}
			}
		})
	}
	t.Cleanup(func() {
		// None of the refused requests touched the job or the report.
		if got := b.jobState(t, jobID); got != "available" {
			t.Errorf("job after refused requests: got %s, want available", got)
		}
		if got, _ := b.reportStatus(t, reportID); got != "pending" {
			t.Errorf("report after refused requests: got %s, want pending", got)
		}
	})
}

// TestRiverUI200 checks what an admin gets: the app's HTML (at the entry
// page, on deep links and after the redirect of the bare prefix), its
// assets, and River UI's JSON API listing the report's job, whose
// arguments hold the report id only.
func TestRiverUI200(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t)
	reportID, jobID := b.createReportJob(t)

	// Not through b.do: kin-openapi's router matches /admin/riverui to the
	// spec's /admin/riverui/, which documents no 301.
	req := httptest.NewRequest(http.MethodGet, "/admin/riverui", nil)
	asAdmin(req)
	r := response{httptest.NewRecorder()}
	b.server.ServeHTTP(r, req)
	if r.Code != http.StatusMovedPermanently || r.Header().Get("Location") != "/admin/riverui/" {
		t.Fatalf("GET /admin/riverui: got %d Location %q, want 301 to /admin/riverui/", r.Code, r.Header().Get("Location"))
	}

	assets := regexp.MustCompile(`(?:src|href)="(/admin/riverui/assets/[^"]+)"`)
	for _, path := range []string{"/admin/riverui/", "/admin/riverui/jobs?state=available", fmt.Sprintf("/admin/riverui/jobs/%d", jobID)} {
		r := b.do(t, http.MethodGet, path, "", nil, asAdmin, withHeader("Accept", "text/html,application/xhtml+xml"))
		if r.Code != http.StatusOK || !strings.HasPrefix(r.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("GET %s: got %d %q, want 200 text/html", path, r.Code, r.Header().Get("Content-Type"))
		}
		html := r.Body.String()
		if !strings.Contains(html, `<div id="root"`) || !strings.Contains(html, `"/admin/riverui/api"`) {
			t.Errorf("GET %s: not River UI's page for the prefix:\n%s", path, html)
		}
		if path != "/admin/riverui/" {
			continue
		}
		found := assets.FindAllStringSubmatch(html, -1)
		if len(found) < 2 {
			t.Fatalf("River UI's page links %d assets, want its script and stylesheet:\n%s", len(found), html)
		}
		for _, m := range found {
			a := b.do(t, http.MethodGet, m[1], "", nil, asAdmin)
			if a.Code != http.StatusOK || a.Body.Len() == 0 {
				t.Errorf("GET %s: got %d with %d bytes, want 200", m[1], a.Code, a.Body.Len())
			}
		}
	}

	r = b.do(t, http.MethodGet, "/admin/riverui/api/jobs?state=available", "", nil, asAdmin)
	if r.Code != http.StatusOK || !strings.HasPrefix(r.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("GET jobs: got %d %q %s, want 200 JSON", r.Code, r.Header().Get("Content-Type"), r.Body)
	}
	list := decode[struct {
		Data []riverUIJob `json:"data"`
	}](t, r)
	var job *riverUIJob
	for i := range list.Data {
		if list.Data[i].ID == jobID {
			job = &list.Data[i]
		}
	}
	if job == nil {
		t.Fatalf("job %d not in River UI's list of available jobs: %s", jobID, r.Body)
	}
	if job.Kind != "generate_report" || job.State != "available" {
		t.Errorf("listed job: got kind %s state %s, want generate_report available", job.Kind, job.State)
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(job.Args), &args); err != nil {
		t.Fatalf("job args %q: %v", job.Args, err)
	}
	if len(args) != 1 || args["report_id"] != reportID {
		t.Errorf("job args: got %v, want only report_id %s", args, reportID)
	}

	r = b.do(t, http.MethodGet, fmt.Sprintf("/admin/riverui/api/jobs/%d", jobID), "", nil, asAdmin)
	if r.Code != http.StatusOK {
		t.Fatalf("GET job: got %d %s, want 200", r.Code, r.Body)
	}
	if got := decode[riverUIJob](t, r); got.ID != jobID || got.Kind != "generate_report" {
		t.Errorf("job: got %+v, want job %d of kind generate_report", got, jobID)
	}

	for _, path := range []string{"/admin/riverui/api/states", "/admin/riverui/api/queues", "/admin/riverui/api/health-checks/complete"} {
		if r := b.do(t, http.MethodGet, path, "", nil, asAdmin); r.Code != http.StatusOK {
			t.Errorf("GET %s: got %d %s, want 200", path, r.Code, r.Body)
		}
	}
}

// TestRiverUIJobActions takes River UI's job actions through its JSON API,
// as its buttons do, and checks that the report follows (through the
// job_sync trigger) and that downloads say so.
func TestRiverUIJobActions(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t)
	ctx := context.Background()
	post := func(t *testing.T, action string, jobID int64) {
		t.Helper()
		r := b.do(t, http.MethodPost, "/admin/riverui/api/jobs/"+action, "", fmt.Sprintf(`{"ids":["%d"]}`, jobID), asAdmin)
		if r.Code != http.StatusOK || !strings.Contains(r.Body.String(), `"status":"ok"`) {
			t.Fatalf("POST jobs/%s: got %d %s, want 200 ok", action, r.Code, r.Body)
		}
	}
	download := func(t *testing.T, reportID string) response {
		t.Helper()
		return b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+reportID+"/download", b.fx.tokens["full"], nil)
	}
	want410 := func(t *testing.T, reportID, code string) {
		t.Helper()
		if r := download(t, reportID); r.Code != http.StatusGone || r.errorCode(t) != code {
			t.Fatalf("download: got %d %s, want 410 %s", r.Code, r.Body, code)
		}
	}

	tests := []struct {
		name       string
		before     func(t *testing.T, jobID int64) // with the report's status after it
		beforeWant string
		action     string
		wantJob    string
		wantStatus string
		wantCode   string
		wantEvent  string // the event the action writes, if any
	}{
		{name: "CancelAvailable", action: "cancel", wantJob: "cancelled",
			wantStatus: "canceled", wantCode: "canceled", wantEvent: db.EventReportCanceled},
		{name: "DeleteAvailable", action: "delete", wantJob: "deleted",
			wantStatus: "canceled", wantCode: "canceled", wantEvent: db.EventReportCanceled},
		{name: "RetryCancelled", before: func(t *testing.T, jobID int64) { post(t, "cancel", jobID) }, beforeWant: "canceled",
			action: "retry", wantJob: "available", wantStatus: "pending", wantEvent: db.EventReportRequeued},
		{name: "RetryDiscarded", before: func(t *testing.T, jobID int64) { b.discardJob(t, jobID) }, beforeWant: "failed",
			action: "retry", wantJob: "available", wantStatus: "pending", wantEvent: db.EventReportRequeued},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reportID, jobID := b.createReportJob(t)
			if tt.before != nil {
				tt.before(t, jobID)
				if got, _ := b.reportStatus(t, reportID); got != tt.beforeWant {
					t.Fatalf("report before %s: got %s, want %s", tt.action, got, tt.beforeWant)
				}
				switch tt.beforeWant {
				case "failed":
					want410(t, reportID, api.CodeReportFailed)
				case "canceled":
					want410(t, reportID, api.CodeReportCanceled)
				}
			}
			events, err := tallytest.ListReportEvents(ctx, b.pool, reportID)
			if err != nil {
				t.Fatal(err)
			}
			nBefore := len(events)

			post(t, tt.action, jobID)

			if tt.wantJob == "deleted" {
				var n int
				if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE id = $1`, jobID).Scan(&n); err != nil || n != 0 {
					t.Errorf("job after delete: %d rows (err %v), want none", n, err)
				}
			} else if got := b.jobState(t, jobID); got != tt.wantJob {
				t.Errorf("job: got %s, want %s", got, tt.wantJob)
			}
			if status, code := b.reportStatus(t, reportID); status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("report: got %s %q, want %s %q", status, code, tt.wantStatus, tt.wantCode)
			}
			events, err = tallytest.ListReportEvents(ctx, b.pool, reportID)
			if err != nil {
				t.Fatal(err)
			}
			var kinds []string
			for _, ev := range events[nBefore:] {
				kinds = append(kinds, ev.Kind)
			}
			if tt.wantEvent == "" && len(kinds) != 0 || tt.wantEvent != "" && (len(kinds) != 1 || kinds[0] != tt.wantEvent) {
				t.Errorf("events written: got %v, want %q", kinds, tt.wantEvent)
			}

			switch tt.wantStatus {
			case "canceled":
				want410(t, reportID, api.CodeReportCanceled)
				// The owner's download path says the same.
				r := b.do(t, http.MethodGet, "/api/reports/"+reportID+"/download", b.fx.tokens["owner"], nil)
				if r.Code != http.StatusGone || r.errorCode(t) != api.CodeReportCanceled {
					t.Errorf("owner download: got %d %s, want 410 %s", r.Code, r.Body, api.CodeReportCanceled)
				}
			case "pending":
				// The job is back in River UI's list of available jobs, and
				// once a worker builds the file the report downloads.
				r := b.do(t, http.MethodGet, "/admin/riverui/api/jobs?state=available", "", nil, asAdmin)
				if !strings.Contains(r.Body.String(), fmt.Sprintf(`"id":%d,`, jobID)) {
					t.Errorf("retried job %d not listed as available: %s", jobID, r.Body)
				}
				b.makeReady(t, reportID, []byte("a,b\n1,2\n"))
				if r := download(t, reportID); r.Code != http.StatusOK || r.Body.String() != "a,b\n1,2\n" {
					t.Errorf("download after retry: got %d %q, want 200 with the file", r.Code, r.Body)
				}
			}
		})
	}
}

// TestRiverUI403CrossOrigin checks that changes come from River UI's own
// pages only: a browser's cross-origin request with the admin's credentials
// (a form on another site; see TestBrowserRiverUIRefusesCrossSiteForm) is
// refused, while River UI's pages, non-browser clients and reads work.
func TestRiverUI403CrossOrigin(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t)
	_, jobID := b.createReportJob(t)
	cancelBody := fmt.Sprintf(`{"ids":["%d"]}`, jobID)
	tests := []struct {
		name     string
		method   string
		path     string
		headers  map[string]string
		wantCode int
	}{
		{"CrossSite", http.MethodPost, "/admin/riverui/api/jobs/cancel",
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"SameSite", http.MethodPost, "/admin/riverui/api/jobs/retry",
			map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://other.example.com"}, http.StatusForbidden},
		{"OriginOnly", http.MethodPost, "/admin/riverui/api/jobs/delete",
			map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"QueuePause", http.MethodPut, "/admin/riverui/api/queues/reports/pause",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"CrossSiteRead", http.MethodGet, "/admin/riverui/api/jobs?state=available",
			map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusOK},
		// Last: these change the job.
		{"NonBrowser", http.MethodPost, "/admin/riverui/api/jobs/cancel", nil, http.StatusOK},
		{"SameOrigin", http.MethodPost, "/admin/riverui/api/jobs/retry",
			map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://example.com"}, http.StatusOK},
	}
	for _, tt := range tests {
		opts := []reqOpt{asAdmin}
		for k, v := range tt.headers {
			opts = append(opts, withHeader(k, v))
		}
		var body any
		if tt.method != http.MethodGet {
			body = cancelBody
		}
		r := b.do(t, tt.method, tt.path, "", body, opts...)
		if r.Code != tt.wantCode {
			t.Fatalf("%s: %s %s: got %d %s, want %d", tt.name, tt.method, tt.path, r.Code, r.Body, tt.wantCode)
		}
		if tt.wantCode == http.StatusForbidden {
			if code := r.errorCode(t); code != api.CodePermissionDenied {
				t.Errorf("%s: error code %s, want %s", tt.name, code, api.CodePermissionDenied)
			}
			if got := b.jobState(t, jobID); got != "available" {
				t.Fatalf("%s: job after a refused request: got %s, want available", tt.name, got)
			}
		}
	}
	if got := b.jobState(t, jobID); got != "available" { // cancelled, then retried
		t.Errorf("job after cancel and retry: got %s, want available", got)
	}
}
