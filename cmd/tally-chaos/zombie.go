package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// zombieResult describes the zombie phase: a worker paused with SIGSTOP
// while it holds a job, past the rescue deadline, then resumed.
type zombieResult struct {
	ran       bool
	err       error
	created   int // reports created to give the zombie a job
	tries     int // SIGSTOPs until one caught it holding a job
	jobID     int64
	attempt   int
	reportID  string
	stopped   time.Time
	rescued   time.Time // first seen no longer running this attempt
	otherDone time.Time // first seen completed by a later attempt
	resumed   time.Time
	settled   time.Time // the zombie's run ended
	said      []string  // what the zombie logged about the job after resuming
	stop      string    // how the zombie worker ended
	finalJob  string    // the job's state and attempt at the end of the phase
	sawLeader bool      // a leader was elected before the zombie started
	leaderErr error     // reading river_leader
	leaderFor time.Duration
}

// zombieEnd are the messages with which a report job's run ends.
var zombieEnd = map[string]bool{
	"report ready": true,
	"report was finished by another run; nothing to do":     true,
	"report generation failed; River will retry":            true,
	"report generation interrupted; the job will run again": true,
	"job was taken from this run; leaving the report alone": true,
	"report generation failed for good":                     true,
	"report already finished; nothing to do":                true,
	"deleted the file of a run that did not commit":         true,
}

// zombiePhase starts a third worker whose job timeout (zombieTimeout) is
// longer than the pause, so that its run is still alive when it resumes,
// as a process paused by the kernel, a VM migration or a stalled network
// would be. The phase gives it jobs (bursts of medium reports, more than
// the other workers' free slots) until it logs "generating report", pauses
// it with SIGSTOP at once and checks that the job is still running that
// attempt. It stays paused past the rescue deadline (rescue-after) until
// the job is rescued and completed by another worker (at most
// rescue-after + 90 s), then resumes with SIGCONT: the zombie's run and the
// rescued run have both built the file, and the zombie now uploads and
// tries to finish. The zombie's rescue-after equals its job timeout
// (tally-worker refuses less), so it must never lead River while other
// workers' jobs may be stuck: it starts once the kills and the PostgreSQL
// outage are over, after a leader is elected, and stops at the end of the
// phase.
func (c *chaos) zombiePhase(ctx context.Context) {
	res := &zombieResult{ran: true}
	defer func() {
		c.mu.Lock()
		c.zombieRes = *res
		c.mu.Unlock()
	}()
	set := func(err error) {
		res.err = err
		if err != nil {
			c.logger.Error("zombie phase", slog.String("error", err.Error()))
		}
	}
	t := time.Now()
	for time.Since(t) < 30*time.Second {
		var n int
		err := c.pool.QueryRow(ctx, `SELECT count(*) FROM river_leader WHERE expires_at > now()`).Scan(&n)
		res.leaderErr = err
		if err == nil && n > 0 {
			res.sawLeader = true
			break
		}
		if !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
			return
		}
	}
	res.leaderFor = time.Since(t)

	w, readyURL, err := c.newWorker("worker-zombie", 1, c.opts.zombieTimeout, c.opts.zombieTimeout)
	if err != nil {
		set(err)
		return
	}
	if err := w.start(); err != nil {
		set(err)
		return
	}
	c.mu.Lock()
	c.zombie = w
	c.mu.Unlock()
	defer func() {
		_ = w.signal(syscall.SIGCONT)
		clean := w.stop(20 * time.Second)
		switch {
		case !clean:
			res.stop = "SIGKILL after 20 s"
		case w.exitErr() != nil:
			res.stop = w.exitErr().Error()
		default:
			res.stop = "exit 0"
		}
	}()
	if err := waitHTTP(ctx, readyURL, 30*time.Second, w); err != nil {
		set(fmt.Errorf("worker-zombie: %w", err))
		return
	}
	c.logger.Warn("zombie phase: worker-zombie started", slog.Int("pid", w.pid()), slog.Duration("at", c.since()),
		slog.Duration("job_timeout", c.opts.zombieTimeout))

	log := &logTail{path: w.logPath}
	spec := reportSpec{kind: "zombie: line items of two contracts", caseID: c.tenant.Cases[1].ID, typ: "transaction_summary"}
	caught := false
	for burst := 0; burst < 8 && !caught; burst++ {
		// More jobs than the other workers' free slots, so that the
		// zombie's fetch gets some.
		for i := range workerCount*c.opts.concurrency + 2 {
			id, err := c.client.createReport(ctx, fmt.Sprintf("chaos-%s-zombie-%d-%d", c.runID, burst, i), spec)
			if err != nil {
				set(err)
				return
			}
			c.mu.Lock()
			c.extraIDs = append(c.extraIDs, id)
			c.mu.Unlock()
			res.created++
		}
		until := time.Now().Add(5 * time.Second)
		for !caught && time.Now().Before(until) {
			lines, err := log.next()
			if err != nil {
				set(err)
				return
			}
			for _, l := range lines {
				if l.Msg != "generating report" {
					continue
				}
				if err := w.signal(syscall.SIGSTOP); err != nil {
					set(err)
					return
				}
				res.tries++
				var state string
				var attempt int
				err := c.pool.QueryRow(ctx, `SELECT state::text, attempt FROM river_job WHERE id = $1`, l.JobID).Scan(&state, &attempt)
				if err == nil && state == "running" && attempt == l.Attempt {
					res.stopped = time.Now()
					res.jobID, res.attempt, res.reportID = l.JobID, l.Attempt, l.ReportID
					caught = true
					break
				}
				_ = w.signal(syscall.SIGCONT) // it was done already; try the next
			}
			if !caught && !sleepUntil(ctx, time.Now().Add(30*time.Millisecond)) {
				return
			}
		}
	}
	if !caught {
		set(errors.New("worker-zombie never held a job when paused"))
		return
	}
	c.logger.Warn("zombie phase: worker-zombie paused (SIGSTOP) while it runs a job", slog.Int64("job_id", res.jobID),
		slog.Int("attempt", res.attempt), slog.String("report_id", res.reportID), slog.Duration("at", c.since()))

	// Paused past the rescue deadline, until another run completed the job.
	minUntil := res.stopped.Add(c.opts.rescueAfter)
	maxUntil := minUntil.Add(90 * time.Second)
	for time.Now().Before(maxUntil) {
		var state string
		var attempt int
		err := c.pool.QueryRow(ctx, `SELECT state::text, attempt FROM river_job WHERE id = $1`, res.jobID).Scan(&state, &attempt)
		if err == nil {
			now := time.Now()
			if res.rescued.IsZero() && (state != "running" || attempt != res.attempt) {
				res.rescued = now
			}
			if res.otherDone.IsZero() && state == "completed" && attempt > res.attempt {
				res.otherDone = now
			}
		}
		if !res.otherDone.IsZero() && time.Now().After(minUntil) {
			break
		}
		if !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
			return
		}
	}
	if err := w.signal(syscall.SIGCONT); err != nil {
		set(err)
		return
	}
	res.resumed = time.Now()
	c.logger.Warn("zombie phase: worker-zombie resumed (SIGCONT)", slog.Duration("paused_for", res.resumed.Sub(res.stopped).Round(100*time.Millisecond)),
		slog.Bool("rescued_run_completed", !res.otherDone.IsZero()))

	// What the zombie does with its run now.
	until := time.Now().Add(90 * time.Second)
	// Lines that follow the end of the run (its cleanup) come within a
	// second.
	for (res.settled.IsZero() || time.Since(res.settled) < time.Second) && time.Now().Before(until) {
		lines, err := log.next()
		if err != nil {
			set(err)
			return
		}
		for _, l := range lines {
			if l.JobID != res.jobID || l.Attempt != res.attempt || l.Msg == "generating report" {
				continue
			}
			said := l.Msg
			if l.Code != "" {
				said += " (" + l.Code + ")"
			}
			res.said = append(res.said, said)
			if zombieEnd[l.Msg] && res.settled.IsZero() {
				res.settled = time.Now()
			}
		}
		if !sleepUntil(ctx, time.Now().Add(200*time.Millisecond)) {
			return
		}
	}
	var state string
	var attempt int
	if err := c.pool.QueryRow(ctx, `SELECT state::text, attempt FROM river_job WHERE id = $1`, res.jobID).Scan(&state, &attempt); err == nil {
		res.finalJob = fmt.Sprintf("%s, attempt %d", state, attempt)
	}
	c.logger.Warn("zombie phase over", slog.Any("zombie_said", res.said), slog.String("job", res.finalJob))
}

