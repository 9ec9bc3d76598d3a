// Package api is Tally's HTTP API: the Echo application with its middleware,
// the report endpoints of the portal, River UI for admins, health and
// metrics. Handlers are thin: they bind and validate one request, call the
// db, jobs and storage packages, and answer through one error handler.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/telemetry"
	"github.com/tally-compliance/tally/storage"
)

// Opts are the dependencies and settings of a Server.
type Opts struct {
	Pool   *pgxpool.Pool
	River  *river.Client[pgx.Tx] // insert-only client
	Store  *storage.Store
	Portal *config.Portal
	Logger *slog.Logger

	// AdminUser and AdminPassword protect River UI; empty turns it off (404).
	AdminUser     string
	AdminPassword string
	// SeparateAdmin serves River UI and /metrics on AdminHandler only: the
	// public handler then answers 404 for them.
	SeparateAdmin bool

	RequestTimeout  time.Duration // default 30s
	DownloadTimeout time.Duration // default 1h
	// MaxInFlight bounds concurrent requests doing work; 0 means 4 per
	// database connection. AdmissionWait is how long a request waits for a
	// slot before a 503 (default 1s).
	MaxInFlight   int
	AdmissionWait time.Duration
	// DownloadsPerUser and DownloadsPerOrg bound the downloads streaming at
	// once for one user and for one organization (defaults 4 and 32);
	// beyond them a download answers 429 too_many_downloads.
	DownloadsPerUser int
	DownloadsPerOrg  int
	// A download whose client takes longer than DownloadStallTimeout
	// (default 30s) to accept DownloadMinRate × DownloadStallTimeout bytes
	// (default 1 KiB/s) is cut off.
	DownloadMinRate      int64
	DownloadStallTimeout time.Duration
	// WaitsPerUser bounds the requests of one user waiting at once with
	// Prefer: wait (default 20); beyond, 429 too_many_waits.
	WaitsPerUser int
	// CreatePerMinute is each user's report-creation rate (default 60, burst 20).
	CreatePerMinute float64
	// MaxAttempts is each report job's attempt budget, fixed at insert
	// (default 5).
	MaxAttempts int
	// LargeReportRows routes reports with more estimated rows to the large queue.
	LargeReportRows int64
	// TrustedProxies are the peers whose X-Forwarded-For names the client
	// address recorded in activity events; empty: the peer is the client.
	TrustedProxies []netip.Prefix
	// Registry receives the API's metrics; nil means a new registry.
	Registry *prometheus.Registry
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time
	// Telemetry traces requests (tracing.go); nil: tracing off, no middleware.
	Telemetry *telemetry.Telemetry
}

// Server is the API.
type Server struct {
	echo            *echo.Echo
	pool            *pgxpool.Pool
	river           *river.Client[pgx.Tx]
	store           *storage.Store
	portal          *config.Portal
	logger          *slog.Logger
	metrics         *metrics
	registry        *prometheus.Registry
	limiter         *keyedLimiter
	adminFailures   *keyedLimiter
	downloads       *slotLimiter
	minRate         int64
	stallTimeout    time.Duration
	slots           chan struct{}
	admissionWait   time.Duration
	requestTimeout  time.Duration
	downloadTimeout time.Duration
	largeRows       int64
	maxAttempts     int
	adminUser       string
	adminPassword   string
	separateAdmin   bool
	riverUI         http.Handler
	trustedProxies  []netip.Prefix
	admin           *echo.Echo
	now             func() time.Time
	watcher         *db.Watcher
	waits           *slotLimiter // per user, waitsPerUser each
	waitsPerUser    int
	stopping        chan struct{}
	stopOnce        sync.Once
	telemetry       *telemetry.Telemetry
}

