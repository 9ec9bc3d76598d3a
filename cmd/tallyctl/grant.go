package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

// accessFlags are the flags grant and revoke share.
type accessFlags struct {
	user, app, perms string
}

func (f *accessFlags) register(cmd *cobra.Command, verb string) {
	cmd.Flags().StringVar(&f.user, "user", "", "user id or email (required)")
	cmd.Flags().StringVar(&f.app, "app", "", "application id (required)")
	cmd.Flags().StringVar(&f.perms, "permissions", "", "comma-separated permissions to "+verb+": "+strings.Join(appPermissions(), ",")+" (required)")
	mustRequire(cmd, "user", "app", "permissions")
}

// parse checks the flags before any query.
func (f *accessFlags) parse() ([]string, error) {
	if err := checkID("--app", db.PrefixApplication, f.app); err != nil {
		return nil, err
	}
	perms, err := parseNames("permissions", f.perms, "permission", appPermissions())
	if err != nil {
		return nil, err
	}
	if len(perms) == 0 {
		return nil, errors.New("--permissions lists no permission")
	}
	return perms, nil
}

func newGrantCmd(d *deps) *cobra.Command {
	var f accessFlags
	cmd := &cobra.Command{
		Use:   "grant --user USER --app APP_ID --permissions LIST",
		Short: "Grant a user report permissions on an application",
		Long: `Add permissions to a user's auditor bucket on an application of the user's
own organization. Permissions already granted stay.`,
		Example: `  tallyctl grant --user ana@example.com --app app_01j… --permissions reports:create,reports:list,reports:download`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			perms, err := f.parse()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			userID, err := resolveUser(ctx, pool, f.user)
			if err != nil {
				return err
			}
			err = db.GrantPermissions(ctx, pool, userID, f.app, perms)
			switch {
			case errors.Is(err, db.ErrNotFound):
				return fmt.Errorf("user %s not found", userID)
			case errors.Is(err, db.ErrInvalid):
				return fmt.Errorf("application %s not found in the organization of user %s", f.app, userID)
			case err != nil:
				return fmt.Errorf("granting: %w", err)
			}
			d.println(fmt.Sprintf("granted %s to %s on %s", strings.Join(perms, ", "), userID, f.app))
			return nil
		},
	}
	f.register(cmd, "grant")
	return cmd
}

func newRevokeCmd(d *deps) *cobra.Command {
	var f accessFlags
	cmd := &cobra.Command{
		Use:   "revoke --user USER --app APP_ID --permissions LIST",
		Short: "Revoke report permissions of a user on an application",
		Long: `Remove permissions from a user's auditor bucket on an application. A grant
left without permissions is deleted.`,
		Example: `  tallyctl revoke --user ana@example.com --app app_01j… --permissions reports:create`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			perms, err := f.parse()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			userID, err := resolveUser(ctx, pool, f.user)
			if err != nil {
				return err
			}
			err = db.RevokePermissions(ctx, pool, userID, f.app, perms)
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("user %s has no grant on %s", userID, f.app)
			}
			if err != nil {
				return fmt.Errorf("revoking: %w", err)
			}
			d.println(fmt.Sprintf("revoked %s from %s on %s", strings.Join(perms, ", "), userID, f.app))
			return nil
		},
	}
	f.register(cmd, "revoke")
	return cmd
}
