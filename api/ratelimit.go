package api

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// userLimiter is a token bucket per user for report creation. Idle buckets
// are swept so the map does not grow without bound.
type userLimiter struct {
	mu        sync.Mutex
	perSecond rate.Limit
	burst     int
	users     map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newUserLimiter(perMinute float64, burst int) *userLimiter {
	return &userLimiter{perSecond: rate.Limit(perMinute / 60), burst: burst, users: map[string]*limiterEntry{}}
}

// allow reports whether userID may act now and, if not, how long to wait.
func (l *userLimiter) allow(userID string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > 5*time.Minute {
		for id, e := range l.users {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(l.users, id)
			}
		}
		l.lastSweep = now
	}
	e, ok := l.users[userID]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(l.perSecond, l.burst)}
		l.users[userID] = e
	}
	e.seen = now
	r := e.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
