package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tally-compliance/tally/config"
)

// binaries are the paths of the built commands.
type binaries struct {
	api, worker string
}

// buildBinaries builds tally-api and tally-worker from this module into dir.
func buildBinaries(ctx context.Context, dir string) (binaries, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("finding the module: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return binaries{}, errors.New("run tally-bench inside the tally module (go env GOMOD is empty)")
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/tally-api", "./cmd/tally-worker")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("go build: %w\n%s", err, out)
	}
	return binaries{api: filepath.Join(dir, "tally-api"), worker: filepath.Join(dir, "tally-worker")}, nil
}

// freePort returns a TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// proc is a started tally-api or tally-worker process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	err     error
	stopped sync.Once
}

// startProc starts bin with env, its output going to logPath. The process
// gets SIGTERM if the bench dies.
func startProc(name, bin string, env []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, logFile: f, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits for the process, killing it after timeout.
func (p *proc) stop(timeout time.Duration) error {
	var err error
	p.stopped.Do(func() {
		select {
		case <-p.done:
			err = fmt.Errorf("%s had already exited: %v", p.name, p.err)
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(timeout):
				_ = p.cmd.Process.Kill()
				<-p.done
				err = fmt.Errorf("%s did not stop within %s; killed", p.name, timeout)
			}
		}
		p.logFile.Close()
	})
	return err
}

// waitReady polls url until it answers 200, the process exits, or 60 s pass.
func (p *proc) waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 20))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 60 s; last lines of %s:\n%s", p.name, p.logPath, tail(p.logPath, 20))
		}
	}
}

// memory returns the process's resident set size and its high-water mark,
// in bytes, from /proc/<pid>/status.
func (p *proc) memory() (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("parsing %s: %w", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, sc.Err()
}

// cpuTime returns the user plus system CPU time the process has used, from
// /proc/<pid>/stat (clock ticks of 10 ms, the Linux default USER_HZ).
func (p *proc) cpuTime() (time.Duration, error) { return pidCPUTime(p.pid()) }

// pidCPUTime returns the user plus system CPU time process pid has used.
func pidCPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs, value 5), so
// that the next reading is the peak of what follows.
func (p *proc) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid()), []byte("5"), 0)
}

// rssSampler samples a process's VmRSS until stopped.
type rssSampler struct {
	stopc chan struct{}
	done  chan struct{}
	max   int64
	n     int
}

func sampleRSS(p *proc, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if rss, _, err := p.memory(); err == nil {
				s.max = max(s.max, rss)
				s.n++
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the largest VmRSS seen and the number of samples.
func (s *rssSampler) stop() (int64, int) {
	close(s.stopc)
	<-s.done
	return s.max, s.n
}

// peakDuring runs fn with p's peak RSS reset before and read after, sampling
// VmRSS meanwhile; it returns VmHWM (the exact peak) and the sampled maximum.
func peakDuring(p *proc, fn func() error) (hwm, sampled int64, err error) {
	if err := p.resetPeak(); err != nil {
		return 0, 0, fmt.Errorf("resetting the peak RSS of %s: %w", p.name, err)
	}
	s := sampleRSS(p, 20*time.Millisecond)
	ferr := fn()
	sampled, _ = s.stop()
	_, hwm, err = p.memory()
	if ferr != nil {
		return 0, 0, ferr
	}
	return hwm, sampled, err
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// childEnv is the bench's environment with overrides; later values win.
func childEnv(overrides map[string]string) []string {
	env := os.Environ()
	for k, v := range overrides {
		env = append(env, k+"="+v)
	}
	return env
}

// startAPI starts tally-api with the bench database and bucket, no per-user
// create limit, and River UI off.
func (b *bench) startAPI(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	env := childEnv(map[string]string{
		"DATABASE_URL": b.dbURL, "S3_BUCKET": b.bucket, "PORT": strconv.Itoa(port),
		"TALLY_CREATE_RATE_PER_MINUTE": "1e12", "TALLY_API_DB_MAX_CONNS": strconv.Itoa(apiMaxConns),
		"TALLY_WAIT_PER_USER": strconv.Itoa(2 * waitClients),
		"TALLY_ADMIN_USER":    "", "TALLY_ADMIN_PASSWORD": "", "TALLY_LARGE_REPORT_ROWS": strconv.Itoa(config.DefaultLargeReportRows),
		"LOG_LEVEL": "info", "LOG_FORMAT": "json",
		// The local services' development secrets: the API refuses them
		// outside development (config.CheckSecrets), and nothing else in
		// it depends on TALLY_ENV.
		"TALLY_ENV": "development",
	})
	p, err := startProc("tally-api", b.bin.api, env, logPath(b.tmp, "api"))
	if err != nil {
		return err
	}
	b.api = p
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := p.waitReady(ctx, base+"/readyz"); err != nil {
		return err
	}
	b.client = newAPIClient(base, b.fx.token)
	return nil
}

// startWorkers starts n tally-worker processes with the default
// configuration and waits until each is ready.
func (b *bench) startWorkers(ctx context.Context, n int) error {
	for range n {
		port, err := freePort()
		if err != nil {
			return err
		}
		i := len(b.workers)
		env := childEnv(map[string]string{
			"DATABASE_URL": b.dbURL, "S3_BUCKET": b.bucket, "TALLY_METRICS_PORT": strconv.Itoa(port),
			"TALLY_WORKER_CONCURRENCY": "4", "TALLY_WORKER_LARGE_CONCURRENCY": "1", "TALLY_FETCH_POLL_INTERVAL": "1s",
			"TALLY_PSEUDONYM_KEY": benchPseudonymKey,
			// Manifests are signed with an ephemeral key: a bench keeps none.
			"TALLY_ENV": "development",
			"LOG_LEVEL": "info", "LOG_FORMAT": "json",
		})
		p, err := startProc(fmt.Sprintf("tally-worker-%d", i+1), b.bin.worker, env, logPath(b.tmp, fmt.Sprintf("worker-%d-%d", i+1, time.Now().UnixNano())))
		if err != nil {
			return err
		}
		b.workers = append(b.workers, p)
		if err := p.waitReady(ctx, "http://127.0.0.1:"+strconv.Itoa(port)+"/readyz"); err != nil {
			return err
		}
	}
	return nil
}

// stopWorkers stops every worker process (soft stop: they are idle).
func (b *bench) stopWorkers() {
	var wg sync.WaitGroup
	for _, w := range b.workers {
		wg.Go(func() {
			if err := w.stop(40 * time.Second); err != nil {
				b.log.printf("stopping %s: %v", w.name, err)
			}
		})
	}
	wg.Wait()
	b.workers = nil
}
