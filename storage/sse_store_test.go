package storage_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/storage"
)

// TestPutAppliesServerSideEncryption: with SSE configured, both kinds of
// upload are stored encrypted: the single PUT, and the multipart upload
// whose digest is then set by a copy onto itself (a copy is a new write,
// which S3 would otherwise store with the bucket's default).
//
// It needs a store that can encrypt: MinIO only with a KMS configured,
// which the shared test MinIO has not; `make test-s3-compat` runs it
// against a MinIO of its own with one (TALLY_TEST_S3_SSE=SSE-S3 and
// SSE-KMS). TestServerSideHeaders checks the headers everywhere.
func TestPutAppliesServerSideEncryption(t *testing.T) {
	t.Parallel()
	opts := tallytest.GetServices(t).S3
	if opts.SSE == storage.SSENone {
		t.Skip("TALLY_TEST_S3_SSE is unset: the store under test may have no KMS (make test-s3-compat runs this against a MinIO with one)")
	}
	want := map[string]string{storage.SSES3: "AES256", storage.SSEKMS: "aws:kms"}[opts.SSE]
	s := tallytest.Store(t)
	ctx := context.Background()
	for _, size := range []int{10, storage.SinglePutMax + 1} {
		key := storage.ReportKey("org_1", "app_1", "rpt_sse", "run_1", "csv")
		data := bytes.Repeat([]byte("x"), size)
		if _, err := s.Put(ctx, key, bytes.NewReader(data), "text/csv"); err != nil {
			t.Fatalf("Put(%d bytes) with %s: %v", size, opts.SSE, err)
		}
		info, err := tallytest.Stat(ctx, s, key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Encryption != want || info.Size != int64(size) || info.SHA256 == "" {
			t.Errorf("%d bytes with %s: encryption %q, size %d, sha256 %q; want %q, %d and a digest",
				size, opts.SSE, info.Encryption, info.Size, info.SHA256, want, size)
		}
	}
}
