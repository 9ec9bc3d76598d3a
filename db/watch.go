package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// ReportStatusChannel is the notification channel on which the trigger of
// migration 00010 announces every change of a report's status, with the
// report's id as payload, when the changing transaction commits.
const ReportStatusChannel = "tally_report_status"

// WatcherApplicationName is the application_name of a Watcher's
// connection in pg_stat_activity.
const WatcherApplicationName = "tally-report-watch"

// WatcherOpts tune a Watcher. A nil *WatcherOpts keeps the defaults.
type WatcherOpts struct {
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts (defaults 100 ms and 5 s), doubling from one to the other.
	MinBackoff, MaxBackoff time.Duration
	// HealthInterval is how long the connection may stay silent before it
	// is pinged (default 30 s), so that a dead network is noticed.
	HealthInterval time.Duration
}

// Watcher tells waiting goroutines when a report's status changed. It
// LISTENs on ReportStatusChannel on one connection of its own, reconnecting
// with backoff when the connection is lost, and fans each notification out
// in memory to the subscriptions of that report. A subscription fires once:
// on a notification for its report, or when the watcher (re)connects, since
// notifications sent while it was disconnected are lost; either way the
// subscriber re-reads the report.
//
// The order that never misses a change is: Subscribe, read the report, then
// wait on the subscription.
type Watcher struct {
	config *pgx.ConnConfig
	logger *slog.Logger
	minBackoff, maxBackoff,
	health time.Duration

	mu          sync.Mutex
	subs        map[string]map[*Subscription]struct{}
	connects    int
	listening   bool
	listenerPID uint32
}

// Subscription is one wait for a change of one report.
type Subscription struct {
	w        *Watcher
	reportID string
	c        chan struct{}
}

// C is closed when the report's status may have changed.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Close ends the subscription; it is safe to call more than once and after
// it fired.
func (s *Subscription) Close() {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if m := s.w.subs[s.reportID]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(s.w.subs, s.reportID)
		}
	}
}

// NewWatcher returns a watcher that connects with a copy of config. It does
// nothing until Run.
func NewWatcher(config *pgx.ConnConfig, opts *WatcherOpts) *Watcher {
	if opts == nil {
		opts = &WatcherOpts{}
	}
	cfg := config.Copy()
	cfg.RuntimeParams["application_name"] = WatcherApplicationName
	// A deadline on the socket, not a cancel request to the server, ends
	// WaitForNotification at each health interval: the connection stays
	// usable.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	w := &Watcher{config: cfg, logger: opts.Logger, minBackoff: opts.MinBackoff, maxBackoff: opts.MaxBackoff,
		health: opts.HealthInterval, subs: map[string]map[*Subscription]struct{}{}}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	if w.minBackoff <= 0 {
		w.minBackoff = 100 * time.Millisecond
	}
	if w.maxBackoff < w.minBackoff {
		w.maxBackoff = max(5*time.Second, w.minBackoff)
	}
	if w.health <= 0 {
		w.health = 30 * time.Second
	}
	return w
}

// Subscribe starts waiting for a change of the report's status.
func (w *Watcher) Subscribe(reportID string) *Subscription {
	s := &Subscription{w: w, reportID: reportID, c: make(chan struct{})}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.subs[reportID]
	if m == nil {
		m = map[*Subscription]struct{}{}
		w.subs[reportID] = m
	}
	m[s] = struct{}{}
	return s
}

// WatcherStatus describes a watcher's connection, for health and tests.
type WatcherStatus struct {
	Listening bool   // LISTEN is in effect now
	Connects  int    // successful connections since Run started
	PID       uint32 // the listening backend's process id
	Waiting   int    // open subscriptions
}

// Status returns the watcher's state now.
func (w *Watcher) Status() WatcherStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.subs {
		n += len(m)
	}
	return WatcherStatus{Listening: w.listening, Connects: w.connects, PID: w.listenerPID, Waiting: n}
}

// Run listens until ctx ends, reconnecting with backoff. It always returns
// ctx's error.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := w.minBackoff
	for {
		before := w.Status().Connects
		err := w.listen(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if w.Status().Connects > before {
			backoff = w.minBackoff // it had been listening: retry soon
		}
		w.logger.WarnContext(ctx, "report status listener disconnected, reconnecting",
			slog.String("error", err.Error()), slog.Duration("backoff", backoff))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, w.maxBackoff)
	}
}

// listen connects, LISTENs, wakes every subscription (whatever was sent
// while no connection listened is lost) and dispatches notifications until
// the connection fails or ctx ends.
func (w *Watcher) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, w.config)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		w.mu.Lock()
		w.listening = false
		w.mu.Unlock()
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+ReportStatusChannel); err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	w.mu.Lock()
	w.listening = true
	w.connects++
	w.listenerPID = conn.PgConn().PID()
	subs := w.subs
	w.subs = map[string]map[*Subscription]struct{}{}
	w.mu.Unlock()
	for _, m := range subs {
		for s := range m {
			close(s.c)
		}
	}
	w.logger.InfoContext(ctx, "listening for report status changes", slog.Int("pid", int(conn.PgConn().PID())))

	for {
		waitCtx, cancel := context.WithTimeout(ctx, w.health)
		n, err := conn.WaitForNotification(waitCtx)
		cancel()
		switch {
		case err == nil:
			w.notify(n.Payload)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("pinging: %w", err)
			}
		default:
			return fmt.Errorf("waiting for notifications: %w", err)
		}
	}
}

// notify fires the subscriptions of a report.
func (w *Watcher) notify(reportID string) {
	w.mu.Lock()
	m := w.subs[reportID]
	delete(w.subs, reportID)
	w.mu.Unlock()
	for s := range m {
		close(s.c)
	}
}
