package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// putRecorder records the signed payload hash and encoding of each PUT, and
// flips one byte of a PUT's body when tamper is set.
type putRecorder struct {
	next   http.RoundTripper
	tamper bool

	mu      sync.Mutex
	hashes  []string
	chunked bool
}

func (p *putRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut {
		p.mu.Lock()
		p.hashes = append(p.hashes, req.Header.Get("X-Amz-Content-Sha256"))
		p.chunked = p.chunked || strings.Contains(req.Header.Get("Content-Encoding"), "aws-chunked")
		p.mu.Unlock()
		if p.tamper && req.Body != nil && req.ContentLength > 0 {
			body, err := io.ReadAll(req.Body)
			req.Body.Close()
			if err != nil {
				return nil, err
			}
			body[len(body)/2] ^= 1
			req = req.Clone(req.Context())
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.GetBody = nil
		}
	}
	return p.next.RoundTrip(req)
}

func recordingStore(t *testing.T, tamper bool) (*storage.Store, *putRecorder) {
	t.Helper()
	rec := &putRecorder{tamper: tamper}
	opts := tallytest.S3Opts(t)
	opts.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec }
	s, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec
}

// TestSinglePutSignsThePayloadDigest: a file that fits one request goes up
// with its SHA-256 as the signed payload hash, not as an aws-chunked
// streaming upload (which hashes the file a second time and signs every
// 64 KiB chunk).
func TestSinglePutSignsThePayloadDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, rec := recordingStore(t, false)
	data := bytes.Repeat([]byte("2026-12-01,contract,EUR,1234.56\n"), 5000)
	key := storage.ReportKey("org_1", "app_1", "rpt_digest", "run_1", "csv")
	w, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv")
	if err != nil || w.SHA256 != sha256Hex(data) {
		t.Fatalf("Put = %+v, %v; want SHA-256 %s", w, err, sha256Hex(data))
	}
	if len(rec.hashes) != 1 || rec.hashes[0] != w.SHA256 || rec.chunked {
		t.Fatalf("PUT requests sent payload hashes %q (aws-chunked %v); want one request signed with %s", rec.hashes, rec.chunked, w.SHA256)
	}
	rc, _, err := s.Get(ctx, key, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes, err %v; want the %d bytes put", len(got), err, len(data))
	}
}

// TestSinglePutRefusesAlteredBody: the server checks the body against the
// signed digest, so bytes changed on the way are refused and leave no
// object.
func TestSinglePutRefusesAlteredBody(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := recordingStore(t, true)
	data := bytes.Repeat([]byte("tally,"), 10_000)
	key := storage.ReportKey("org_1", "app_1", "rpt_tamper", "run_1", "csv")
	if w, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv"); err == nil {
		t.Fatalf("Put of an altered body = %+v, nil; want an error", w)
	}
	if _, _, err := s.Get(ctx, key, 0, -1); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after a refused Put: %v, want ErrNotFound", err)
	}
}
