package api

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

func TestRequestIDKeepsValidAndReplacesHostile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		keep bool
	}{
		{"portal-123_abc.def:9", true},
		{"", false},
		{"bad id with spaces", false},
		{"evil\r\nSet-Cookie: x", false},
		{strings.Repeat("a", 129), false},
		{"ünïcode", false},
	}
	for _, tt := range tests {
		e := echo.New()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header[echo.HeaderXRequestID] = []string{tt.in}
		rec := httptest.NewRecorder()
		c := e.NewContext(req, rec)
		var seen string
		_ = requestIDMiddleware(func(c echo.Context) error { seen = requestID(c); return nil })(c)
		if got := rec.Header().Get(echo.HeaderXRequestID); got != seen || seen == "" {
			t.Fatalf("%q: header %q, context %q", tt.in, got, seen)
		}
		if (seen == tt.in) != tt.keep {
			t.Errorf("X-Request-ID %q: got %q, keep=%v", tt.in, seen, tt.keep)
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	t.Parallel()
	e := echo.New()
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/x", nil), rec)
	_ = securityHeaders(func(c echo.Context) error { return c.NoContent(204) })(c)
	for _, h := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy", "Content-Security-Policy"} {
		if rec.Header().Get(h) == "" {
			t.Errorf("missing %s", h)
		}
	}
}

func TestBodyLimit413(t *testing.T) {
	t.Parallel()
	e := echo.New()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", maxBody+1)))
	c := e.NewContext(req, httptest.NewRecorder())
	err := bodyLimit(func(c echo.Context) error { return nil })(c)
	if e, ok := err.(*Error); !ok || e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("got %v, want 413", err)
	}
}

// TestAdmission503WhenSaturated: with every slot held, a request is turned
// away with errBusy after the admission wait, not queued until its deadline.
func TestAdmission503WhenSaturated(t *testing.T) {
	t.Parallel()
	s := &Server{slots: make(chan struct{}, 1), admissionWait: 50 * time.Millisecond, metrics: newTestMetrics()}
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	held := make(chan struct{})
	go func() {
		defer wg.Done()
		e := echo.New()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/reports", nil), httptest.NewRecorder())
		_ = s.admission(func(c echo.Context) error { close(held); <-release; return nil })(c)
	}()
	<-held
	e := echo.New()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/reports", nil), httptest.NewRecorder())
	start := time.Now()
	err := s.admission(func(c echo.Context) error { return nil })(c)
	if err != errBusy {
		t.Fatalf("got %v, want errBusy", err)
	}
	if ae := toError(err); ae.Status != http.StatusServiceUnavailable || ae.Headers["Retry-After"] == "" {
		t.Fatalf("errBusy maps to %d %v, want 503 with Retry-After", ae.Status, ae.Headers)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("waited %v before refusing", waited)
	}
	// Probes are never refused.
	c = e.NewContext(httptest.NewRequest(http.MethodGet, "/healthz", nil), httptest.NewRecorder())
	if err := s.admission(func(c echo.Context) error { return nil })(c); err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	close(release)
	wg.Wait()
}

// TestAdmissionReleasedEarly: a request that gives its slot back (a
// download starting to stream) lets another in while it still runs, and its
// slot is given back once only.
func TestAdmissionReleasedEarly(t *testing.T) {
	t.Parallel()
	s := &Server{slots: make(chan struct{}, 1), admissionWait: 50 * time.Millisecond, metrics: newTestMetrics()}
	e := echo.New()
	serve := func(h echo.HandlerFunc) error {
		c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/reports", nil), httptest.NewRecorder())
		return s.admission(h)(c)
	}
	err := serve(func(c echo.Context) error {
		releaseAdmission(c)
		releaseAdmission(c)
		if err := serve(func(echo.Context) error { return nil }); err != nil {
			t.Errorf("while the first streams: got %v, want admitted", err)
		}
		s.slots <- struct{}{} // someone else takes the freed slot
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first request's end gave nothing back twice: the slot stays taken.
	if got := len(s.slots); got != 1 {
		t.Fatalf("slots taken after the request: got %d, want 1 (the other holder's)", got)
	}
}

func TestTimeoutSetsDeadline(t *testing.T) {
	t.Parallel()
	s := &Server{requestTimeout: time.Second, downloadTimeout: time.Hour}
	for _, path := range []string{"/api/reports", "/api/reports/x/download"} {
		e := echo.New()
		c := e.NewContext(httptest.NewRequest(http.MethodGet, path, nil), httptest.NewRecorder())
		_ = s.timeout(func(c echo.Context) error {
			dl, ok := c.Request().Context().Deadline()
			if !ok || time.Until(dl) > time.Second {
				t.Errorf("%s: request deadline in %v, want at most 1s", path, time.Until(dl))
			}
			// Streaming outlives the request deadline, bounded by downloadTimeout.
			sc, cancel := s.streamContext(c)
			defer cancel()
			sdl, ok := sc.Deadline()
			if !ok || time.Until(sdl) < 59*time.Minute {
				t.Errorf("%s: stream deadline in %v, want about 1h", path, time.Until(sdl))
			}
			return nil
		})(c)
	}
}

// TestClientGone499: a request whose client left is recorded as 499, not 500.
func TestClientGone499(t *testing.T) {
	t.Parallel()
	s := &Server{requestTimeout: time.Second, logger: slog.New(slog.DiscardHandler)}
	e := echo.New()
	base, cancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	c := e.NewContext(httptest.NewRequest(http.MethodGet, "/api/reports", nil).WithContext(base), rec)
	err := s.timeout(func(c echo.Context) error {
		cancel() // the client disconnects mid-request
		<-c.Request().Context().Done()
		return c.Request().Context().Err()
	})(c)
	s.handleError(err, c)
	if rec.Code != statusClientClosed {
		t.Fatalf("status %d, want 499", rec.Code)
	}
}

func newTestMetrics() *metrics { return newMetrics(prometheus.NewRegistry()) }
