package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// testBundle is what each API test works with.
type testBundle struct {
	pool   *pgxpool.Pool
	store  *storage.Store
	server *api.Server
	fx     *fixture
	now    time.Time
}

// fixture is a small world: organization A with applications alpha and
// beta, organization B with its own alpha, and one user per role.
type fixture struct {
	orgA, orgB          *db.Organization
	alpha, beta, alphaB *db.Application
	tokens              map[string]string // role -> bearer token
	users               map[string]*db.User
	caseOK              *db.Case // approved, current window, assigned to full and create
	caseDraft           *db.Case
	caseUnassigned      *db.Case
	caseWindowClosed    *db.Case
	caseBeta            *db.Case // on beta, approved, assigned to full
	caseB               *db.Case // organization B
}

type setupOpts struct {
	adminUser, adminPassword string
	separateAdmin            bool
	createPerMinute          float64
	maxInFlight              int
	maxAttempts              int
	waitsPerUser             int
	trustedProxies           []netip.Prefix
}

func setup(t *testing.T) *testBundle {
	return setupWith(t, setupOpts{})
}

func setupWith(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	pool := tallytest.DB(t)
	store := tallytest.Store(t)
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: tallytest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Opts{
		Pool: pool, River: rc, Store: store, Portal: portal, Logger: tallytest.Logger(t),
		AdminUser: o.adminUser, AdminPassword: o.adminPassword, SeparateAdmin: o.separateAdmin, CreatePerMinute: o.createPerMinute,
		MaxInFlight: o.maxInFlight, MaxAttempts: o.maxAttempts, TrustedProxies: o.trustedProxies,
		WaitsPerUser: o.waitsPerUser,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &testBundle{pool: pool, store: store, server: srv, fx: newFixture(t, pool), now: time.Now()}
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func newFixture(t *testing.T, pool *pgxpool.Pool) *fixture {
	t.Helper()
	ctx := context.Background()
	fx := &fixture{tokens: map[string]string{}, users: map[string]*db.User{}}
	fx.orgA = must[*db.Organization](t)(db.CreateOrganization(ctx, pool, "Org A"))
	fx.orgB = must[*db.Organization](t)(db.CreateOrganization(ctx, pool, "Org B"))
	fx.alpha = must[*db.Application](t)(db.CreateApplication(ctx, pool, db.CreateApplicationParams{OrgID: fx.orgA.ID, ForeignID: "alpha", Name: "Alpha"}))
	fx.beta = must[*db.Application](t)(db.CreateApplication(ctx, pool, db.CreateApplicationParams{OrgID: fx.orgA.ID, ForeignID: "beta", Name: "Beta"}))
	fx.alphaB = must[*db.Application](t)(db.CreateApplication(ctx, pool, db.CreateApplicationParams{OrgID: fx.orgB.ID, ForeignID: "gamma", Name: "Gamma of B"}))

	all := []string{db.PermReportsCreate, db.PermReportsList, db.PermReportsDownload}
	type role struct {
		name, org string
		owner     []string
		grants    map[string][]string // application id -> permissions
	}
	roles := []role{
		{name: "full", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: all, fx.beta.ID: all}},
		{name: "create", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: {db.PermReportsCreate}}},
		{name: "list", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: {db.PermReportsList}}},
		{name: "download", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: {db.PermReportsDownload}}},
		{name: "owner", org: fx.orgA.ID, owner: []string{db.PermReportsList, db.PermReportsDownload}},
		{name: "member", org: fx.orgA.ID},
		{name: "ownerB", org: fx.orgB.ID, owner: []string{db.PermReportsList, db.PermReportsDownload}},
		{name: "auditorB", org: fx.orgB.ID, grants: map[string][]string{fx.alphaB.ID: all}},
		{name: "expired", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: all}},
		{name: "revoked", org: fx.orgA.ID, grants: map[string][]string{fx.alpha.ID: all}},
	}
	for _, r := range roles {
		u := must[*db.User](t)(db.CreateUser(ctx, pool, db.CreateUserParams{
			OrgID: r.org, Email: r.name + "@" + strings.ToLower(r.org) + ".test", Name: "User " + r.name, OwnerPermissions: r.owner}))
		fx.users[r.name] = u
		for app, perms := range r.grants {
			if err := db.GrantPermissions(ctx, pool, u.ID, app, perms); err != nil {
				t.Fatal(err)
			}
		}
		sid, tok, err := db.CreateSession(ctx, pool, u.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		switch r.name {
		case "expired":
			if _, err := pool.Exec(ctx, `UPDATE sessions SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' WHERE id = $1`, sid); err != nil {
				t.Fatal(err)
			}
		case "revoked":
			if err := db.RevokeSession(ctx, pool, sid); err != nil {
				t.Fatal(err)
			}
		}
		fx.tokens[r.name] = tok
	}

	now := time.Now()
	mkCase := func(app *db.Application, approve bool, windowStart, windowEnd time.Time, assign ...string) *db.Case {
		c := must[*db.Case](t)(db.CreateCase(ctx, pool, db.CreateCaseParams{
			ApplicationID: app.ID, Title: "case", PeriodStart: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
			PeriodEnd: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), DisclosureFlags: []string{"line_items"},
			AccessWindowStart: windowStart, AccessWindowEnd: windowEnd}))
		if approve {
			approver := fx.users["owner"]
			if app.OrgID == fx.orgB.ID {
				approver = fx.users["ownerB"]
			}
			c = must[*db.Case](t)(db.ApproveCase(ctx, pool, c.ID, approver.ID))
		}
		for _, role := range assign {
			if err := db.AssignCase(ctx, pool, c.ID, fx.users[role].ID); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	open, end := now.Add(-time.Hour), now.Add(24*time.Hour)
	fx.caseOK = mkCase(fx.alpha, true, open, end, "full", "create", "download", "expired", "revoked")
	fx.caseDraft = mkCase(fx.alpha, false, open, end, "full", "create")
	fx.caseUnassigned = mkCase(fx.alpha, true, open, end)
	fx.caseWindowClosed = mkCase(fx.alpha, true, now.Add(-48*time.Hour), now.Add(-24*time.Hour), "full", "create")
	fx.caseBeta = mkCase(fx.beta, true, open, end, "full")
	fx.caseB = mkCase(fx.alphaB, true, open, end, "auditorB")

	// A few transactions so that reports have something in scope.
	rows := [][]any{}
	for i, app := range []*db.Application{fx.alpha, fx.alpha, fx.beta, fx.alphaB} {
		rows = append(rows, db.TransactionValues(&db.Transaction{
			ApplicationID: app.ID, ContractID: "c1", ExternalID: "tx-" + string(rune('a'+i)),
			OccurredAt: time.Date(2025, 3, 1, 0, 0, i, 0, time.UTC), AmountMinor: int64(100 * (i + 1)),
			Currency: "EUR", Kind: "payment", Counterparty: "ACME", IngestedAt: now.Add(-time.Hour)}))
	}
	if _, err := db.CopyTransactions(ctx, pool, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	return fx
}

// response is a recorded HTTP answer.
type response struct {
	*httptest.ResponseRecorder
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body.Bytes(), &body); err != nil {
		t.Fatalf("error body is not JSON: %v: %q", err, r.Body.String())
	}
	return body.Error.Code
}

type reqOpt func(*http.Request)

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

// fromAddr sends the request from addr, the peer address the API sees.
func fromAddr(addr string) reqOpt { return func(r *http.Request) { r.RemoteAddr = addr } }

func (b *testBundle) do(t *testing.T, method, path, token string, body any, opts ...reqOpt) response {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	default:
		js, _ := json.Marshal(v)
		rd = bytes.NewReader(js)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	b.server.ServeHTTP(rec, req)
	checkOpenAPI(t, req, rec)
	return response{rec}
}

// create posts a report for caseID on foreignID as role.
func (b *testBundle) create(t *testing.T, role, foreignID, caseID, typ string, opts ...reqOpt) response {
	t.Helper()
	return b.do(t, http.MethodPost, "/api/applications/"+foreignID+"/case-reports", b.fx.tokens[role],
		map[string]string{"case_id": caseID, "report_type": typ}, opts...)
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding %q: %v", r.Body.String(), err)
	}
	return v
}

