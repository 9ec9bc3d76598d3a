package evidence_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"github.com/tally-compliance/tally/evidence"
)

func TestCanonicalIsJCS(t *testing.T) {
	t.Parallel()
	got, err := evidence.CanonicalizeJSON([]byte(`{ "b": [1, "x\u0001\n\"\\/<>&ä\u2028"], "a": {"z": null, "y": true}, "c": -5 }`))
	if err != nil {
		t.Fatal(err)
	}
	want := "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,\"x\\u0001\\n\\\"\\\\/<>&ä\u2028\"],\"c\":-5}"
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if _, err := evidence.CanonicalizeJSON([]byte(`{"a":1.5}`)); err == nil {
		t.Error("a float was accepted, want it refused")
	}
}

func signed(b testing.TB, size int) (doc []byte, file []byte, keys []evidence.Key) {
	key, err := evidence.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	file = bytes.Repeat([]byte("row_type,contract_id,currency\n"), size/30+1)[:size]
	sum := sha256.Sum256(file)
	m := &evidence.Manifest{ReportID: "rpt_x", SHA256: hex.EncodeToString(sum[:]), SizeBytes: int64(len(file))}
	c, sig, err := evidence.SignManifest(key, m)
	if err != nil {
		b.Fatal(err)
	}
	doc = []byte(`{"manifest":` + string(c) + `,"signature":"` + evidence.EncodeSignature(sig) + `","key_id":"` + key.ID + `"}`)
	return doc, file, []evidence.Key{{ID: key.ID, Public: key.Public}}
}

func BenchmarkSignManifest(b *testing.B) {
	key, _ := evidence.GenerateKey()
	m := &evidence.Manifest{ReportID: "rpt_01aaaaaaaaaaaaaaaaaaaaaaaa", SHA256: "00", SizeBytes: 1 << 30, RowCount: 1 << 20}
	for b.Loop() {
		if _, _, err := evidence.SignManifest(key, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerify1MRowFile verifies a manifest and a file the size of a
// 1M-transaction summary with line items (~120 MB).
func BenchmarkVerify1MRowFile(b *testing.B) {
	doc, file, keys := signed(b, 120<<20)
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		m, err := evidence.VerifySigned(doc, keys)
		if err != nil {
			b.Fatal(err)
		}
		if err := evidence.VerifyFile(m, bytes.NewReader(file)); err != nil {
			b.Fatal(err)
		}
	}
}