// logLine is what the zombie phase reads of a worker's JSON log line.
type logLine struct {
	Msg      string `json:"msg"`
	JobID    int64  `json:"job_id"`
	Attempt  int    `json:"attempt"`
	ReportID string `json:"report_id"`
	Code     string `json:"code"`
}

// logTail reads the lines appended to a log file since the last call.
type logTail struct {
	path   string
	offset int64
}

func (t *logTail) next() ([]logLine, error) {
	f, err := os.Open(t.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.offset, io.SeekStart); err != nil {
		return nil, err
	}
	var out []logLine
	r := bufio.NewReader(f)
	for {
		b, err := r.ReadBytes('\n')
		if err != nil {
			// A partial last line is read again next time.
			break
		}
		t.offset += int64(len(b))
		var l logLine
		if json.Unmarshal(b, &l) == nil {
			out = append(out, l)
		}
	}
	return out, nil
}

// verifyZombie adds the zombie phase's row. Whether the race did harm is
// for the object and event checks to say; this checks that it happened.
func (c *chaos) verifyZombie(v *verdict, z zombieResult) {
	const metric = "zombie (worker-zombie, job timeout -zombie-job-timeout, SIGSTOP while it runs a job, SIGCONT after the rescued run completed)"
	switch {
	case !c.opts.zombie:
		v.add(metric, "off (-zombie=false)")
		return
	case !z.ran:
		v.add(metric, "did not run")
		v.problem("the zombie phase did not run")
		return
	case z.err != nil:
		v.add(metric, "failed: "+z.err.Error())
		v.problem("zombie phase: %v", z.err)
		return
	}
	paused := z.resumed.Sub(z.stopped).Round(100 * time.Millisecond)
	desc := fmt.Sprintf("paused at %s holding job %d (report %s, attempt %d; %d SIGSTOPs, %d reports created) for %s; rescued (seen) at %s, completed by a later attempt at %s; resumed at %s; the zombie's run then: %s; job at the end: %s; worker-zombie stop: %s",
		c.rel(z.stopped), z.jobID, z.reportID, z.attempt, z.tries, z.created, paused, c.rel(z.rescued), c.rel(z.otherDone),
		c.rel(z.resumed), joinOr(z.said, "nothing logged"), z.finalJob, z.stop)
	if !z.sawLeader {
		desc += " (no River leader was seen before it started)"
	}
	v.add(metric, desc)
	if z.resumed.Sub(z.stopped) < c.opts.rescueAfter {
		v.problem("zombie phase: paused %s, less than the rescue deadline %s", paused, c.opts.rescueAfter)
	}
	if z.otherDone.IsZero() {
		v.problem("zombie phase: the rescued run did not complete job %d while the zombie was paused", z.jobID)
	}
	if z.settled.IsZero() {
		v.problem("zombie phase: the zombie's run of job %d did not end within 90 s of SIGCONT", z.jobID)
	}
}
