package jobs

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
)

// CheckpointActivityArgs asks a worker to sign the head of every
// organization's activity chain that moved since its last checkpoint.
type CheckpointActivityArgs struct{}

// Kind is the job kind.
func (CheckpointActivityArgs) Kind() string { return "checkpoint_activity" }

// InsertOpts are the per-kind defaults.
func (CheckpointActivityArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueMaint, MaxAttempts: 3}
}

// CheckpointActivityWorker signs chain heads. A checkpoint fixes the chain
// up to its seq: whoever rewrites events before it (and every hash after
// them) or removes events after it must also forge the signature.
type CheckpointActivityWorker struct {
	river.WorkerDefaults[CheckpointActivityArgs]

	Pool *pgxpool.Pool
	// Keys sign; nil means an ephemeral key (development only).
	Keys   *evidence.Keys
	Logger *slog.Logger
	// NowFunc returns the current time; nil means time.Now.
	NowFunc func() time.Time

	ephemeral lazyKeys
}

// Timeout bounds one run.
func (w *CheckpointActivityWorker) Timeout(*river.Job[CheckpointActivityArgs]) time.Duration {
	return 5 * time.Minute
}

// Work signs every moved head.
func (w *CheckpointActivityWorker) Work(ctx context.Context, job *river.Job[CheckpointActivityArgs]) error {
	logger := w.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n, err := CheckpointActivity(ctx, w.Pool, w.keysOrEphemeral(ctx, logger), w.now())
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "activity checkpoints signed", slog.Int64("job_id", job.ID), slog.Int("checkpoints", n))
	return nil
}

func (w *CheckpointActivityWorker) keysOrEphemeral(ctx context.Context, logger *slog.Logger) *evidence.Keys {
	k, err := w.ephemeral.get(ctx, w.Keys, logger)
	if err != nil {
		return nil
	}
	return k
}

func (w *CheckpointActivityWorker) now() time.Time {
	if w.NowFunc != nil {
		return w.NowFunc()
	}
	return time.Now()
}

// CheckpointActivity chains pending events (db.ChainPending), then signs the
// head of every chain that moved since its last checkpoint and returns how
// many it signed.
func CheckpointActivity(ctx context.Context, pool *pgxpool.Pool, keys *evidence.Keys, now time.Time) (int, error) {
	if keys == nil {
		return 0, fmt.Errorf("no signing key")
	}
	// Sign the chain as far as it can go now.
	if _, err := db.ChainPending(ctx, pool, db.DefaultChainBatch); err != nil {
		return 0, err
	}
	heads, err := db.ListUncheckpointedHeads(ctx, pool)
	if err != nil {
		return 0, err
	}
	if len(heads) > 0 {
		if err := db.RegisterSigningKey(ctx, pool, keys.Current.ID, keys.Current.Public); err != nil {
			return 0, err
		}
	}
	for _, h := range heads {
		p := evidence.CheckpointPayload{OrgID: h.OrgID, Seq: h.Seq, Hash: hex.EncodeToString(h.Hash),
			SignedAt: now.UTC().Format(time.RFC3339Nano)}
		payload, sig, err := evidence.SignCheckpoint(keys.Current, &p)
		if err != nil {
			return 0, fmt.Errorf("signing checkpoint: %w", err)
		}
		if err := db.CreateCheckpoint(ctx, pool, db.Checkpoint{OrgID: h.OrgID, Seq: h.Seq, Hash: h.Hash,
			KeyID: keys.Current.ID, Payload: string(payload), Signature: sig}); err != nil {
			return 0, err
		}
	}
	return len(heads), nil
}
