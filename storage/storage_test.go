package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// TestPutUnknownSizeMultipartAndRanges uploads more than two parts from a
// reader of unknown length and reads it back whole and in ranges.
func TestPutUnknownSizeMultipartAndRanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	data := make([]byte, 2*storage.PartSize+12345)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	pr, pw := io.Pipe()
	go func() { // a writer the store cannot ask the length of
		for off := 0; off < len(data); off += 100_000 {
			end := min(off+100_000, len(data))
			if _, err := pw.Write(data[off:end]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	key := storage.ReportKey("org_1", "app_1", "rpt_1", "run_1", "csv")
	w, err := s.Put(ctx, key, pr, "text/csv")
	if err != nil || w.Size != int64(len(data)) {
		t.Fatalf("Put = %+v, %v; want %d bytes", w, err, len(data))
	}
	for _, tt := range []struct{ off, length int64 }{{0, -1}, {5, 10}, {int64(storage.PartSize) - 3, 7}, {int64(len(data)) - 1, 1}} {
		rc, info, err := s.Get(ctx, key, tt.off, tt.length)
		if err != nil {
			t.Fatalf("Get(%d, %d): %v", tt.off, tt.length, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		want := data[tt.off:]
		if tt.length >= 0 {
			want = data[tt.off : tt.off+tt.length]
		}
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Get(%d, %d): %d bytes, err %v; want %d bytes", tt.off, tt.length, len(got), err, len(want))
		}
		if tt.length < 0 && info.Size != int64(len(data)) {
			t.Errorf("size = %d", info.Size)
		}
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		t.Fatalf("deleting a missing object: %v", err)
	}
}

// TestUnreachableIsUnavailable: a store nobody listens on is ErrUnavailable,
// which the API turns into 503.
func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	s, err := storage.New(storage.Opts{Endpoint: "127.0.0.1:1", AccessKeyID: "x", SecretAccessKey: "y", Bucket: "tally-nowhere", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Ping(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Ping: %v, want ErrUnavailable", err)
	}
	if _, _, err := s.Get(ctx, "k", 0, -1); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Get: %v, want ErrUnavailable", err)
	}
}
