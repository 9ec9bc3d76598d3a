// Package webhook is what Tally's webhooks need that is not SQL or a job:
// Standard Webhooks signatures and secrets (https://www.standardwebhooks.com/),
// the sealing of stored secrets, endpoint URL validation, and an HTTP
// client that refuses private addresses at dial time. It imports nothing of
// Tally.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a serialized symmetric secret.
const SecretPrefix = "whsec_"

// SecretLen is the length of a generated secret in bytes. The specification
// asks for 24 to 64 random bytes.
const SecretLen = 32

// ErrBadSecret means a serialized secret is not whsec_ + base64 of 24 to 64 bytes.
var ErrBadSecret = errors.New("webhook: a secret is whsec_ followed by the base64 of 24 to 64 bytes")

// NewSecret returns SecretLen random bytes.
func NewSecret() []byte {
	b := make([]byte, SecretLen)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

// EncodeSecret serializes a secret the way receivers are given it: whsec_
// followed by its standard base64.
func EncodeSecret(secret []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(secret)
}

// DecodeSecret parses a serialized secret.
func DecodeSecret(s string) ([]byte, error) {
	raw, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(b) < 24 || len(b) > 64 {
		return nil, ErrBadSecret
	}
	return b, nil
}

// Sign returns the v1 signature of one attempt: "v1," followed by the
// base64 of HMAC-SHA256(secret, id + "." + timestamp + "." + body), with
// the timestamp in Unix seconds.
func Sign(secret []byte, id string, timestamp time.Time, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Headers returns the three Standard Webhooks headers of one attempt. Each
// secret signs (the current one first, then a previous one still in its
// grace period); the signatures are space-separated in webhook-signature,
// and a receiver accepts the message when any of them verifies.
func Headers(id string, timestamp time.Time, body []byte, secrets ...[]byte) (map[string]string, error) {
	if len(secrets) == 0 {
		return nil, fmt.Errorf("webhook: no secret to sign %s with", id)
	}
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = Sign(s, id, timestamp, body)
	}
	return map[string]string{
		HeaderID:        id,
		HeaderTimestamp: strconv.FormatInt(timestamp.Unix(), 10),
		HeaderSignature: strings.Join(sigs, " "),
	}, nil
}
