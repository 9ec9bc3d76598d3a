package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/api"
)

// Application routes authenticate and authorize in one query
// (requireAuditor): an expired, revoked or unknown token answers 401 there
// too, before anything about the application, even for tokens whose user
// holds every grant on it.
func TestAuthentication401OnApplicationRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := strings.Repeat("a", 64) // no application has such a segment
	tests := []struct {
		name, token, foreignID string
		wantStatus             int
		wantCode               string
	}{
		{"NoToken", "", "alpha", http.StatusUnauthorized, api.CodeMissingToken},
		{"Unknown", "tly_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "alpha", http.StatusUnauthorized, api.CodeInvalidToken},
		{"Expired", b.fx.tokens["expired"], "alpha", http.StatusUnauthorized, api.CodeInvalidToken},
		{"Revoked", b.fx.tokens["revoked"], "alpha", http.StatusUnauthorized, api.CodeInvalidToken},
		{"RevokedOverlongApplication", b.fx.tokens["revoked"], long, http.StatusUnauthorized, api.CodeInvalidToken},
		{"ValidOverlongApplication", b.fx.tokens["full"], long, http.StatusNotFound, api.CodeApplicationNotFound},
		{"ValidUnknownApplication", b.fx.tokens["full"], "nope", http.StatusNotFound, api.CodeApplicationNotFound},
	}
	for _, tt := range tests {
		for _, route := range []struct{ method, path string }{
			{http.MethodPost, "/case-reports"},
			{http.MethodGet, "/reports"},
		} {
			t.Run(tt.name+route.method, func(t *testing.T) {
				var body any
				if route.method == http.MethodPost {
					body = map[string]string{"case_id": b.fx.caseOK.ID, "report_type": "transaction_summary"}
				}
				r := b.do(t, route.method, "/api/applications/"+tt.foreignID+route.path, tt.token, body)
				if r.Code != tt.wantStatus || r.errorCode(t) != tt.wantCode {
					t.Fatalf("got %d %s, want %d %s", r.Code, r.Body, tt.wantStatus, tt.wantCode)
				}
			})
		}
	}
}
