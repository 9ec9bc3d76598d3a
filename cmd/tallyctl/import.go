package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

// importJSON is the --json output of import.
type importJSON struct {
	ApplicationID  string    `json:"application_id"`
	Rows           int64     `json:"rows"`
	IngestedAt     time.Time `json:"ingested_at"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
}

func newImportCmd(d *deps) *cobra.Command {
	var appID string
	var showProgress, asJSON bool
	cmd := &cobra.Command{
		Use:   "import --app APP_ID FILE|-",
		Short: "Import transactions from a CSV file, all or nothing",
		Long: `Import transactions into an application from a CSV file ('-' reads stdin).

The file starts with the header
  ` + ingest.Header + `
and has one transaction per record: occurred_at in RFC 3339, amount_minor an
integer in the currency's minor units, currency an ISO 4217 code, kind one of
payment, refund, fee, chargeback, payout, adjustment; counterparty and
description may be empty. external_id must be unique within the application.

Every row is validated before anything is written. If any row is invalid,
nothing is imported and the error names each bad line (the header is line 1)
and the reason, for up to ` + fmt.Sprint(ingest.MaxReportedErrors) + ` lines. The rows are then copied in one
transaction, so a row the database refuses, such as an external_id imported
before, also leaves nothing behind.`,
		Example: `  tallyctl import --app app_01j… transactions.csv
  gunzip -c export.csv.gz | tallyctl import --app app_01j… --progress -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkID("--app", db.PrefixApplication, appID); err != nil {
				return err
			}
			ctx := cmd.Context()
			name := args[0]
			f, size, cleanup, err := d.openImportFile(ctx, name)
			if err != nil {
				return err
			}
			defer cleanup()
			if name == "-" {
				name = "stdin"
			}
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}

			start := time.Now()
			validating := d.newProgress(showProgress, size, "validating", true)
			var copying *progress
			src := &progressReadSeeker{rs: f, p: validating}
			res, err := ingest.Import(ctx, pool, appID, src, &ingest.ImportOpts{
				Validated: func(rows int64) {
					validating.done()
					src.p = nil
					copying = d.newProgress(showProgress, rows, "importing", false)
				},
				Progress: func(rows int64) { copying.set(rows) },
			})
			if err != nil {
				validating.stop()
				copying.stop()
				var verr *ingest.ValidationError
				if errors.As(err, &verr) {
					return fmt.Errorf("%s: nothing imported: %w", name, err)
				}
				return fmt.Errorf("%s: %w", name, err)
			}
			copying.done()
			elapsed := time.Since(start)
			if asJSON {
				return d.printJSON(importJSON{ApplicationID: appID, Rows: res.Rows, IngestedAt: res.IngestedAt.UTC(), ElapsedSeconds: elapsed.Seconds()})
			}
			d.println(fmt.Sprintf("imported %d rows from %s into %s in %s", res.Rows, name, appID, elapsed.Round(time.Millisecond)))
			return nil
		},
	}
	cmd.Flags().StringVar(&appID, "app", "", "application id (required)")
	cmd.Flags().BoolVar(&showProgress, "progress", false, "draw progress bars on stderr even when it is not a terminal")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {application_id, rows, ingested_at, elapsed_seconds} as JSON")
	mustRequire(cmd, "app")
	return cmd
}

// openImportFile opens the file to import and returns its size. Import
// reads the file twice, so stdin ("-") is first spooled to a temporary
// file, which cleanup removes.
func (d *deps) openImportFile(ctx context.Context, name string) (f *os.File, size int64, cleanup func(), err error) {
	if name != "-" {
		f, err = os.Open(name)
		if err != nil {
			return nil, 0, nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, nil, err
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return nil, 0, nil, fmt.Errorf("%s is not a regular file; pipe it to '-' instead", name)
		}
		return f, fi.Size(), func() { f.Close() }, nil
	}
	f, err = os.CreateTemp("", "tallyctl-import-*.csv")
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spooling stdin: %w", err)
	}
	cleanup = func() {
		f.Close()
		os.Remove(f.Name())
	}
	if size, err = io.Copy(f, ctxReader{ctx, d.stdin}); err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("spooling stdin: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("spooling stdin: %w", err)
	}
	return f, size, cleanup, nil
}

// progressReadSeeker moves a bytes progress bar as the file is read; Import
// reads the file twice, and the bar follows the first pass.
type progressReadSeeker struct {
	rs io.ReadSeeker
	p  *progress
}

func (r *progressReadSeeker) Read(b []byte) (int, error) {
	n, err := r.rs.Read(b)
	r.p.add(int64(n))
	return n, err
}

func (r *progressReadSeeker) Seek(offset int64, whence int) (int64, error) {
	return r.rs.Seek(offset, whence)
}

// ctxReader stops reading once ctx is done, so that an interrupt stops
// spooling a stream that keeps coming.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
