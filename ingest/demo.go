package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
)

// Defaults of DemoOpts.
const (
	DefaultDemoTransactions = 100_000
	DefaultDemoSeed         = 42
	DefaultDemoTokenTTL     = 30 * 24 * time.Hour
	// DemoOtherTransactions caps the rows of the second organization's
	// application: enough to show they never leak into the demo's reports.
	DemoOtherTransactions = 1_000
)

// Roles of the demo users.
const (
	// DemoRoleOwner has owner-level reports:list and reports:download and
	// no application grant.
	DemoRoleOwner = "owner"
	// DemoRoleAuditor has reports:create, reports:list and reports:download
	// on the demo application.
	DemoRoleAuditor = "auditor"
	// DemoRoleCreator has reports:create only on the demo application.
	DemoRoleCreator = "creator"
	// DemoRoleOutsider belongs to the other organization, where it is owner
	// and has every grant on that organization's application.
	DemoRoleOutsider = "outsider"
)

// DemoOpts tunes SeedDemo. A nil *DemoOpts keeps the defaults.
type DemoOpts struct {
	// Transactions is the number of rows of the demo application; zero
	// means DefaultDemoTransactions.
	Transactions int64
	// Seed picks the generated rows; zero means DefaultDemoSeed. The other
	// organization's rows use Seed+1.
	Seed uint64
	// Now anchors the cases' access windows, [Now-1h, Now+30 days); zero
	// means the current time.
	Now time.Time
	// TokenTTL is the lifetime of the users' tokens; zero means
	// DefaultDemoTokenTTL.
	TokenTTL time.Duration
	// Progress, when set, follows the demo application's rows as in
	// GeneratorOpts.
	Progress func(rows int64)
}

// DemoTenant describes what SeedDemo created. `tallyctl demo-seed --json`
// prints it and scripts read it, so its JSON shape only ever grows.
type DemoTenant struct {
	Organization DemoOrganization `json:"organization"`
	Application  DemoApplication  `json:"application"`
	// Users holds one user per role, owner, auditor, creator and outsider,
	// in that order, each with a fresh token.
	Users []DemoUser `json:"users"`
	// Cases are approved cases on Application, assigned to the auditor and
	// the creator: the first covers every contract with every flag, the
	// second the first two contracts with line_items only.
	Cases []DemoCase `json:"cases"`
	// Transactions is the number of rows generated into Application.
	Transactions int64 `json:"transactions"`
	// OtherOrganization is a second tenant whose application has the same
	// foreign_id, to show that tenants never see each other.
	OtherOrganization DemoOtherOrganization `json:"other_organization"`
}

// DemoOrganization is an organization of the demo.
type DemoOrganization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// DemoApplication is an application of the demo.
type DemoApplication struct {
	ID        string `json:"id"`
	ForeignID string `json:"foreign_id"`
	Name      string `json:"name"`
}

// DemoUser is a demo user with a bearer token.
type DemoUser struct {
	Role      string `json:"role"`
	ID        string `json:"id"`
	Email     string `json:"email"`
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
}

// DemoCase is an approved disclosure case of the demo.
type DemoCase struct {
	ID                string    `json:"id"`
	Title             string    `json:"title"`
	Flags             []string  `json:"flags"`
	ContractFilters   []string  `json:"contract_filters"`
	PeriodStart       time.Time `json:"period_start"`
	PeriodEnd         time.Time `json:"period_end"`
	AccessWindowStart time.Time `json:"access_window_start"`
	AccessWindowEnd   time.Time `json:"access_window_end"`
}

// DemoOtherOrganization is the demo's second tenant.
type DemoOtherOrganization struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Application DemoApplication `json:"application"`
	// Cases holds one approved case on Application, every flag, assigned
	// to the outsider.
	Cases        []DemoCase `json:"cases"`
	Transactions int64      `json:"transactions"`
}

