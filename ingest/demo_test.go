package ingest_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func TestSeedDemoCreatesAWorkingTenant(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t)
	now := time.Now()
	demo, err := ingest.SeedDemo(ctx, pool, &ingest.DemoOpts{Transactions: 3000, Seed: 5, Now: now})
	if err != nil {
		t.Fatalf("SeedDemo: %v", err)
	}

	if demo.Application.ForeignID != "demo" || demo.OtherOrganization.Application.ForeignID != "demo" {
		t.Errorf("foreign ids %q and %q, want demo and demo", demo.Application.ForeignID, demo.OtherOrganization.Application.ForeignID)
	}
	if demo.Organization.ID == demo.OtherOrganization.ID {
		t.Fatal("the other organization is the demo organization")
	}
	if n, _ := tallytest.CountTransactions(ctx, pool, demo.Application.ID); n != 3000 || demo.Transactions != 3000 {
		t.Errorf("demo application holds %d transactions (reported %d), want 3000", n, demo.Transactions)
	}
	if n, _ := tallytest.CountTransactions(ctx, pool, demo.OtherOrganization.Application.ID); n != ingest.DemoOtherTransactions || demo.OtherOrganization.Transactions != n {
		t.Errorf("other application holds %d transactions (reported %d), want %d", n, demo.OtherOrganization.Transactions, ingest.DemoOtherTransactions)
	}

	// Every token authenticates as its user, in the right organization,
	// with the right owner-level and application permissions.
	tests := []struct {
		role     string
		org      string
		app      string
		owner    []string
		appPerms []string
		assigned bool
	}{
		{ingest.DemoRoleOwner, demo.Organization.ID, demo.Application.ID, []string{db.PermReportsDownload, db.PermReportsList}, nil, false},
		{ingest.DemoRoleAuditor, demo.Organization.ID, demo.Application.ID, nil, []string{db.PermReportsCreate, db.PermReportsDownload, db.PermReportsList}, true},
		{ingest.DemoRoleCreator, demo.Organization.ID, demo.Application.ID, nil, []string{db.PermReportsCreate}, true},
		{ingest.DemoRoleOutsider, demo.OtherOrganization.ID, demo.OtherOrganization.Application.ID, []string{db.PermReportsDownload, db.PermReportsList}, []string{db.PermReportsCreate, db.PermReportsDownload, db.PermReportsList}, false},
	}
	if len(demo.Users) != len(tests) {
		t.Fatalf("got %d users, want %d", len(demo.Users), len(tests))
	}
	for i, tt := range tests {
		u := demo.User(tt.role)
		if u == nil || demo.Users[i].Role != tt.role {
			t.Fatalf("user %d: want role %s first in order, got %+v", i, tt.role, demo.Users[i])
		}
		p, err := db.Authenticate(ctx, pool, u.Token)
		if err != nil {
			t.Fatalf("%s: Authenticate: %v", tt.role, err)
		}
		if p.User.ID != u.ID || p.User.Email != u.Email || p.Organization.ID != tt.org || p.SessionID != u.SessionID {
			t.Errorf("%s: token is user %s (%s) of %s, session %s; want %s (%s) of %s, session %s",
				tt.role, p.User.ID, p.User.Email, p.Organization.ID, p.SessionID, u.ID, u.Email, tt.org, u.SessionID)
		}
		if got := slices.Sorted(slices.Values(p.OwnerPermissions)); !slices.Equal(got, tt.owner) {
			t.Errorf("%s: owner permissions %v, want %v", tt.role, got, tt.owner)
		}
		perms, err := tallytest.AuditorPermissions(ctx, pool, u.ID, tt.app)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(perms)); !slices.Equal(got, tt.appPerms) {
			t.Errorf("%s: application permissions %v, want %v", tt.role, got, tt.appPerms)
		}
		for _, c := range demo.Cases {
			ok, err := tallytest.IsAssigned(ctx, pool, c.ID, u.ID)
			if err != nil || ok != tt.assigned {
				t.Errorf("%s: assigned to case %s = %v (%v), want %v", tt.role, c.ID, ok, err, tt.assigned)
			}
		}
	}

	// The cases are approved, open now, and cover every seeded row.
	if len(demo.Cases) != 2 || len(demo.OtherOrganization.Cases) != 1 {
		t.Fatalf("got %d demo cases and %d other cases, want 2 and 1", len(demo.Cases), len(demo.OtherOrganization.Cases))
	}
	wantCases := []struct {
		flags   []string
		filters []string
		rows    int64
	}{
		{[]string{"line_items", "counterparty_names", "descriptions"}, []string{}, 3000},
		{[]string{"line_items"}, []string{"contract-001", "contract-002"}, -1}, // about 2/20 of the rows
	}
	for i, want := range wantCases {
		dc := demo.Cases[i]
		c, err := db.GetCase(ctx, pool, dc.ID)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if c.Status != db.CaseApproved || c.ApprovedBy == nil || *c.ApprovedBy != demo.User(ingest.DemoRoleOwner).ID {
			t.Errorf("case %d: status %s approved by %v, want approved by the owner", i, c.Status, c.ApprovedBy)
		}
		if !slices.Equal(c.DisclosureFlags, want.flags) || !slices.Equal(dc.Flags, want.flags) {
			t.Errorf("case %d: flags %v (reported %v), want %v", i, c.DisclosureFlags, dc.Flags, want.flags)
		}
		if !slices.Equal(c.ContractFilters, want.filters) || !slices.Equal(dc.ContractFilters, want.filters) {
			t.Errorf("case %d: contract filters %v (reported %v), want %v", i, c.ContractFilters, dc.ContractFilters, want.filters)
		}
		if !c.AccessWindowStart.Before(now) || !c.AccessWindowEnd.After(now.Add(29*24*time.Hour)) {
			t.Errorf("case %d: access window [%v, %v) is not open now for 30 days", i, c.AccessWindowStart, c.AccessWindowEnd)
		}
		var inScope int64
		err = db.StreamScopeGroups(ctx, pool, db.ScopeParams{ApplicationID: demo.Application.ID, PeriodStart: c.PeriodStart,
			PeriodEnd: c.PeriodEnd, ContractFilters: c.ContractFilters, DataAsOf: now}, func(g *db.ScopeGroup) error {
			inScope += g.Count
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if want.rows >= 0 && inScope != want.rows {
			t.Errorf("case %d: %d rows in scope, want %d", i, inScope, want.rows)
		}
		if want.rows < 0 && (inScope < 150 || inScope > 450) {
			t.Errorf("case %d: %d rows in scope, want about 300", i, inScope)
		}
	}
	oc, err := db.GetCase(ctx, pool, demo.OtherOrganization.Cases[0].ID)
	if err != nil || oc.Status != db.CaseApproved || oc.OrgID != demo.OtherOrganization.ID {
		t.Errorf("other case: %+v, %v; want approved in the other organization", oc, err)
	}
	if ok, _ := tallytest.IsAssigned(ctx, pool, oc.ID, demo.User(ingest.DemoRoleOutsider).ID); !ok {
		t.Error("the outsider is not assigned to the other organization's case")
	}
}

func TestSeedDemoTwiceCreatesTwoTenants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := tallytest.DB(t)
	first, err := ingest.SeedDemo(ctx, pool, &ingest.DemoOpts{Transactions: 100})
	if err != nil {
		t.Fatalf("first SeedDemo: %v", err)
	}
	second, err := ingest.SeedDemo(ctx, pool, &ingest.DemoOpts{Transactions: 100})
	if err != nil {
		t.Fatalf("second SeedDemo: %v", err)
	}
	if first.Organization.ID == second.Organization.ID || first.Users[0].Email == second.Users[0].Email {
		t.Errorf("second demo reuses the first's organization or emails: %+v", second)
	}
}

