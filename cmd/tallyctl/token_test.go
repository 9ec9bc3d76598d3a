package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
)

func TestTokenIssuePrintsOnlyTheToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	r := b.run(t, "token", "issue", "--user", "ana@example.com", "--ttl", "1h")
	if r.err != nil {
		t.Fatal(r.err)
	}
	token := strings.TrimSuffix(r.stdout, "\n")
	if !strings.HasPrefix(token, db.TokenPrefix) || strings.Contains(token, "\n") {
		t.Fatalf("stdout %q, want one token line", r.stdout)
	}
	if strings.Contains(r.stderr, token) || !strings.Contains(r.stderr, "session ses_") {
		t.Errorf("stderr %q, want the session id and not the token", r.stderr)
	}
	p, err := db.Authenticate(b.ctx, b.pool, token)
	if err != nil || p.User.ID != tn.user.ID {
		t.Fatalf("Authenticate: %+v, %v; want user %s", p, err, tn.user.ID)
	}
}

func TestTokenIssueJSONAndRevoke(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tn := b.newTenant(t, "ana@example.com")
	before := time.Now()
	var first, second tokenJSON
	b.mustJSON(t, &first, "token", "issue", "--user", tn.user.ID, "--json")
	b.mustJSON(t, &second, "token", "issue", "--user", tn.user.ID, "--json", "--ttl", "2h")
	if !db.ValidID(db.PrefixSession, first.SessionID) || first.UserID != tn.user.ID || first.Token == second.Token {
		t.Fatalf("got %+v and %+v, want two sessions of %s", first, second, tn.user.ID)
	}
	if d := first.ExpiresAt.Sub(before); d < 719*time.Hour || d > 721*time.Hour {
		t.Errorf("default expiry %v after issue, want 720h", d)
	}
	for _, tok := range []tokenJSON{first, second} {
		if _, err := db.Authenticate(b.ctx, b.pool, tok.Token); err != nil {
			t.Fatalf("Authenticate %s: %v", tok.SessionID, err)
		}
	}

	if got := b.mustRun(t, "token", "revoke", first.SessionID); got != "session "+first.SessionID+" revoked" {
		t.Errorf("revoke by id printed %q", got)
	}
	if got := b.mustRun(t, "token", "revoke", second.Token); got != "session revoked" {
		t.Errorf("revoke by token printed %q", got)
	}
	for _, tok := range []tokenJSON{first, second} {
		if _, err := db.Authenticate(b.ctx, b.pool, tok.Token); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("Authenticate %s after revoke: %v, want db.ErrNotFound", tok.SessionID, err)
		}
	}
	b.mustRun(t, "token", "revoke", first.SessionID) // revoking twice is harmless
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.newTenant(t, "ana@example.com")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"IssueUnknownEmail", []string{"token", "issue", "--user", "nobody@example.com"}, `no user has the email "nobody@example.com"`},
		{"IssueUnknownUserID", []string{"token", "issue", "--user", "usr_00000000000000000000000000"}, "user usr_00000000000000000000000000 not found"},
		{"IssueNegativeTTL", []string{"token", "issue", "--user", "ana@example.com", "--ttl", "-1h"}, "--ttl must be positive"},
		{"IssueWithoutUser", []string{"token", "issue"}, `required flag(s) "user" not set`},
		{"RevokeUnknownSession", []string{"token", "revoke", "ses_00000000000000000000000000"}, "no such session"},
		{"RevokeUnknownToken", []string{"token", "revoke", "tly_notatoken"}, "no such session"},
		{"RevokeGarbage", []string{"token", "revoke", "hello"}, `session "hello" is not an id like ses_… nor a token like tly_…`},
		{"RevokeWithoutArgument", []string{"token", "revoke"}, "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, b.run(t, tt.args...), tt.want)
		})
	}
}
