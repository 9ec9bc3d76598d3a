package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
)

// deps is what the commands need from the outside world. main wires the
// real process; tests inject a test database and buffers, and run the very
// same command tree in-process.
type deps struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stderrTerminal turns progress bars on without --progress.
	stderrTerminal bool
	logger         *slog.Logger
	// connect opens the database. It is called at most once, by the first
	// command that needs the database, so that --help works without one.
	connect func(ctx context.Context) (*pgxpool.Pool, error)
	// openStore opens the object store (report reproduce, storage init) and
	// loadPortal reads the portal configuration (report reproduce).
	openStore  func() (*storage.Store, error)
	loadPortal func() (*config.Portal, error)
	// pseudonymKeys returns the workers' pseudonym keys (config.PseudonymKeys).
	pseudonymKeys func() (*report.PseudonymKeys, error)
	// webhookSealer seals webhook secrets (keys derived from the pseudonym
	// master keys); webhookURLPolicy is what webhook add accepts.
	webhookSealer    func() (*webhook.Sealer, error)
	webhookURLPolicy webhook.URLPolicy
	// now is the clock; nil means time.Now.
	now func() time.Time

	pool *pgxpool.Pool
}

// db returns the database pool, connecting on first use.
func (d *deps) db(ctx context.Context) (*pgxpool.Pool, error) {
	if d.pool == nil {
		pool, err := d.connect(ctx)
		if err != nil {
			return nil, err
		}
		d.pool = pool
	}
	return d.pool, nil
}

// sealer returns the webhook secret sealer.
func (d *deps) sealer() (*webhook.Sealer, error) {
	if d.webhookSealer == nil {
		return nil, errors.New("no webhook secret key configured (TALLY_PSEUDONYM_KEY)")
	}
	return d.webhookSealer()
}

func (d *deps) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// printJSON writes v to stdout as indented JSON.
func (d *deps) printJSON(v any) error {
	enc := json.NewEncoder(d.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// println writes one line of result to stdout.
func (d *deps) println(a ...any) { fmt.Fprintln(d.stdout, a...) }

// newRootCmd builds the whole command tree on d.
func newRootCmd(d *deps) *cobra.Command {
	if d.logger == nil {
		d.logger = slog.New(slog.DiscardHandler)
	}
	root := &cobra.Command{
		Use:   "tallyctl",
		Short: "Administer Tally: schema, tenants, access, disclosure cases and transaction data",
		Long: `tallyctl administers Tally.

It applies the database migrations, creates organizations, applications and
users, grants and revokes report permissions, issues and revokes session
tokens, manages disclosure cases, and loads transactions from CSV files or
from a deterministic generator.

Configuration comes from the environment: DATABASE_URL names the database,
LOG_LEVEL and LOG_FORMAT shape the log lines written to stderr. Results go to
stdout; commands that scripts call take --json.`,
		SilenceUsage:  true, // a failed import is not a usage error
		SilenceErrors: true, // main prints the error once
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.Version = buildinfo.Get().String()
	root.SetVersionTemplate("tallyctl {{.Version}}\n")
	root.SetIn(d.stdin)
	root.SetOut(d.stdout)
	root.SetErr(d.stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	root.AddCommand(
		newMigrateCmd(d),
		newDBCmd(d),
		newOrgCmd(d),
		newAppCmd(d),
		newUserCmd(d),
		newGrantCmd(d),
		newRevokeCmd(d),
		newTokenCmd(d),
		newCaseCmd(d),
		newImportCmd(d),
		newSeedCmd(d),
		newDemoSeedCmd(d),
		newVerifyCmd(d),
		newAuditCmd(d),
		newReportCmd(d),
		newWebhookCmd(d),
		newStorageCmd(d),
	)
	return root
}

// groupCmd returns a command that only holds subcommands: alone it prints
// its help, and an unknown subcommand is an error rather than the help.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q (see '%s --help')", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
}

// mustRequire marks flags as required; it panics on a misspelt name, which
// the tests catch.
func mustRequire(cmd *cobra.Command, names ...string) {
	for _, n := range names {
		if err := cmd.MarkFlagRequired(n); err != nil {
			panic(err)
		}
	}
}

// ownerPermissions are the permissions an organization membership can hold.
func ownerPermissions() []string { return []string{db.PermReportsList, db.PermReportsDownload} }

// appPermissions are the permissions of an application's auditor bucket.
func appPermissions() []string {
	return []string{db.PermReportsCreate, db.PermReportsList, db.PermReportsDownload}
}

// disclosureFlags are the flags a case can carry.
func disclosureFlags() []string {
	return []string{report.FlagLineItems, report.FlagCounterpartyNames, report.FlagDescriptions}
}

// splitList splits a comma-separated flag value, trimming spaces. An empty
// value is an empty list; an empty item ("a,,b") is an error.
func splitList(flag, value string) ([]string, error) {
	if strings.TrimSpace(value) == "" {
		return []string{}, nil
	}
	items := strings.Split(value, ",")
	for i, it := range items {
		items[i] = strings.TrimSpace(it)
		if items[i] == "" {
			return nil, fmt.Errorf("--%s %q has an empty item", flag, value)
		}
	}
	return items, nil
}

// parseNames splits a comma-separated flag value and checks every item is
// one of allowed, returning them sorted without repeats.
func parseNames(flag, value, what string, allowed []string) ([]string, error) {
	items, err := splitList(flag, value)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if !slices.Contains(allowed, it) {
			return nil, fmt.Errorf("--%s: unknown %s %q; want any of %s", flag, what, it, strings.Join(allowed, ", "))
		}
	}
	slices.Sort(items)
	return slices.Compact(items), nil
}

// parseTime parses an RFC 3339 flag value.
func parseTime(flag, value string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s %q is not an RFC 3339 time like 2025-01-01T00:00:00Z", flag, value)
	}
	return t, nil
}

// checkName checks a name flag against the schema's limit.
func checkName(flag, value string) error {
	if n := utf8.RuneCountInString(strings.TrimSpace(value)); n == 0 || utf8.RuneCountInString(value) > 200 {
		return fmt.Errorf("--%s must be 1 to 200 characters", flag)
	}
	return nil
}

// checkID checks that an id flag or argument has the right prefix, so that
// a mixed-up id fails with a clear message before any query.
func checkID(what, prefix, value string) error {
	if !db.ValidID(prefix, value) {
		return fmt.Errorf("%s %q is not an id like %s…", what, value, prefix)
	}
	return nil
}

// resolveUser turns a user id or email into a user id. An id is taken as
// it is; the command's query then says whether the user exists.
func resolveUser(ctx context.Context, q db.DBTX, ref string) (string, error) {
	switch {
	case db.ValidID(db.PrefixUser, ref):
		return ref, nil
	case strings.Contains(ref, "@"):
		u, err := db.GetUserByEmail(ctx, q, ref)
		if errors.Is(err, db.ErrNotFound) {
			return "", fmt.Errorf("no user has the email %q", ref)
		}
		if err != nil {
			return "", fmt.Errorf("looking up user %q: %w", ref, err)
		}
		return u.ID, nil
	default:
		return "", fmt.Errorf("user %q is neither a user id (usr_…) nor an email", ref)
	}
}
