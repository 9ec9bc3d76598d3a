package storage_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
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
		key := storage.ReportKey("org_1", "app_1", "rpt_small", "run_1", "csv")
		w, err := s.Put(ctx, key, iotest.OneByteReader(bytes.NewReader(data)), "text/csv")
		if err != nil || w.Size != int64(size) || w.SHA256 != sha256Hex(data) {
			t.Fatalf("Put(%d bytes) = %+v, %v; want %d bytes with SHA-256 %s", size, w, err, size, sha256Hex(data))
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
		// The digest is stored with the object, whether it went up in one
		// request or in parts, and returned by Get and Stat alike.
		st, err := tallytest.Stat(ctx, s, key)
		if err != nil || info.SHA256 != sha256Hex(data) || st.SHA256 != sha256Hex(data) || st.ContentType != "text/csv" {
			t.Fatalf("digest metadata: Get %q, Stat %q (type %q, err %v); want %s", info.SHA256, st.SHA256, st.ContentType, err, sha256Hex(data))
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
	key := storage.ReportKey("org_1", "app_1", "rpt_failed", "run_1", "csv")
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
	key := storage.ReportKey("org_1", "app_1", "rpt_range", "run_1", "csv")
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

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestReportKeyIsPerRun: two runs of one report write two keys, and both
// (and the older one-key-per-report form) name the report.
func TestReportKeyIsPerRun(t *testing.T) {
	t.Parallel()
	a := storage.ReportKey("org_1", "app_1", "rpt_1", "run_a", "csv")
	b := storage.ReportKey("org_1", "app_1", "rpt_1", "run_b", "csv")
	if a == b {
		t.Fatalf("two runs share the key %s", a)
	}
	for _, tt := range []struct {
		key  string
		id   string
		isOK bool
	}{
		{a, "rpt_1", true},
		{"reports/org_1/app_1/rpt_2.csv", "rpt_2", true},
		{"reports/org_1/rpt_3.csv", "", false},
		{"other/org_1/app_1/rpt_1/run_a.csv", "", false},
	} {
		if id, ok := storage.ReportIDOfKey(tt.key); id != tt.id || ok != tt.isOK {
			t.Errorf("ReportIDOfKey(%q) = %q, %v; want %q, %v", tt.key, id, ok, tt.id, tt.isOK)
		}
	}
}

// TestPutPartsConcurrently: with several parts in flight, the parts are
// stitched in file order, the digest is the whole file's, and a reader that
// fails after some parts went up leaves no object and no upload.
func TestPutPartsConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := tallytest.S3Opts(t)
	opts.UploadConcurrency = 3
	s, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4*storage.PartSize+777)
	for i := range data {
		data[i] = byte(i / storage.PartSize) // each part distinct: a misordered part shows
	}
	key := storage.ReportKey("org_1", "app_1", "rpt_parts", "run_1", "csv")
	w, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv")
	if err != nil || w.Size != int64(len(data)) || w.SHA256 != sha256Hex(data) {
		t.Fatalf("Put = %+v, %v; want %d bytes with SHA-256 %s", w, err, len(data), sha256Hex(data))
	}
	rc, info, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) || info.SHA256 != w.SHA256 {
		t.Fatalf("read back %d bytes (digest %q), err %v; want the %d bytes put", len(got), info.SHA256, err, len(data))
	}

	boom := errors.New("boom")
	failKey := storage.ReportKey("org_1", "app_1", "rpt_parts", "run_2", "csv")
	r := io.MultiReader(bytes.NewReader(data[:3*storage.PartSize+5]), iotest.ErrReader(boom))
	if _, err := s.Put(ctx, failKey, r, "text/csv"); !errors.Is(err, boom) {
		t.Fatalf("Put of a failing reader: %v, want %v", err, boom)
	}
	if _, _, err := s.Get(ctx, failKey, 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after a failed Put: %v, want ErrNotFound", err)
	}
	var uploads int
	if err := s.ListUploads(ctx, "", func(storage.Upload) error { uploads++; return nil }); err != nil {
		t.Fatal(err)
	}
	if uploads != 0 {
		t.Fatalf("%d incomplete uploads left after a failed Put, want 0", uploads)
	}
}

// TestPutPartsDigestWithoutRewrite: a file uploaded in parts gets its
// digest without being copied onto itself (a copy rewrote the whole object
// in MinIO): the object read back is the upload, whose ETag counts its
// parts, and Get returns its digest.
func TestPutPartsDigestWithoutRewrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := tallytest.Store(t)
	data := bytes.Repeat([]byte("tally,"), (storage.SinglePutMax+1000)/6)
	key := storage.ReportKey("org_1", "app_1", "rpt_parts", "run_1", "csv")
	w, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv")
	if err != nil || w.SHA256 != sha256Hex(data) {
		t.Fatalf("Put = %+v, %v; want SHA-256 %s", w, err, sha256Hex(data))
	}
	st, err := tallytest.Stat(ctx, s, key)
	if err != nil || st.SHA256 != w.SHA256 || st.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v; want %d bytes with SHA-256 %s", st, err, len(data), w.SHA256)
	}
	if !strings.HasSuffix(strings.Trim(st.ETag, `"`), "-2") {
		t.Fatalf("ETag %q: want the two-part upload's (…-2), not a copy's", st.ETag)
	}
}
