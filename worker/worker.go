// Package worker runs Tally's report workers: the River client with its
// queues, workers and periodic jobs, the soft stop on shutdown, and the
// process's metrics and health endpoints. cmd/tally-worker only wires it.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/webhook"
)

// Defaults of Opts fields left zero that no environment variable sets. The
// others default to config's (config.DefaultJobTimeout and so on), the same
// defaults as an unset variable.
const (
	DefaultFetchCooldown      = 20 * time.Millisecond
	DefaultExpireInterval     = 10 * time.Minute
	DefaultCheckpointInterval = 10 * time.Minute
	DefaultReproduceInterval  = time.Hour
	DefaultQueueStatsInterval = 10 * time.Second
)

// Pool sizing. A job holds one connection at a time (its snapshot read, then
// its finishing transaction), the maintenance queue runs up to
// MaintenanceWorkers jobs, and a started River client needs a few
// connections of its own for fetching, completing, leader election and
// maintenance (its LISTEN connection is taken out of the pool and does not
// count).
const (
	MaintenanceWorkers = 2
	RiverInternalConns = 5
	// SequencerConns is the activity chain sequencer's (one at a time).
	SequencerConns = 1
)

// MaxConns returns the database pool size a worker process needs for its
// queue concurrencies: small + large + MaintenanceWorkers +
// RiverInternalConns + SequencerConns. With the defaults (4 and 1) that is 13.
func MaxConns(small, large int) int32 {
	return int32(small + large + MaintenanceWorkers + RiverInternalConns + SequencerConns)
}

// MaxConnsParallel is MaxConns with the connections that each large job
// reading its scope on parallel connections (Opts.ReportParallelism) adds.
func MaxConnsParallel(small, large, parallel int) int32 {
	return MaxConns(small, large) + int32(large*max(parallel-1, 0))
}

