package startup

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"
)

func TestWaitRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	tries := 0
	err := Wait(context.Background(), slog.New(slog.DiscardHandler), "thing", 10*time.Second, func(context.Context) error {
		tries++
		if tries < 3 {
			return errors.New("down")
		}
		return nil
	})
	if err != nil || tries != 3 {
		t.Fatalf("err %v after %d tries, want success on the third", err, tries)
	}
}

func TestWaitGivesUpAtTimeout(t *testing.T) {
	t.Parallel()
	down := errors.New("down")
	err := Wait(context.Background(), slog.New(slog.DiscardHandler), "thing", 700*time.Millisecond, func(context.Context) error { return down })
	if !errors.Is(err, down) {
		t.Fatalf("got %v, want the last error", err)
	}
}
