package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestHostileInput sends malformed and malicious requests to every endpoint:
// each gets a 4xx with the JSON error shape, and nothing changes in the
// database.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	state := func() string {
		var s string
		if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM reports) || '/' || (SELECT count(*) FROM river_job) || '/' ||
			(SELECT count(*) FROM activity_events) || '/' || (SELECT count(*) FROM transactions) || '/' || (SELECT count(*) FROM users)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := state()
	tok := b.fx.tokens["full"]
	owner := b.fx.tokens["owner"]
	sqlID := "rpt_'; DROP TABLE reports; --"
	huge := strings.Repeat("9", 10000)
	unicode := "rpt_０１ａａａａａａａａａａａａａａａａａａａａａａａａ"
	body := func(caseID, typ string) string {
		return `{"case_id":` + quote(caseID) + `,"report_type":` + quote(typ) + `}`
	}
	tests := []struct {
		name    string
		method  string
		path    string
		token   string
		body    string
		headers map[string]string
		status  int
	}{
		{"SQLInCaseID", "POST", "/api/applications/alpha/case-reports", tok, body("case_' OR 1=1 --", "transaction_summary"), nil, 404},
		{"SQLInReportType", "POST", "/api/applications/alpha/case-reports", tok, body(b.fx.caseOK.ID, "x'; DELETE FROM reports; --"), nil, 422},
		{"HugeCaseID", "POST", "/api/applications/alpha/case-reports", tok, body(huge, "transaction_summary"), nil, 422},
		{"UnicodeCaseID", "POST", "/api/applications/alpha/case-reports", tok, body("case_０１ａ", "transaction_summary"), nil, 404},
		{"NullBytes", "POST", "/api/applications/alpha/case-reports", tok, body("case_\u0000", "transaction_summary\u0000"), nil, 422},
		{"BadUTF8", "POST", "/api/applications/alpha/case-reports", tok, "{\"case_id\":\"\xff\xfe\",\"report_type\":\"t\"}", nil, 400},
		{"NumberOverflow", "POST", "/api/applications/alpha/case-reports", tok, `{"case_id":1e999999,"report_type":"t"}`, nil, 422},
		{"DeepNesting", "POST", "/api/applications/alpha/case-reports", tok, `{"x":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`, nil, 422},
		{"Oversized", "POST", "/api/applications/alpha/case-reports", tok, `{"case_id":"` + strings.Repeat("a", 65<<10) + `"}`, nil, 413},
		{"IdempotencyKeyControlChars", "POST", "/api/applications/alpha/case-reports", tok, body(b.fx.caseOK.ID, "transaction_summary"),
			map[string]string{"Idempotency-Key": "key\twith\ttabs"}, 422},
		{"IdempotencyKeyHuge", "POST", "/api/applications/alpha/case-reports", tok, body(b.fx.caseOK.ID, "transaction_summary"),
			map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, 422},
		{"TraversalInForeignID", "GET", "/api/applications/" + url.PathEscape("../../reports") + "/reports", tok, "", nil, 404},
		{"HugeForeignID", "GET", "/api/applications/" + strings.Repeat("a", 5000) + "/reports", tok, "", nil, 404},
		{"SQLInForeignID", "GET", "/api/applications/" + url.PathEscape("alpha' OR '1'='1") + "/reports", tok, "", nil, 404},
		{"TraversalInReportID", "GET", "/api/applications/alpha/reports/" + url.PathEscape("../../../etc/passwd") + "/download", tok, "", nil, 404},
		{"SQLInReportID", "GET", "/api/applications/alpha/reports/" + url.PathEscape(sqlID) + "/download", tok, "", nil, 404},
		{"UnicodeReportID", "GET", "/api/applications/alpha/reports/" + url.PathEscape(unicode) + "/download", tok, "", nil, 404},
		{"HugeReportID", "GET", "/api/reports/" + huge + "/download", owner, "", nil, 404},
		{"SQLInStatusFilter", "GET", "/api/reports?status=" + url.QueryEscape("ready' OR 1=1 --"), owner, "", nil, 422},
		{"SQLInCaseFilter", "GET", "/api/reports?case_id=" + url.QueryEscape("' UNION SELECT * FROM sessions --"), owner, "", nil, 422},
		{"RepeatedParam", "GET", "/api/reports?limit=1&limit=2", owner, "", nil, 422},
		{"NegativeLimit", "GET", "/api/reports?limit=-1", owner, "", nil, 422},
		{"HugeLimit", "GET", "/api/reports?limit=" + huge, owner, "", nil, 422},
		{"HugeCursor", "GET", "/api/reports?cursor=" + strings.Repeat("A", 5000), owner, "", nil, 422},
		{"TokenWithSQL", "GET", "/auth/me", "", "", map[string]string{"Authorization": "Bearer tly_' OR '1'='1"}, 401},
		{"TokenHuge", "GET", "/auth/me", "", "", map[string]string{"Authorization": "Bearer tly_" + strings.Repeat("A", 8000)}, 401},
		{"MethodNotAllowed", "DELETE", "/api/reports", owner, "", nil, 405},
		{"UnknownRoute", "GET", "/api/nope", owner, "", nil, 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []reqOpt
			for k, v := range tt.headers {
				opts = append(opts, withHeader(k, v))
			}
			var bd any
			if tt.body != "" {
				bd = []byte(tt.body)
			}
			r := b.do(t, tt.method, tt.path, tt.token, bd, opts...)
			if r.Code != tt.status {
				t.Fatalf("got %d %s, want %d", r.Code, r.Body, tt.status)
			}
			if code := r.errorCode(t); code == "" {
				t.Fatalf("error without a code: %s", r.Body)
			}
			if r.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("security headers missing on an error response")
			}
		})
	}
	if after := state(); after != before {
		t.Fatalf("hostile requests changed the database: %s -> %s", before, after)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_name = 'reports'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("reports table check: n=%d err=%v", n, err)
	}
	_ = http.MethodGet
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte("0123456789abcdef"[r>>4])
			b.WriteByte("0123456789abcdef"[r&15])
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
