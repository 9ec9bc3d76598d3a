package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newCaseCmd(d *deps) *cobra.Command {
	cmd := groupCmd("case", "Manage disclosure cases: create, approve, assign, revoke, close")
	cmd.AddCommand(
		newCaseCreateCmd(d),
		newCaseApproveCmd(d),
		newCaseAssignCmd(d),
		newCaseStatusCmd(d, "revoke", "revoking", "Revoke a case: no report can be created for it any more", db.RevokeCase),
		newCaseStatusCmd(d, "close", "closing", "Close a case", db.CloseCase),
	)
	return cmd
}

// caseJSON is the --json output of the case commands.
type caseJSON struct {
	ID                string     `json:"id"`
	OrgID             string     `json:"org_id"`
	ApplicationID     string     `json:"application_id"`
	Title             string     `json:"title"`
	Status            string     `json:"status"`
	PeriodStart       time.Time  `json:"period_start"`
	PeriodEnd         time.Time  `json:"period_end"`
	DisclosureFlags   []string   `json:"disclosure_flags"`
	ContractFilters   []string   `json:"contract_filters"`
	AccessWindowStart time.Time  `json:"access_window_start"`
	AccessWindowEnd   time.Time  `json:"access_window_end"`
	ApprovedAt        *time.Time `json:"approved_at"`
	ApprovedBy        *string    `json:"approved_by"`
	CreatedAt         time.Time  `json:"created_at"`
}

func toCaseJSON(c *db.Case) caseJSON {
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	return caseJSON{
		ID: c.ID, OrgID: c.OrgID, ApplicationID: c.ApplicationID, Title: c.Title, Status: c.Status,
		PeriodStart: c.PeriodStart.UTC(), PeriodEnd: c.PeriodEnd.UTC(),
		DisclosureFlags: c.DisclosureFlags, ContractFilters: c.ContractFilters,
		AccessWindowStart: c.AccessWindowStart.UTC(), AccessWindowEnd: c.AccessWindowEnd.UTC(),
		ApprovedAt: utc(c.ApprovedAt), ApprovedBy: c.ApprovedBy, CreatedAt: c.CreatedAt.UTC(),
	}
}

// caseError turns the db sentinels of a case operation into messages.
func caseError(caseID, doing string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, db.ErrNotFound):
		return fmt.Errorf("case %s not found", caseID)
	default:
		return fmt.Errorf("%s case %s: %w", doing, caseID, err)
	}
}

