package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tally-compliance/tally/internal/health"
)

// checkTimeout bounds each readiness check.
const checkTimeout = 2 * time.Second

// Handler serves the worker's operational endpoints:
//
//	GET /metrics  Prometheus metrics of this process
//	GET /healthz  200 while the process runs
//	GET /debug/pprof/...  net/http/pprof, only with Opts.Pprof (TALLY_PPROF=true)
//	GET /readyz   200 when PostgreSQL answers and the bucket exists, 503
//	              otherwise or once shutdown has started; the JSON body
//	              (internal/health, the API's shape) gives each check
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.metrics.Registry(), promhttp.HandlerOpts{
		Registry:          w.metrics.Registry(),
		EnableOpenMetrics: false,
	}))
	if w.opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		res := w.Ready(r.Context())
		status := http.StatusOK
		if !res.OK() {
			status = http.StatusServiceUnavailable
		}
		writeJSON(rw, status, res)
	})
	return mux
}

// Ready runs the readiness checks concurrently. This port is internal, so a
// failed check shows its error; once shutdown has started a "shutdown" check
// fails too, so that a load balancer stops counting on this process.
func (w *Worker) Ready(ctx context.Context) health.Report {
	res := health.Run(ctx, checkTimeout, map[string]health.Probe{
		health.Postgres:    w.opts.Pool.Ping,
		health.ObjectStore: w.opts.Store.Ping,
	})
	if w.stopping.Load() {
		res.Set("shutdown", errors.New("the worker is shutting down"))
	}
	return res
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}

// ListenAndServe serves Handler on addr (such as ":9090") until ctx is done,
// then shuts the server down gracefully.
func (w *Worker) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return w.Serve(ctx, ln)
}

// Serve serves Handler on ln until ctx is done.
func (w *Worker) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           w.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(w.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	w.logger.InfoContext(ctx, "serving metrics and health", slog.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("serving metrics: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down metrics server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return nil
}
