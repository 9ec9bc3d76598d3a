package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func TestMigrateOnMigratedDatabaseIsUpToDate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if got := b.mustRun(t, "migrate"); got != "up to date" {
		t.Errorf("got %q, want %q", got, "up to date")
	}
	var res struct {
		River []int   `json:"river_versions"`
		Tally []int64 `json:"tally_versions"`
	}
	b.mustJSON(t, &res, "migrate", "--json")
	if res.River == nil || res.Tally == nil || len(res.River)+len(res.Tally) != 0 {
		t.Errorf("got %+v, want two empty lists", res)
	}
}

// TestMigrateGrantsRuntimeRole: --runtime-role grants on an up-to-date
// database, and the runtime role connecting as itself cannot migrate.
func TestMigrateGrantsRuntimeRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if got := b.mustRun(t, "migrate", "--runtime-role", tallytest.RuntimeRole); got != "up to date" {
		t.Errorf("got %q, want %q", got, "up to date")
	}
	var ok bool
	if err := b.pool.QueryRow(b.ctx, `SELECT has_table_privilege($1, 'reports', 'INSERT') AND NOT has_table_privilege($1, 'reports', 'TRUNCATE')`,
		tallytest.RuntimeRole).Scan(&ok); err != nil || !ok {
		t.Errorf("runtime role privileges on reports: INSERT and not TRUNCATE = %v (%v)", ok, err)
	}
	wantError(t, b.run(t, "migrate", "--runtime-role", "no_such_role"), `role "no_such_role" does not exist`)

	runtime := &testBundle{ctx: b.ctx, pool: tallytest.DB(t)}
	wantError(t, runtime.run(t, "migrate", "--runtime-role", tallytest.RuntimeRole), "is the role migrating")
}

func TestDBRolesRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantError(t, b.run(t, "db", "roles", "--migrator", "same", "--runtime", "same"), "two different names")
	wantError(t, b.run(t, "db", "roles", "--runtime-password-file", empty), "is empty")
	wantError(t, b.run(t, "db", "roles", "--migrator-password-file", empty+".missing"), "reading the password file")
}

func TestMigrateWithoutDatabaseFails(t *testing.T) {
	t.Parallel()
	b := &testBundle{ctx: context.Background()}
	wantError(t, b.run(t, "migrate"), "no database")
}

func TestOrgCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.mustRun(t, "org", "create", "--name", "Acme Payments")
	if !db.ValidID(db.PrefixOrganization, id) {
		t.Fatalf("printed %q, want an organization id", id)
	}
	var got orgJSON
	b.mustJSON(t, &got, "org", "create", "--name", "Beta", "--json")
	if !db.ValidID(db.PrefixOrganization, got.ID) || got.Name != "Beta" || got.CreatedAt.IsZero() {
		t.Errorf("got %+v, want the new organization Beta", got)
	}
}

func TestOrgCreateErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wantError(t, b.run(t, "org", "create"), `required flag(s) "name" not set`)
	wantError(t, b.run(t, "org", "create", "--name", "  "), "--name must be 1 to 200 characters")
	wantError(t, b.run(t, "org", "create", "--nmae", "x"), "unknown flag: --nmae")
}

func TestAppCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := b.mustRun(t, "org", "create", "--name", "Acme")
	id := b.mustRun(t, "app", "create", "--org", org, "--foreign-id", "pay-eu_1", "--name", "Payments EU")
	app, err := db.GetApplicationByForeignID(b.ctx, b.pool, org, "pay-eu_1")
	if err != nil || app.ID != id || app.Name != "Payments EU" {
		t.Fatalf("stored %+v (%v), want %s named Payments EU", app, err, id)
	}
	var got appJSON
	b.mustJSON(t, &got, "app", "create", "--org", org, "--foreign-id", "second", "--name", "Second", "--json")
	if got.OrgID != org || got.ForeignID != "second" || !db.ValidID(db.PrefixApplication, got.ID) {
		t.Errorf("got %+v, want application second of %s", got, org)
	}
}

func TestAppCreateErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := b.mustRun(t, "org", "create", "--name", "Acme")
	b.mustRun(t, "app", "create", "--org", org, "--foreign-id", "pay", "--name", "Payments")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"DuplicateForeignID", []string{"--org", org, "--foreign-id", "pay", "--name", "Again"}, `already has an application "pay"`},
		{"UpperCaseForeignID", []string{"--org", org, "--foreign-id", "Pay", "--name", "x"}, `--foreign-id "Pay" must be`},
		{"UnknownOrganization", []string{"--org", "org_00000000000000000000000000", "--foreign-id", "pay", "--name", "x"}, "organization org_00000000000000000000000000 not found"},
		{"NotAnOrganizationID", []string{"--org", "acme", "--foreign-id", "pay", "--name", "x"}, `--org "acme" is not an id like org_…`},
		{"MissingFlags", []string{"--org", org}, `required flag(s) "foreign-id", "name" not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, append([]string{"app", "create"}, tt.args...)...), tt.want)
		})
	}
}

func TestUserCreate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := b.mustRun(t, "org", "create", "--name", "Acme")
	id := b.mustRun(t, "user", "create", "--org", org, "--email", "Ana@Example.com", "--name", "Ana")
	u, err := db.GetUserByEmail(b.ctx, b.pool, "ana@example.com")
	if err != nil || u.ID != id {
		t.Fatalf("stored %+v (%v), want user %s", u, err, id)
	}
	var got userJSON
	b.mustJSON(t, &got, "user", "create", "--org", org, "--email", "olga@example.com", "--name", "Olga",
		"--owner-permissions", "reports:list, reports:download,reports:list", "--json")
	if want := []string{db.PermReportsDownload, db.PermReportsList}; !slices.Equal(got.OwnerPermissions, want) || got.OrgID != org {
		t.Errorf("got %+v, want owner permissions %v in %s", got, want, org)
	}
	if perms := ownerPermsOf(t, b, got.ID); !slices.Equal(perms, []string{db.PermReportsDownload, db.PermReportsList}) {
		t.Errorf("stored owner permissions %v", perms)
	}
}

// ownerPermsOf returns a user's stored owner-level permissions, through a
// session as the API sees them.
func ownerPermsOf(t *testing.T, b *testBundle, userID string) []string {
	t.Helper()
	_, token, err := db.CreateSession(b.ctx, b.pool, userID, 3600e9)
	if err != nil {
		t.Fatal(err)
	}
	p, err := db.Authenticate(b.ctx, b.pool, token)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(slices.Values(p.OwnerPermissions))
}

func TestUserCreateErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	org := b.mustRun(t, "org", "create", "--name", "Acme")
	b.mustRun(t, "user", "create", "--org", org, "--email", "ana@example.com", "--name", "Ana")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"CreateIsNotOwnerLevel", []string{"--org", org, "--email", "b@example.com", "--name", "B", "--owner-permissions", "reports:create"},
			`unknown owner-level permission "reports:create"; want any of reports:list, reports:download`},
		{"EmptyPermission", []string{"--org", org, "--email", "b@example.com", "--name", "B", "--owner-permissions", "reports:list,,"}, "has an empty item"},
		{"DuplicateEmailAnyCase", []string{"--org", org, "--email", "ANA@example.com", "--name", "Ana"}, `a user with the email "ANA@example.com" exists already`},
		{"NotAnEmail", []string{"--org", org, "--email", "ana at example.com", "--name", "Ana"}, "is not an email address"},
		{"UnknownOrganization", []string{"--org", "org_00000000000000000000000000", "--email", "c@example.com", "--name", "C"}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, append([]string{"user", "create"}, tt.args...)...), tt.want)
		})
	}
}

func TestUserSetOwnerPermissions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "olga@example.com")
	out := b.mustRun(t, "user", "set-owner-permissions", "--user", "olga@example.com", "--permissions", "reports:list")
	if want := tn.user.ID + " owner permissions: reports:list"; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	if got := ownerPermsOf(t, b, tn.user.ID); !slices.Equal(got, []string{db.PermReportsList}) {
		t.Errorf("stored %v, want [reports:list]", got)
	}
	b.mustRun(t, "user", "set-owner-permissions", "--user", tn.user.ID, "--permissions", "")
	if got := ownerPermsOf(t, b, tn.user.ID); len(got) != 0 {
		t.Errorf("stored %v after clearing, want none", got)
	}
	wantError(t, b.run(t, "user", "set-owner-permissions", "--user", "nobody@example.com", "--permissions", "reports:list"), `no user has the email "nobody@example.com"`)
	wantError(t, b.run(t, "user", "set-owner-permissions", "--user", "usr_00000000000000000000000000", "--permissions", ""), "not found")
	wantError(t, b.run(t, "user", "set-owner-permissions", "--user", "olga@example.com"), `required flag(s) "permissions" not set`)
}

func TestGrantAndRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	perms := func() []string {
		t.Helper()
		p, err := tallytest.AuditorPermissions(b.ctx, b.pool, tn.user.ID, tn.app.ID)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	out := b.mustRun(t, "grant", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "reports:list,reports:create")
	if want := "granted reports:create, reports:list to " + tn.user.ID + " on " + tn.app.ID; out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	b.mustRun(t, "grant", "--user", tn.user.ID, "--app", tn.app.ID, "--permissions", "reports:download")
	if got, want := perms(), []string{db.PermReportsCreate, db.PermReportsDownload, db.PermReportsList}; !slices.Equal(got, want) {
		t.Errorf("after grants: %v, want %v", got, want)
	}
	b.mustRun(t, "revoke", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "reports:create,reports:list")
	if got, want := perms(), []string{db.PermReportsDownload}; !slices.Equal(got, want) {
		t.Errorf("after revoke: %v, want %v", got, want)
	}
	b.mustRun(t, "revoke", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "reports:download")
	if got := perms(); len(got) != 0 {
		t.Errorf("after revoking all: %v, want no grant", got)
	}
}

func TestGrantAndRevokeErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	other := b.newTenant(t, "oscar@example.com")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"GrantUnknownPermission", []string{"grant", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "reports:delete"},
			`unknown permission "reports:delete"; want any of reports:create, reports:list, reports:download`},
		{"GrantNoPermission", []string{"grant", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", ""}, "lists no permission"},
		{"GrantOtherOrganizationsApp", []string{"grant", "--user", "ana@example.com", "--app", other.app.ID, "--permissions", "reports:list"}, "not found in the organization of user"},
		{"GrantUnknownUserID", []string{"grant", "--user", "usr_00000000000000000000000000", "--app", tn.app.ID, "--permissions", "reports:list"}, "user usr_00000000000000000000000000 not found"},
		{"GrantNotAUser", []string{"grant", "--user", "ana", "--app", tn.app.ID, "--permissions", "reports:list"}, "neither a user id (usr_…) nor an email"},
		{"RevokeWithoutGrant", []string{"revoke", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "reports:list"}, "has no grant on"},
		{"RevokeUnknownPermission", []string{"revoke", "--user", "ana@example.com", "--app", tn.app.ID, "--permissions", "admin"}, `unknown permission "admin"`},
		{"RevokeMissingApp", []string{"revoke", "--user", "ana@example.com", "--permissions", "reports:list"}, `required flag(s) "app" not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, tt.args...), tt.want)
		})
	}
	if p, _ := tallytest.AuditorPermissions(b.ctx, b.pool, tn.user.ID, other.app.ID); len(p) != 0 {
		t.Errorf("a grant on another organization's application exists: %v", p)
	}
}