// Opts configure a Worker. Pool, Store, Portal and PseudonymKeys are required; a zero
// duration or count means the default above, and each other field says what
// its zero value means.
type Opts struct {
	// Pool is the database, sized with MaxConns.
	Pool *pgxpool.Pool
	// Store holds report files; /readyz checks its bucket.
	Store *storage.Store
	// Portal gives report types and retention.
	Portal *config.Portal
	// PseudonymKeys key counterparty pseudonyms (config.PseudonymKeys).
	PseudonymKeys *report.PseudonymKeys
	// Logger receives the worker's and River's logs; nil discards.
	Logger *slog.Logger

	// SmallConcurrency is MaxWorkers of the "reports" queue.
	SmallConcurrency int
	// LargeConcurrency is MaxWorkers of the "reports_large" queue.
	LargeConcurrency int
	// JobTimeout bounds one attempt of a report job.
	JobTimeout time.Duration
	// ShutdownTimeout is how long running jobs may go on after shutdown
	// starts before their contexts are cancelled and they return to the
	// queue for another worker.
	ShutdownTimeout time.Duration
	// MaxAttempts is River's attempt budget for jobs this client inserts
	// without one of their own. The only jobs it inserts, the periodic
	// expire_reports and sweep_objects, set their own (3); report jobs get theirs from the
	// client that inserts them (the API's, see jobs.CreateReport).
	MaxAttempts int
	// FetchCooldown is the minimum time between two fetches of a queue.
	FetchCooldown time.Duration
	// FetchPollInterval is how often queues are polled when no
	// notification arrives.
	FetchPollInterval time.Duration
	// RescueStuckJobsAfter is how long a job may stay running before River's
	// rescuer gives it to another worker; zero means JobTimeout +
	// config.RescueMargin. It must not be below JobTimeout.
	RescueStuckJobsAfter time.Duration
	// RetryPolicy schedules retries; nil keeps River's (attempt^4 seconds).
	RetryPolicy river.ClientRetryPolicy
	// ExpireInterval is the period of the expire_reports job.
	ExpireInterval time.Duration
	// SweepInterval is the period of the sweep_objects job.
	SweepInterval time.Duration
	// SweepGrace is the age below which sweep_objects keeps an object that
	// may belong to a run in flight. It must exceed JobTimeout.
	SweepGrace time.Duration
	// CheckpointInterval is the period of the checkpoint_activity job.
	CheckpointInterval time.Duration
	// ChainInterval is the period of the activity chain sequencer
	// (db.ChainPending), which every worker process runs.
	ChainInterval time.Duration
	// QueueStatsInterval is the refresh period of the queue gauges.
	QueueStatsInterval time.Duration
	// ID names the River client; empty means River's <hostname>_<time>.
	ID string
	// TestOnly starts River's maintenance services at once instead of
	// staggering them. For tests.
	TestOnly bool
	// MaxSnoozes is passed to jobs.GenerateReportWorker: how many outage
	// snoozes a report job gets before outages spend attempts; zero means
	// jobs.DefaultMaxSnoozes, negative none.
	MaxSnoozes int
	// AfterUploadFunc is passed to jobs.GenerateReportWorker: it runs after a
	// file is uploaded and before the finishing transaction. For tests.
	AfterUploadFunc func(ctx context.Context, job *river.Job[jobs.GenerateReportArgs]) error
	// Keys sign report manifests and activity checkpoints; nil means an
	// ephemeral key, generated at start with a loud warning.
	Keys *evidence.Keys
	// Pprof serves net/http/pprof under /debug/pprof/ on the metrics port
	// (TALLY_PPROF). Off by default: profiles show the process's internals.
	Pprof bool
	// ReportParallelism is passed to jobs.GenerateReportWorker: how many
	// ranges of a large scope are read at once; below 1 means one.
	ReportParallelism int
	// ReportSpillDir and ReportSpillMax are passed to
	// jobs.GenerateReportWorker as SpillDir and SpillMax.
	ReportSpillDir string
	ReportSpillMax int64

	// WebhookSealer opens webhook endpoint secrets; nil means one over
	// config.DevelopmentPseudonymKey, with a warning (development only).
	WebhookSealer *webhook.Sealer
	// WebhookGuard decides which addresses webhooks may reach; nil refuses
	// every private, loopback, link-local, multicast and unspecified one.
	WebhookGuard *webhook.Guard
	// WebhookTimeout bounds one webhook request.
	WebhookTimeout time.Duration
	// WebhookConcurrency is MaxWorkers of the "webhooks" queue. Its jobs
	// hold a database connection only around their request, never during it.
	WebhookConcurrency int
	// WebhookRetryBase and WebhookMaxRetryDelay shape the backoff of failed
	// webhook attempts; zero means jobs.WebhookRetryBase and
	// jobs.WebhookMaxRetryDelay. For tests.
	WebhookRetryBase, WebhookMaxRetryDelay time.Duration
	// Plugins are added to the River client, such as tracing
	// (telemetry.RiverPlugins); nil: none.
	Plugins []rivertype.Plugin
}

// OptsFromConfig returns the Opts the environment configures, without the
// dependencies (Pool, Store, Portal, Logger).
func OptsFromConfig(cfg *config.Config) Opts {
	return Opts{
		SmallConcurrency:  cfg.SmallConcurrency,
		LargeConcurrency:  cfg.LargeConcurrency,
		JobTimeout:        cfg.JobTimeout,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		MaxAttempts:       cfg.MaxAttempts,
		FetchPollInterval: cfg.FetchPollInterval,
		// Zero (unset) means JobTimeout + config.RescueMargin.
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		SweepInterval:        cfg.SweepInterval,
		SweepGrace:           cfg.SweepGrace,
		Pprof:                cfg.Pprof,
		ReportParallelism:    cfg.ReportParallelism,
		ReportSpillDir:       cfg.ReportSpillDir,
		ReportSpillMax:       spillMax(cfg.ReportSpillMax),
		ChainInterval:        cfg.ChainInterval,
		WebhookGuard:         &webhook.Guard{AllowPrivate: cfg.WebhookAllowPrivate, Allowed: cfg.WebhookAllowedCIDRs},
		WebhookTimeout:       cfg.WebhookTimeout,
		WebhookConcurrency:   cfg.WebhookConcurrency,
	}
}

