package webhook_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/tally-compliance/tally/webhook"
)

// The test vector every Standard Webhooks library checks (libraries/*/
// tests in github.com/standard-webhooks/standard-webhooks).
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestReferenceLibraryMatchesSpecVector(t *testing.T) {
	t.Parallel()
	wh, err := standardwebhooks.NewWebhook(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wh.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("reference library signs %q, want the published %q", got, vectorSignature)
	}
}

func TestSignMatchesSpecVector(t *testing.T) {
	t.Parallel()
	// The vector's secret is 24 bytes, the shortest the specification allows.
	secret, err := webhook.DecodeSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := webhook.Sign(secret, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorPayload)); got != vectorSignature {
		t.Errorf("Sign = %q, want the published %q", got, vectorSignature)
	}
}

func TestHeadersVerifyWithReferenceLibraryForEitherSecret(t *testing.T) {
	t.Parallel()
	cur, prev := webhook.NewSecret(), webhook.NewSecret()
	body := []byte(`{"type":"report.ready","timestamp":"2026-01-01T00:00:00Z","data":{"id":"rpt_x"}}`)
	h, err := webhook.Headers("msg_01", time.Now(), body, cur, prev)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(h[webhook.HeaderSignature])); n != 2 {
		t.Fatalf("webhook-signature %q has %d signatures, want 2", h[webhook.HeaderSignature], n)
	}
	header := http.Header{}
	for k, v := range h {
		header.Set(k, v)
	}
	for name, s := range map[string][]byte{"current": cur, "previous": prev} {
		wh, err := standardwebhooks.NewWebhook(webhook.EncodeSecret(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, header); err != nil {
			t.Errorf("reference library rejects the %s secret's signature: %v", name, err)
		}
	}
	other, _ := standardwebhooks.NewWebhook(webhook.EncodeSecret(webhook.NewSecret()))
	if err := other.Verify(body, header); err == nil {
		t.Error("reference library accepts another secret")
	}
	tampered := bytes.Replace(body, []byte("rpt_x"), []byte("rpt_y"), 1)
	wh, _ := standardwebhooks.NewWebhook(webhook.EncodeSecret(cur))
	if err := wh.Verify(tampered, header); err == nil {
		t.Error("reference library accepts a changed body")
	}
}

func TestSecretEncoding(t *testing.T) {
	t.Parallel()
	s := webhook.NewSecret()
	enc := webhook.EncodeSecret(s)
	if !strings.HasPrefix(enc, "whsec_") || len(s) < 24 {
		t.Fatalf("secret %q: want whsec_ + base64 of at least 24 bytes", enc)
	}
	got, err := webhook.DecodeSecret(enc)
	if err != nil || !bytes.Equal(got, s) {
		t.Fatalf("DecodeSecret(EncodeSecret(s)) = %x, %v; want %x", got, err, s)
	}
	if bytes.Equal(webhook.NewSecret(), s) {
		t.Error("two secrets are equal")
	}
	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!", "whsec_" + "AAAA"} {
		if _, err := webhook.DecodeSecret(bad); !errors.Is(err, webhook.ErrBadSecret) {
			t.Errorf("DecodeSecret(%q) = %v, want ErrBadSecret", bad, err)
		}
	}
}

