package evidence

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Key is an Ed25519 key. Private is nil for a retired key, of which only the
// public half is kept so that what it signed still verifies.
type Key struct {
	ID      string
	Public  ed25519.PublicKey
	Private ed25519.PrivateKey
}

// KeyID returns the id of a public key: its RFC 7638 JWK thumbprint
// (base64url SHA-256 of {"crv":"Ed25519","kty":"OKP","x":…}), so that an id
// names exactly one key wherever it is computed.
func KeyID(pub ed25519.PublicKey) string {
	x := base64.RawURLEncoding.EncodeToString(pub)
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// NewKey returns the key of a private key.
func NewKey(priv ed25519.PrivateKey) Key {
	pub := priv.Public().(ed25519.PublicKey)
	return Key{ID: KeyID(pub), Public: pub, Private: priv}
}

// GenerateKey returns a fresh random key.
func GenerateKey() (Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Key{}, err
	}
	return NewKey(priv), nil
}

// Keys are a signer's keys: Current signs, every key (Current included)
// verifies.
type Keys struct {
	Current Key
	All     []Key
}

// Find returns the key with id kid.
func (k *Keys) Find(kid string) (Key, bool) {
	for _, key := range k.All {
		if key.ID == kid {
			return key, true
		}
	}
	return Key{}, false
}

// KeysOf returns Keys with current as the signing key and retired as keys
// that only verify.
func KeysOf(current Key, retired ...Key) *Keys {
	ks := &Keys{Current: current, All: []Key{current}}
	for _, r := range retired {
		if r.ID != current.ID {
			ks.All = append(ks.All, Key{ID: r.ID, Public: r.Public})
		}
	}
	return ks
}

// LoadKeys reads signing keys. file is one PEM PKCS#8 Ed25519 private key
// (the current key). dir holds several: every "*.pem" file is a PKCS#8
// private key or a PKIX ("PUBLIC KEY") public key; the current key is the
// private key whose file name sorts last (name them 2025-01.pem,
// 2025-07.pem, …), the others only verify. Rotate by adding a newer file;
// retire a key by keeping only its public half. With both set, file is the
// current key and dir adds retired ones.
func LoadKeys(dir, file string) (*Keys, error) {
	var current *Key
	var all []Key
	if dir != "" {
		names, err := filepath.Glob(filepath.Join(dir, "*.pem"))
		if err != nil {
			return nil, err
		}
		slices.Sort(names)
		for _, name := range names {
			k, err := readKeyFile(name)
			if err != nil {
				return nil, err
			}
			all = append(all, k)
			if k.Private != nil {
				current = &all[len(all)-1]
			}
		}
	}
	if file != "" {
		k, err := readKeyFile(file)
		if err != nil {
			return nil, err
		}
		if k.Private == nil {
			return nil, fmt.Errorf("signing key %s is a public key; a private key is needed to sign", file)
		}
		all = append(all, k)
		current = &k
	}
	if current == nil {
		return nil, errors.New("no private signing key found")
	}
	return KeysOf(*current, all...), nil
}

func readKeyFile(name string) (Key, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return Key{}, fmt.Errorf("reading signing key: %w", err)
	}
	k, err := ParsePEM(b)
	if err != nil {
		return Key{}, fmt.Errorf("signing key %s: %w", name, err)
	}
	return k, nil
}

// ParsePEM reads a PEM PKCS#8 Ed25519 private key or PKIX public key.
func ParsePEM(b []byte) (Key, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return Key{}, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return Key{}, err
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return Key{}, fmt.Errorf("%T is not an Ed25519 key", k)
		}
		return NewKey(priv), nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return Key{}, err
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return Key{}, fmt.Errorf("%T is not an Ed25519 key", k)
		}
		return Key{ID: KeyID(pub), Public: pub}, nil
	}
	return Key{}, fmt.Errorf("PEM block %q is neither PRIVATE KEY nor PUBLIC KEY", block.Type)
}

// PrivatePEM returns k's private key as PEM PKCS#8.
func (k Key) PrivatePEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// PublicPEM returns k's public key as PEM PKIX (what openssl -pubin reads).
func (k Key) PublicPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Public)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// JWK is an Ed25519 public key as RFC 8037 writes it.
type JWK struct {
	Kty string `json:"kty"` // "OKP"
	Crv string `json:"crv"` // "Ed25519"
	X   string `json:"x"`   // base64url public key
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKSet is a JSON Web Key Set (RFC 7517).
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// ToJWK returns k's public key as a JWK.
func (k Key) ToJWK() JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(k.Public), Kid: k.ID,
		Use: "sig", Alg: "EdDSA"}
}

// ParseJWKSet reads a JWK set and returns its Ed25519 keys. A key whose kid
// is not its thumbprint is refused: the kid is how a manifest names its key.
func ParseJWKSet(b []byte) ([]Key, error) {
	var set JWKSet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("parsing JWK set: %w", err)
	}
	var keys []Key
	for i, j := range set.Keys {
		if j.Kty != "OKP" || j.Crv != "Ed25519" {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(j.X, "="))
		if err != nil || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("JWK set: key %d: x is not a base64url Ed25519 public key", i)
		}
		if id := KeyID(pub); j.Kid != id {
			return nil, fmt.Errorf("JWK set: key %d: kid %q is not the key's thumbprint %q", i, j.Kid, id)
		}
		keys = append(keys, Key{ID: j.Kid, Public: pub})
	}
	return keys, nil
}
