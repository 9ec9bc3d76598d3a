package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Manifest describes one report file: what it is, what it was built from,
// and its digest. Its canonical form (Canonical) is what is signed. Times
// are RFC 3339 UTC strings, so that the canonical subset has no floats.
type Manifest struct {
	ReportID      string `json:"report_id"`
	OrgID         string `json:"org_id"`
	ApplicationID string `json:"application_id"`
	CaseID        string `json:"case_id"`
	Type          string `json:"type"`
	Format        string `json:"format"`
	Scope         Scope  `json:"scope"`
	SHA256        string `json:"sha256"`
	SizeBytes     int64  `json:"size_bytes"`
	RowCount      int64  `json:"row_count"`
	GeneratedAt   string `json:"generated_at"`
	KeyID         string `json:"key_id"`
}

// Scope is the snapshot a report was built from: the case's period, flags
// and contract filters, data_as_of, and the PostgreSQL snapshot taken at
// creation (its text form; empty for reports created before it was kept).
type Scope struct {
	PeriodStart      string   `json:"period_start"`
	PeriodEnd        string   `json:"period_end"`
	DisclosureFlags  []string `json:"disclosure_flags"`
	ContractFilters  []string `json:"contract_filters"`
	DataAsOf         string   `json:"data_as_of"`
	CreationSnapshot string   `json:"creation_snapshot"`
}

// Signed is a manifest with its detached signature, as the API serves it
// and as tallyctl verify reads it.
type Signed struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature string          `json:"signature"` // base64url, no padding
	KeyID     string          `json:"key_id"`
}

// SignManifest sets m.KeyID to key's and returns the canonical bytes of m
// and their Ed25519 signature.
func SignManifest(key Key, m *Manifest) (canonical, sig []byte, err error) {
	if key.Private == nil {
		return nil, nil, errors.New("signing key has no private half")
	}
	if m.Scope.DisclosureFlags == nil {
		m.Scope.DisclosureFlags = []string{}
	}
	if m.Scope.ContractFilters == nil {
		m.Scope.ContractFilters = []string{}
	}
	m.KeyID = key.ID
	canonical, err = Canonical(m)
	if err != nil {
		return nil, nil, err
	}
	return canonical, ed25519.Sign(key.Private, canonical), nil
}

// EncodeSignature is the text form of a signature: base64url, no padding.
func EncodeSignature(sig []byte) string { return base64.RawURLEncoding.EncodeToString(sig) }

// VerifyError is one check that failed; its message says which and why.
type VerifyError struct {
	Check string // "manifest", "key", "signature", "size", "sha256"
	Msg   string
}

func (e *VerifyError) Error() string { return e.Check + ": " + e.Msg }

// VerifySigned checks a Signed document against keys and returns its
// manifest: the key is known, the manifest names the same key, and the
// signature verifies over the manifest's canonical form. It touches no
// database and no network.
func VerifySigned(doc []byte, keys []Key) (*Manifest, error) {
	var s Signed
	if err := json.Unmarshal(doc, &s); err != nil {
		return nil, &VerifyError{"manifest", "not a signed manifest document: " + err.Error()}
	}
	if len(s.Manifest) == 0 || s.Signature == "" || s.KeyID == "" {
		return nil, &VerifyError{"manifest", "the document needs manifest, signature and key_id"}
	}
	canonical, err := CanonicalizeJSON(s.Manifest)
	if err != nil {
		return nil, &VerifyError{"manifest", err.Error()}
	}
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(s.Manifest)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, &VerifyError{"manifest", "unexpected manifest: " + err.Error()}
	}
	if m.KeyID != s.KeyID {
		return nil, &VerifyError{"key", fmt.Sprintf("the manifest names key %q but the signature is by %q", m.KeyID, s.KeyID)}
	}
	var key *Key
	for i := range keys {
		if keys[i].ID == s.KeyID {
			key = &keys[i]
		}
	}
	if key == nil {
		return nil, &VerifyError{"key", fmt.Sprintf("key %q is not in the key set", s.KeyID)}
	}
	sig, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s.Signature, "="))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, &VerifyError{"signature", "not a base64url Ed25519 signature"}
	}
	if !ed25519.Verify(key.Public, canonical, sig) {
		return nil, &VerifyError{"signature", fmt.Sprintf("does not verify with key %q: the manifest is not the one that was signed", s.KeyID)}
	}
	return &m, nil
}

// VerifyFile checks that r holds exactly the file m describes: its size,
// then its SHA-256.
func VerifyFile(m *Manifest, r io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("reading file: %w", err)
	}
	if n != m.SizeBytes {
		return &VerifyError{"size", fmt.Sprintf("the file is %d bytes, the manifest says %d", n, m.SizeBytes)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return &VerifyError{"sha256", fmt.Sprintf("the file's SHA-256 is %s, the manifest says %s", got, m.SHA256)}
	}
	return nil
}
