package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/ingest"
)

func newDemoSeedCmd(d *deps) *cobra.Command {
	var opts ingest.DemoOpts
	var showProgress, asJSON bool
	cmd := &cobra.Command{
		Use:   "demo-seed [--transactions N] [--seed S] [--json]",
		Short: "Create a ready-to-use demo tenant with users, tokens, cases and transactions",
		Long: `Create a demo tenant in one transaction:

  - organization "Demo Org <suffix>" with application foreign_id "demo" and
    --transactions generated transactions (as 'seed' makes them);
  - users, each with a token valid 30 days:
      owner     owner-level reports:list and reports:download, no grant
      auditor   reports:create, reports:list, reports:download on the app
      creator   reports:create only on the app
      outsider  a user of a second organization, "Other Org <suffix>", with
                its own application "demo", where it has every permission;
  - two approved cases on the demo app, open from an hour ago for 30 days and
    assigned to the auditor and the creator: one over every contract with
    flags line_items, counterparty_names and descriptions, one over the first
    two contracts with line_items only.

Every run creates new organizations (a random suffix in names and emails), so
it can be repeated. With --json, stdout gets one JSON object:
  {"organization":{"id","name"},
   "application":{"id","foreign_id","name"},
   "users":[{"role","id","email","token","session_id"}],
   "cases":[{"id","title","flags","contract_filters","period_start","period_end",
             "access_window_start","access_window_end"}],
   "transactions":N,
   "other_organization":{"id","name","application":{…},"cases":[…],"transactions":N}}`,
		Example: `  tallyctl demo-seed --json > demo.json
  TOKEN=$(jq -r '.users[] | select(.role=="auditor") | .token' demo.json)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Transactions <= 0 {
				return fmt.Errorf("--transactions must be positive, got %d", opts.Transactions)
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			bar := d.newProgress(showProgress, opts.Transactions, "seeding demo", false)
			opts.Progress = bar.set
			opts.Now = d.clock()
			began := time.Now()
			demo, err := ingest.SeedDemo(ctx, pool, &opts)
			if err != nil {
				bar.stop()
				return err
			}
			bar.done()
			if asJSON {
				return d.printJSON(demo)
			}
			printDemo(d, demo, time.Since(began))
			return nil
		},
	}
	cmd.Flags().Int64Var(&opts.Transactions, "transactions", ingest.DefaultDemoTransactions, "transactions generated into the demo application")
	cmd.Flags().Uint64Var(&opts.Seed, "seed", ingest.DefaultDemoSeed, "seed of the generator (0 means the default)")
	cmd.Flags().BoolVar(&showProgress, "progress", false, "draw a progress bar on stderr even when it is not a terminal")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the demo tenant as one JSON object (shape above)")
	return cmd
}

// printDemo writes the demo tenant for a person to read.
func printDemo(d *deps, demo *ingest.DemoTenant, elapsed time.Duration) {
	w := tabwriter.NewWriter(d.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "organization\t%s\t%s\n", demo.Organization.Name, demo.Organization.ID)
	fmt.Fprintf(w, "application\t%s\t%s\t%d transactions\n", demo.Application.ForeignID, demo.Application.ID, demo.Transactions)
	for _, c := range demo.Cases {
		scope := "every contract"
		if len(c.ContractFilters) > 0 {
			scope = strings.Join(c.ContractFilters, ",")
		}
		fmt.Fprintf(w, "case\t%s\t%s\t%s\n", c.ID, strings.Join(c.Flags, ","), scope)
	}
	o := demo.OtherOrganization
	fmt.Fprintf(w, "other organization\t%s\t%s\tapplication %s %s\n", o.Name, o.ID, o.Application.ForeignID, o.Application.ID)
	w.Flush()
	fmt.Fprintln(d.stdout)
	w = tabwriter.NewWriter(d.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ROLE\tEMAIL\tUSER\tTOKEN")
	for _, u := range demo.Users {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", u.Role, u.Email, u.ID, u.Token)
	}
	w.Flush()
	fmt.Fprintf(d.stderr, "demo tenant seeded in %s\n", elapsed.Round(time.Millisecond))
}