func TestSealerOpensOnlyItsOwnEndpointsSecret(t *testing.T) {
	t.Parallel()
	oldKey, newKey := []byte(strings.Repeat("o", 32)), []byte(strings.Repeat("n", 32))
	before, err := webhook.NewSealer(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	secret := webhook.NewSecret()
	keyID, sealed, err := before.Seal("wh_a", secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret) {
		t.Fatal("the sealed secret holds the secret in clear")
	}
	// After a rotation of the master key, the old key is retired and opens.
	after, err := webhook.NewSealer(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if after.CurrentID() == keyID {
		t.Fatal("the new master key has the old key's id")
	}
	got, err := after.Open(keyID, "wh_a", sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %x, %v; want the secret", got, err)
	}
	if _, err := after.Open(keyID, "wh_b", sealed); !errors.Is(err, webhook.ErrOpen) {
		t.Errorf("Open under another endpoint = %v, want ErrOpen", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := after.Open(keyID, "wh_a", sealed); !errors.Is(err, webhook.ErrOpen) {
		t.Errorf("Open of a changed ciphertext = %v, want ErrOpen", err)
	}
	only, _ := webhook.NewSealer(newKey)
	if _, err := only.Open(keyID, "wh_a", sealed); !errors.Is(err, webhook.ErrUnknownKey) {
		t.Errorf("Open without the old key = %v, want ErrUnknownKey", err)
	}
}

func TestGuard(t *testing.T) {
	t.Parallel()
	refused := []string{"127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "fd00::1", "169.254.169.254",
		"fe80::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "100.64.0.1", "255.255.255.255", "::ffff:127.0.0.1", "::ffff:10.0.0.1"}
	allowed := []string{"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"}
	var g *webhook.Guard // nil: the defaults
	for _, s := range refused {
		if err := g.Check(netip.MustParseAddr(s)); !errors.Is(err, webhook.ErrRefusedAddress) {
			t.Errorf("Check(%s) = %v, want refused", s, err)
		}
	}
	for _, s := range allowed {
		if err := g.Check(netip.MustParseAddr(s)); err != nil {
			t.Errorf("Check(%s) = %v, want allowed", s, err)
		}
	}
	cidr := &webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if err := cidr.Check(netip.MustParseAddr("10.1.2.3")); err != nil {
		t.Errorf("allow-listed 10.1.2.3: %v", err)
	}
	if err := cidr.Check(netip.MustParseAddr("10.2.0.1")); err == nil {
		t.Error("10.2.0.1 outside the allow-list is allowed")
	}
	all := &webhook.Guard{AllowPrivate: true}
	if err := all.Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("AllowPrivate refuses loopback: %v", err)
	}
}

func TestClientRefusesAtDialTimeAndFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer target.Close()
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redirect.Close()

	// Default guard: a loopback receiver is refused at dial, whether named
	// by address or by a name that resolves to it.
	strict := webhook.NewClient(nil, 5*time.Second)
	for _, u := range []string{target.URL, strings.Replace(target.URL, "127.0.0.1", "localhost", 1)} {
		resp, err := strict.Post(u, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Errorf("POST %s succeeded, want a refused address", u)
		} else if !errors.Is(err, webhook.ErrRefusedAddress) {
			t.Errorf("POST %s: %v, want ErrRefusedAddress", u, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the receiver got %d requests through the strict client", hits.Load())
	}

	loopback := webhook.NewClient(&webhook.Guard{Allowed: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, 5*time.Second)
	resp, err := loopback.Post(redirect.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || hits.Load() != 0 {
		t.Errorf("redirect answered %d and the target got %d requests, want 307 and none", resp.StatusCode, hits.Load())
	}
}

func TestValidateURL(t *testing.T) {
	t.Parallel()
	prod := webhook.URLPolicy{}
	dev := webhook.URLPolicy{AllowHTTP: true}
	tests := []struct {
		url  string
		p    webhook.URLPolicy
		want string // "" means valid
	}{
		{"https://portal.example/hooks", prod, ""},
		{"http://portal.example/hooks", prod, "https"},
		{"http://portal.example/hooks", dev, ""},
		{"ftp://portal.example/", dev, "scheme"},
		{"https:///nohost", prod, "no host"},
		{"https://user:pw@portal.example/", prod, "credentials"},
		{"https://portal.example/#x", prod, "fragment"},
		{"https://127.0.0.1/hooks", prod, "loopback"},
		{"https://[::1]:8443/hooks", prod, "loopback"},
		{"https://10.0.0.5/hooks", prod, "private"},
		{"https://10.0.0.5/hooks", webhook.URLPolicy{Guard: &webhook.Guard{AllowPrivate: true}}, ""},
		{"https://portal.example/" + strings.Repeat("a", 2000), prod, "longer"},
		{"not a url", prod, "scheme"},
	}
	for _, tt := range tests {
		_, err := webhook.ValidateURL(tt.url, tt.p)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateURL(%q) = %v, want valid", tt.url, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateURL(%q) = %v, want an error containing %q", tt.url, err, tt.want)
		}
	}
}
