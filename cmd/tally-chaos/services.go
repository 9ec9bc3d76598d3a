package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/db"
)

// moduleRoot returns the directory of the module's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run tally-chaos from inside the Tally module (make chaos)")
	}
	return filepath.Dir(mod), nil
}

// buildBinaries builds tally-api and tally-worker into dir.
func buildBinaries(ctx context.Context, root, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/tally-api", "./cmd/tally-worker")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parsing DATABASE_URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// chaosDB is the run's own database on the shared cluster, and an admin
// connection to the cluster's postgres database that creates, cuts off and
// drops it.
type chaosDB struct {
	name     string
	url      string
	adminURL string
}

func createDatabase(ctx context.Context, serverURL, name string) (*chaosDB, error) {
	adminURL, err := withDatabase(serverURL, "postgres")
	if err != nil {
		return nil, err
	}
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		return nil, err
	}
	d := &chaosDB{name: name, url: dbURL, adminURL: adminURL}
	err = d.admin(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `CREATE DATABASE `+d.ident())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	return d, nil
}

func (d *chaosDB) ident() string { return pgx.Identifier{d.name}.Sanitize() }

func (d *chaosDB) admin(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", redactURL(d.adminURL), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return fn(conn)
}

// migrate applies the schema, River's tables included.
func (d *chaosDB) migrate(ctx context.Context, logger *slog.Logger) error {
	pool, err := db.Connect(ctx, d.url, &db.PoolOpts{MaxConns: 2, ApplicationName: "tally-chaos"})
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = db.Migrate(ctx, pool, logger)
	return err
}

// drop removes the database, closing any connection still open on it.
func (d *chaosDB) drop(ctx context.Context) error {
	return d.admin(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+d.ident()+` WITH (FORCE)`)
		return err
	})
}

// outageResult describes a simulated PostgreSQL outage.
type outageResult struct {
	start, end time.Time
	terminated int
}

// outage makes the run's database unreachable for d without touching the
// shared cluster: new connections are refused (ALLOW_CONNECTIONS false) and
// every open one is terminated, again and again, until d has passed; then
// connections are allowed again. Clients see what a database restart looks
// like to them: their connections die and reconnecting fails.
func (d *chaosDB) outage(ctx context.Context, dur time.Duration) (res outageResult, err error) {
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return res, fmt.Errorf("connecting to %s: %w", redactURL(d.adminURL), err)
	}
	bg := context.WithoutCancel(ctx)
	defer conn.Close(bg)
	if _, err := conn.Exec(ctx, `ALTER DATABASE `+d.ident()+` WITH ALLOW_CONNECTIONS false`); err != nil {
		return res, fmt.Errorf("refusing connections: %w", err)
	}
	res.start = time.Now()
	// Allow connections again whatever happens, Ctrl-C included.
	defer func() {
		if _, aerr := conn.Exec(bg, `ALTER DATABASE `+d.ident()+` WITH ALLOW_CONNECTIONS true`); aerr != nil {
			err = errors.Join(err, fmt.Errorf("allowing connections to %s again failed; run ALTER DATABASE %s WITH ALLOW_CONNECTIONS true: %w",
				d.name, d.ident(), aerr))
		}
		res.end = time.Now()
	}()
	deadline := res.start.Add(dur)
	for time.Now().Before(deadline) {
		var n int
		err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, d.name).Scan(&n)
		if err != nil {
			return res, fmt.Errorf("terminating backends: %w", err)
		}
		res.terminated += n
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return res, nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// minioServer is a private MinIO the run starts, crashes and restarts on the
// same port and data directory; the shared MinIO of services.sh is never
// touched.
type minioServer struct {
	*proc
	addr string
}

// minioBinary finds the MinIO that scripts/services.sh builds, building it
// through services.sh when it is missing.
func minioBinary(ctx context.Context, root string, logger *slog.Logger) (string, error) {
	cache := os.Getenv("TALLY_CACHE_DIR")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "tally")
	}
	bin := filepath.Join(cache, "bin", "minio")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	logger.InfoContext(ctx, "MinIO binary missing; running scripts/services.sh up to build it", slog.String("path", bin))
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "services.sh"), "up")
	cmd.Dir, cmd.Stderr = root, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("scripts/services.sh up: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("MinIO binary still missing at %s", bin)
	}
	return bin, nil
}

func newMinIO(bin, dataDir, logPath, accessKey, secretKey string) (*minioServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := []string{
		"MINIO_ROOT_USER=" + accessKey,
		"MINIO_ROOT_PASSWORD=" + secretKey,
		"MINIO_UPDATE=off",
		"MINIO_BROWSER=off",
		"HOME=" + os.Getenv("HOME"),
		"PATH=" + os.Getenv("PATH"),
	}
	args := []string{"server", dataDir, "--address", addr, "--console-address", "127.0.0.1:" + strconv.Itoa(consolePort), "--quiet"}
	return &minioServer{proc: newProc("minio", bin, args, env, logPath), addr: addr}, nil
}

// startAndWait starts MinIO and waits until it answers ready.
func (m *minioServer) startAndWait(ctx context.Context, within time.Duration) error {
	if err := m.start(); err != nil {
		return err
	}
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + m.addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if !m.running() {
			return fmt.Errorf("MinIO exited during start (%v); see %s", m.exitErr(), m.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MinIO not ready on %s after %v; see %s", m.addr, within, m.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// crash kills MinIO with SIGKILL and waits for it to be gone.
func (m *minioServer) crash(ctx context.Context) error {
	if err := m.signal(syscall.SIGKILL); err != nil {
		return err
	}
	return m.waitExit(ctx)
}

// poolFor opens a small pool on the run's database for the run's own queries.
func poolFor(ctx context.Context, dbURL string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "tally-chaos"
	cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	return pgxpool.NewWithConfig(ctx, cfg)
}
