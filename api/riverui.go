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
	g := e.Group(adminPrefix, s.adminAuth, sameOriginWrites())
	g.Any("", h)
	g.Any("/*", h)
}

// sameOriginWrites refuses cross-origin browser requests that could change
// jobs or queues. Browsers attach cached basic-auth credentials to a
// cross-site form POST, and River UI reads JSON whatever the Content-Type
// (its own page posts text/plain), so without this any site an admin visits
// could cancel, retry or delete jobs.
func sameOriginWrites() echo.MiddlewareFunc {
	cop := http.NewCrossOriginProtection()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := cop.Check(c.Request()); err != nil {
				return &Error{Status: http.StatusForbidden, Code: CodePermissionDenied,
					Message: "River UI accepts changes from its own pages only", Err: err}
			}
			return next(c)
		}
	}
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
			return newError(http.StatusUnauthorized, CodeAdminAuthRequired, "admin credentials required")
		}
		return next(c)
	}
}