// User returns the demo user with the given role, or nil.
func (d *DemoTenant) User(role string) *DemoUser {
	for i := range d.Users {
		if d.Users[i].Role == role {
			return &d.Users[i]
		}
	}
	return nil
}

// SeedDemo creates a ready-to-use demo tenant in one transaction: the
// organization, its application (foreign_id "demo") and generated
// transactions, an owner, an auditor, a creator, two approved and assigned
// cases, and a second organization with its own "demo" application and a
// user, the outsider. Every user gets a token.
//
// Each call creates new organizations: names and emails carry a random
// suffix, so the demo can be seeded any number of times into one database.
func SeedDemo(ctx context.Context, q db.DBTX, opts *DemoOpts) (*DemoTenant, error) {
	o := DemoOpts{}
	if opts != nil {
		o = *opts
	}
	if o.Transactions == 0 {
		o.Transactions = DefaultDemoTransactions
	}
	if o.Transactions < 0 {
		return nil, fmt.Errorf("seeding demo: transactions must not be negative, got %d", o.Transactions)
	}
	if o.Seed == 0 {
		o.Seed = DefaultDemoSeed
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = DefaultDemoTokenTTL
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	suffix := hex.EncodeToString(b[:])

	var d *DemoTenant
	err := db.WithTx(ctx, q, func(tx pgx.Tx) error {
		s := demoSeeder{tx: tx, opts: o, suffix: suffix}
		var err error
		d, err = s.seed(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("seeding demo: %w", err)
	}
	return d, nil
}

// demoSeeder holds what the steps of SeedDemo share.
type demoSeeder struct {
	tx     pgx.Tx
	opts   DemoOpts
	suffix string
}

func (s *demoSeeder) seed(ctx context.Context) (*DemoTenant, error) {
	o := s.opts
	org, app, err := s.tenant(ctx, "Demo Org", "Demo Payments")
	if err != nil {
		return nil, err
	}
	otherOrg, otherApp, err := s.tenant(ctx, "Other Org", "Other Payments")
	if err != nil {
		return nil, err
	}
	d := &DemoTenant{
		Organization: DemoOrganization{ID: org.ID, Name: org.Name},
		Application:  DemoApplication{ID: app.ID, ForeignID: app.ForeignID, Name: app.Name},
		OtherOrganization: DemoOtherOrganization{
			ID: otherOrg.ID, Name: otherOrg.Name,
			Application: DemoApplication{ID: otherApp.ID, ForeignID: otherApp.ForeignID, Name: otherApp.Name},
		},
	}

	allApp := []string{db.PermReportsCreate, db.PermReportsList, db.PermReportsDownload}
	allOwner := []string{db.PermReportsList, db.PermReportsDownload}
	users := []struct {
		role, name, domain, orgID, appID string
		owner, grants                    []string
	}{
		{DemoRoleOwner, "Olivia Owner", "demo", org.ID, "", allOwner, nil},
		{DemoRoleAuditor, "Avery Auditor", "demo", org.ID, app.ID, nil, allApp},
		{DemoRoleCreator, "Casey Creator", "demo", org.ID, app.ID, nil, []string{db.PermReportsCreate}},
		{DemoRoleOutsider, "Oscar Outsider", "other", otherOrg.ID, otherApp.ID, allOwner, allApp},
	}
	for _, u := range users {
		email := fmt.Sprintf("%s+%s@%s.tally.test", u.role, s.suffix, u.domain)
		user, err := db.CreateUser(ctx, s.tx, db.CreateUserParams{OrgID: u.orgID, Email: email, Name: u.name, OwnerPermissions: u.owner})
		if err != nil {
			return nil, fmt.Errorf("creating %s: %w", u.role, err)
		}
		if u.grants != nil {
			if err := db.GrantPermissions(ctx, s.tx, user.ID, u.appID, u.grants); err != nil {
				return nil, fmt.Errorf("granting %s: %w", u.role, err)
			}
		}
		sessionID, token, err := db.CreateSession(ctx, s.tx, user.ID, o.TokenTTL)
		if err != nil {
			return nil, fmt.Errorf("issuing a token to %s: %w", u.role, err)
		}
		d.Users = append(d.Users, DemoUser{Role: u.role, ID: user.ID, Email: user.Email, Token: token, SessionID: sessionID})
	}
	owner, auditor, creator, outsider := d.Users[0], d.Users[1], d.Users[2], d.Users[3]

	gen, err := NewGenerator(GeneratorOpts{ApplicationID: app.ID, Seed: o.Seed, Count: o.Transactions, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	if d.Transactions, err = db.CopyTransactions(ctx, s.tx, gen); err != nil {
		return nil, err
	}
	otherGen, err := NewGenerator(GeneratorOpts{ApplicationID: otherApp.ID, Seed: o.Seed + 1, Count: min(o.Transactions, DemoOtherTransactions)})
	if err != nil {
		return nil, err
	}
	if d.OtherOrganization.Transactions, err = db.CopyTransactions(ctx, s.tx, otherGen); err != nil {
		return nil, err
	}

	start, end := gen.Period()
	window := [2]time.Time{o.Now.Add(-time.Hour).UTC().Truncate(time.Second), o.Now.Add(30 * 24 * time.Hour).UTC().Truncate(time.Second)}
	cases := []struct {
		appID, title, approver string
		flags, filters         []string
		assignees              []string
		dst                    *[]DemoCase
	}{
		{app.ID, "Demo: all contracts", owner.ID,
			[]string{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions}, []string{},
			[]string{auditor.ID, creator.ID}, &d.Cases},
		{app.ID, "Demo: first two contracts, line items only", owner.ID,
			[]string{report.FlagLineItems}, gen.Contracts()[:min(2, len(gen.contracts))],
			[]string{auditor.ID, creator.ID}, &d.Cases},
		{otherApp.ID, "Other Org: all contracts", outsider.ID,
			[]string{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions}, []string{},
			[]string{outsider.ID}, &d.OtherOrganization.Cases},
	}
	for _, c := range cases {
		created, err := db.CreateCase(ctx, s.tx, db.CreateCaseParams{
			ApplicationID: c.appID, Title: c.title, PeriodStart: start, PeriodEnd: end,
			DisclosureFlags: c.flags, ContractFilters: c.filters,
			AccessWindowStart: window[0], AccessWindowEnd: window[1],
		})
		if err != nil {
			return nil, fmt.Errorf("creating case %q: %w", c.title, err)
		}
		if _, err := db.ApproveCase(ctx, s.tx, created.ID, c.approver); err != nil {
			return nil, fmt.Errorf("approving case %q: %w", c.title, err)
		}
		for _, u := range c.assignees {
			if err := db.AssignCase(ctx, s.tx, created.ID, u); err != nil {
				return nil, fmt.Errorf("assigning case %q: %w", c.title, err)
			}
		}
		*c.dst = append(*c.dst, DemoCase{
			ID: created.ID, Title: created.Title, Flags: created.DisclosureFlags, ContractFilters: created.ContractFilters,
			PeriodStart: created.PeriodStart.UTC(), PeriodEnd: created.PeriodEnd.UTC(),
			AccessWindowStart: created.AccessWindowStart.UTC(), AccessWindowEnd: created.AccessWindowEnd.UTC(),
		})
	}
	return d, nil
}

// tenant creates an organization named after the seeder's suffix and its
// application with foreign_id "demo".
func (s *demoSeeder) tenant(ctx context.Context, orgName, appName string) (*db.Organization, *db.Application, error) {
	org, err := db.CreateOrganization(ctx, s.tx, orgName+" "+s.suffix)
	if err != nil {
		return nil, nil, err
	}
	app, err := db.CreateApplication(ctx, s.tx, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "demo", Name: appName})
	if err != nil {
		return nil, nil, err
	}
	return org, app, nil
}