func (o *Opts) setDefaults() error {
	if o.Pool == nil || o.Store == nil || o.Portal == nil || o.PseudonymKeys == nil {
		return errors.New("worker: Pool, Store, Portal and PseudonymKeys are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&o.SmallConcurrency, config.DefaultSmallConcurrency)
	setDefault(&o.LargeConcurrency, config.DefaultLargeConcurrency)
	setDefault(&o.JobTimeout, config.DefaultJobTimeout)
	setDefault(&o.ShutdownTimeout, config.DefaultShutdownTimeout)
	setDefault(&o.MaxAttempts, config.DefaultMaxAttempts)
	setDefault(&o.FetchCooldown, DefaultFetchCooldown)
	setDefault(&o.FetchPollInterval, config.DefaultFetchPollInterval)
	setDefault(&o.RescueStuckJobsAfter, o.JobTimeout+config.RescueMargin)
	setDefault(&o.ExpireInterval, DefaultExpireInterval)
	setDefault(&o.SweepInterval, config.DefaultSweepInterval)
	setDefault(&o.SweepGrace, config.DefaultSweepGrace)
	setDefault(&o.CheckpointInterval, DefaultCheckpointInterval)
	setDefault(&o.ChainInterval, config.DefaultChainInterval)
	setDefault(&o.QueueStatsInterval, DefaultQueueStatsInterval)
	setDefault(&o.WebhookTimeout, config.DefaultWebhookTimeout)
	setDefault(&o.WebhookConcurrency, config.DefaultWebhookConcurrency)
	if o.FetchPollInterval < o.FetchCooldown {
		o.FetchPollInterval = o.FetchCooldown
	}
	if o.RescueStuckJobsAfter < o.JobTimeout {
		return fmt.Errorf("worker: RescueStuckJobsAfter (%s) is below JobTimeout (%s)", o.RescueStuckJobsAfter, o.JobTimeout)
	}
	if o.SweepGrace <= o.JobTimeout {
		// A run may commit its file up to JobTimeout after it started.
		return fmt.Errorf("worker: SweepGrace (%s) must exceed JobTimeout (%s)", o.SweepGrace, o.JobTimeout)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Worker is one worker process: a started River client working every job
// kind on the report queues and the maintenance queue.
type Worker struct {
	opts     Opts
	client   *river.Client[pgx.Tx]
	metrics  *Metrics
	logger   *slog.Logger
	stopping atomic.Bool
}

// New builds a Worker and checks that the database answers. It registers
// every job kind, so that this process's rescuer, when it is the leader,
// never discards a kind it does not know.
func New(ctx context.Context, opts Opts) (*Worker, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := opts.Pool.Ping(ctx); err != nil {
		return nil, fmt.Errorf("worker: pinging database: %w", err)
	}
	logger := opts.Logger
	if opts.Keys == nil {
		keys, err := jobs.EphemeralKeys(ctx, logger)
		if err != nil {
			return nil, err
		}
		opts.Keys = keys
	}
	if opts.WebhookSealer == nil {
		logger.WarnContext(ctx, "webhook secrets open with the public development key: set TALLY_PSEUDONYM_KEY outside development")
		sealer, err := webhook.NewSealer([]byte(config.DevelopmentPseudonymKey))
		if err != nil {
			return nil, err
		}
		opts.WebhookSealer = sealer
	}
	queues := []string{jobs.QueueReports, jobs.QueueLarge, jobs.QueueMaint, jobs.QueueWebhooks}
	metrics := NewMetrics(opts.Portal, queues)

	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &jobs.GenerateReportWorker{
		Pool:            opts.Pool,
		Store:           opts.Store,
		Portal:          opts.Portal,
		PseudonymKeys:   opts.PseudonymKeys,
		Logger:          logger,
		JobTimeout:      opts.JobTimeout,
		Metrics:         metrics,
		AfterUploadFunc: opts.AfterUploadFunc,
		MaxSnoozes:      opts.MaxSnoozes,
		Keys:            opts.Keys,
		Parallelism:     opts.ReportParallelism,
		SpillDir:        opts.ReportSpillDir,
		SpillMax:        opts.ReportSpillMax,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering generate_report: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &jobs.ExpireReportsWorker{
		Pool:   opts.Pool,
		Store:  opts.Store,
		Logger: logger,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering expire_reports: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &jobs.SweepObjectsWorker{
		Pool:    opts.Pool,
		Store:   opts.Store,
		Logger:  logger,
		Grace:   opts.SweepGrace,
		Metrics: metrics,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering sweep_objects: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &jobs.CheckpointActivityWorker{
		Pool: opts.Pool, Keys: opts.Keys, Logger: logger,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering checkpoint_activity: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &jobs.ReproduceReportsWorker{
		Pool: opts.Pool, Store: opts.Store, Portal: opts.Portal, PseudonymKeys: opts.PseudonymKeys, Logger: logger, Metrics: metrics,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering reproduce_reports: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &jobs.DeliverWebhookWorker{
		Pool:           opts.Pool,
		Sealer:         opts.WebhookSealer,
		Client:         webhook.NewClient(opts.WebhookGuard, opts.WebhookTimeout),
		RequestTimeout: opts.WebhookTimeout,
		RetryBase:      opts.WebhookRetryBase,
		MaxRetryDelay:  opts.WebhookMaxRetryDelay,
		Logger:         logger,
		Metrics:        metrics,
	}); err != nil {
		return nil, fmt.Errorf("worker: registering deliver_webhook: %w", err)
	}

	client, err := river.NewClient(riverpgxv5.New(opts.Pool), &river.Config{
		ID:     opts.ID,
		Logger: riverLogger(logger),
		Queues: map[string]river.QueueConfig{
			jobs.QueueReports:  {MaxWorkers: opts.SmallConcurrency},
			jobs.QueueLarge:    {MaxWorkers: opts.LargeConcurrency},
			jobs.QueueMaint:    {MaxWorkers: MaintenanceWorkers},
			jobs.QueueWebhooks: {MaxWorkers: opts.WebhookConcurrency},
		},
		Workers:              workers,
		JobTimeout:           opts.JobTimeout,
		RescueStuckJobsAfter: opts.RescueStuckJobsAfter,
		MaxAttempts:          opts.MaxAttempts,
		RetryPolicy:          opts.RetryPolicy,
		FetchCooldown:        opts.FetchCooldown,
		FetchPollInterval:    opts.FetchPollInterval,
		ErrorHandler:         &errorHandler{logger: logger},
		SoftStopTimeout:      opts.ShutdownTimeout,
		PeriodicJobs: []*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(opts.ExpireInterval),
				func() (river.JobArgs, *river.InsertOpts) { return jobs.ExpireReportsArgs{}, nil },
				&river.PeriodicJobOpts{ID: jobs.ExpireReportsArgs{}.Kind(), RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(opts.SweepInterval),
				func() (river.JobArgs, *river.InsertOpts) { return jobs.SweepObjectsArgs{}, nil },
				&river.PeriodicJobOpts{ID: jobs.SweepObjectsArgs{}.Kind()}),
			river.NewPeriodicJob(river.PeriodicInterval(opts.CheckpointInterval),
				func() (river.JobArgs, *river.InsertOpts) { return jobs.CheckpointActivityArgs{}, nil },
				&river.PeriodicJobOpts{ID: jobs.CheckpointActivityArgs{}.Kind(), RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(DefaultReproduceInterval),
				func() (river.JobArgs, *river.InsertOpts) { return jobs.ReproduceReportsArgs{}, nil },
				&river.PeriodicJobOpts{ID: jobs.ReproduceReportsArgs{}.Kind()}),
		},
		Plugins:  opts.Plugins,
		TestOnly: opts.TestOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: creating River client: %w", err)
	}
	return &Worker{opts: opts, client: client, metrics: metrics, logger: logger}, nil
}

// Client returns the River client, for tests and for subscribing to events.
func (w *Worker) Client() *river.Client[pgx.Tx] { return w.client }

// Metrics returns the process's metrics.
func (w *Worker) Metrics() *Metrics { return w.metrics }

// Run works jobs until ctx is done, then stops softly: it stops fetching,
// lets running jobs finish for up to ShutdownTimeout, then cancels their
// contexts so that they return to the queue (as interrupted, not failed) and
// another worker runs them. It returns once the client has stopped.
func (w *Worker) Run(ctx context.Context) error {
	// The client runs on a context of its own, so that shutdown is the
	// explicit sequence below rather than a hard stop on ctx.
	if err := w.client.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("starting River client: %w", err)
	}
	statsCtx, stopStats := context.WithCancel(context.WithoutCancel(ctx))
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		w.refreshQueueStats(statsCtx)
	}()
	chainDone := make(chan struct{})
	go func() {
		defer close(chainDone)
		w.runSequencer(statsCtx)
	}()
	defer func() {
		stopStats()
		<-statsDone
		<-chainDone
	}()
	w.logger.InfoContext(ctx, "worker started",
		slog.Int("reports_concurrency", w.opts.SmallConcurrency),
		slog.Int("reports_large_concurrency", w.opts.LargeConcurrency),
		slog.Int("webhooks_concurrency", w.opts.WebhookConcurrency),
		slog.Duration("job_timeout", w.opts.JobTimeout),
		slog.Duration("rescue_stuck_jobs_after", w.opts.RescueStuckJobsAfter))

	<-ctx.Done()
	w.stopping.Store(true)
	stopCtx := context.WithoutCancel(ctx)
	w.logger.InfoContext(stopCtx, "shutting down: no new jobs, waiting for running ones",
		slog.Duration("shutdown_timeout", w.opts.ShutdownTimeout))

	softCtx, cancel := context.WithTimeout(stopCtx, w.opts.ShutdownTimeout)
	err := w.client.Stop(softCtx)
	cancel()
	if err == nil {
		w.logger.InfoContext(stopCtx, "worker stopped")
		return nil
	}
	w.logger.WarnContext(stopCtx, "jobs still running after the shutdown timeout; cancelling them so that they are retried")
	hardCtx, cancel := context.WithTimeout(stopCtx, config.WorkerStopGrace)
	defer cancel()
	if err := w.client.StopAndCancel(hardCtx); err != nil {
		return fmt.Errorf("stopping River client: jobs did not return after cancellation: %w", err)
	}
	w.logger.InfoContext(stopCtx, "worker stopped")
	return nil
}

func (w *Worker) refreshQueueStats(ctx context.Context) {
	t := time.NewTicker(w.opts.QueueStatsInterval)
	defer t.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := w.metrics.RefreshQueues(qctx, w.opts.Pool)
		cancel()
		if err != nil && ctx.Err() == nil {
			w.logger.WarnContext(ctx, "refreshing queue metrics", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// chainTimeout bounds one pass of the sequencer.
const chainTimeout = time.Minute

// runSequencer appends committed activity events to their organizations'
// chains every ChainInterval (db.ChainPending) and sets the chain lag gauge,
// until ctx is done. Every worker process runs it: the sequencer's
// per-organization lock makes concurrent runs safe.
func (w *Worker) runSequencer(ctx context.Context) {
	t := time.NewTicker(w.opts.ChainInterval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, chainTimeout)
		n, err := db.ChainPending(cctx, w.opts.Pool, db.DefaultChainBatch)
		w.metrics.EventsChained(n)
		var lag time.Duration
		if err == nil {
			if lag, err = db.ChainLag(cctx, w.opts.Pool); err == nil {
				w.metrics.SetChainLag(lag)
			}
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			w.logger.WarnContext(ctx, "chaining activity events", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// errorHandler logs panics, and job errors that the job did not log itself
// (jobs.IsLogged); River then retries or discards the job as usual.
type errorHandler struct{ logger *slog.Logger }

func (h *errorHandler) HandleError(ctx context.Context, job *rivertype.JobRow, err error) *river.ErrorHandlerResult {
	if jobs.IsLogged(err) {
		return nil
	}
	h.logger.WarnContext(ctx, "job failed",
		slog.String("kind", job.Kind), slog.Int64("job_id", job.ID),
		slog.Int("attempt", job.Attempt), slog.Int("max_attempts", job.MaxAttempts),
		slog.String("error", err.Error()))
	return nil
}

func (h *errorHandler) HandlePanic(ctx context.Context, job *rivertype.JobRow, panicVal any, trace string) *river.ErrorHandlerResult {
	h.logger.ErrorContext(ctx, "job panicked",
		slog.String("kind", job.Kind), slog.Int64("job_id", job.ID),
		slog.Int("attempt", job.Attempt), slog.Any("panic", panicVal), slog.String("trace", trace))
	return nil
}

// spillMax is the worker's SpillMax for TALLY_REPORT_SPILL_MAX, where 0
// means no temporary files.
func spillMax(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
