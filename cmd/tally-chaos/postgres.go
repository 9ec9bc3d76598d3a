package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/config"
)

// PostgreSQL modes of a run (-postgres).
const (
	pgPrivate = "private" // a cluster of the run's own, crashed for real
	pgShared  = "shared"  // the machine's cluster, outage simulated
	pgAuto    = "auto"    // private when initdb is found, else shared
)

// cluster is a PostgreSQL cluster of the run's own: initdb into a
// temporary directory, a postmaster on a free port with trust
// authentication, crashed with SIGKILL and started again on the same data
// directory, which is what makes PostgreSQL run crash recovery. As root it
// runs as the postgres user, since initdb and postgres refuse root.
type cluster struct {
	*proc
	dir     string // owned by the cluster's user; holds data/ and the socket
	dataDir string
	url     string // the postgres database, as the superuser postgres
}

// findPGBin returns the directory of the PostgreSQL binaries: dir when it
// holds initdb, else the directory of an initdb on PATH.
func findPGBin(dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
		return dir, nil
	}
	p, err := exec.LookPath("initdb")
	if err != nil {
		return "", fmt.Errorf("no initdb in %s or on PATH", dir)
	}
	return filepath.Dir(p), nil
}

// clusterCredential returns who the cluster runs as: nil (this process's
// user) unless this process is root, then the postgres user.
func clusterCredential() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, "", err
		}
		return nil, u.Username, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, "", fmt.Errorf("running as root, PostgreSQL needs another user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, "", err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, "", err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, u.Username, nil
}

// newCluster runs initdb into a new temporary directory and returns the
// cluster, not started.
func newCluster(ctx context.Context, binDir, logPath string) (*cluster, error) {
	cred, _, err := clusterCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tally-chaos-pg-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
	c := &cluster{dir: dir, dataDir: filepath.Join(dir, "data")}
	env := []string{"PATH=" + os.Getenv("PATH"), "LANG=C", "LC_ALL=C", "HOME=" + dir}
	// --no-sync and fsync=off below: a SIGKILL of the postmaster loses
	// nothing the kernel already has, so crash recovery is the same with
	// or without fsync; only a machine crash would tell them apart, and
	// fsyncs cost a shared 2-core machine much.
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), "-D", c.dataDir, "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-D", c.dataDir, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
		"-c", "logging_collector=off"}
	c.proc = newProc("postgres", filepath.Join(binDir, "postgres"), args, env, logPath)
	c.proc.cred = cred
	c.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
	return c, nil
}

