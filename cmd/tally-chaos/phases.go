package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// supervise restarts p whenever it exits: at once after a kill by the run,
// after a pause (and recorded as a crash) otherwise. A worker that cannot
// start while MinIO or PostgreSQL is down exits, and is started again.
func (c *chaos) supervise(ctx context.Context, p *proc) {
	for {
		if err := p.waitExit(ctx); err != nil {
			return
		}
		if c.stopping.Load() || ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		killed := c.killedPending[p]
		delete(c.killedPending, p)
		if !killed {
			c.crashes = append(c.crashes, fmt.Sprintf("%s exited at +%s (%v): %s", p.name, c.sinceT0(), p.exitErr(), lastLine(p.logPath)))
		}
		c.mu.Unlock()
		pause := time.Second
		if !killed {
			c.logger.Warn("process exited on its own; restarting it", slog.String("process", p.name),
				slog.Any("exit", p.exitErr()), slog.String("log", p.logPath))
			pause = 2 * time.Second
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pause):
			}
			if c.stopping.Load() {
				return
			}
			if err := p.start(); err != nil {
				c.logger.Error("restarting", slog.String("process", p.name), slog.String("error", err.Error()))
				continue
			}
			c.mu.Lock()
			c.restarts++
			c.mu.Unlock()
			break
		}
	}
}

// chaosPhase creates the reports while killing workers and taking MinIO
// and PostgreSQL away, then waits until every report is terminal.
func (c *chaos) chaosPhase(ctx context.Context) error {
	c.t0 = time.Now()
	deadline := c.t0.Add(c.opts.deadline)
	ctx, cancel := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer cancel()
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var wg sync.WaitGroup

	c.logger.Info("chaos starts",
		slog.Duration("create_over", c.opts.createOver), slog.Duration("kill_for", c.opts.chaosFor),
		slog.String("minio_down", fmt.Sprintf("+%s for %s", c.opts.minioAt, c.opts.minioFor)),
		slog.String("postgres_down", fmt.Sprintf("+%s for %s (%s)", c.opts.pgAt, c.opts.pgFor, c.pgMode)),
		slog.Duration("import_every", c.opts.importEvery), slog.Any("zombie_at", zombieAt(c.opts)))

	// Creations.
	createsDone := make(chan struct{})
	wg.Go(func() {
		defer close(createsDone)
		cctx, ccancel := context.WithDeadline(bg, deadline)
		defer ccancel()
		ids, errs := runCreates(cctx, c.client, c.runID, c.specs, c.opts.createOver, 6, c.logger)
		c.mu.Lock()
		c.ids, c.createErrs = ids, errs
		c.mu.Unlock()
		c.logger.Info("creations done", slog.Duration("at", c.since()))
	})

	// The portal polling the list.
	wg.Go(func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-time.After(2 * time.Second):
			}
			// Not cancelled by the end of the phase: a poll in flight
			// then would be recorded as unanswered.
			lctx, cancel := context.WithTimeout(context.WithoutCancel(bg), 30*time.Second)
			c.client.listReports(lctx)
			cancel()
		}
	})

	// Worker kills.
	wg.Go(func() { c.killWorkers(bg) })

	// MinIO crash, with downloads while it is down.
	wg.Go(func() {
		if !sleepUntil(bg, c.t0.Add(c.opts.minioAt)) {
			return
		}
		c.minioOutage(bg)
	})

	// PostgreSQL outage: a crash of the private cluster, or simulated.
	wg.Go(func() {
		if !sleepUntil(bg, c.t0.Add(c.opts.pgAt)) {
			return
		}
		c.takePostgresDown(bg)
	})

	// Imports into the demo application while reports are created.
	wg.Go(func() { c.runImports(bg, c.t0.Add(c.opts.createOver)) })

	// The zombie phase, once the kills and the outage are over.
	zombieDone := make(chan struct{})
	if c.opts.zombie {
		wg.Go(func() {
			defer close(zombieDone)
			if !sleepUntil(bg, c.t0.Add(c.opts.zombieAt)) {
				return
			}
			c.zombiePhase(bg)
		})
	} else {
		close(zombieDone)
	}

	// Status line every 5 s until every report is terminal.
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopBG()
			wg.Wait()
			return ctx.Err()
		case <-tick.C:
		}
		counts, err := c.statusCounts(ctx)
		c.printStatus(counts, err)
		select {
		case <-createsDone:
		default:
			continue
		}
		select {
		case <-zombieDone:
		default:
			continue
		}
		if time.Since(c.t0) < c.opts.chaosFor || time.Since(c.t0) < c.opts.pgAt+c.opts.pgFor ||
			time.Since(c.t0) < c.opts.minioAt+c.opts.minioFor {
			continue
		}
		if err == nil && counts[db.ReportPending]+counts[db.ReportRunning] == 0 {
			c.logger.Info("every report is terminal", slog.Duration("at", c.since()))
			break
		}
		if time.Now().After(deadline) {
			c.logger.Error("deadline passed with reports not terminal", slog.Any("counts", counts))
			break
		}
	}
	stopBG()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func zombieAt(o options) any {
	if !o.zombie {
		return "off"
	}
	return o.zombieAt
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Until(t)):
		return true
	}
}

