package api_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/internal/buildinfo"
)

// clientFrom returns a client whose connections leave from the local address
// ip (any of 127.0.0.0/8 reaches a loopback server), so that one test can be
// several clients to the API.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

// get sends GET url from client with opts and returns the status, headers and body.
func get(t *testing.T, client *http.Client, url string, opts ...reqOpt) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// TestRiverUI429AfterFailedLogins checks, through a real server, that an
// address gets 5 wrong logins, then 429 rate_limited with Retry-After, even
// with the right credentials, while the admin at another address logs in.
func TestRiverUI429AfterFailedLogins(t *testing.T) {
	t.Parallel()
	b := setupAdmin(t)
	hs := httptest.NewServer(b.server)
	t.Cleanup(hs.Close)
	url := hs.URL + "/admin/riverui/"
	attacker, admin := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.1")

	// Without credentials (a browser's first request) nothing is counted.
	for range 10 {
		if status, _, body := get(t, attacker, url); status != http.StatusUnauthorized {
			t.Fatalf("no credentials: got %d %s, want 401", status, body)
		}
	}
	for i := range 5 {
		if status, _, body := get(t, attacker, url, basicAuth(testAdminUser, "guess"+strconv.Itoa(i))); status != http.StatusUnauthorized {
			t.Fatalf("wrong login %d: got %d %s, want 401", i+1, status, body)
		}
	}
	for _, opt := range []reqOpt{basicAuth(testAdminUser, "guess5"), asAdmin} {
		status, h, body := get(t, attacker, url, opt)
		if status != http.StatusTooManyRequests || !strings.Contains(body, `"code":"rate_limited"`) {
			t.Fatalf("after 5 wrong logins: got %d %s, want 429 rate_limited", status, body)
		}
		if secs, err := strconv.Atoi(h.Get("Retry-After")); err != nil || secs < 1 || secs > 10 {
			t.Errorf("Retry-After %q, want 1 to 10 seconds", h.Get("Retry-After"))
		}
	}

	if status, _, body := get(t, admin, url, asAdmin, withHeader("Accept", "text/html")); status != http.StatusOK {
		t.Fatalf("admin from another address: got %d %s, want 200", status, body)
	}
}

// TestAdminListener checks that with SeparateAdmin the public handler
// answers 404 for /metrics and River UI, and the admin handler serves them
// and nothing else.
func TestAdminListener(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{adminUser: testAdminUser, adminPassword: testAdminPassword, separateAdmin: true})
	public := httptest.NewServer(b.server)
	t.Cleanup(public.Close)
	admin := httptest.NewServer(b.server.AdminHandler())
	t.Cleanup(admin.Close)
	client := clientFrom(t, "127.0.0.1")

	tests := []struct {
		name   string
		url    string
		opts   []reqOpt
		status int
		body   string // a substring of the body
	}{
		{"PublicMetrics", public.URL + "/metrics", nil, http.StatusNotFound, `"code":"not_found"`},
		{"PublicRiverUI", public.URL + "/admin/riverui/", []reqOpt{asAdmin}, http.StatusNotFound, `"code":"not_found"`},
		{"PublicRiverUIAPI", public.URL + "/admin/riverui/api/jobs?state=available", []reqOpt{asAdmin}, http.StatusNotFound, `"code":"not_found"`},
		{"PublicAuthMe", public.URL + "/auth/me", []reqOpt{withHeader("Authorization", "Bearer "+b.fx.tokens["full"])}, http.StatusOK, `"email"`},
		{"PublicHealthz", public.URL + "/healthz", nil, http.StatusOK, ""},
		{"AdminMetrics", admin.URL + "/metrics", nil, http.StatusOK, "tally_http_request_duration_seconds"},
		{"AdminMetricsBuildInfo", admin.URL + "/metrics", nil, http.StatusOK, buildInfoLine()},
		{"AdminRiverUI", admin.URL + "/admin/riverui/", []reqOpt{asAdmin, withHeader("Accept", "text/html")}, http.StatusOK, `<div id="root"`},
		{"AdminRiverUIAPI", admin.URL + "/admin/riverui/api/jobs?state=available", []reqOpt{asAdmin}, http.StatusOK, `"data"`},
		{"AdminRiverUINoCredentials", admin.URL + "/admin/riverui/", nil, http.StatusUnauthorized, `"code":"admin_auth_required"`},
		{"AdminAuthMe", admin.URL + "/auth/me", []reqOpt{withHeader("Authorization", "Bearer "+b.fx.tokens["full"])}, http.StatusNotFound, `"code":"not_found"`},
		{"AdminReports", admin.URL + "/api/reports", []reqOpt{withHeader("Authorization", "Bearer "+b.fx.tokens["owner"])}, http.StatusNotFound, `"code":"not_found"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := get(t, client, tt.url, tt.opts...)
			if status != tt.status || !strings.Contains(body, tt.body) {
				t.Errorf("got %d %.200s, want %d with %q", status, body, tt.status, tt.body)
			}
		})
	}
}

// buildInfoLine is the tally_build_info sample a process of this build exports.
func buildInfoLine() string {
	bi := buildinfo.Get()
	return fmt.Sprintf("tally_build_info{go_version=%q,revision=%q,version=%q} 1\n", bi.GoVersion, bi.Revision, bi.Version)
}
