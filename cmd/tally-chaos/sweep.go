package main

import (
	"context"
	"time"

	"github.com/tally-compliance/tally/jobs"
)

// sweepResult is what one sweep of report objects deleted.
type sweepResult struct {
	ran     bool
	why     string // why it did not run
	objects map[string]int
	uploads int
}

// sweepOnce runs sweep_objects' logic once with a grace of 1 ns: every run
// has ended when the verification starts, so nothing is in flight.
func (c *chaos) sweepOnce(ctx context.Context) (sweepResult, error) {
	sw := &jobs.SweepObjectsWorker{Pool: c.pool, Store: c.store, Grace: time.Nanosecond}
	res, err := sw.Sweep(ctx)
	if err != nil {
		return sweepResult{}, err
	}
	return sweepResult{ran: true, objects: res.Objects, uploads: res.Uploads}, nil
}