// killWorkers sends SIGKILL to a random running worker every few seconds
// for chaosFor; supervise restarts it a second later.
func (c *chaos) killWorkers(ctx context.Context) {
	end := c.t0.Add(c.opts.chaosFor)
	for {
		next := time.Now().Add(c.randDuration(c.opts.killMin, c.opts.killMax))
		if next.After(end) || !sleepUntil(ctx, next) {
			return
		}
		w := c.workers[c.randIntN(len(c.workers))]
		if !w.running() {
			continue
		}
		c.mu.Lock()
		c.killedPending[w] = true
		c.kills++
		n := c.kills
		c.mu.Unlock()
		pid := w.pid()
		if err := w.signal(syscall.SIGKILL); err != nil {
			c.logger.Error("kill -9", slog.String("worker", w.name), slog.String("error", err.Error()))
			continue
		}
		c.logger.Warn("kill -9 worker", slog.String("worker", w.name), slog.Int("pid", pid), slog.Int("kill", n),
			slog.Duration("at", c.since()))
	}
}

// minioOutage crashes MinIO, downloads ready reports through the API while
// it is down, and restarts it on the same port and data directory.
func (c *chaos) minioOutage(ctx context.Context) {
	if err := c.minio.crash(ctx); err != nil {
		c.logger.Error("crashing MinIO", slog.String("error", err.Error()))
		return
	}
	down := time.Now()
	c.mu.Lock()
	c.minioDown = down
	c.mu.Unlock()
	c.logger.Warn("MinIO crashed (SIGKILL)", slog.Duration("at", c.since()), slog.Duration("for", c.opts.minioFor))

	// Downloads while it is down, three at a time. New ones start until the
	// outage time is up; MinIO comes back only once those in flight have
	// their answer, so that every one of them ran against a dead MinIO.
	until := down.Add(c.opts.minioFor)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(until) {
				id, err := c.randomReadyReport(ctx)
				if err != nil {
					sleepUntil(ctx, time.Now().Add(500*time.Millisecond))
					continue
				}
				c.client.download(ctx, "outage_download", id)
				sleepUntil(ctx, time.Now().Add(300*time.Millisecond))
			}
		})
	}
	sleepUntil(ctx, until)
	wg.Wait()
	if err := c.minio.startAndWait(context.WithoutCancel(ctx), 60*time.Second); err != nil {
		c.logger.Error("restarting MinIO", slog.String("error", err.Error()))
		return
	}
	c.mu.Lock()
	c.minioUp = time.Now()
	c.mu.Unlock()
	c.logger.Warn("MinIO back on the same port and data", slog.Duration("at", c.since()),
		slog.Duration("down_for", time.Since(down).Round(100*time.Millisecond)))
}

func (c *chaos) randomReadyReport(ctx context.Context) (string, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var id string
	err := c.pool.QueryRow(qctx, `SELECT id FROM reports WHERE status = 'ready' ORDER BY random() LIMIT 1`).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", errNoReadyReport
	}
	return id, err
}

func (c *chaos) statusCounts(ctx context.Context) (map[string]int, error) {
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := c.pool.Query(qctx, `SELECT status, count(*) FROM reports GROUP BY status`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		counts[s] = n
	}
	return counts, rows.Err()
}

func (c *chaos) printStatus(counts map[string]int, err error) {
	c.mu.Lock()
	kills, restarts := c.kills, c.restarts
	minio := "up"
	if !c.minioDown.IsZero() && c.minioUp.IsZero() {
		minio = "DOWN"
	}
	c.mu.Unlock()
	pg := "up"
	if c.pgDown.Load() {
		pg = "DOWN"
	}
	running := 0
	for _, w := range c.workers {
		if w.running() {
			running++
		}
	}
	attrs := []any{slog.String("t", "+"+c.since().String())}
	if err != nil {
		attrs = append(attrs, slog.String("reports", "unknown (database unavailable)"))
	} else {
		total := 0
		for _, n := range counts {
			total += n
		}
		attrs = append(attrs, slog.Int("created", total), slog.Int("pending", counts[db.ReportPending]),
			slog.Int("running", counts[db.ReportRunning]), slog.Int("ready", counts[db.ReportReady]),
			slog.Int("failed", counts[db.ReportFailed]+counts[db.ReportCanceled]))
	}
	attrs = append(attrs, slog.Int("kills", kills), slog.Int("restarts", restarts),
		slog.String("workers_up", fmt.Sprintf("%d/%d", running, len(c.workers))),
		slog.String("minio", minio), slog.String("postgres", pg))
	c.logger.Info("status", attrs...)
}

func joinOr(s []string, empty string) string {
	if len(s) == 0 {
		return empty
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "; " + x
	}
	return out
}

// lastLine returns the last line of a file, shortened: the error a process
// printed before it exited.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	l := lines[len(lines)-1]
	if len(l) > 240 {
		l = l[:240] + "…"
	}
	return l
}
