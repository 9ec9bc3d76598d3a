// Command tallyctl administers Tally: it migrates the database, creates
// tenants, users and disclosure cases, grants access, issues tokens, and
// loads transactions from CSV files or a deterministic generator.
//
// Run `tallyctl --help` for the commands. Configuration comes from the
// environment (DATABASE_URL, LOG_LEVEL, LOG_FORMAT).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/startup"
	"github.com/tally-compliance/tally/internal/telemetry"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second interrupt kills at once
	}()
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "tallyctl: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	logger := cfg.NewLogger(os.Stderr)
	tel, err := telemetry.Setup(ctx, "tallyctl", logger)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, logger)
	var pool *pgxpool.Pool
	defer func() {
		if pool != nil {
			pool.Close()
		}
	}()
	d := &deps{
		stdin:          os.Stdin,
		stdout:         os.Stdout,
		stderr:         os.Stderr,
		stderrTerminal: isTerminal(os.Stderr),
		logger:         logger,
		openStore: func() (*storage.Store, error) {
			opts := startup.StorageOpts(cfg.S3)
			opts.WrapTransport = tel.HTTPTransport()
			return storage.New(opts)
		},
		loadPortal: func() (*config.Portal, error) { return config.LoadPortal(cfg.PortalConfig) },
		pseudonymKeys: func() (*report.PseudonymKeys, error) {
			current, retired, _, err := cfg.PseudonymKeys()
			if err != nil {
				return nil, err
			}
			return report.NewPseudonymKeys(current, retired...)
		},
		webhookSealer: func() (*webhook.Sealer, error) {
			current, retired, _, err := cfg.PseudonymKeys()
			if err != nil {
				return nil, err
			}
			return webhook.NewSealer(current, retired...)
		},
		// https only, except in development; literal addresses the workers'
		// guard refuses are refused at once.
		webhookURLPolicy: webhook.URLPolicy{
			AllowHTTP: cfg.Env == config.EnvDevelopment,
			Guard:     &webhook.Guard{AllowPrivate: cfg.WebhookAllowPrivate, Allowed: cfg.WebhookAllowedCIDRs},
		},
		connect: func(ctx context.Context) (*pgxpool.Pool, error) {
			var err error
			pool, err = db.Connect(ctx, cfg.DatabaseURL.Reveal(), &db.PoolOpts{MaxConns: 4, ApplicationName: "tallyctl", Tracer: tel.PGXTracer()})
			if err != nil {
				return nil, fmt.Errorf("connecting to the database (DATABASE_URL): %w", err)
			}
			return pool, nil
		},
	}
	root := newRootCmd(d)
	root.SetArgs(os.Args[1:])
	if tp := tel.TracerProvider(); tp != nil {
		// One trace per command, named by the command (never its
		// arguments), holding its queries and object store calls.
		var span trace.Span
		ctx, span = tp.Tracer("github.com/tally-compliance/tally/cmd/tallyctl").Start(ctx, "tallyctl")
		defer span.End()
		cmd, err := root.ExecuteContextC(ctx)
		if cmd != nil {
			span.SetName(cmd.CommandPath())
		}
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
	return root.ExecuteContext(ctx)
}

// isTerminal reports whether f is a character device, such as a terminal:
// progress bars are drawn only there, unless asked for.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
