// Command tally-worker builds report files: it works the report queues with
// River, uploads files to the object store, expires old reports, and serves
// /metrics, /healthz and /readyz on TALLY_METRICS_PORT. Run several for more
// throughput; each takes its concurrency from the environment.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/internal/startup"
	"github.com/tally-compliance/tally/internal/telemetry"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
	"github.com/tally-compliance/tally/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tally-worker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if exit, err := buildinfo.ParseArgs("tally-worker", args, stdout); exit || err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if err := cfg.CheckSecrets(); err != nil {
		return err
	}
	logger := cfg.NewLogger(os.Stderr).With(slog.String("service", "tally-worker"))

	tel, err := telemetry.Setup(ctx, "tally-worker", logger)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, logger)

	// A worker started during an outage waits for its dependencies.
	maxConns := worker.MaxConnsParallel(cfg.SmallConcurrency, cfg.LargeConcurrency, cfg.ReportParallelism)
	var pool *pgxpool.Pool
	err = startup.Wait(ctx, logger, "the database", startup.Timeout, func(ctx context.Context) error {
		pool, err = db.Connect(ctx, cfg.DatabaseURL.Reveal(), &db.PoolOpts{MaxConns: maxConns, ApplicationName: "tally-worker", Tracer: tel.PGXTracer()})
		return err
	})
	if err != nil {
		return fmt.Errorf("connecting to the database: %w", err)
	}
	defer pool.Close()

	storeOpts := startup.StorageOpts(cfg.S3)
	storeOpts.UploadConcurrency = cfg.ReportParallelism
	storeOpts.WrapTransport = tel.HTTPTransport()
	store, err := storage.New(storeOpts)
	if err != nil {
		return err
	}
	if err := startup.Wait(ctx, logger, "the object store", startup.Timeout, store.Ping); err != nil {
		return fmt.Errorf("checking the object store: %w", err)
	}

	portal, err := config.LoadPortal(cfg.PortalConfig)
	if err != nil {
		return err
	}

	current, retired, dev, err := cfg.PseudonymKeys()
	if err != nil {
		return err
	}
	if dev {
		logger.WarnContext(ctx, "no pseudonym key configured: using the public development key; set TALLY_PSEUDONYM_KEY")
	}
	keys, err := report.NewPseudonymKeys(current, retired...)
	if err != nil {
		return err
	}

	opts := worker.OptsFromConfig(cfg)
	if cfg.SigningKeysDir != "" || cfg.SigningKeyFile != "" {
		if opts.Keys, err = evidence.LoadKeys(cfg.SigningKeysDir, cfg.SigningKeyFile); err != nil {
			return fmt.Errorf("loading signing keys: %w", err)
		}
		logger.InfoContext(ctx, "signing with key", slog.String("key_id", opts.Keys.Current.ID), slog.Int("keys", len(opts.Keys.All)))
	} else if cfg.Env != config.EnvDevelopment {
		return fmt.Errorf("TALLY_SIGNING_KEYS_DIR or TALLY_SIGNING_KEY_FILE is required outside development (TALLY_ENV=%s)", cfg.Env)
	}
	opts.Pool, opts.Store, opts.Portal, opts.Logger, opts.PseudonymKeys = pool, store, portal, logger, keys
	// Webhook secrets are sealed under keys derived from the pseudonym
	// master keys (webhook.Sealer).
	if opts.WebhookSealer, err = webhook.NewSealer(current, retired...); err != nil {
		return err
	}
	opts.Plugins = tel.RiverPlugins()
	w, err := worker.New(ctx, opts)
	if err != nil {
		return err
	}

	// Listen before starting work, so that a taken port fails at once. The
	// server outlives the soft stop, so that the shutdown can be watched,
	// and stops once the River client has.
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.MetricsPort))
	if err != nil {
		return fmt.Errorf("listening for metrics: %w", err)
	}
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpErr := make(chan error, 1)
	go func() { httpErr <- w.Serve(httpCtx, ln) }()

	build := buildinfo.Get()
	logger.InfoContext(ctx, "tally-worker starting", slog.String("version", build.Version), slog.String("revision", build.Revision),
		slog.Int("db_max_conns", int(maxConns)),
		slog.Int("metrics_port", cfg.MetricsPort), slog.Bool("tracing", tel != nil),
		slog.Int("report_parallelism", cfg.ReportParallelism), slog.Bool("pprof", cfg.Pprof))
	runErr := w.Run(ctx)
	stopHTTP()
	if err := <-httpErr; err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