// startAndWait starts the postmaster and waits until it accepts
// connections (after crash recovery, when the last run crashed).
func (c *cluster) startAndWait(ctx context.Context, within time.Duration) error {
	if err := c.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.url)
		if err == nil {
			err = conn.Ping(cctx)
			conn.Close(cctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if !c.running() {
			return fmt.Errorf("postgres exited during start (%v); see %s", c.exitErr(), c.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not ready after %v (%v); see %s", within, err, c.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// shutdown stops the cluster with a fast shutdown (SIGINT), then SIGKILL.
func (c *cluster) shutdown() { c.stopWith(syscall.SIGINT, 30*time.Second) }

// crashResult describes a PostgreSQL crash and its recovery.
type crashResult struct {
	postmaster int           // pid killed
	children   int           // its server processes at the kill
	killed     time.Time     // SIGKILL sent
	orphans    int           // server processes alive once the postmaster was gone
	orphansFor time.Duration // until the last of them exited
	orphansKil int           // of them, killed by the run because they lingered
	restarted  time.Time     // postmaster started again
	ready      time.Time     // accepting connections
	recovery   []string      // the log lines of crash recovery
}

// crash kills the postmaster with SIGKILL, waits for the server processes
// it leaves (they exit once they notice the postmaster is gone; those that
// linger past 10 s get SIGKILL too, since a new postmaster refuses to start
// while any is attached to the old shared memory), waits for down, starts
// it again on the same data directory and waits until it accepts
// connections.
func (c *cluster) crash(ctx context.Context, down time.Duration) (res crashResult, err error) {
	res.postmaster = c.pid()
	// The postmaster leads its process group (proc sets Setpgid); its
	// children keep the group after it dies.
	pgid := res.postmaster
	res.children = len(groupMembers(pgid)) - 1
	if err := c.signal(syscall.SIGKILL); err != nil {
		return res, err
	}
	res.killed = time.Now()
	if err := c.waitExit(ctx); err != nil {
		return res, err
	}
	res.orphans = len(groupMembers(pgid))
	lingerUntil := time.Now().Add(10 * time.Second)
	for len(groupMembers(pgid)) > 0 {
		if time.Now().After(lingerUntil) {
			res.orphansKil = len(groupMembers(pgid))
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			lingerUntil = time.Now().Add(time.Hour)
		}
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return res, ctx.Err()
		}
	}
	res.orphansFor = time.Since(res.killed)
	if !sleepUntil(ctx, res.killed.Add(down)) {
		return res, ctx.Err()
	}
	res.restarted = time.Now()
	if err := c.startAndWait(ctx, 2*time.Minute); err != nil {
		return res, err
	}
	res.ready = time.Now()
	res.recovery = c.recoveryLines()
	return res, nil
}

// recoveryLines returns the lines of the current run's log that show crash
// recovery.
func (c *cluster) recoveryLines() []string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return nil
	}
	s := string(b)
	if i := strings.LastIndex(s, "### tally-chaos: start #"); i >= 0 {
		s = s[i:]
	}
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, m := range []string{"not properly shut down", "automatic recovery in progress", "redo starts at",
			"redo done at", "ready to accept connections"} {
			if strings.Contains(l, m) {
				if i := strings.Index(l, "LOG:"); i >= 0 {
					l = strings.TrimSpace(l[i+len("LOG:"):])
				}
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// groupMembers returns the live (not zombie) processes of process group
// pgid.
func groupMembers(pgid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// setupPostgres gives the run its database: on a private cluster
// (-postgres private, or auto when initdb is found) or on the shared one.
// It returns what to do at the end.
func (c *chaos) setupPostgres(ctx context.Context, cfg *config.Config) (cleanup func(), err error) {
	mode := c.opts.postgres
	var binDir string
	if mode != pgShared {
		binDir, err = findPGBin(c.opts.pgBin)
		switch {
		case err != nil && mode == pgPrivate:
			return nil, fmt.Errorf("-postgres private: %w (use -postgres shared to simulate the outage on the shared cluster)", err)
		case err != nil:
			c.logger.Warn("no PostgreSQL binaries to start a private cluster; simulating the outage on the shared cluster",
				slog.String("error", err.Error()))
			mode = pgShared
		default:
			mode = pgPrivate
		}
	}
	c.pgMode = mode
	if mode == pgShared {
		c.db, err = createDatabase(ctx, cfg.DatabaseURL.Reveal(), "tally_chaos_"+c.runID)
		if err != nil {
			return nil, err
		}
		return func() {
			if c.opts.keep {
				c.logger.Info("kept database", slog.String("database", c.db.name))
				return
			}
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := c.db.drop(dctx); err != nil {
				c.logger.Error("dropping database", slog.String("database", c.db.name), slog.String("error", err.Error()))
				return
			}
			c.logger.Info("dropped database", slog.String("database", c.db.name))
		}, nil
	}

	t := time.Now()
	c.cluster, err = newCluster(ctx, binDir, filepath.Join(c.outDir, "postgres.log"))
	if err != nil {
		return nil, err
	}
	cleanup = func() {
		c.cluster.shutdown()
		if c.opts.keep {
			c.logger.Info("kept the private cluster (stopped)", slog.String("data", c.cluster.dataDir))
			return
		}
		_ = os.RemoveAll(c.cluster.dir)
	}
	if err := c.cluster.startAndWait(ctx, time.Minute); err != nil {
		cleanup()
		return nil, err
	}
	c.db, err = createDatabase(ctx, c.cluster.url, "tally_chaos")
	if err != nil {
		cleanup()
		return nil, err
	}
	c.logger.Info("started a private PostgreSQL cluster", slog.String("bin", binDir), slog.String("data", c.cluster.dataDir),
		slog.String("url", redactURL(c.db.url)), slog.Int("pid", c.cluster.pid()), slog.Duration("took", time.Since(t).Round(time.Millisecond)))
	return cleanup, nil
}

// takePostgresDown takes PostgreSQL away for pgFor: a real crash of the private
// cluster, or the simulation on the shared one.
func (c *chaos) takePostgresDown(ctx context.Context) {
	c.pgDown.Store(true)
	defer c.pgDown.Store(false)
	if c.cluster == nil {
		c.logger.Warn("PostgreSQL outage (simulated): refusing connections to the run's database and terminating its backends",
			slog.String("database", c.db.name), slog.Duration("for", c.opts.pgFor))
		res, err := c.db.outage(ctx, c.opts.pgFor)
		c.mu.Lock()
		c.pgOutage, c.pgOutageErr = res, err
		c.mu.Unlock()
		if err != nil {
			c.logger.Error("PostgreSQL outage", slog.String("error", err.Error()))
			return
		}
		c.logger.Warn("PostgreSQL back: connections allowed again", slog.Int("backends_terminated", res.terminated),
			slog.Duration("down_for", res.end.Sub(res.start).Round(100*time.Millisecond)))
		return
	}
	c.logger.Warn("PostgreSQL crash: SIGKILL of the postmaster", slog.Int("pid", c.cluster.pid()),
		slog.Duration("at", c.since()), slog.Duration("restart_after", c.opts.pgFor))
	res, err := c.cluster.crash(ctx, c.opts.pgFor)
	c.mu.Lock()
	c.pgCrash, c.pgOutageErr = res, err
	c.mu.Unlock()
	if err != nil {
		c.logger.Error("PostgreSQL crash", slog.String("error", err.Error()))
		return
	}
	c.logger.Warn("PostgreSQL back after crash recovery", slog.Int("pid", c.cluster.pid()),
		slog.Int("orphaned_server_processes", res.orphans), slog.Duration("recovery", res.ready.Sub(res.restarted).Round(10*time.Millisecond)),
		slog.Duration("down_for", res.ready.Sub(res.killed).Round(100*time.Millisecond)))
}
