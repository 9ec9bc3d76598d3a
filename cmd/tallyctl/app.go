package main

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

// foreignIDPattern is the schema's rule for an application's route segment.
var foreignIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func newAppCmd(d *deps) *cobra.Command {
	cmd := groupCmd("app", "Manage applications of an organization")
	cmd.AddCommand(newAppCreateCmd(d))
	return cmd
}

// appJSON is the --json output of app create.
type appJSON struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	ForeignID string    `json:"foreign_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func newAppCreateCmd(d *deps) *cobra.Command {
	var p db.CreateApplicationParams
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --org ORG_ID --foreign-id SEGMENT --name NAME",
		Short: "Create an application and print its id",
		Long: `Create an application of an organization and print its id. The foreign id is
the application's route segment in the API (/applications/{foreign_id}/…): lower
case letters, digits, '-' and '_', unique within the organization.`,
		Example: `  tallyctl app create --org org_01j… --foreign-id payments --name "Payments"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkID("--org", db.PrefixOrganization, p.OrgID); err != nil {
				return err
			}
			if !foreignIDPattern.MatchString(p.ForeignID) {
				return fmt.Errorf("--foreign-id %q must be 1 to 63 lower-case letters, digits, '-' or '_', starting with a letter or digit", p.ForeignID)
			}
			if err := checkName("name", p.Name); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			app, err := db.CreateApplication(ctx, pool, p)
			switch {
			case errors.Is(err, db.ErrConflict):
				return fmt.Errorf("organization %s already has an application %q", p.OrgID, p.ForeignID)
			case errors.Is(err, db.ErrInvalid): // every field is checked above: the organization is missing
				return fmt.Errorf("organization %s not found (%w)", p.OrgID, err)
			case err != nil:
				return fmt.Errorf("creating application: %w", err)
			}
			if asJSON {
				return d.printJSON(appJSON{ID: app.ID, OrgID: app.OrgID, ForeignID: app.ForeignID, Name: app.Name, CreatedAt: app.CreatedAt.UTC()})
			}
			d.println(app.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&p.OrgID, "org", "", "organization id (required)")
	cmd.Flags().StringVar(&p.ForeignID, "foreign-id", "", "route segment, unique within the organization (required)")
	cmd.Flags().StringVar(&p.Name, "name", "", "display name, 1 to 200 characters (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the application as JSON")
	mustRequire(cmd, "org", "foreign-id", "name")
	return cmd
}
