package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
)

func newReportCmd(d *deps) *cobra.Command {
	cmd := groupCmd("report", "Check and restore report files")
	cmd.AddCommand(newReportReproduceCmd(d), newReportRestoreCmd(d))
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

func newReportRestoreCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "restore rpt_…",
		Short: "Rebuild a ready report's missing file from its snapshot and store it again",
		Long: `restore puts back the file of a ready report whose object is missing from the
object store (a bucket lost and recreated empty, an object deleted): it rebuilds
the file from the report's scope and creation snapshot and stores it under the
report's object key, keeping it only when its SHA-256 and size are the report's.
A file that is present is left alone ("present"), so restore can run over every
ready report, and again. It needs the pseudonym keys the reports were built
with (TALLY_PSEUDONYM_KEY and TALLY_PSEUDONYM_RETIRED_KEYS, or the key file).`,
		Example: `  tallyctl report restore rpt_01j…
  psql "$DATABASE_URL" -Atc "SELECT id FROM reports WHERE status = 'ready'" | xargs -n1 tallyctl report restore`,
		Args: cobra.ExactArgs(1),
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
			r, err := jobs.Restore(ctx, pool, store, portal, keys, args[0])
			if err != nil {
				return err
			}
			if !r.Restored {
				d.println(fmt.Sprintf("present: %s is stored at %s", r.ReportID, r.Key))
				return nil
			}
			d.println(fmt.Sprintf("restored: %s rebuilt to %d bytes, sha256 %s, at %s", r.ReportID, r.Size, r.SHA256, r.Key))
			return nil
		},
	}
}
