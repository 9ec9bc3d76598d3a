// Package startup holds what every binary does the same way when it starts:
// it turns the configuration into the object store's settings, and a process
// started during a PostgreSQL or MinIO outage waits for it, with backoff and
// a log line per try, instead of exiting at once.
package startup

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/storage"
)

// Timeout is how long a service waits for PostgreSQL and the object store
// at start.
const Timeout = 2 * time.Minute

// StorageOpts returns the object store settings that cfg describes.
func StorageOpts(cfg config.S3) storage.Opts {
	return storage.Opts{
		Endpoint:        cfg.Endpoint,
		AccessKeyID:     cfg.AccessKeyID,
		SecretAccessKey: cfg.SecretAccessKey.Reveal(),
		Bucket:          cfg.Bucket,
		Region:          cfg.Region,
		UseTLS:          cfg.UseTLS,
		SSE:             cfg.SSE,
		SSEKMSKeyID:     cfg.SSEKMSKeyID,
	}
}

// Wait calls fn until it succeeds, ctx ends or timeout passes, waiting 0.5 s,
// 1 s, 2 s … up to 10 s between tries. It returns fn's last error.
func Wait(ctx context.Context, logger *slog.Logger, what string, timeout time.Duration, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 500 * time.Millisecond
	for try := 1; ; try++ {
		tryCtx, cancelTry := context.WithTimeout(ctx, 10*time.Second)
		err := fn(tryCtx)
		cancelTry()
		if err == nil {
			if try > 1 {
				logger.InfoContext(ctx, what+" is reachable", slog.Int("tries", try))
			}
			return nil
		}
		logger.WarnContext(ctx, "waiting for "+what, slog.Int("try", try), slog.Duration("next_in", delay), slog.String("error", err.Error()))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not reachable after %d tries: %w", what, try, err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}