// makeReady uploads content as the report's file and marks it ready, as a
// worker would, so download tests do not depend on the worker.
func (b *testBundle) makeReady(t *testing.T, reportID string, content []byte) {
	t.Helper()
	ctx := context.Background()
	r, err := db.GetReportByID(ctx, b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	key := storage.ReportKey(r.OrgID, r.ApplicationID, r.ID, db.NewID(db.PrefixRun), "csv")
	if _, err := b.store.Put(ctx, key, bytes.NewReader(content), "text/csv; charset=utf-8"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.MarkReportRunning(ctx, b.pool, r.ID, *r.JobID); err != nil {
		t.Fatal(err)
	}
	ok, err := db.MarkReportReady(ctx, b.pool, db.MarkReportReadyParams{ID: r.ID, Metadata: db.ReadyMetadata{RowCount: 1, Format: "csv"},
		SizeBytes: int64(len(content)), SHA256: sha256Hex(content), ContentType: "text/csv; charset=utf-8",
		ObjectKey: key, ExpiresAt: time.Now().Add(24 * time.Hour)})
	if err != nil || !ok {
		t.Fatalf("MarkReportReady: ok=%v err=%v", ok, err)
	}
	r, err = db.GetReportByID(ctx, b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := jobs.ManifestOf(r, "csv", sha256Hex(content), int64(len(content)), 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.SignAndStoreManifest(ctx, b.pool, testKeys, m); err != nil {
		t.Fatal(err)
	}
}

// testKeys sign the manifests of reports made ready by makeReady.
var testKeys = func() *evidence.Keys {
	k, err := evidence.GenerateKey()
	if err != nil {
		panic(err)
	}
	return evidence.KeysOf(k)
}()

// newCaseOn makes an approved case on app with the fixture's period and an
// open access window, assigned to roles.
func (b *testBundle) newCaseOn(t *testing.T, app *db.Application, roles ...string) *db.Case {
	t.Helper()
	ctx := context.Background()
	c := must[*db.Case](t)(db.CreateCase(ctx, b.pool, db.CreateCaseParams{
		ApplicationID: app.ID, Title: "case", PeriodStart: b.fx.caseOK.PeriodStart, PeriodEnd: b.fx.caseOK.PeriodEnd,
		DisclosureFlags: []string{"line_items"}, AccessWindowStart: time.Now().Add(-time.Hour), AccessWindowEnd: time.Now().Add(24 * time.Hour)}))
	c = must[*db.Case](t)(db.ApproveCase(ctx, b.pool, c.ID, b.fx.users["owner"].ID))
	for _, r := range roles {
		if err := db.AssignCase(ctx, b.pool, c.ID, b.fx.users[r].ID); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