func newCaseCreateCmd(d *deps) *cobra.Command {
	var appID, title, periodStart, periodEnd, flags, contracts, windowStart, windowEnd string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create --app APP_ID --period-start T --period-end T --window-end T [flags]",
		Short: "Create a draft disclosure case and print its id",
		Long: `Create a draft disclosure case on an application and print its id.

The period is the half-open UTC interval [--period-start, --period-end) of
transactions the case discloses. --flags chooses what reports disclose beyond
subtotals (` + strings.Join(disclosureFlags(), ", ") + `); --contracts limits the case to
some contract ids (none: every contract). Reports can be created while the
access window [--window-start, --window-end) is open. Times are RFC 3339.
A case must be approved ('case approve') before reports can be created.`,
		Example: `  tallyctl case create --app app_01j… --title "FY2025 audit" \
      --period-start 2025-01-01T00:00:00Z --period-end 2026-01-01T00:00:00Z \
      --flags line_items,counterparty_names --contracts contract-001,contract-002 \
      --window-end 2027-01-01T00:00:00Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkID("--app", db.PrefixApplication, appID); err != nil {
				return err
			}
			p := db.CreateCaseParams{ApplicationID: appID, Title: title}
			var err error
			if p.PeriodStart, err = parseTime("period-start", periodStart); err != nil {
				return err
			}
			if p.PeriodEnd, err = parseTime("period-end", periodEnd); err != nil {
				return err
			}
			if !p.PeriodEnd.After(p.PeriodStart) {
				return errors.New("--period-end must be after --period-start")
			}
			p.AccessWindowStart = d.clock()
			if windowStart != "" {
				if p.AccessWindowStart, err = parseTime("window-start", windowStart); err != nil {
					return err
				}
			}
			if p.AccessWindowEnd, err = parseTime("window-end", windowEnd); err != nil {
				return err
			}
			if !p.AccessWindowEnd.After(p.AccessWindowStart) {
				return errors.New("--window-end must be after --window-start")
			}
			if p.DisclosureFlags, err = parseNames("flags", flags, "disclosure flag", disclosureFlags()); err != nil {
				return err
			}
			if p.ContractFilters, err = splitList("contracts", contracts); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			c, err := db.CreateCase(ctx, pool, p)
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("application %s not found", appID)
			}
			if err != nil {
				return fmt.Errorf("creating case: %w", err)
			}
			if asJSON {
				return d.printJSON(toCaseJSON(c))
			}
			d.println(c.ID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&appID, "app", "", "application id (required)")
	fl.StringVar(&title, "title", "", "title shown to auditors")
	fl.StringVar(&periodStart, "period-start", "", "first instant of the disclosed period, RFC 3339 (required)")
	fl.StringVar(&periodEnd, "period-end", "", "end of the disclosed period, exclusive, RFC 3339 (required)")
	fl.StringVar(&flags, "flags", "", "comma-separated disclosure flags: "+strings.Join(disclosureFlags(), ","))
	fl.StringVar(&contracts, "contracts", "", "comma-separated contract ids the case is limited to (default: every contract)")
	fl.StringVar(&windowStart, "window-start", "", "opening of the access window, RFC 3339 (default: now)")
	fl.StringVar(&windowEnd, "window-end", "", "closing of the access window, exclusive, RFC 3339 (required)")
	fl.BoolVar(&asJSON, "json", false, "print the case as JSON")
	mustRequire(cmd, "app", "period-start", "period-end", "window-end")
	return cmd
}

func newCaseApproveCmd(d *deps) *cobra.Command {
	var by string
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "approve CASE_ID --by USER",
		Short:   "Approve a draft case, recording who approved it",
		Example: `  tallyctl case approve case_01j… --by olga@example.com`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			caseID := args[0]
			if err := checkID("case", db.PrefixCase, caseID); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			approver, err := resolveUser(ctx, pool, by)
			if err != nil {
				return err
			}
			c, err := db.ApproveCase(ctx, pool, caseID, approver)
			if err != nil {
				return caseError(caseID, "approving", err)
			}
			if asJSON {
				return d.printJSON(toCaseJSON(c))
			}
			d.println(fmt.Sprintf("case %s approved by %s", c.ID, *c.ApprovedBy))
			return nil
		},
	}
	cmd.Flags().StringVar(&by, "by", "", "approving user, id or email (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the case as JSON")
	mustRequire(cmd, "by")
	return cmd
}

func newCaseAssignCmd(d *deps) *cobra.Command {
	var userRef string
	cmd := &cobra.Command{
		Use:   "assign CASE_ID --user USER",
		Short: "Assign a user of the case's organization to a case",
		Long: `Assign a user to a case: only assigned users can create reports for it. The
user must belong to the case's organization. Assigning twice is harmless.`,
		Example: `  tallyctl case assign case_01j… --user ana@example.com`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			caseID := args[0]
			if err := checkID("case", db.PrefixCase, caseID); err != nil {
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
			err = db.AssignCase(ctx, pool, caseID, userID)
			if errors.Is(err, db.ErrNotFound) {
				return fmt.Errorf("case %s and user %s not found in one organization", caseID, userID)
			}
			if err != nil {
				return fmt.Errorf("assigning case %s: %w", caseID, err)
			}
			d.println(fmt.Sprintf("case %s assigned to %s", caseID, userID))
			return nil
		},
	}
	cmd.Flags().StringVar(&userRef, "user", "", "user id or email (required)")
	mustRequire(cmd, "user")
	return cmd
}

// newCaseStatusCmd builds a command that moves a case to another status.
func newCaseStatusCmd(d *deps, verb, doing, short string, set func(ctx context.Context, q db.DBTX, caseID string) (*db.Case, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     verb + " CASE_ID",
		Short:   short,
		Example: "  tallyctl case " + verb + " case_01j…",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			caseID := args[0]
			if err := checkID("case", db.PrefixCase, caseID); err != nil {
				return err
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			c, err := set(ctx, pool, caseID)
			if err != nil {
				return caseError(caseID, doing, err)
			}
			if asJSON {
				return d.printJSON(toCaseJSON(c))
			}
			d.println(fmt.Sprintf("case %s %s", c.ID, c.Status))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the case as JSON")
	return cmd
}
