package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestMe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.do(t, http.MethodGet, "/auth/me", b.fx.tokens["full"], nil)
	if r.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.Code, r.Body)
	}
	me := decode[api.Me](t, r)
	if me.User.Email != b.fx.users["full"].Email || me.Organization.ID != b.fx.orgA.ID {
		t.Errorf("got user %q org %q", me.User.Email, me.Organization.ID)
	}
	if len(me.Applications) != 2 || me.Applications[0].ForeignID != "alpha" || me.Applications[1].ForeignID != "beta" {
		t.Fatalf("applications = %+v, want alpha and beta", me.Applications)
	}
	if got := strings.Join(me.Applications[0].Permissions["auditor"], ","); got != "reports:create,reports:download,reports:list" {
		t.Errorf("alpha auditor permissions = %q", got)
	}

	owner := decode[api.Me](t, b.do(t, http.MethodGet, "/auth/me", b.fx.tokens["owner"], nil))
	if got := strings.Join(owner.Permissions.Owner, ","); got != "reports:list,reports:download" {
		t.Errorf("owner permissions = %q", got)
	}
	if len(owner.Applications) != 0 {
		t.Errorf("owner applications = %+v, want none", owner.Applications)
	}
}

func TestAuthentication401(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, header, code string
	}{
		{"NoToken", "", api.CodeMissingToken},
		{"Malformed", "Token abc", api.CodeInvalidToken},
		{"BearerGarbage", "Bearer not-a-token", api.CodeInvalidToken},
		{"Unknown", "Bearer tly_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", api.CodeInvalidToken},
		{"Expired", "Bearer " + b.fx.tokens["expired"], api.CodeInvalidToken},
		{"Revoked", "Bearer " + b.fx.tokens["revoked"], api.CodeInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []reqOpt
			if tt.header != "" {
				opts = append(opts, withHeader("Authorization", tt.header))
			}
			r := b.do(t, http.MethodGet, "/auth/me", "", nil, opts...)
			if r.Code != http.StatusUnauthorized || r.errorCode(t) != tt.code {
				t.Fatalf("got %d %s, want 401 %s", r.Code, r.Body, tt.code)
			}
			if r.Header().Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate header")
			}
		})
	}
}

func TestCreate202(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", withHeader("X-Request-ID", "portal-req-1"))
	if r.Code != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", r.Code, r.Body)
	}
	rep := decode[map[string]any](t, r)
	for _, k := range []string{"id", "org_id", "application_id", "type", "status", "metadata", "created_by_email", "created_by_name", "created_at"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("report object lacks %q", k)
		}
	}
	if strings.Contains(r.Body.String(), "reports/") || strings.Contains(r.Body.String(), "object_key") {
		t.Errorf("report object leaks the storage key: %s", r.Body)
	}
	if rep["status"] != "pending" || rep["type"] != "transaction_summary" || rep["created_by_email"] != b.fx.users["full"].Email {
		t.Errorf("report = %v", rep)
	}
	meta := rep["metadata"].(map[string]any)
	if meta["case_id"] != b.fx.caseOK.ID || meta["data_as_of"] == nil || meta["period_start"] != "2025-01-01T00:00:00Z" {
		t.Errorf("metadata = %v", meta)
	}

	// The report, its job and the created event were written together.
	ctx := context.Background()
	id := rep["id"].(string)
	var jobs int
	var reqID string
	if err := b.pool.QueryRow(ctx, `SELECT count(*), max(metadata->>'request_id') FROM river_job WHERE args->>'report_id' = $1`, id).Scan(&jobs, &reqID); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 || reqID != "portal-req-1" {
		t.Errorf("jobs = %d request_id = %q, want 1 job carrying portal-req-1", jobs, reqID)
	}
	evs, err := tallytest.ListReportEvents(ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Kind != db.EventReportCreated || *evs[0].ActorID != b.fx.users["full"].ID {
		t.Errorf("events = %+v, want one report.created by the caller", evs)
	}
}

