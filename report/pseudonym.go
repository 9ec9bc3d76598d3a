package report

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
)

// MinPseudonymKeyLen is the shortest master key accepted, in bytes.
const MinPseudonymKeyLen = 32

// ErrUnknownPseudonymKey means a report names a pseudonym key id that is
// neither the current key nor a retired one.
var ErrUnknownPseudonymKey = errors.New("report: unknown pseudonym key id")

// PseudonymKeys are the server-side master keys of counterparty pseudonyms:
// the current one, which new reports use, and retired ones, kept so that a
// report built before a rotation is rebuilt with the key it recorded. A
// report's key is derived from a master key and the report id, so that
// pseudonyms are stable within a report, unrelated across reports, and
// cannot be recomputed by someone who holds the file and the report id but
// not the master key.
type PseudonymKeys struct {
	current string
	keys    map[string][]byte
}

// NewPseudonymKeys returns the key set with current as the current key.
// Every key must be at least MinPseudonymKeyLen bytes.
func NewPseudonymKeys(current []byte, retired ...[]byte) (*PseudonymKeys, error) {
	k := &PseudonymKeys{current: PseudonymKeyID(current), keys: map[string][]byte{}}
	for i, key := range append([][]byte{current}, retired...) {
		if len(key) < MinPseudonymKeyLen {
			which := "the current pseudonym key"
			if i > 0 {
				which = fmt.Sprintf("retired pseudonym key %d", i)
			}
			return nil, fmt.Errorf("%s is %d bytes, want at least %d", which, len(key), MinPseudonymKeyLen)
		}
		k.keys[PseudonymKeyID(key)] = append([]byte(nil), key...)
	}
	return k, nil
}

// PseudonymKeyID names a master key without revealing it: the hex of the
// first 8 bytes of its SHA-256.
func PseudonymKeyID(master []byte) string {
	sum := sha256.Sum256(master)
	return hex.EncodeToString(sum[:8])
}

// CurrentID returns the id of the current key.
func (k *PseudonymKeys) CurrentID() string { return k.current }

// ReportKey returns the pseudonym key of one report: HKDF-SHA256 of the
// master key named keyID, without salt, with the report id as info.
func (k *PseudonymKeys) ReportKey(keyID, reportID string) ([]byte, error) {
	master, ok := k.keys[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownPseudonymKey, keyID)
	}
	return DerivePseudonymKey(master, reportID)
}

// DerivePseudonymKey derives a report's pseudonym key from a master key.
func DerivePseudonymKey(master []byte, reportID string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, reportID, sha256.Size)
}

// pseudonymCacheSize bounds the pseudonym cache, so that memory stays flat
// whatever the number of distinct counterparties.
const pseudonymCacheSize = 1 << 14

// pseudonymizer maps counterparty names to stable pseudonyms:
// "cp_" + the first 12 hex digits of HMAC-SHA256(report key, name).
type pseudonymizer struct {
	mac     hash.Hash
	scratch []byte
	sum     []byte
	cache   map[string]string
}

func newPseudonymizer(key []byte) *pseudonymizer {
	return &pseudonymizer{
		mac:   hmac.New(sha256.New, key),
		sum:   make([]byte, 0, sha256.Size),
		cache: make(map[string]string),
	}
}

// Pseudonym returns the pseudonym of counterparty in the report whose
// pseudonym key (see PseudonymKeys.ReportKey) is key; an empty counterparty
// stays empty.
func Pseudonym(key []byte, counterparty string) string {
	if counterparty == "" {
		return ""
	}
	return string(newPseudonymizer(key).append(nil, counterparty))
}

func (p *pseudonymizer) append(dst []byte, counterparty string) []byte {
	if v, ok := p.cache[counterparty]; ok {
		return append(dst, v...)
	}
	p.mac.Reset()
	p.scratch = append(p.scratch[:0], counterparty...)
	p.mac.Write(p.scratch)
	p.sum = p.mac.Sum(p.sum[:0])
	var name [3 + 12]byte
	copy(name[:], "cp_")
	hex.Encode(name[3:], p.sum[:6])
	if len(p.cache) >= pseudonymCacheSize {
		clear(p.cache)
	}
	p.cache[counterparty] = string(name[:])
	return append(dst, name[:]...)
}
