package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// TestPutSizes uploads files of unknown length around the single-request
// limit and the part size, and reads them back.
func TestPutSizes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	for _, size := range []int{0, 1, 161_508, storage.SinglePutMax - 1, storage.SinglePutMax, storage.SinglePutMax + 1, storage.PartSize + storage.SinglePutMax} {
		data := bytes.Repeat([]byte("tally,"), size/6+1)[:size]
		key := storage.ReportKey("org_1", "app_1", "rpt_small", "csv")
		n, err := s.Put(ctx, key, iotest.OneByteReader(bytes.NewReader(data)), "text/csv")
		if err != nil || n != int64(size) {
			t.Fatalf("Put(%d bytes) = %d, %v; want %d", size, n, err, size)
		}
		rc, info, err := s.Get(ctx, key, 0, -1)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) || info.Size != int64(size) || info.ContentType != "text/csv" {
			t.Fatalf("read back %d bytes (size %d, type %q), err %v; want %d bytes", len(got), info.Size, info.ContentType, err, size)
		}
	}
}

// TestPutReaderFails: a reader that fails ends the upload with its error
// and leaves no object.
func TestPutReaderFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	boom := errors.New("boom")
	key := storage.ReportKey("org_1", "app_1", "rpt_failed", "csv")
	for _, before := range []int{0, 1000, storage.SinglePutMax + 1000, storage.PartSize + 1000} {
		r := io.MultiReader(bytes.NewReader(make([]byte, before)), iotest.ErrReader(boom))
		if _, err := s.Put(ctx, key, r, "text/csv"); !errors.Is(err, boom) {
			t.Fatalf("Put after %d bytes: %v, want %v", before, err, boom)
		}
		if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Get after a failed Put: %v, want ErrNotFound", err)
		}
	}
}

// TestGetRangeWholeSize: a ranged Get returns the range's bytes and the
// whole object's size.
func TestGetRangeWholeSize(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	data := []byte("0123456789abcdef")
	key := storage.ReportKey("org_1", "app_1", "rpt_range", "csv")
	if _, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ off, length int64 }{{0, -1}, {0, 4}, {5, 10}, {10, -1}} {
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
		if err != nil || !bytes.Equal(got, want) || info.Size != int64(len(data)) {
			t.Errorf("Get(%d, %d) = %q (size %d), err %v; want %q (size %d)", tt.off, tt.length, got, info.Size, err, want, len(data))
		}
	}
}