// New builds the API. Start must be called before serving when River UI is on.
func New(opts Opts) (*Server, error) {
	if opts.Pool == nil || opts.River == nil || opts.Store == nil || opts.Portal == nil {
		return nil, fmt.Errorf("api: Pool, River, Store and Portal are required")
	}
	s := &Server{
		pool: opts.Pool, river: opts.River, store: opts.Store, portal: opts.Portal, logger: opts.Logger,
		requestTimeout: opts.RequestTimeout, downloadTimeout: opts.DownloadTimeout,
		admissionWait: opts.AdmissionWait, largeRows: opts.LargeReportRows, maxAttempts: opts.MaxAttempts,
		trustedProxies: opts.TrustedProxies, adminUser: opts.AdminUser, adminPassword: opts.AdminPassword,
		separateAdmin: opts.SeparateAdmin,
		registry:      opts.Registry, now: opts.NowFunc, minRate: opts.DownloadMinRate, stallTimeout: opts.DownloadStallTimeout,
		telemetry: opts.Telemetry,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if s.requestTimeout <= 0 {
		s.requestTimeout = config.DefaultRequestTimeout
	}
	if s.downloadTimeout <= 0 {
		s.downloadTimeout = time.Hour
	}
	if s.admissionWait <= 0 {
		s.admissionWait = time.Second
	}
	if s.largeRows <= 0 {
		s.largeRows = config.DefaultLargeReportRows
	}
	if s.maxAttempts <= 0 {
		s.maxAttempts = config.DefaultMaxAttempts
	}
	if s.minRate <= 0 {
		s.minRate = config.DefaultDownloadMinRate
	}
	if s.stallTimeout <= 0 {
		s.stallTimeout = config.DefaultDownloadStallTimeout
	}
	perUser, perOrg := opts.DownloadsPerUser, opts.DownloadsPerOrg
	if perUser <= 0 {
		perUser = config.DefaultDownloadsPerUser
	}
	if perOrg <= 0 {
		perOrg = config.DefaultDownloadsPerOrg
	}
	s.downloads = newDownloadLimiter(perUser, perOrg)
	s.waitsPerUser = opts.WaitsPerUser
	if s.waitsPerUser <= 0 {
		s.waitsPerUser = config.DefaultWaitsPerUser
	}
	s.waits = newSlotLimiter(slotDim{name: "user", limit: s.waitsPerUser})
	s.stopping = make(chan struct{})
	s.watcher = db.NewWatcher(opts.Pool.Config().ConnConfig, &db.WatcherOpts{Logger: s.logger})
	if s.now == nil {
		s.now = time.Now
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	maxInFlight := opts.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = 4 * int(opts.Pool.Config().MaxConns)
	}
	if maxInFlight > 0 {
		s.slots = make(chan struct{}, maxInFlight)
	}
	perMinute := opts.CreatePerMinute
	if perMinute <= 0 {
		perMinute = config.DefaultCreateRatePerMinute
	}
	s.limiter = newKeyedLimiter(perMinute, 20)
	s.adminFailures = newKeyedLimiter(adminFailuresPerMinute, adminFailureBurst)
	s.metrics = newMetrics(s.registry)
	s.registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tally_report_status_listener_up",
			Help: "1 while the connection that LISTENs for report status changes (Prefer: wait) is listening.",
		}, func() float64 {
			if s.watcher.Status().Listening {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tally_report_status_listener_connects_total",
			Help: "Connections made by the report status listener; more than one means it reconnected.",
		}, func() float64 { return float64(s.watcher.Status().Connects) }),
	)
	if s.adminUser != "" && s.adminPassword != "" {
		h, err := newRiverUI(opts.River, s.logger)
		if err != nil {
			return nil, err
		}
		s.riverUI = h
	}
	s.echo = s.routes()
	s.admin = s.adminRoutes()
	return s, nil
}

// Start runs the API's background work until ctx ends: the listener that
// wakes requests waiting for a report's status (Prefer: wait), and River
// UI's.
func (s *Server) Start(ctx context.Context) error {
	go func() { _ = s.watcher.Run(ctx) }()
	if h, ok := s.riverUI.(interface{ Start(context.Context) error }); ok {
		return h.Start(ctx)
	}
	return nil
}

// StopWaiting ends every request waiting for a report's status change: each
// answers at once with the report as it is, and later ones do not wait.
// Register it with http.Server.RegisterOnShutdown, so that a graceful
// shutdown does not wait for them.
func (s *Server) StopWaiting() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// WatcherStatus reports the state of the listener behind Prefer: wait.
func (s *Server) WatcherStatus() db.WatcherStatus { return s.watcher.Status() }

// ServeHTTP makes the Server an http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.echo.ServeHTTP(w, r) }

// AdminHandler serves River UI and /metrics, for a listener kept off the
// portal's network. The public handler serves them too unless
// Opts.SeparateAdmin is set.
func (s *Server) AdminHandler() http.Handler { return s.admin }

// Registry returns the Prometheus registry holding the API's metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// HTTPServer returns an http.Server for the API with timeouts that bound slow
// clients without cutting long downloads.
func (s *Server) HTTPServer(addr string) *http.Server {
	return s.httpServer(addr, s)
}

// AdminHTTPServer returns an http.Server for AdminHandler.
func (s *Server) AdminHTTPServer(addr string) *http.Server {
	return s.httpServer(addr, s.admin)
}

func (s *Server) httpServer(addr string, h http.Handler) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(s.StopWaiting)
	return hs
}
