package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newMigrateCmd(d *deps) *cobra.Command {
	var asJSON bool
	var runtimeRole string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply River's and Tally's database migrations",
		Long: `Apply River's migrations and then Tally's embedded schema migrations to the
database named by DATABASE_URL. Running it on an up-to-date database changes
nothing, and several runs at once take turns on one advisory lock.

With --runtime-role, the role the API and workers connect as is then granted
what they need and nothing more (see 'tallyctl db roles'); connect as the
migrator role that owns the schema.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			res, err := db.MigrateWith(ctx, pool, db.MigrateOpts{Logger: d.logger, RuntimeRole: runtimeRole})
			if err != nil {
				return fmt.Errorf("migrating: %w", err)
			}
			if asJSON {
				return d.printJSON(struct {
					RiverVersions []int   `json:"river_versions"`
					TallyVersions []int64 `json:"tally_versions"`
				}{append([]int{}, res.RiverVersions...), append([]int64{}, res.TallyVersions...)})
			}
			if len(res.RiverVersions)+len(res.TallyVersions) == 0 {
				d.println("up to date")
				return nil
			}
			d.println(fmt.Sprintf("applied River migrations %v and Tally migrations %v", res.RiverVersions, res.TallyVersions))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"river_versions":[…],"tally_versions":[…]} (the versions applied now)`)
	cmd.Flags().StringVar(&runtimeRole, "runtime-role", "", "grant this role what the API and workers need (SELECT/INSERT/UPDATE/DELETE, sequences, functions; no DDL)")
	return cmd
}

func newDBCmd(d *deps) *cobra.Command {
	cmd := groupCmd("db", "Set up the database's roles")
	cmd.AddCommand(newDBRolesCmd(d))
	return cmd
}

func newDBRolesCmd(d *deps) *cobra.Command {
	var opts db.RolesOpts
	var migratorPasswordFile, runtimePasswordFile string
	cmd := &cobra.Command{
		Use:   "roles",
		Short: "Create the migrator and runtime roles and give the migrator the database",
		Long: `Create two login roles when missing: the migrator, which owns the database and
its schema and runs 'tallyctl migrate', and the runtime role, which the API and
the workers connect as. Run it once, as a superuser, on the database named by
DATABASE_URL; it may run again (it then only sets passwords given).

Then migrate as the migrator with --runtime-role <runtime>: the runtime role
gets SELECT, INSERT, UPDATE and DELETE on the tables, USAGE on sequences and
EXECUTE on functions, now and on what later migrations create, and nothing
else: no DDL, no ownership, no TRUNCATE.

Objects created earlier by another owner stay that owner's; move them with
REASSIGN OWNED BY <old owner> TO <migrator> (not possible from a superuser:
keep migrating as the superuser then, with --runtime-role all the same).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var err error
			if opts.MigratorPassword, err = readPasswordFile(migratorPasswordFile); err != nil {
				return err
			}
			if opts.RuntimePassword, err = readPasswordFile(runtimePasswordFile); err != nil {
				return err
			}
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			if err := db.EnsureRoles(ctx, pool, opts); err != nil {
				return err
			}
			d.println(fmt.Sprintf("roles %s (owner) and %s (runtime) ready; now: DATABASE_URL=<as %s> tallyctl migrate --runtime-role %s",
				opts.Migrator, opts.Runtime, opts.Migrator, opts.Runtime))
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Migrator, "migrator", "tally_migrator", "the role that owns the schema and migrates it")
	cmd.Flags().StringVar(&opts.Runtime, "runtime", "tally_runtime", "the role the API and workers connect as")
	cmd.Flags().StringVar(&migratorPasswordFile, "migrator-password-file", "", "a file holding the migrator's password (first line)")
	cmd.Flags().StringVar(&runtimePasswordFile, "runtime-password-file", "", "a file holding the runtime role's password (first line)")
	return cmd
}

// readPasswordFile returns the first line of path, or "" for no path.
func readPasswordFile(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the password file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSuffix(line, "\r"); line == "" {
		return "", fmt.Errorf("the password file %s is empty", path)
	}
	return line, nil
}
