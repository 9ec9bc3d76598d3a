package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"

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

// Failed admin logins are limited per client address: a burst of
// adminFailureBurst, then one more every 10 seconds. Past that, every request
// from the address answers 429, right credentials included, so that guessing
// cannot go on at more than six passwords a minute.
const (
	adminFailureBurst      = 5
	adminFailuresPerMinute = 6
)

// adminAuth checks basic auth credentials in constant time (comparing fixed
// length digests, so neither content nor length leaks through timing). Wrong
// credentials spend one of the client address's failed-login tokens.
func (s *Server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	wantUser := sha256.Sum256([]byte(s.adminUser))
	wantPass := sha256.Sum256([]byte(s.adminPassword))
	return func(c echo.Context) error {
		addr, now := peerKey(c.Request()), s.now()
		if wait := s.adminFailures.wait(addr, now); wait > 0 {
			return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
				Message: "too many failed admin logins from this address, retry later",
				Headers: map[string]string{"Retry-After": retryAfterSeconds(wait)}}
		}
		user, pass, ok := c.Request().BasicAuth()
		gotUser := sha256.Sum256([]byte(user))
		gotPass := sha256.Sum256([]byte(pass))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			if ok {
				// Only a credential tried counts: a browser's first request,
				// without one, is how it learns to ask.
				s.adminFailures.spend(addr, now)
			}
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="tally-admin", charset="UTF-8"`)
			return newError(http.StatusUnauthorized, CodeAdminAuthRequired, "admin credentials required")
		}
		return next(c)
	}
}

// peerKey is the key of the request's peer for per-address limits: its IP
// (never a forwarded header, which the client writes), an IPv6 peer by its
// /64, which one client usually holds whole.
func peerKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