// TestDemoTenantJSONShape pins the keys scripts read from demo-seed --json.
func TestDemoTenantJSONShape(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(ingest.DemoTenant{
		Users:             []ingest.DemoUser{{}},
		Cases:             []ingest.DemoCase{{}},
		OtherOrganization: ingest.DemoOtherOrganization{Cases: []ingest.DemoCase{{}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) []string {
		m, _ := v.(map[string]any)
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	first := func(v any) any { s, _ := v.([]any); return s[0] }
	checks := []struct {
		name string
		v    any
		want []string
	}{
		{"top", got, []string{"application", "cases", "organization", "other_organization", "transactions", "users"}},
		{"organization", got["organization"], []string{"id", "name"}},
		{"application", got["application"], []string{"foreign_id", "id", "name"}},
		{"user", first(got["users"]), []string{"email", "id", "role", "session_id", "token"}},
		{"case", first(got["cases"]), []string{"access_window_end", "access_window_start", "contract_filters", "flags", "id", "period_end", "period_start", "title"}},
		{"other_organization", got["other_organization"], []string{"application", "cases", "id", "name", "transactions"}},
	}
	for _, c := range checks {
		if k := keys(c.v); !slices.Equal(k, c.want) {
			t.Errorf("%s keys %v, want %v", c.name, k, c.want)
		}
	}
}
