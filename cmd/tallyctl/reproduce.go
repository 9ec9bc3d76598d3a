package main

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
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
			rb, err := d.rebuildDeps(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			r, err := jobs.Reproduce(cmd.Context(), rb.pool, rb.store, rb.portal, rb.keys, args[0])
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
			rb, err := d.rebuildDeps(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			r, err := jobs.Restore(cmd.Context(), rb.pool, rb.store, rb.portal, rb.keys, args[0])
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

// rebuild is what rebuilding a report from its snapshot needs (report
// reproduce and report restore).
type rebuild struct {
	pool   *pgxpool.Pool
	store  *storage.Store
	portal *config.Portal
	keys   *report.PseudonymKeys
}

// rebuildDeps checks the report id and opens what rebuilding it needs.
func (d *deps) rebuildDeps(ctx context.Context, reportID string) (*rebuild, error) {
	if !db.ValidID(db.PrefixReport, reportID) {
		return nil, fmt.Errorf("%q is not a report id (rpt_…)", reportID)
	}
	var (
		rb  rebuild
		err error
	)
	if rb.pool, err = d.db(ctx); err != nil {
		return nil, err
	}
	if rb.store, err = d.openStore(); err != nil {
		return nil, err
	}
	if rb.portal, err = d.loadPortal(); err != nil {
		return nil, err
	}
	if rb.keys, err = d.pseudonymKeys(); err != nil {
		return nil, err
	}
	return &rb, nil
}
