package api

import (
	"context"
	_ "embed"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
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

// Check is one dependency's state in /readyz.
type Check struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// readyz answers 200 when PostgreSQL and the object store are reachable.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	checks := map[string]Check{"postgres": {Status: "ok"}, "object_store": {Status: "ok"}}
	status := http.StatusOK
	if err := s.pool.Ping(ctx); err != nil {
		checks["postgres"] = Check{Status: "unavailable", Error: "ping failed"}
		status = http.StatusServiceUnavailable
	}
	if err := s.store.Ping(ctx); err != nil {
		checks["object_store"] = Check{Status: "unavailable", Error: "bucket check failed"}
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, map[string]any{"status": map[bool]string{true: "ok", false: "unavailable"}[status == http.StatusOK], "checks": checks})
}
