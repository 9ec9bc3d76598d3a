package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
)

// Middleware runs in this order (see Server.routes):
//
//	tracing (only when on: tracing.go) →
//	request id → security headers → access log + metrics → recover →
//	admission (fail fast when saturated) → timeout → body limit →
//	authentication → per-route authorization (both in auth.go).

const (
	ctxRequestID = "tally.request_id"
	ctxPrincipal = "tally.principal"
	ctxApp       = "tally.application"
	ctxBase      = "tally.base_context"
	ctxAdmission = "tally.admission_release"
)

// requestIDMiddleware keeps a well-formed X-Request-ID from the client (so a
// portal can trace its own ids into jobs) and generates one otherwise.
func requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = "req_" + hex.EncodeToString(b[:])
		}
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.:", r)) {
			return false
		}
	}
	return true
}

func requestID(c echo.Context) string {
	id, _ := c.Get(ctxRequestID).(string)
	return id
}

// securityHeaders sets headers every API response carries.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.HasPrefix(c.Request().URL.Path, adminPrefix) {
			h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		}
		if c.Request().TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000")
		}
		return next(c)
	}
}

// accessLog logs one line per request and records the latency histogram.
// It never logs headers, so tokens cannot leak into logs.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // writes the response now, so the status below is final
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		elapsed := time.Since(start)
		s.metrics.observeHTTP(c.Request().Method, route, status, elapsed)
		attrs := []slog.Attr{
			slog.String("request_id", requestID(c)),
			slog.String("method", c.Request().Method),
			slog.String("route", route),
			slog.Int("status", status),
			slog.Int64("bytes", c.Response().Size),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
		}
		if p, ok := c.Get(ctxPrincipal).(*db.Principal); ok {
			attrs = append(attrs, slog.String("user_id", p.User.ID))
		}
		level := slog.LevelInfo
		if isProbe(route) {
			level = slog.LevelDebug
		}
		s.logger.LogAttrs(c.Request().Context(), level, "http request", attrs...)
		return nil
	}
}

// recoverMiddleware turns a panic into a 500 and logs the stack.
func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if err, ok := r.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(r)
				}
				s.logger.ErrorContext(c.Request().Context(), "panic in handler",
					slog.String("request_id", requestID(c)), slog.Any("panic", r), slog.String("stack", string(debug.Stack())))
				err = &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "an internal error occurred",
					Err: fmt.Errorf("panic: %v", r)}
			}
		}()
		return next(c)
	}
}

var errBusy = errors.New("api: too many requests in flight")

// admission bounds the requests doing work at once. A request that cannot get
// a slot within wait is answered 503 at once instead of queueing on the
// database pool until its deadline. A download gives its slot back when it
// starts streaming (releaseAdmission): streams have limits of their own
// (downloadlimit.go).
func (s *Server) admission(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.slots == nil || isProbe(c.Request().URL.Path) {
			return next(c)
		}
		t := time.NewTimer(s.admissionWait)
		defer t.Stop()
		select {
		case s.slots <- struct{}{}:
		case <-t.C:
			s.metrics.rejected.Inc()
			return errBusy
		case <-c.Request().Context().Done():
			return c.Request().Context().Err()
		}
		var once sync.Once
		release := func() { once.Do(func() { <-s.slots }) }
		defer release()
		c.Set(ctxAdmission, release)
		return next(c)
	}
}

// releaseAdmission gives back the request's admission slot before the
// request ends: a handler calls it once its remaining work is only
// streaming to the client.
func releaseAdmission(c echo.Context) {
	if release, ok := c.Get(ctxAdmission).(func()); ok {
		release()
	}
}

func isProbe(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// timeout gives every request a deadline of requestTimeout, downloads
// included: their database work is bounded like any request's. Streaming the
// file then runs on streamContext, which only the client's departure or the
// longer downloadTimeout ends.
func (s *Server) timeout(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		base := c.Request().Context()
		c.Set(ctxBase, base)
		ctx, cancel := context.WithTimeout(base, s.requestTimeout)
		defer cancel()
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

// streamContext returns the context for streaming a response body: it ends
// when the client goes away or after downloadTimeout, not at the request
// deadline.
func (s *Server) streamContext(c echo.Context) (context.Context, context.CancelFunc) {
	base, ok := c.Get(ctxBase).(context.Context)
	if !ok {
		base = c.Request().Context()
	}
	return context.WithTimeout(base, s.downloadTimeout)
}

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// bodyLimit rejects bodies over maxBody with 413, by declared length or while reading.
func bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.ContentLength > maxBody {
			return newError(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body exceeds 64 KiB")
		}
		if req.Body != nil {
			req.Body = http.MaxBytesReader(c.Response(), req.Body, maxBody)
		}
		return next(c)
	}
}

func retryAfterSeconds(d time.Duration) string {
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.Itoa(secs)
}
