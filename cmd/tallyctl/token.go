package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newTokenCmd(d *deps) *cobra.Command {
	cmd := groupCmd("token", "Issue and revoke session tokens")
	cmd.AddCommand(newTokenIssueCmd(d), newTokenRevokeCmd(d))
	return cmd
}

// tokenJSON is the --json output of token issue.
type tokenJSON struct {
	SessionID string    `json:"session_id"`
	UserID    string    `json:"user_id"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

func newTokenIssueCmd(d *deps) *cobra.Command {
	var userRef string
	var ttl time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "issue --user USER [--ttl 720h]",
		Short: "Issue a bearer token for a user and print it once",
		Long: `Issue a bearer token for a user. The token is printed once, alone on stdout
(the session id and expiry go to stderr), and cannot be shown again: only its
SHA-256 is stored. With --json, stdout gets {session_id, user_id, token, expires_at}.`,
		Example: `  TOKEN=$(tallyctl token issue --user ana@example.com --ttl 24h)`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return fmt.Errorf("--ttl must be positive, got %s", ttl)
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
			issued := d.clock()
			sessionID, token, err := db.CreateSession(ctx, pool, userID, ttl)
			if errors.Is(err, db.ErrInvalid) { // the session's foreign key: no such user
				return fmt.Errorf("user %s not found", userID)
			}
			if err != nil {
				return fmt.Errorf("issuing token: %w", err)
			}
			// The database computes the expiry from its own clock; this is
			// the same instant to within the round trip.
			expires := issued.Add(ttl).UTC().Truncate(time.Second)
			if asJSON {
				return d.printJSON(tokenJSON{SessionID: sessionID, UserID: userID, Token: token, ExpiresAt: expires})
			}
			d.println(token)
			fmt.Fprintf(d.stderr, "session %s for %s, expires %s\n", sessionID, userID, expires.Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&userRef, "user", "", "user id or email (required)")
	cmd.Flags().DurationVar(&ttl, "ttl", 720*time.Hour, "lifetime of the token")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {session_id, user_id, token, expires_at} as JSON")
	mustRequire(cmd, "user")
	return cmd
}

func newTokenRevokeCmd(d *deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke SESSION_ID|TOKEN",
		Short: "Revoke a session by its id or by its token",
		Long: `Revoke a session, given its id (ses_…) or the token itself (tly_…). Requests
with the token fail from now on. Revoking twice is harmless.`,
		Example: `  tallyctl token revoke ses_01j…
  tallyctl token revoke "$TOKEN"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			if !strings.HasPrefix(ref, db.TokenPrefix) {
				if err := checkID("session", db.PrefixSession, ref); err != nil {
					return fmt.Errorf("%w nor a token like %s…", err, db.TokenPrefix)
				}
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			err = db.RevokeSession(ctx, pool, ref)
			if errors.Is(err, db.ErrNotFound) {
				return errors.New("no such session")
			}
			if err != nil {
				return fmt.Errorf("revoking session: %w", err)
			}
			if strings.HasPrefix(ref, db.TokenPrefix) {
				d.println("session revoked")
			} else {
				d.println(fmt.Sprintf("session %s revoked", ref))
			}
			return nil
		},
	}
	return cmd
}
