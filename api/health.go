package api

import (
	"context"
	_ "embed"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/internal/health"
)

//go:embed openapi.yaml
var openAPISpec []byte

// OpenAPISpec returns the API's OpenAPI document.
func OpenAPISpec() []byte { return openAPISpec }

func (s *Server) openAPI(c echo.Context) error {
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.Blob(http.StatusOK, "application/yaml", openAPISpec)
}

// healthz answers while the process is alive.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyTimeout bounds each readiness check.
const readyTimeout = 3 * time.Second

// readyz answers 200 when PostgreSQL and the object store are reachable, in
// the shape the worker's /readyz shares (internal/health). A failed check
// says what failed, never why: the answer is public.
func (s *Server) readyz(c echo.Context) error {
	r := health.Run(c.Request().Context(), readyTimeout, map[string]health.Probe{
		health.Postgres: func(ctx context.Context) error {
			if s.pool.Ping(ctx) != nil {
				return errors.New("ping failed")
			}
			return nil
		},
		health.ObjectStore: func(ctx context.Context) error {
			if s.store.Ping(ctx) != nil {
				return errors.New("bucket check failed")
			}
			return nil
		},
	})
	status := http.StatusOK
	if !r.OK() {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, r)
}
