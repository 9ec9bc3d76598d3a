package api_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

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

// seedReports inserts n pending reports on app's case as user, straight
// into the database.
func (b *testBundle) seedReports(t *testing.T, n int, app *db.Application, cs *db.Case, user *db.User) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		r, err := db.CreateReport(context.Background(), b.pool, db.CreateReportParams{OrgID: app.OrgID, ApplicationID: app.ID,
			CaseID: cs.ID, Type: "transaction_summary", Metadata: db.Scope{CaseID: cs.ID, PeriodStart: cs.PeriodStart, PeriodEnd: cs.PeriodEnd,
				DisclosureFlags: cs.DisclosureFlags, ContractFilters: []string{}, DataAsOf: time.Now()}, CreatedBy: user.ID})
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = r.ID
	}
	return ids
}

func TestListUnpagedReturnsEveryReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.seedReports(t, 120, b.fx.alpha, b.fx.caseOK, b.fx.users["full"])
	b.seedReports(t, 3, b.fx.beta, b.fx.caseBeta, b.fx.users["full"])
	b.seedReports(t, 2, b.fx.alphaB, b.fx.caseB, b.fx.users["auditorB"])

	for _, tt := range []struct {
		role, path string
		want       int
	}{
		{"full", "/api/applications/alpha/reports", 120},
		{"list", "/api/applications/alpha/reports?status=pending", 120},
		{"owner", "/api/reports", 123},
		{"ownerB", "/api/reports", 2},
	} {
		r := b.do(t, http.MethodGet, tt.path, b.fx.tokens[tt.role], nil)
		if r.Code != 200 || r.Header().Get("Link") != "" {
			t.Fatalf("%s %s: %d Link=%q, want 200 without Link", tt.role, tt.path, r.Code, r.Header().Get("Link"))
		}
		reps := decode[[]api.Report](t, r)
		if len(reps) != tt.want {
			t.Fatalf("%s %s: %d reports, want %d", tt.role, tt.path, len(reps), tt.want)
		}
		seen := map[string]bool{}
		for i, rep := range reps {
			if seen[rep.ID] {
				t.Fatalf("report %s twice", rep.ID)
			}
			seen[rep.ID] = true
			if i > 0 && (rep.CreatedAt.After(reps[i-1].CreatedAt) ||
				rep.CreatedAt.Equal(reps[i-1].CreatedAt) && rep.ID > reps[i-1].ID) {
				t.Fatalf("report %d (%s) is not older than the one before it", i, rep.ID)
			}
		}
		if tt.want == 120 {
			for _, id := range ids {
				if !seen[id] {
					t.Fatalf("report %s missing", id)
				}
			}
		}
	}
	// Empty: an empty array.
	if r := b.do(t, http.MethodGet, "/api/applications/alpha/reports?status=ready", b.fx.tokens["full"], nil); r.Body.String() != "[]" {
		t.Errorf("empty list: %q, want []", r.Body)
	}
	// With limit, paging as before.
	r := b.do(t, http.MethodGet, "/api/applications/alpha/reports?limit=50", b.fx.tokens["full"], nil)
	if reps := decode[[]api.Report](t, r); len(reps) != 50 || r.Header().Get("Link") == "" {
		t.Fatalf("limit=50: %d reports, Link=%q", len(reps), r.Header().Get("Link"))
	}
}

// TestListETagChangesWithTheList checks that every change a list shows
// changes its ETag, and nothing else does.
func TestListETagChangesWithTheList(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := b.seedReports(t, 3, b.fx.alpha, b.fx.caseOK, b.fx.users["full"])
	const path = "/api/applications/alpha/reports"
	etag := func() string {
		t.Helper()
		r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil)
		if r.Code != 200 {
			t.Fatalf("GET: %d %s", r.Code, r.Body)
		}
		return r.Header().Get("ETag")
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := b.pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		change func()
	}{
		{"StatusRunning", func() {
			if _, err := db.MarkReportRunning(ctx, b.pool, ids[0], 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"Ready", func() {
			ok, err := db.MarkReportReady(ctx, b.pool, db.MarkReportReadyParams{ID: ids[0], SizeBytes: 1,
				Metadata: db.ReadyMetadata{Format: "csv", RowCount: 1}, SHA256: sha256Hex([]byte("x")),
				ContentType: "text/csv", ObjectKey: "k", ExpiresAt: time.Now().Add(time.Hour)})
			if err != nil || !ok {
				t.Fatalf("MarkReportReady: %v %v", ok, err)
			}
		}},
		{"NewReport", func() { ids = append(ids, b.seedReports(t, 1, b.fx.alpha, b.fx.caseOK, b.fx.users["full"])...) }},
		{"Expired", func() {
			if ok, err := db.MarkReportExpired(ctx, b.pool, ids[0]); err != nil || !ok {
				t.Fatalf("MarkReportExpired: %v %v", ok, err)
			}
		}},
		{"Failed", func() {
			if ok, err := db.MarkReportFailed(ctx, b.pool, ids[1], "build_failed", "it broke", false); err != nil || !ok {
				t.Fatalf("MarkReportFailed: %v %v", ok, err)
			}
		}},
		{"Deleted", func() { exec(`DELETE FROM reports WHERE id = $1`, ids[2]) }},
		// A column changed without updated_at, as a careless writer might.
		{"ContentWithoutUpdatedAt", func() { exec(`UPDATE reports SET error_message = 'another message' WHERE id = $1`, ids[1]) }},
		{"CreatorRenamed", func() { exec(`UPDATE users SET name = 'Renamed' WHERE id = $1`, b.fx.users["full"].ID) }},
		// A transaction that began first and commits last: its updated_at is
		// older than the newest one already shown.
		{"OlderTransactionCommitsLast", func() {
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := tx.Exec(ctx, `UPDATE reports SET status = 'running', updated_at = now() WHERE id = $1`, ids[3]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // so that the next transaction's now() is later
			if _, err := db.MarkReportRunning(ctx, b.pool, ids[1], 0); err != nil {
				t.Fatal(err)
			}
			before := etag()
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if after := etag(); after == before {
				t.Errorf("ETag %s unchanged after the older transaction committed", after)
			}
		}},
	}
	for _, tt := range tests {
		before := etag()
		if again := etag(); again != before {
			t.Fatalf("%s: ETag changed with nothing changed: %s then %s", tt.name, before, again)
		}
		tt.change()
		r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("If-None-Match", before))
		if r.Code != http.StatusOK {
			t.Errorf("%s: %d with the old ETag, want 200", tt.name, r.Code)
		}
	}
	// Another application's change leaves alpha's ETag alone; another
	// caller (without reports:download) gets another ETag.
	before := etag()
	b.seedReports(t, 1, b.fx.beta, b.fx.caseBeta, b.fx.users["full"])
	if after := etag(); after != before {
		t.Errorf("a report of beta changed alpha's ETag")
	}
	r := b.do(t, http.MethodGet, path, b.fx.tokens["list"], nil, withHeader("If-None-Match", before))
	if r.Code != 200 {
		t.Errorf("a caller who sees less got %d with a full caller's ETag, want 200", r.Code)
	}
}
