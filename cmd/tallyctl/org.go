package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newOrgCmd(d *deps) *cobra.Command {
	cmd := groupCmd("org", "Manage organizations (tenants)")
	cmd.AddCommand(newOrgCreateCmd(d))
	return cmd
}

// orgJSON is the --json output of org create.
type orgJSON struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func newOrgCreateCmd(d *deps) *cobra.Command {
	var name string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "create --name NAME",
		Short:   "Create an organization and print its id",
		Example: `  tallyctl org create --name "Acme Payments"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName("name", name); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			org, err := db.CreateOrganization(ctx, pool, name)
			if err != nil {
				return fmt.Errorf("creating organization: %w", err)
			}
			if asJSON {
				return d.printJSON(orgJSON{ID: org.ID, Name: org.Name, CreatedAt: org.CreatedAt.UTC()})
			}
			d.println(org.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "organization name, 1 to 200 characters (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the organization as JSON")
	mustRequire(cmd, "name")
	return cmd
}
