package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// checkTimeout bounds each readiness check.
const checkTimeout = 2 * time.Second

// Check is the result of one readiness check.
type Check struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Readiness is the body of /readyz.
type Readiness struct {
	Status string  `json:"status"` // "ready" or "unavailable"
	Checks []Check `json:"checks"`
}

// Handler serves the worker's operational endpoints:
//
//	GET /metrics  Prometheus metrics of this process
//	GET /healthz  200 while the process runs
//	GET /readyz   200 when PostgreSQL answers and the bucket exists, 503
//	              otherwise or once shutdown has started; a JSON body lists
//	              each check
func (w *Worker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(w.metrics.Registry(), promhttp.HandlerOpts{
		Registry:          w.metrics.Registry(),
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, r *http.Request) {
		res := w.Ready(r.Context())
		status := http.StatusOK
		if res.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		writeJSON(rw, status, res)
	})
	return mux
}

// Ready runs the readiness checks concurrently.
func (w *Worker) Ready(ctx context.Context) Readiness {
	checks := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"database", w.opts.Pool.Ping},
		{"storage", w.opts.Store.Ping},
	}
	res := Readiness{Status: "ready", Checks: make([]Check, len(checks))}
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			res.Checks[i] = Check{Name: c.name, OK: true}
			if err := c.fn(cctx); err != nil {
				res.Checks[i] = Check{Name: c.name, Error: err.Error()}
			}
		})
	}
	wg.Wait()
	if w.stopping.Load() {
		res.Checks = append(res.Checks, Check{Name: "shutdown", Error: "the worker is shutting down"})
	}
	for _, c := range res.Checks {
		if !c.OK {
			res.Status = "unavailable"
		}
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
