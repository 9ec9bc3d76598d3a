package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ErrUnknownKey means a sealed secret names a master key that is neither
// the current one nor a retired one.
var ErrUnknownKey = errors.New("webhook: unknown sealing key id")

// ErrOpen means a sealed secret does not open: it was changed, moved to
// another endpoint, or sealed under another key.
var ErrOpen = errors.New("webhook: sealed secret does not open")

// Sealer seals endpoint secrets for storage and opens them for signing. The
// key of an endpoint is HKDF-SHA256 of a master key, without salt, with
// info "tally webhook secret " + the endpoint id; the secret is encrypted
// with AES-256-GCM under it (random 12-byte nonce, the endpoint id as
// additional data), so that a database dump alone signs nothing and a
// sealed secret copied to another endpoint does not open.
//
// The master keys are the worker's pseudonym keys (TALLY_PSEUDONYM_KEY and
// its retired keys): the same key id (the hex of the first 8 bytes of the
// key's SHA-256, as report.PseudonymKeyID) is stored beside each sealed
// secret, and a rotation of the pseudonym key keeps the old key among the
// retired ones, so existing secrets still open.
type Sealer struct {
	current string
	keys    map[string][]byte
}

// NewSealer returns a Sealer sealing with current and opening with current
// and retired.
func NewSealer(current []byte, retired ...[]byte) (*Sealer, error) {
	if len(current) == 0 {
		return nil, errors.New("webhook: no master key to seal secrets with")
	}
	s := &Sealer{current: KeyID(current), keys: map[string][]byte{}}
	for _, k := range append([][]byte{current}, retired...) {
		s.keys[KeyID(k)] = append([]byte(nil), k...)
	}
	return s, nil
}

// KeyID names a master key without revealing it.
func KeyID(master []byte) string {
	sum := sha256.Sum256(master)
	return hex.EncodeToString(sum[:8])
}

// CurrentID returns the id of the key Seal uses.
func (s *Sealer) CurrentID() string { return s.current }

func (s *Sealer) aead(keyID, endpointID string) (cipher.AEAD, error) {
	master, ok := s.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, keyID)
	}
	key, err := hkdf.Key(sha256.New, master, nil, "tally webhook secret "+endpointID, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts an endpoint's secret under the current key and returns the
// key id and nonce || ciphertext.
func (s *Sealer) Seal(endpointID string, secret []byte) (keyID string, sealed []byte, err error) {
	aead, err := s.aead(s.current, endpointID)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.current, aead.Seal(nonce, nonce, secret, []byte(endpointID)), nil
}

// Open decrypts what Seal returned.
func (s *Sealer) Open(keyID, endpointID string, sealed []byte) ([]byte, error) {
	aead, err := s.aead(keyID, endpointID)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, ErrOpen
	}
	secret, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(endpointID))
	if err != nil {
		return nil, ErrOpen
	}
	return secret, nil
}
