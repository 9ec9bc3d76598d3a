package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newUserCmd(d *deps) *cobra.Command {
	cmd := groupCmd("user", "Manage users and their owner-level permissions")
	cmd.AddCommand(newUserCreateCmd(d), newUserSetOwnerPermissionsCmd(d))
	return cmd
}

// userJSON is the --json output of user create.
type userJSON struct {
	ID               string    `json:"id"`
	OrgID            string    `json:"org_id"`
	Email            string    `json:"email"`
	Name             string    `json:"name"`
	OwnerPermissions []string  `json:"owner_permissions"`
	CreatedAt        time.Time `json:"created_at"`
}

func newUserCreateCmd(d *deps) *cobra.Command {
	var p db.CreateUserParams
	var perms string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --org ORG_ID --email EMAIL --name NAME [--owner-permissions LIST]",
		Short: "Create a user in an organization and print the user's id",
		Long: `Create a user as a member of one organization and print the user's id.
Owner-level permissions (any of reports:list, reports:download) apply to every
application of the organization; application grants are given with 'grant'.`,
		Example: `  tallyctl user create --org org_01j… --email ana@example.com --name "Ana Auditor"
  tallyctl user create --org org_01j… --email olga@example.com --name "Olga Owner" \
      --owner-permissions reports:list,reports:download`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkID("--org", db.PrefixOrganization, p.OrgID); err != nil {
				return err
			}
			if err := checkEmail(p.Email); err != nil {
				return err
			}
			if err := checkName("name", p.Name); err != nil {
				return err
			}
			var err error
			if p.OwnerPermissions, err = parseNames("owner-permissions", perms, "owner-level permission", ownerPermissions()); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			u, err := db.CreateUser(ctx, pool, p)
			switch {
			case errors.Is(err, db.ErrConflict):
				return fmt.Errorf("a user with the email %q exists already", p.Email)
			case errors.Is(err, db.ErrInvalid): // every field is checked above: the organization is missing
				return fmt.Errorf("organization %s not found (%w)", p.OrgID, err)
			case err != nil:
				return fmt.Errorf("creating user: %w", err)
			}
			if asJSON {
				return d.printJSON(userJSON{ID: u.ID, OrgID: p.OrgID, Email: u.Email, Name: u.Name,
					OwnerPermissions: p.OwnerPermissions, CreatedAt: u.CreatedAt.UTC()})
			}
			d.println(u.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&p.OrgID, "org", "", "organization id (required)")
	cmd.Flags().StringVar(&p.Email, "email", "", "email, unique across Tally (required)")
	cmd.Flags().StringVar(&p.Name, "name", "", "display name, 1 to 200 characters (required)")
	cmd.Flags().StringVar(&perms, "owner-permissions", "", "comma-separated owner-level permissions: "+strings.Join(ownerPermissions(), ","))
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the user as JSON")
	mustRequire(cmd, "org", "email", "name")
	return cmd
}

func newUserSetOwnerPermissionsCmd(d *deps) *cobra.Command {
	var userRef, perms string
	cmd := &cobra.Command{
		Use:   "set-owner-permissions --user USER --permissions LIST",
		Short: "Replace a user's owner-level permissions",
		Long: `Replace a user's owner-level permissions with the given list (any of
reports:list, reports:download). An empty list removes them all.`,
		Example: `  tallyctl user set-owner-permissions --user olga@example.com --permissions reports:list
  tallyctl user set-owner-permissions --user usr_01j… --permissions ""`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := parseNames("permissions", perms, "owner-level permission", ownerPermissions())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			userID, err := resolveUser(ctx, pool, userRef)
			if err != nil {
				return err
			}
			err = db.SetOwnerPermissions(ctx, pool, userID, list)
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("user %s not found", userID)
			}
			if err != nil {
				return fmt.Errorf("setting owner permissions: %w", err)
			}
			d.println(fmt.Sprintf("%s owner permissions: %s", userID, listOrNone(list)))
			return nil
		},
	}
	cmd.Flags().StringVar(&userRef, "user", "", "user id or email (required)")
	cmd.Flags().StringVar(&perms, "permissions", "", `comma-separated owner-level permissions, "" for none (required)`)
	mustRequire(cmd, "user", "permissions")
	return cmd
}

// checkEmail applies the schema's rule for an email: one '@' with text on
// both sides, no white space, at most 254 characters.
func checkEmail(email string) error {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" || strings.Contains(domain, "@") ||
		strings.ContainsAny(email, " \t\n\r\f\v") ||
		len(email) > 254 {
		return fmt.Errorf("--email %q is not an email address", email)
	}
	return nil
}

// listOrNone joins a list for display.
func listOrNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ", ")
}
