// Package health is the readiness answer of Tally's processes: the API's
// /readyz and the worker's report their dependencies in this one shape,
//
//	{"checks": {"postgres": {"status": "ok"}, "object_store": {"status": "unavailable", "error": "…"}}, "status": "unavailable"}
//
// with 200 when every check is ok and 503 otherwise.
package health

import (
	"context"
	"sync"
	"time"
)

// Statuses of a Report and of each of its checks.
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable"
)

// Names of the checks both processes run.
const (
	Postgres    = "postgres"
	ObjectStore = "object_store"
)

// Check is the state of one dependency.
type Check struct {
	Status string `json:"status"`
	// Error says what failed. The API shows a fixed phrase, never an
	// internal error.
	Error string `json:"error,omitempty"`
}

// Report is the body of /readyz. (Checks come first in the JSON, as they
// always have in the API's answer.)
type Report struct {
	Checks map[string]Check `json:"checks"`
	Status string           `json:"status"`
}

// Probe checks one dependency; the text of its error becomes the check's.
type Probe func(ctx context.Context) error

// Run runs the probes at once, each within timeout, and reports their states.
func Run(ctx context.Context, timeout time.Duration, probes map[string]Probe) Report {
	r := Report{Checks: make(map[string]Check, len(probes)), Status: StatusOK}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, probe := range probes {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			err := probe(pctx)
			mu.Lock()
			defer mu.Unlock()
			r.Set(name, err)
		})
	}
	wg.Wait()
	return r
}

// Set records the state of the named check: ok when err is nil, otherwise
// unavailable with err's text, which also makes the whole report unavailable.
func (r *Report) Set(name string, err error) {
	if r.Checks == nil {
		r.Checks = map[string]Check{}
	}
	if err == nil {
		r.Checks[name] = Check{Status: StatusOK}
		if r.Status == "" {
			r.Status = StatusOK
		}
		return
	}
	r.Checks[name] = Check{Status: StatusUnavailable, Error: err.Error()}
	r.Status = StatusUnavailable
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return r.Status == StatusOK }
