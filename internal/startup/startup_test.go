package startup

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/storage"
)

// TestStorageOptsCarriesEverySetting: every S3_* setting reaches the store,
// the secret revealed.
func TestStorageOptsCarriesEverySetting(t *testing.T) {
	t.Parallel()
	cfg, err := config.LoadFrom(map[string]string{
		"S3_ENDPOINT": "s3.example:443", "S3_ACCESS_KEY_ID": "id", "S3_SECRET_ACCESS_KEY": "secret",
		"S3_BUCKET": "b", "S3_REGION": "eu-west-1", "S3_USE_TLS": "true", "S3_SSE": "SSE-KMS", "S3_SSE_KMS_KEY_ID": "alias/tally",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Opts{Endpoint: "s3.example:443", AccessKeyID: "id", SecretAccessKey: "secret",
		Bucket: "b", Region: "eu-west-1", UseTLS: true, SSE: "SSE-KMS", SSEKMSKeyID: "alias/tally"}
	if diff := cmp.Diff(want, StorageOpts(cfg.S3)); diff != "" {
		t.Errorf("StorageOpts mismatch (-want +got):\n%s", diff)
	}
}

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
