package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// loadResult is what a closed-loop load phase measured.
type loadResult struct {
	all      int // operations completed, warm-up and errors included
	ops      int
	errs     int
	firstErr error
	window   time.Duration
	lat      []time.Duration // sorted
}

func (r loadResult) rate() float64 { return float64(r.ops) / r.window.Seconds() }

// pct returns the p-th percentile latency (0 < p ≤ 1), nearest rank.
func (r loadResult) pct(p float64) time.Duration { return percentile(r.lat, p) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// runLoad runs op from conc goroutines, each calling it again as soon as it
// returns, for warmup (not measured) and then for window. Operations that
// start inside the window are counted, with their latency.
func runLoad(ctx context.Context, conc int, warmup, window time.Duration, op func(ctx context.Context) error) loadResult {
	start := time.Now()
	from, until := start.Add(warmup), start.Add(warmup+window)
	var (
		mu  sync.Mutex
		res = loadResult{window: window}
		wg  sync.WaitGroup
	)
	for range conc {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			errs, all := 0, 0
			var firstErr error
			for ctx.Err() == nil {
				t := time.Now()
				if !t.Before(until) {
					break
				}
				err := op(ctx)
				d := time.Since(t)
				all++
				if t.Before(from) {
					continue
				}
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				lat = append(lat, d)
			}
			mu.Lock()
			res.all += all
			res.ops += len(lat)
			res.errs += errs
			if res.firstErr == nil {
				res.firstErr = firstErr
			}
			res.lat = append(res.lat, lat...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(res.lat)
	return res
}

// median returns the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// series collects one number per run.
type series []float64

func (s *series) add(v float64) { *s = append(*s, v) }
func (s series) med() float64   { return median(s) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
