package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
)

func newReportCmd(d *deps) *cobra.Command {
	cmd := groupCmd("report", "Check reports")
	cmd.AddCommand(newReportReproduceCmd(d))
	return cmd
}

func newReportReproduceCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "reproduce rpt_…",
		Short: "Rebuild a ready report from its snapshot and compare it with the stored file",
		Long: `reproduce rebuilds a ready report from what it stores (scope and creation
snapshot) into a hashing stream, compares it byte by byte with the stored
object and its SHA-256 and size with the report's, and prints "match" or the
first differing byte offset (exit non-zero). Nothing is written.`,
		Example: `  tallyctl report reproduce rpt_01j…`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !db.ValidID(db.PrefixReport, args[0]) {
				return fmt.Errorf("%q is not a report id (rpt_…)", args[0])
			}
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			store, err := d.openStore()
			if err != nil {
				return err
			}
			portal, err := d.loadPortal()
			if err != nil {
				return err
			}
			keys, err := d.pseudonymKeys()
			if err != nil {
				return err
			}
			r, err := jobs.Reproduce(ctx, pool, store, portal, keys, args[0])
			if err != nil {
				return err
			}
			if r.Match {
				d.println(fmt.Sprintf("match: %s rebuilds to %d bytes, sha256 %s", r.ReportID, r.Size, r.SHA256))
				return nil
			}
			return fmt.Errorf("mismatch: %s first differs at byte %d; rebuilt %d bytes sha256 %s, stored %d bytes sha256 %s",
				r.ReportID, r.FirstDiff, r.Size, r.SHA256, r.StoredSize, r.StoredSHA256)
		},
	}
}
