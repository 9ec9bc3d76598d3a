package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/storage"
)

// TestFailSnoozesOutagesThenSpendsAttempts: an unreachable database or store
// snoozes the job with growing delays, without an attempt, until MaxSnoozes;
// a missing bucket or a build error spends an attempt at once.
func TestFailSnoozesOutagesThenSpendsAttempts(t *testing.T) {
	t.Parallel()
	w := &GenerateReportWorker{Logger: slog.New(slog.DiscardHandler), MaxSnoozes: 3}
	job := func(snoozes, attempt int) *river.Job[GenerateReportArgs] {
		return &river.Job[GenerateReportArgs]{JobRow: &rivertype.JobRow{
			ID: 1, Attempt: attempt, MaxAttempts: 5, Metadata: []byte(fmt.Sprintf(`{"snoozes": %d}`, snoozes)),
		}}
	}
	storeDown := fmt.Errorf("uploading: %w", storage.ErrUnavailable)
	dbDown := fmt.Errorf("querying: %w", db.ErrUnavailable)
	tests := []struct {
		name      string
		err       error
		snoozes   int
		wantDelay time.Duration // 0: not snoozed
	}{
		{"StoreDownFirst", storeDown, 0, 2 * time.Second},
		{"StoreDownThird", storeDown, 2, 8 * time.Second},
		{"DBDown", dbDown, 1, 4 * time.Second},
		{"StoreDownOutOfSnoozes", storeDown, 3, 0},
		{"MissingBucketNotSnoozed", fmt.Errorf("x: %w", storage.ErrNotFound), 0, 0},
		{"BuildErrorNotSnoozed", errors.New("boom"), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := w.fail(context.Background(), w.logger(), job(tt.snoozes, 1), nil, tt.err)
			var snooze *rivertype.JobSnoozeError
			snoozed := errors.As(err, &snooze)
			if tt.wantDelay == 0 {
				if snoozed {
					t.Fatalf("snoozed %v, want an attempt spent", snooze.Duration)
				}
				return
			}
			if !snoozed || snooze.Duration != tt.wantDelay {
				t.Fatalf("got %v, want a snooze of %v", err, tt.wantDelay)
			}
		})
	}
	if got := (&GenerateReportWorker{MaxSnoozes: -1}).maxSnoozes(); got != 0 {
		t.Errorf("MaxSnoozes -1 gives %d snoozes, want 0", got)
	}
	if got := (&GenerateReportWorker{}).maxSnoozes(); got != DefaultMaxSnoozes {
		t.Errorf("default snoozes %d, want %d", got, DefaultMaxSnoozes)
	}
}
