package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
)

// seedJSON is the --json output of seed.
type seedJSON struct {
	ApplicationID  string    `json:"application_id,omitempty"`
	CSVOut         string    `json:"csv_out,omitempty"`
	Rows           int64     `json:"rows"`
	Seed           uint64    `json:"seed"`
	PeriodStart    time.Time `json:"period_start"`
	PeriodEnd      time.Time `json:"period_end"`
	ElapsedSeconds float64   `json:"elapsed_seconds"`
}

func newSeedCmd(d *deps) *cobra.Command {
	var (
		opts                 ingest.GeneratorOpts
		start, csvOut        string
		showProgress, asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "seed (--app APP_ID | --csv-out FILE) --transactions N [--seed S]",
		Short: "Generate synthetic transactions deterministically from a seed",
		Long: `Generate N synthetic transactions and copy them into an application in one
transaction, or write them as an import file with --csv-out ('-' is stdout).

The rows depend only on --seed, --contracts, --start and --days: the same
values give the same rows, byte for byte. External ids are seed-<S>-<n>, so
several seeds can go into one application. Rows occur in [--start, --start +
--days) over contracts contract-001 and on, in EUR, USD, JPY and KWD (minor
unit exponents 2, 0 and 3), with every kind, and with counterparty names and
descriptions holding commas, quotes, line breaks and non-Latin scripts. Their
ingested_at is --start, so reports created later include them.`,
		Example: `  tallyctl seed --app app_01j… --transactions 1000000 --seed 7
  tallyctl seed --csv-out transactions.csv --transactions 100000 --seed 7`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Count <= 0 {
				return fmt.Errorf("--transactions must be positive, got %d", opts.Count)
			}
			if opts.Contracts < 1 || opts.Days < 1 {
				return errors.New("--contracts and --days must be at least 1")
			}
			var err error
			if opts.Start, err = parseTime("start", start); err != nil {
				return err
			}
			if csvOut == "" {
				if err := checkID("--app", db.PrefixApplication, opts.ApplicationID); err != nil {
					return err
				}
			}
			bar := d.newProgress(showProgress, opts.Count, "seeding", false)
			opts.Progress = bar.set
			began := time.Now()
			var n int64
			if csvOut != "" {
				n, err = writeSeedCSV(d, csvOut, opts)
			} else {
				var pool db.DBTX
				if pool, err = d.db(cmd.Context()); err != nil {
					return err
				}
				n, err = ingest.Seed(cmd.Context(), pool, opts)
				if errors.Is(err, db.ErrConflict) {
					err = fmt.Errorf("%w: application %s already holds rows of seed %d", err, opts.ApplicationID, opts.Seed)
				}
			}
			if err != nil {
				bar.stop()
				return err
			}
			bar.done()
			elapsed := time.Since(began)
			periodEnd := opts.Start.Add(time.Duration(opts.Days) * 24 * time.Hour)
			if asJSON && csvOut != "-" {
				return d.printJSON(seedJSON{ApplicationID: opts.ApplicationID, CSVOut: csvOut, Rows: n, Seed: opts.Seed,
					PeriodStart: opts.Start.UTC(), PeriodEnd: periodEnd.UTC(), ElapsedSeconds: elapsed.Seconds()})
			}
			out, dest := d.stdout, opts.ApplicationID
			if csvOut != "" {
				dest = csvOut
				if csvOut == "-" {
					out, dest = d.stderr, "stdout" // stdout holds the CSV
				}
			}
			fmt.Fprintf(out, "generated %d transactions (seed %d) into %s in %s (%.0f rows/s)\n",
				n, opts.Seed, dest, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.ApplicationID, "app", "", "application id to copy the rows into")
	fl.StringVar(&csvOut, "csv-out", "", "write an import file here instead ('-': stdout); no database needed")
	fl.Int64Var(&opts.Count, "transactions", 0, "number of transactions (required)")
	fl.Uint64Var(&opts.Seed, "seed", 42, "seed of the generator")
	fl.IntVar(&opts.Contracts, "contracts", ingest.DefaultContracts, "number of contract ids")
	fl.StringVar(&start, "start", ingest.DefaultStart, "earliest occurred_at, and every row's ingested_at, RFC 3339")
	fl.IntVar(&opts.Days, "days", ingest.DefaultDays, "days the occurred_at values span")
	fl.BoolVar(&showProgress, "progress", false, "draw a progress bar on stderr even when it is not a terminal")
	fl.BoolVar(&asJSON, "json", false, "print {application_id, csv_out, rows, seed, period_start, period_end, elapsed_seconds} as JSON")
	mustRequire(cmd, "transactions")
	cmd.MarkFlagsOneRequired("app", "csv-out")
	cmd.MarkFlagsMutuallyExclusive("app", "csv-out")
	return cmd
}

// writeSeedCSV writes the generated rows as an import file to path, or to
// stdout for "-".
func writeSeedCSV(d *deps, path string, opts ingest.GeneratorOpts) (int64, error) {
	g, err := ingest.NewGenerator(opts)
	if err != nil {
		return 0, err
	}
	var w io.Writer = d.stdout
	var f *os.File
	if path != "-" {
		if f, err = os.Create(path); err != nil {
			return 0, err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	n, err := g.WriteCSV(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && f != nil {
		err = f.Close()
	}
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", path, err)
	}
	return n, nil
}
