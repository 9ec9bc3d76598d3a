package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// writeChunks writes data in pieces of 100,000 bytes, as a report builder
// writes rows, and returns the first error of w.
func writeChunks(w io.Writer, data []byte) error {
	for off := 0; off < len(data); off += 100_000 {
		if _, err := w.Write(data[off:min(off+100_000, len(data))]); err != nil {
			return err
		}
	}
	return nil
}

// TestWriteStoresHashesAndCounts: Write stores what the function writes,
// around the single-request limit and beyond a part, and returns its size
// and SHA-256.
func TestWriteStoresHashesAndCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	for _, size := range []int{0, 1, storage.SinglePutMax, storage.SinglePutMax + 1, storage.PartSize + 12345} {
		data := bytes.Repeat([]byte("tally,"), size/6+1)[:size]
		sum := sha256.Sum256(data)
		want := storage.Written{Size: int64(size), SHA256: hex.EncodeToString(sum[:])}
		key := fmt.Sprintf("reports/write-%d.csv", size)
		got, err := s.Write(ctx, key, "text/csv", func(w io.Writer) error { return writeChunks(w, data) })
		if err != nil || got != want {
			t.Fatalf("Write(%d bytes) = %+v, %v; want %+v", size, got, err, want)
		}
		rc, info, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		stored, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(stored, data) || info.ContentType != "text/csv" {
			t.Fatalf("read back %d bytes (type %q), err %v; want %d bytes of text/csv", len(stored), info.ContentType, err, size)
		}
	}
}

// TestWriteFunctionErrorLeavesNoObject: when the function fails, Write
// returns its error and the upload is abandoned, whether the function failed
// before the first byte, within the first request's bytes, or parts later.
func TestWriteFunctionErrorLeavesNoObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	boom := errors.New("boom")
	for _, before := range []int{0, 1000, storage.SinglePutMax + 1000, storage.PartSize + 1000} {
		key := fmt.Sprintf("reports/failed-%d.csv", before)
		_, err := s.Write(ctx, key, "text/csv", func(w io.Writer) error {
			if err := writeChunks(w, make([]byte, before)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Write failing after %d bytes: %v, want %v", before, err, boom)
		}
		if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after a failed Write of %d bytes: %v, want ErrNotFound", before, err)
		}
	}
}

// TestWriteUploadErrorSurfaces: when the upload fails (here: the bucket does
// not exist), Write returns the store's error, not the closed pipe that the
// function saw and passed on.
func TestWriteUploadErrorSurfaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := tallytest.S3Opts(t)
	opts.Bucket += "-missing"
	s, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{10, storage.SinglePutMax + 1000, storage.PartSize + 1000} {
		var writeErr error
		_, err := s.Write(ctx, "reports/x.csv", "text/csv", func(w io.Writer) error {
			writeErr = writeChunks(w, make([]byte, size))
			return writeErr
		})
		if !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "reports/x.csv") {
			t.Fatalf("Write of %d bytes to a missing bucket: %v, want ErrNotFound naming the key", size, err)
		}
		if size > storage.SinglePutMax && writeErr == nil {
			t.Errorf("Write of %d bytes: the function wrote everything, want it to see the failed upload", size)
		}
	}
}
