package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/webhook"
)

// testBundle runs the real command tree in-process against a test database.
type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	// urlPolicy is what webhook add accepts: production's (https, no
	// private literal) unless a test changes it.
	urlPolicy webhook.URLPolicy
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	return &testBundle{ctx: context.Background(), pool: tallytest.OwnerDB(t)} // tallyctl is the operator's tool
}

// result is what one tallyctl invocation printed and returned.
type result struct {
	stdout, stderr string
	err            error
}

// run executes tallyctl with args.
func (b *testBundle) run(t *testing.T, args ...string) result {
	t.Helper()
	return b.runStdin(t, "", args...)
}

// runStdin executes tallyctl with args, stdin holding the given text.
func (b *testBundle) runStdin(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	d := &deps{
		stdin:  strings.NewReader(stdin),
		stdout: &stdout,
		stderr: &stderr,
		logger: tallytest.Logger(t),
		webhookSealer: func() (*webhook.Sealer, error) {
			return tallytest.WebhookSealer(t), nil
		},
		webhookURLPolicy: b.urlPolicy,
		connect: func(context.Context) (*pgxpool.Pool, error) {
			if b.pool == nil {
				return nil, errors.New("no database in this test")
			}
			return b.pool, nil
		},
	}
	root := newRootCmd(d)
	root.SetArgs(args)
	err := root.ExecuteContext(b.ctx)
	return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// mustRun executes tallyctl and fails the test if it fails; it returns
// stdout without its final newline.
func (b *testBundle) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := b.run(t, args...)
	if r.err != nil {
		t.Fatalf("tallyctl %s: %v (stderr %q)", strings.Join(args, " "), r.err, r.stderr)
	}
	return strings.TrimSuffix(r.stdout, "\n")
}

// mustJSON executes tallyctl and decodes its stdout into v.
func (b *testBundle) mustJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := b.mustRun(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("tallyctl %s: stdout %q is not JSON: %v", strings.Join(args, " "), out, err)
	}
}

// wantError checks that r failed with a message containing want and that
// it printed nothing on stdout.
func wantError(t *testing.T, r result, want string) {
	t.Helper()
	if r.err == nil {
		t.Fatalf("succeeded with stdout %q, want an error containing %q", r.stdout, want)
	}
	if !strings.Contains(r.err.Error(), want) {
		t.Errorf("error %q does not contain %q", r.err, want)
	}
	if r.stdout != "" {
		t.Errorf("failed but printed %q on stdout", r.stdout)
	}
}

// tenant is an organization with an application and a user, made with the
// db package so that command tests do not depend on each other.
type tenant struct {
	org  *db.Organization
	app  *db.Application
	user *db.User
}

func (b *testBundle) newTenant(t *testing.T, email string) *tenant {
	t.Helper()
	org, err := db.CreateOrganization(b.ctx, b.pool, "Org of "+email)
	if err != nil {
		t.Fatal(err)
	}
	app, err := db.CreateApplication(b.ctx, b.pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "payments", Name: "Payments"})
	if err != nil {
		t.Fatal(err)
	}
	user, err := db.CreateUser(b.ctx, b.pool, db.CreateUserParams{OrgID: org.ID, Email: email, Name: "User"})
	if err != nil {
		t.Fatal(err)
	}
	return &tenant{org: org, app: app, user: user}
}

func TestUnknownCommandsFail(t *testing.T) {
	t.Parallel()
	b := &testBundle{ctx: context.Background()}
	for _, args := range [][]string{{"bogus"}, {"org", "bogus"}, {"case", "delete", "case_x"}} {
		r := b.run(t, args...)
		wantError(t, r, "unknown command")
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	t.Parallel()
	b := &testBundle{ctx: context.Background()} // no database: help must not need one
	root := newRootCmd(&deps{})
	paths := [][]string{nil}
	for i := 0; i < len(paths); i++ { // breadth first over the command tree
		path := paths[i]
		cmd, _, err := root.Find(path)
		if err != nil {
			t.Fatalf("finding %v: %v", path, err)
		}
		for _, sub := range cmd.Commands() {
			paths = append(paths, append(append([]string{}, path...), sub.Name()))
		}
		name := strings.Join(append([]string{"tallyctl"}, path...), " ")
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if cmd.Short == "" {
				t.Errorf("%s has no short description", name)
			}
			r := b.run(t, append(append([]string{}, path...), "--help")...)
			if r.err != nil {
				t.Fatalf("%s --help: %v", name, r.err)
			}
			if !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, name) || !strings.Contains(r.stdout, "-h, --help") {
				t.Errorf("%s --help printed %q, want usage naming the command and its flags", name, r.stdout)
			}
		})
	}
	if len(paths) < 23 {
		t.Errorf("walked %d commands, want every command (23)", len(paths))
	}
}
