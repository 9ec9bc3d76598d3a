package api

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
)

// Downloads stream for as long as their client reads, so they live outside
// request admission (see stream) under limits of their own: a number of
// streams per user and per organization, and a minimum rate below which a
// client is cut off. Without them one user opening many slow downloads would
// hold every admission slot and have the API refuse everyone else.

// downloadRetryAfter is the Retry-After of 429 too_many_downloads: a guess,
// since nobody knows when a running stream ends.
const downloadRetryAfter = "5"

// slotLimiter caps how many requests hold a slot at once, per key, along one
// or more dimensions (downloads: per user and per organization; waits: per
// user). A slot is taken in every dimension or in none.
type slotLimiter struct {
	mu   sync.Mutex
	dims []slotDim
}

// slotDim is one dimension of a slotLimiter: its name (said in the 429), its
// cap per key, and the slots each key holds.
type slotDim struct {
	name  string
	limit int
	held  map[string]int
}

func newSlotLimiter(dims ...slotDim) *slotLimiter {
	for i := range dims {
		dims[i].held = map[string]int{}
	}
	return &slotLimiter{dims: dims}
}

// acquire takes a slot of keys[i] in dimension i, for every dimension. It
// returns the function giving them back (once), or the name of the first
// dimension that is full.
func (l *slotLimiter) acquire(keys ...string) (release func(), full string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, d := range l.dims {
		if d.held[keys[i]] >= d.limit {
			return nil, d.name
		}
	}
	for i, d := range l.dims {
		d.held[keys[i]]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			for i, d := range l.dims {
				if d.held[keys[i]]--; d.held[keys[i]] <= 0 {
					delete(d.held, keys[i])
				}
			}
		})
	}, ""
}

// newDownloadLimiter counts the downloads streaming at once per user and per
// organization.
func newDownloadLimiter(perUser, perOrg int) *slotLimiter {
	return newSlotLimiter(slotDim{name: "user", limit: perUser}, slotDim{name: "organization", limit: perOrg})
}

// admitDownload takes a stream slot for a GET download of p, or answers 429
// too_many_downloads with Retry-After. HEAD streams nothing and takes none.
// The returned function gives the slot back.
func (s *Server) admitDownload(c echo.Context, p *db.Principal) (func(), error) {
	if c.Request().Method != http.MethodGet {
		return func() {}, nil
	}
	release, full := s.downloads.acquire(p.User.ID, p.Organization.ID)
	if release == nil {
		s.metrics.downloadsRefused.WithLabelValues(full).Inc()
		return nil, &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyDownloads,
			Message: "too many downloads in progress for this " + full + "; retry when one has finished",
			Headers: map[string]string{"Retry-After": downloadRetryAfter}, Details: map[string]any{"limit": full}}
	}
	s.metrics.downloadsActive.Inc()
	return func() {
		release()
		s.metrics.downloadsActive.Dec()
	}, nil
}

// stream copies body to the response. It first gives back the request's
// admission slot: from here on the request does no database work, and it
// may last as long as the client reads. Each piece of at most minRate ×
// stallTimeout bytes must reach the connection within stallTimeout, so a
// client reading slower than minRate is cut off, while one reading faster
// extends the deadline with every piece.
func (s *Server) stream(c echo.Context, body io.Reader) (int64, error) {
	releaseAdmission(c)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)

	var dst io.Writer = c.Response()
	rc := http.NewResponseController(c.Response().Writer)
	if err := rc.SetWriteDeadline(time.Now().Add(s.stallTimeout)); err == nil {
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }() // the connection may serve another request
		piece := int(min(float64(s.minRate)*s.stallTimeout.Seconds(), float64(len(*buf))))
		dst = &deadlineWriter{w: c.Response(), rc: rc, piece: max(piece, 512), timeout: s.stallTimeout}
	}
	n, err := io.CopyBuffer(dst, body, *buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.metrics.downloadsStalled.Inc()
		s.logger.InfoContext(c.Request().Context(), "download client too slow, disconnected",
			slog.String("request_id", requestID(c)), slog.Int64("sent", n),
			slog.Int64("min_rate", s.minRate), slog.Duration("stall_timeout", s.stallTimeout))
	}
	return n, err
}

// deadlineWriter writes in pieces, each written and flushed to the
// connection under a write deadline of timeout from its start.
type deadlineWriter struct {
	w       io.Writer
	rc      *http.ResponseController
	piece   int
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), d.piece)
		if err := d.rc.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil {
			return written, err
		}
		m, err := d.w.Write(p[:n])
		written += m
		if err == nil {
			err = d.rc.Flush()
		}
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}
