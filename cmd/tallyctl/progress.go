package main

import (
	"fmt"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is a progress bar on stderr. A nil *progress draws nothing, so
// callers need not check whether bars are on.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress starts a bar of max units when stderr is a terminal or force
// is set (--progress), and returns nil otherwise. With bytes the units are
// bytes, otherwise rows.
func (d *deps) newProgress(force bool, max int64, description string, bytes bool) *progress {
	if (!force && !d.stderrTerminal) || max <= 0 {
		return nil
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(d.stderr),
		progressbar.OptionSetDescription(description),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(d.stderr) }),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionSetItsString("rows"))
	}
	return &progress{bar: progressbar.NewOptions64(max, opts...)}
}

// set moves the bar to n units done.
func (p *progress) set(n int64) {
	if p != nil {
		_ = p.bar.Set64(min(n, p.bar.GetMax64()))
	}
}

// add moves the bar n units on.
func (p *progress) add(n int64) {
	if p != nil {
		_ = p.bar.Add64(n)
	}
}

// done fills the bar and ends its line.
func (p *progress) done() {
	if p != nil {
		_ = p.bar.Finish()
	}
}

// stop ends the bar's line where it is, after a failure.
func (p *progress) stop() {
	if p != nil && !p.bar.IsFinished() {
		_ = p.bar.Exit()
	}
}
