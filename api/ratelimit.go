package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// keyedLimiter is a token bucket per key: per user for report creation, per
// client address for failed admin logins. Idle buckets are swept so the map
// does not grow without bound.
type keyedLimiter struct {
	mu        sync.Mutex
	perSecond rate.Limit
	burst     int
	keys      map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newKeyedLimiter(perMinute float64, burst int) *keyedLimiter {
	return &keyedLimiter{perSecond: rate.Limit(perMinute / 60), burst: burst, keys: map[string]*limiterEntry{}}
}

// entry returns key's bucket, creating it full. l.mu must be held.
func (l *keyedLimiter) entry(key string, now time.Time) *rate.Limiter {
	if now.Sub(l.lastSweep) > 5*time.Minute {
		// A bucket idle this long is full again: forgetting it changes nothing.
		for k, e := range l.keys {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(l.keys, k)
			}
		}
		l.lastSweep = now
	}
	e, ok := l.keys[key]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(l.perSecond, l.burst)}
		l.keys[key] = e
	}
	e.seen = now
	return e.lim
}

// allow takes a token for key and reports whether there was one and, if not,
// how long to wait.
func (l *keyedLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.entry(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// wait says how long key must wait for a token, without taking one: zero
// when a token is there.
func (l *keyedLimiter) wait(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := l.entry(key, now).TokensAt(now)
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.perSecond) * float64(time.Second))
}

// spend takes a token for key if there is one.
func (l *keyedLimiter) spend(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entry(key, now).AllowN(now, 1)
}
