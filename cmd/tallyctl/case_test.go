package main

import (
	"slices"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// caseArgs are the flags of a valid case create on app.
func caseArgs(app string, extra ...string) []string {
	return append([]string{"case", "create", "--app", app, "--title", "FY2025",
		"--period-start", "2025-01-01T00:00:00Z", "--period-end", "2026-01-01T00:00:00+01:00",
		"--window-start", "2026-01-01T00:00:00Z", "--window-end", "2099-01-01T00:00:00Z"}, extra...)
}

func TestCaseLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "olga@example.com")
	var created caseJSON
	b.mustJSON(t, &created, caseArgs(tn.app.ID, "--flags", "line_items,counterparty_names", "--contracts", "c-1, c-2", "--json")...)
	want := caseJSON{
		ID: created.ID, OrgID: tn.org.ID, ApplicationID: tn.app.ID, Title: "FY2025", Status: db.CaseDraft,
		PeriodStart:       time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd:         time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), // stored in UTC
		DisclosureFlags:   []string{"counterparty_names", "line_items"},
		ContractFilters:   []string{"c-1", "c-2"},
		AccessWindowStart: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		AccessWindowEnd:   time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC),
		CreatedAt:         created.CreatedAt,
	}
	if !db.ValidID(db.PrefixCase, created.ID) || !equalCase(created, want) {
		t.Fatalf("created %+v, want %+v", created, want)
	}

	out := b.mustRun(t, "case", "approve", created.ID, "--by", "olga@example.com")
	if want := "case " + created.ID + " approved by " + tn.user.ID; out != want {
		t.Errorf("approve printed %q, want %q", out, want)
	}
	b.mustRun(t, "case", "assign", created.ID, "--user", "olga@example.com")
	if ok, _ := tallytest.IsAssigned(b.ctx, b.pool, created.ID, tn.user.ID); !ok {
		t.Error("assign did not assign")
	}
	var revoked caseJSON
	b.mustJSON(t, &revoked, "case", "revoke", created.ID, "--json")
	if revoked.Status != db.CaseRevoked || revoked.ApprovedBy == nil || *revoked.ApprovedBy != tn.user.ID {
		t.Errorf("after revoke: %+v, want revoked, approved by %s", revoked, tn.user.ID)
	}

	second := b.mustRun(t, caseArgs(tn.app.ID)...)
	if got := b.mustRun(t, "case", "close", second); got != "case "+second+" closed" {
		t.Errorf("close printed %q", got)
	}
	c, err := db.GetCase(b.ctx, b.pool, second)
	if err != nil || c.Status != db.CaseClosed || len(c.DisclosureFlags) != 0 || len(c.ContractFilters) != 0 {
		t.Errorf("closed case %+v (%v), want closed without flags or filters", c, err)
	}
}

func equalCase(a, b caseJSON) bool {
	return a.ID == b.ID && a.OrgID == b.OrgID && a.ApplicationID == b.ApplicationID && a.Title == b.Title && a.Status == b.Status &&
		a.PeriodStart.Equal(b.PeriodStart) && a.PeriodEnd.Equal(b.PeriodEnd) &&
		slices.Equal(a.DisclosureFlags, b.DisclosureFlags) && slices.Equal(a.ContractFilters, b.ContractFilters) &&
		a.AccessWindowStart.Equal(b.AccessWindowStart) && a.AccessWindowEnd.Equal(b.AccessWindowEnd) &&
		(a.ApprovedAt == nil) == (b.ApprovedAt == nil) && (a.ApprovedBy == nil) == (b.ApprovedBy == nil)
}

func TestCaseCreateWindowStartsNowByDefault(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "olga@example.com")
	before := time.Now().Add(-time.Second)
	var c caseJSON
	b.mustJSON(t, &c, "case", "create", "--app", tn.app.ID, "--period-start", "2025-01-01T00:00:00Z",
		"--period-end", "2025-02-01T00:00:00Z", "--window-end", "2099-01-01T00:00:00Z", "--json")
	if c.AccessWindowStart.Before(before) || c.AccessWindowStart.After(time.Now()) {
		t.Errorf("window starts %v, want now", c.AccessWindowStart)
	}
}

func TestCaseErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "olga@example.com")
	other := b.newTenant(t, "oscar@example.com")
	approved := b.mustRun(t, caseArgs(tn.app.ID)...)
	b.mustRun(t, "case", "approve", approved, "--by", tn.user.ID)
	b.mustRun(t, "case", "revoke", approved)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"UnknownFlag", caseArgs(tn.app.ID, "--flags", "line_items,amounts"), `unknown disclosure flag "amounts"; want any of line_items, counterparty_names, descriptions`},
		{"PeriodBackwards", []string{"case", "create", "--app", tn.app.ID, "--period-start", "2025-02-01T00:00:00Z", "--period-end", "2025-01-01T00:00:00Z", "--window-end", "2099-01-01T00:00:00Z"}, "--period-end must be after --period-start"},
		{"WindowBackwards", caseArgs(tn.app.ID, "--window-start", "2100-01-01T00:00:00Z"), "--window-end must be after --window-start"},
		{"NotRFC3339", caseArgs(tn.app.ID, "--period-start", "2025-01-01"), `--period-start "2025-01-01" is not an RFC 3339 time`},
		{"UnknownApplication", caseArgs("app_00000000000000000000000000"), "application app_00000000000000000000000000 not found"},
		{"MissingPeriod", []string{"case", "create", "--app", tn.app.ID, "--window-end", "2099-01-01T00:00:00Z"}, `required flag(s) "period-end", "period-start" not set`},
		{"ApproveRevoked", []string{"case", "approve", approved, "--by", tn.user.ID}, "only a draft case can be approved"},
		{"ApproveUnknown", []string{"case", "approve", "case_00000000000000000000000000", "--by", tn.user.ID}, "case case_00000000000000000000000000 not found"},
		{"ApproveWithoutApprover", []string{"case", "approve", approved}, `required flag(s) "by" not set`},
		{"AssignOtherOrganizationsUser", []string{"case", "assign", approved, "--user", "oscar@example.com"}, "not found in one organization"},
		{"AssignNotACase", []string{"case", "assign", "rpt_00000000000000000000000000", "--user", "olga@example.com"}, `case "rpt_00000000000000000000000000" is not an id like case_…`},
		{"RevokeUnknown", []string{"case", "revoke", "case_00000000000000000000000000"}, "not found"},
		{"CloseWithoutID", []string{"case", "close"}, "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, tt.args...), tt.want)
		})
	}
	if ok, _ := tallytest.IsAssigned(b.ctx, b.pool, approved, other.user.ID); ok {
		t.Error("a user of another organization was assigned")
	}
}
