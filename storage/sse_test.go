package storage

import (
	"net/http"
	"testing"
)

// TestServerSideHeaders: each SSE setting becomes the request headers S3
// reads (x-amz-server-side-encryption and the KMS key id), and settings
// that contradict each other are refused when the store is made.
func TestServerSideHeaders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sse, keyID    string
		wantAlgorithm string // empty: no encryption header
		wantErr       bool
	}{
		{SSENone, "", "", false},
		{SSES3, "", "AES256", false},
		{SSEKMS, "", "aws:kms", false},
		{SSEKMS, "arn:aws:kms:eu-west-1:111122223333:key/1234abcd", "aws:kms", false},
		{SSENone, "key", "", true},
		{SSES3, "key", "", true},
		{"AES256", "", "", true},
	} {
		opts := Opts{Endpoint: "127.0.0.1:1", SSE: tc.sse, SSEKMSKeyID: tc.keyID}
		s, err := New(opts)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(SSE %q, key %q): error %v, want error %v", tc.sse, tc.keyID, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		h := http.Header{}
		if s.sse != nil {
			s.sse.Marshal(h)
		}
		if got := h.Get("X-Amz-Server-Side-Encryption"); got != tc.wantAlgorithm {
			t.Errorf("SSE %q: x-amz-server-side-encryption %q, want %q", tc.sse, got, tc.wantAlgorithm)
		}
		if got := h.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"); got != tc.keyID {
			t.Errorf("SSE %q: KMS key id header %q, want %q", tc.sse, got, tc.keyID)
		}
	}
}

// TestCredentialsStaticOrChain: static keys when either is set, else the
// AWS chain, which reads AWS_* from the environment first.
func TestCredentialsStaticOrChain(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "from-env")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "env-token")
	static, err := Credentials(Opts{AccessKeyID: "static", SecretAccessKey: "static-secret"}).GetWithContext(nil)
	if err != nil || static.AccessKeyID != "static" || static.SessionToken != "" {
		t.Errorf("with keys set: %+v, %v; want the static keys", static, err)
	}
	chain, err := Credentials(Opts{}).GetWithContext(nil)
	if err != nil || chain.AccessKeyID != "from-env" || chain.SecretAccessKey != "env-secret" || chain.SessionToken != "env-token" {
		t.Errorf("without keys: %+v, %v; want AWS_* from the environment", chain, err)
	}
}