func TestCreateCaseChecks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, role, app, caseID string
		status                  int
		code                    string
	}{
		{"OtherApplicationCase404", "full", "alpha", b.fx.caseBeta.ID, 404, api.CodeCaseNotFound},
		{"OtherOrganizationCase404", "full", "alpha", b.fx.caseB.ID, 404, api.CodeCaseNotFound},
		{"UnknownCase404", "full", "alpha", "case_01aaaaaaaaaaaaaaaaaaaaaaaa", 404, api.CodeCaseNotFound},
		{"GarbageCase404", "full", "alpha", "../../etc/passwd", 404, api.CodeCaseNotFound},
		{"Draft409", "full", "alpha", b.fx.caseDraft.ID, 409, api.CodeCaseNotApproved},
		{"NotAssigned403", "full", "alpha", b.fx.caseUnassigned.ID, 403, api.CodeCaseNotAssigned},
		{"WindowClosed403", "full", "alpha", b.fx.caseWindowClosed.ID, 403, api.CodeAccessWindowClosed},
		{"OtherOrgApplication404", "auditorB", "beta", b.fx.caseBeta.ID, 404, api.CodeApplicationNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.create(t, tt.role, tt.app, tt.caseID, "transaction_summary")
			if r.Code != tt.status || r.errorCode(t) != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.Code, r.Body, tt.status, tt.code)
			}
		})
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM reports) + (SELECT count(*) FROM river_job)`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("rejected requests left %d reports and jobs", n)
	}
}

func TestCreateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	path := "/api/applications/alpha/case-reports"
	tok := b.fx.tokens["full"]
	okBody := fmt.Sprintf(`{"case_id":%q,"report_type":"transaction_summary"}`, b.fx.caseOK.ID)
	tests := []struct {
		name        string
		body        string
		contentType string
		status      int
		code        string
	}{
		{"UnsupportedType422", fmt.Sprintf(`{"case_id":%q,"report_type":"pdf_magic"}`, b.fx.caseOK.ID), "application/json", 422, api.CodeUnsupportedReportType},
		{"MissingFields422", `{}`, "application/json", 422, api.CodeValidationFailed},
		{"WrongType422", `{"case_id":5,"report_type":"transaction_summary"}`, "application/json", 422, api.CodeValidationFailed},
		{"UnknownField422", fmt.Sprintf(`{"case_id":%q,"report_type":"transaction_summary","x":1}`, b.fx.caseOK.ID), "application/json", 422, api.CodeValidationFailed},
		{"DuplicateKey400", fmt.Sprintf(`{"case_id":%q,"case_id":%q,"report_type":"transaction_summary"}`, b.fx.caseOK.ID, b.fx.caseOK.ID), "application/json", 400, api.CodeMalformedJSON},
		{"Malformed400", `{"case_id":`, "application/json", 400, api.CodeMalformedJSON},
		{"Array400", `[]`, "application/json", 400, api.CodeMalformedJSON},
		{"Trailing400", okBody + `{}`, "application/json", 400, api.CodeMalformedJSON},
		{"NotJSON415", okBody, "text/plain", 415, api.CodeUnsupportedMediaType},
		{"NoContentType415", okBody, "", 415, api.CodeUnsupportedMediaType},
		{"TooLarge413", `{"case_id":"` + strings.Repeat("a", 70<<10) + `"}`, "application/json", 413, api.CodePayloadTooLarge},
		{"Deep400", strings.Repeat("[", 10000), "application/json", 400, api.CodeMalformedJSON},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, http.MethodPost, path, tok, []byte(tt.body), withHeader("Content-Type", tt.contentType))
			if r.Code != tt.status || r.errorCode(t) != tt.code {
				t.Fatalf("got %d %s, want %d %s", r.Code, r.Body, tt.status, tt.code)
			}
		})
	}
	r := b.do(t, http.MethodPost, path, tok, []byte(`{"case_id":1,"report_type":[]}`))
	if !strings.Contains(r.Body.String(), `"field":"case_id"`) || !strings.Contains(r.Body.String(), `"field":"report_type"`) {
		t.Errorf("422 body does not name both fields: %s", r.Body)
	}
	var n int
	_ = b.pool.QueryRow(context.Background(), `SELECT count(*) FROM reports`).Scan(&n)
	if n != 0 {
		t.Errorf("bad requests created %d reports", n)
	}
}

func TestCreateIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := withHeader("Idempotency-Key", "portal-7f3c")
	first := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", key)
	second := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", key)
	if first.Code != 202 || second.Code != 202 {
		t.Fatalf("statuses %d, %d, want 202 twice", first.Code, second.Code)
	}
	id1, id2 := decode[api.Report](t, first).ID, decode[api.Report](t, second).ID
	if id1 != id2 || second.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("ids %s %s replayed=%q, want the same report replayed", id1, id2, second.Header().Get("Idempotent-Replayed"))
	}
	reused := b.create(t, "full", "alpha", b.fx.caseOK.ID, "activity_log", key)
	if reused.Code != 422 || reused.errorCode(t) != api.CodeIdempotencyKeyReused {
		t.Fatalf("got %d %s, want 422 idempotency_key_reused", reused.Code, reused.Body)
	}
	// Another user's key space is separate.
	other := b.create(t, "create", "alpha", b.fx.caseOK.ID, "transaction_summary", key)
	if other.Code != 202 || decode[api.Report](t, other).ID == id1 {
		t.Fatalf("another user's same key: %d %s", other.Code, other.Body)
	}
	var reports, jobs, events int
	_ = b.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM river_job), (SELECT count(*) FROM activity_events)`).Scan(&reports, &jobs, &events)
	if reports != 2 || jobs != 2 || events != 2 {
		t.Errorf("reports=%d jobs=%d events=%d, want 2 each", reports, jobs, events)
	}
	// An expired key (older than 24 h) creates a new report.
	if _, err := b.pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '25 hours'`); err != nil {
		t.Fatal(err)
	}
	third := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary", key)
	if third.Code != 202 || decode[api.Report](t, third).ID == id1 {
		t.Fatalf("expired key did not create a new report: %d %s", third.Code, third.Body)
	}
}

func TestCreateRateLimit429(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{createPerMinute: 1})
	var last response
	for i := 0; i < 25; i++ {
		last = b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
		if last.Code == http.StatusTooManyRequests {
			break
		}
	}
	if last.Code != http.StatusTooManyRequests || last.errorCode(t) != api.CodeRateLimited || last.Header().Get("Retry-After") == "" {
		t.Fatalf("got %d %s Retry-After=%q, want 429 with Retry-After", last.Code, last.Body, last.Header().Get("Retry-After"))
	}
}
