package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
)

func newMigrateCmd(d *deps) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply River's and Tally's database migrations",
		Long: `Apply River's migrations and then Tally's embedded schema migrations to the
database named by DATABASE_URL. Running it on an up-to-date database changes
nothing. Run it from one process at a time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			res, err := db.Migrate(ctx, pool, d.logger)
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
	return cmd
}
