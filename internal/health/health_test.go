package health

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRunAllOK(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), time.Second, map[string]Probe{
		Postgres:    func(context.Context) error { return nil },
		ObjectStore: func(context.Context) error { return nil },
	})
	want := Report{Status: StatusOK, Checks: map[string]Check{Postgres: {Status: StatusOK}, ObjectStore: {Status: StatusOK}}}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if !r.OK() {
		t.Error("OK() = false, want true")
	}
}

func TestRunOneFailingMakesReportUnavailable(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), time.Second, map[string]Probe{
		Postgres:    func(context.Context) error { return nil },
		ObjectStore: func(context.Context) error { return errors.New("bucket check failed") },
	})
	want := Report{Status: StatusUnavailable, Checks: map[string]Check{
		Postgres: {Status: StatusOK}, ObjectStore: {Status: StatusUnavailable, Error: "bucket check failed"},
	}}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if r.OK() {
		t.Error("OK() = true, want false")
	}
}

// TestRunBoundsEachProbe: a probe that hangs is cut at the timeout and the
// others still report.
func TestRunBoundsEachProbe(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := Run(context.Background(), 100*time.Millisecond, map[string]Probe{
		Postgres: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
		"fast":   func(context.Context) error { return nil },
	})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run took %v, want about the 100ms timeout", d)
	}
	if r.Checks[Postgres].Status != StatusUnavailable || r.Checks["fast"].Status != StatusOK || r.OK() {
		t.Errorf("got %+v, want postgres unavailable and fast ok", r)
	}
}

// TestSetAfterRun: a state that is not a probe (a worker shutting down)
// turns a ready report unavailable.
func TestSetAfterRun(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), time.Second, map[string]Probe{Postgres: func(context.Context) error { return nil }})
	r.Set("shutdown", errors.New("the worker is shutting down"))
	if r.OK() || r.Checks["shutdown"].Error != "the worker is shutting down" {
		t.Errorf("got %+v, want unavailable with the shutdown check", r)
	}
}

// TestJSONShape: the body both processes send, checks first.
func TestJSONShape(t *testing.T) {
	t.Parallel()
	r := Report{Status: StatusUnavailable, Checks: map[string]Check{
		Postgres: {Status: StatusOK}, ObjectStore: {Status: StatusUnavailable, Error: "bucket check failed"},
	}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"checks":{"object_store":{"status":"unavailable","error":"bucket check failed"},"postgres":{"status":"ok"}},"status":"unavailable"}`
	if string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}
