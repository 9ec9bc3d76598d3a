package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/riverqueue/river"
	"riverqueue.com/riverui"
)

// adminPrefix is where River UI is served.
const adminPrefix = "/admin/riverui"

func newRiverUI(client *river.Client[pgx.Tx], logger *slog.Logger) (*riverui.Handler, error) {
	h, err := riverui.NewHandler(&riverui.HandlerOpts{
		Endpoints:                riverui.NewEndpoints(client, nil),
		Logger:                   logger.With(slog.String("component", "riverui")),
		Prefix:                   adminPrefix,
		JobListHideArgsByDefault: false, // args hold ids only
	})
	if err != nil {
		return nil, fmt.Errorf("creating River UI: %w", err)
	}
	return h, nil
}

// mountRiverUI serves River UI behind HTTP basic auth. Without admin
// credentials the prefix answers 404, like any unknown path.
func (s *Server) mountRiverUI(e *echo.Echo) {
	if s.riverUI == nil {
		return
	}
	h := echo.WrapHandler(s.riverUI)
	g := e.Group(adminPrefix, s.adminAuth)
	g.Any("", h)
	g.Any("/*", h)
}

// adminAuth checks basic auth credentials in constant time (comparing fixed
// length digests, so neither content nor length leaks through timing).
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	wantUser := sha256.Sum256([]byte(s.adminUser))
	wantPass := sha256.Sum256([]byte(s.adminPassword))
	return func(c echo.Context) error {
		user, pass, ok := c.Request().BasicAuth()
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="tally-admin", charset="UTF-8"`)
			return newError(http.StatusUnauthorized, "admin_auth_required", "admin credentials required")
		}
		return next(c)
	}
}
