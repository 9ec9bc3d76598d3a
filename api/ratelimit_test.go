package api

import (
	"net/http/httptest"
	"testing"
	"time"
)

// TestAdminFailureBudget: 5 failures, then one every 10 seconds.
func TestAdminFailureBudget(t *testing.T) {
	t.Parallel()
	l := newKeyedLimiter(adminFailuresPerMinute, adminFailureBurst)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range adminFailureBurst {
		if d := l.wait("a", now); d != 0 {
			t.Fatalf("failure %d: got wait %v, want 0", i+1, d)
		}
		l.spend("a", now)
	}
	if d := l.wait("a", now); d != 10*time.Second {
		t.Fatalf("after the burst: got wait %v, want 10s", d)
	}
	if d := l.wait("b", now); d != 0 {
		t.Fatalf("another key: got wait %v, want 0", d)
	}
	now = now.Add(10 * time.Second)
	if d := l.wait("a", now); d != 0 {
		t.Fatalf("10s later: got wait %v, want 0", d)
	}
	l.spend("a", now)
	if d := l.wait("a", now.Add(time.Second)); d != 9*time.Second {
		t.Fatalf("after one more failure: got wait %v, want 9s", d)
	}
}

func TestPeerKey(t *testing.T) {
	t.Parallel()
	tests := []struct{ remote, want string }{
		{"192.0.2.7:4321", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:4321", "192.0.2.7"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"not an address", "not an address"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = tt.remote
		if got := peerKey(req); got != tt.want {
			t.Errorf("peerKey(%q): got %q, want %q", tt.remote, got, tt.want)
		}
	}
}
