// Command tally-api serves Tally's HTTP API: the portal's report endpoints,
// River UI for admins, health probes and metrics.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/buildinfo"
	"github.com/tally-compliance/tally/internal/startup"
	"github.com/tally-compliance/tally/internal/telemetry"
	"github.com/tally-compliance/tally/storage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tally-api:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if exit, err := buildinfo.ParseArgs("tally-api", args, stdout); exit || err != nil {
		return err
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if err := cfg.CheckSecrets(); err != nil {
		return err
	}
	logger := cfg.NewLogger(os.Stderr)
	build := buildinfo.Get()
	logger.Info("starting tally-api", slog.String("version", build.Version), slog.String("revision", build.Revision), slog.Int("port", cfg.Port), slog.String("s3_endpoint", cfg.S3.Endpoint),
		slog.Any("s3_secret", cfg.S3.SecretAccessKey), slog.Bool("river_ui", cfg.AdminUser != ""), slog.String("admin_addr", cfg.AdminAddr))

	tel, err := telemetry.Setup(ctx, "tally-api", logger)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, logger)
	if tel != nil {
		logger.Info("tracing on: spans exported over OTLP/HTTP")
	}

	portal, err := config.LoadPortal(cfg.PortalConfig)
	if err != nil {
		return err
	}
	// An API started during a database outage waits for it.
	var pool *pgxpool.Pool
	err = startup.Wait(ctx, logger, "the database", startup.Timeout, func(ctx context.Context) error {
		pool, err = db.Connect(ctx, cfg.DatabaseURL.Reveal(), &db.PoolOpts{MaxConns: cfg.APIMaxConns, ApplicationName: "tally-api", Tracer: tel.PGXTracer()})
		return err
	})
	if err != nil {
		return fmt.Errorf("connecting to the database: %w", err)
	}
	defer pool.Close()
	storeOpts := startup.StorageOpts(cfg.S3)
	storeOpts.WrapTransport = tel.HTTPTransport()
	store, err := storage.New(storeOpts)
	if err != nil {
		return err
	}
	// Insert-only River client: no queues, never started. River sends at most
	// one insert notification per queue per FetchCooldown; the default
	// (100 ms) would leave a report created right after another waiting for
	// the workers' next poll, so notify within 5 ms.
	riverClient, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: logger, FetchCooldown: 5 * time.Millisecond, Plugins: tel.RiverPlugins()})
	if err != nil {
		return fmt.Errorf("creating River client: %w", err)
	}
	srv, err := api.New(api.Opts{
		Pool: pool, River: riverClient, Store: store, Portal: portal, Logger: logger,
		AdminUser: cfg.AdminUser, AdminPassword: cfg.AdminPassword.Reveal(), SeparateAdmin: cfg.AdminAddr != "",
		RequestTimeout: cfg.RequestTimeout, MaxAttempts: cfg.MaxAttempts, CreatePerMinute: cfg.CreateRateLimit, LargeReportRows: cfg.LargeThreshold,
		TrustedProxies: cfg.TrustedProxies, DownloadsPerUser: cfg.DownloadsPerUser, DownloadsPerOrg: cfg.DownloadsPerOrg,
		DownloadMinRate: cfg.DownloadMinRate, DownloadStallTimeout: cfg.DownloadStallTimeout, Telemetry: tel,
		WaitsPerUser: cfg.WaitsPerUser,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("starting River UI: %w", err)
	}

	servers := []*http.Server{srv.HTTPServer(net.JoinHostPort("", strconv.Itoa(cfg.Port)))}
	if cfg.AdminAddr != "" {
		// River UI and /metrics on a listener of their own, off the
		// portal's network.
		servers = append(servers, srv.AdminHTTPServer(cfg.AdminAddr))
	}
	errc := make(chan error, len(servers))
	for _, hs := range servers {
		go func() { errc <- hs.ListenAndServe() }()
		logger.Info("listening", slog.String("addr", hs.Addr), slog.Bool("admin", hs != servers[0]))
	}

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("shutting down %s: %w", hs.Addr, err))
		}
	}
	return errors.Join(errs...)
}
