package api_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
)

var nextLink = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

func TestListPaginationFiltersAnd304(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var ids []string
	for i := 0; i < 5; i++ {
		typ := "transaction_summary"
		if i%2 == 1 {
			typ = "activity_log"
		}
		ids = append(ids, decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, typ)).ID)
	}
	b.create(t, "full", "beta", b.fx.caseBeta.ID, "transaction_summary")   // another application
	b.create(t, "auditorB", "gamma", b.fx.caseB.ID, "transaction_summary") // another organization

	// Pages of two, newest first, following the Link header.
	var got []string
	path := "/api/applications/alpha/reports?limit=2"
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil)
		if r.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, r.Code, r.Body)
		}
		for _, rep := range decode[[]api.Report](t, r) {
			got = append(got, rep.ID)
			if rep.ApplicationID != b.fx.alpha.ID || rep.OrgID != b.fx.orgA.ID {
				t.Errorf("report %s of application %s in alpha's list", rep.ID, rep.ApplicationID)
			}
		}
		path = ""
		if m := nextLink.FindStringSubmatch(r.Header().Get("Link")); m != nil {
			path = m[1]
		}
	}
	want := []string{ids[4], ids[3], ids[2], ids[1], ids[0]}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("pages = %v, want %v", got, want)
	}

	// Filters.
	r := b.do(t, http.MethodGet, "/api/applications/alpha/reports?type=activity_log", b.fx.tokens["list"], nil)
	if reps := decode[[]api.Report](t, r); len(reps) != 2 || reps[0].Type != "activity_log" {
		t.Errorf("type filter: %d reports", len(reps))
	}
	r = b.do(t, http.MethodGet, "/api/applications/alpha/reports?status=ready", b.fx.tokens["list"], nil)
	if reps := decode[[]api.Report](t, r); len(reps) != 0 {
		t.Errorf("status=ready: %d reports, want 0", len(reps))
	}
	r = b.do(t, http.MethodGet, "/api/applications/alpha/reports?case_id="+b.fx.caseOK.ID, b.fx.tokens["list"], nil)
	if reps := decode[[]api.Report](t, r); len(reps) != 5 {
		t.Errorf("case filter: %d reports, want 5", len(reps))
	}

	// Organization scope: every application of org A, none of org B.
	r = b.do(t, http.MethodGet, "/api/reports", b.fx.tokens["owner"], nil)
	if reps := decode[[]api.Report](t, r); len(reps) != 6 {
		t.Errorf("org list: %d reports, want 6", len(reps))
	}

	// ETag and 304 while nothing changes; 200 after a change.
	first := b.do(t, http.MethodGet, "/api/applications/alpha/reports", b.fx.tokens["full"], nil)
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	again := b.do(t, http.MethodGet, "/api/applications/alpha/reports", b.fx.tokens["full"], nil, withHeader("If-None-Match", etag))
	if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
		t.Fatalf("If-None-Match: %d %q, want 304 with no body", again.Code, again.Body)
	}
	if _, err := db.MarkReportRunning(context.Background(), b.pool, ids[0], 0); err != nil {
		t.Fatal(err)
	}
	changed := b.do(t, http.MethodGet, "/api/applications/alpha/reports", b.fx.tokens["full"], nil, withHeader("If-None-Match", etag))
	if changed.Code != http.StatusOK {
		t.Fatalf("after a change: %d, want 200", changed.Code)
	}
}

func TestListValidation422(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cursorOther := func() string {
		for i := 0; i < 2; i++ {
			b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
		}
		r := b.do(t, http.MethodGet, "/api/applications/alpha/reports?limit=1", b.fx.tokens["full"], nil)
		m := nextLink.FindStringSubmatch(r.Header().Get("Link"))
		if m == nil {
			t.Fatal("no next link")
		}
		u, _ := url.Parse(m[1])
		return u.Query().Get("cursor")
	}()
	tests := []struct{ name, query, code string }{
		{"BadStatus", "status=done", api.CodeValidationFailed},
		{"BadType", "type=x", api.CodeValidationFailed},
		{"BadCase", "case_id=1%27%20OR%201=1", api.CodeValidationFailed},
		{"LimitZero", "limit=0", api.CodeValidationFailed},
		{"LimitHuge", "limit=201", api.CodeValidationFailed},
		{"LimitText", "limit=ten", api.CodeValidationFailed},
		{"UnknownParam", "sort=asc", api.CodeValidationFailed},
		{"GarbageCursor", "cursor=!!!notbase64", api.CodeInvalidCursor},
		{"ForgedCursor", "cursor=eyJ0IjoiMjAyNS0wMS0wMVQwMDowMDowMFoiLCJpIjoieCIsImYiOiJ5In0", api.CodeInvalidCursor},
		{"CursorOfOtherFilters", "status=ready&cursor=" + cursorOther, api.CodeInvalidCursor},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, http.MethodGet, "/api/applications/alpha/reports?"+tt.query, b.fx.tokens["full"], nil)
			if r.Code != 422 || r.errorCode(t) != tt.code {
				t.Fatalf("got %d %s, want 422 %s", r.Code, r.Body, tt.code)
			}
		})
	}
}
