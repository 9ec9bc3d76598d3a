package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is a child process the run controls: started in its own process
// group (so a Ctrl-C at the terminal reaches only tally-chaos, which then
// stops everything in order) and killed by the kernel if tally-chaos itself
// dies. Its output is appended to a log file across restarts.
type proc struct {
	name    string
	path    string
	args    []string
	env     []string
	logPath string
	// cred, when set, runs the process as another user (PostgreSQL
	// refuses to run as root).
	cred *syscall.Credential

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	starts int
}

// errNeverStarted is the exit error of a proc that never ran.
var errNeverStarted = errors.New("never started")

func newProc(name, path string, args, env []string, logPath string) *proc {
	done := make(chan struct{})
	close(done)
	return &proc{name: name, path: path, args: args, env: env, logPath: logPath, done: done, err: errNeverStarted}
}

// start runs the process once more. It fails if it is still running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is already running", p.name)
	}
	f, err := os.OpenFile(p.logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "### tally-chaos: start #%d of %s at %s\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.cred}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// exited returns a channel closed when the current run ends.
func (p *proc) exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

func (p *proc) running() bool {
	select {
	case <-p.exited():
		return false
	default:
		return true
	}
}

// exitErr is how the last run ended (nil: status 0).
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// signal sends sig to the running process, if it runs.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	select {
	case <-done:
		return nil
	default:
	}
	return cmd.Process.Signal(sig)
}

// stop sends SIGTERM, waits up to grace, then SIGKILL, and waits for the end.
// It reports whether the process ended on SIGTERM within grace.
func (p *proc) stop(grace time.Duration) bool { return p.stopWith(syscall.SIGTERM, grace) }

// stopWith is stop with another first signal than SIGTERM.
func (p *proc) stopWith(sig syscall.Signal, grace time.Duration) bool {
	done := p.exited()
	select {
	case <-done:
		return true
	default:
	}
	_ = p.signal(sig)
	select {
	case <-done:
		return true
	case <-time.After(grace):
	}
	_ = p.signal(syscall.SIGKILL)
	<-done
	return false
}

// waitExit waits for the current run to end, or ctx.
func (p *proc) waitExit(ctx context.Context) error {
	select {
	case <-p.exited():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
