package api_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/worker"
)

// opensslCheck is README's "verify with standard tools" script, run as
// written there on manifest.json (the API's answer), keys.json (the JWK
// set) and report.csv.
const opensslCheck = `set -eu
KID=$(jq -r .key_id manifest.json)
jq -cjS .manifest manifest.json > manifest.canonical.json
jq -rj .signature manifest.json | tr -- '-_' '+/' | sed 's/$/==/' | base64 -d > sig.bin
{ printf '302a300506032b6570032100'
  jq -rj --arg kid "$KID" '.keys[] | select(.kid == $kid) | .x' keys.json | tr -- '-_' '+/' | sed 's/$/=/' | base64 -d | xxd -p -c 64
} | xxd -r -p | openssl pkey -pubin -inform DER -out pub.pem
openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in manifest.canonical.json -sigfile sig.bin
echo "$(jq -r .manifest.sha256 manifest.json)  report.csv" | sha256sum -c
test "$(stat -c %s report.csv)" = "$(jq -r .manifest.size_bytes manifest.json)"
`

// readyReport creates a report on alpha as full and waits until it is ready.
func (b *testBundle) readyReport(t *testing.T) string {
	t.Helper()
	res := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
	if res.Code != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.Code, res.Body)
	}
	id := decode[struct {
		ID string `json:"id"`
	}](t, res).ID
	if got := b.waitFinal(t, "full", "alpha", []string{id})[id].Status; got != db.ReportReady {
		t.Fatalf("report %s is %s, want ready", id, got)
	}
	return id
}

// evidenceFiles fetches a report's manifest, the key set and the file, as
// an auditor would, into a directory.
func (b *testBundle) evidenceFiles(t *testing.T, id string) string {
	t.Helper()
	dir := t.TempDir()
	get := func(path string) []byte {
		res := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil)
		if res.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, res.Code, res.Body)
		}
		return res.Body.Bytes()
	}
	for name, path := range map[string]string{
		"manifest.json": "/api/applications/alpha/reports/" + id + "/manifest",
		"keys.json":     "/.well-known/tally-signing-keys",
		"report.csv":    "/api/applications/alpha/reports/" + id + "/download",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), get(path), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runOpenSSLCheck(t *testing.T, dir string) (string, error) {
	t.Helper()
	for _, tool := range []string{"openssl", "jq", "xxd", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian: apt-get install openssl jq xxd): %v", tool, err)
		}
	}
	cmd := exec.Command("bash", "-c", opensslCheck)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func verifyOffline(t *testing.T, dir string) error {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys, err := evidence.ParseJWKSet(read("keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := evidence.VerifySigned(read("manifest.json"), keys)
	if err != nil {
		return err
	}
	return evidence.VerifyFile(m, bytes.NewReader(read("report.csv")))
}

func TestManifestOfRealReportVerifiesWithOpenSSL(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key, err := evidence.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b.runWorker(t, func(o *worker.Opts) { o.Keys = evidence.KeysOf(key) })
	id := b.readyReport(t)
	dir := b.evidenceFiles(t, id)

	out, err := runOpenSSLCheck(t, dir)
	if err != nil {
		t.Fatalf("README's OpenSSL check failed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Signature Verified Successfully") || !strings.Contains(out, "report.csv: OK") {
		t.Errorf("OpenSSL check output %q, want a verified signature and a matching digest", out)
	}
	t.Logf("OpenSSL check of %s:\n%s", id, out)
	if err := verifyOffline(t, dir); err != nil {
		t.Fatalf("evidence.Verify: %v", err)
	}

	// The manifest view is in the activity log.
	evs, err := tallytest.ListReportEvents(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	viewed := 0
	for _, ev := range evs {
		if ev.Kind == db.EventReportManifestViewed {
			viewed++
		}
	}
	if viewed != 1 {
		t.Errorf("%d %s events, want 1", viewed, db.EventReportManifestViewed)
	}

	// One changed byte of the file, one changed field of the manifest: both
	// checks fail, saying which.
	t.Run("FileByte", func(t *testing.T) {
		csv, _ := os.ReadFile(filepath.Join(dir, "report.csv"))
		bad := t.TempDir()
		copyDir(t, dir, bad)
		csv[len(csv)/2] ^= 1
		if err := os.WriteFile(filepath.Join(bad, "report.csv"), csv, 0o600); err != nil {
			t.Fatal(err)
		}
		var ve *evidence.VerifyError
		if err := verifyOffline(t, bad); !errors.As(err, &ve) || ve.Check != "sha256" {
			t.Errorf("verify of a changed file: %v, want a sha256 failure", err)
		}
		if out, err := runOpenSSLCheck(t, bad); err == nil || !strings.Contains(out, "FAILED") {
			t.Errorf("sha256sum accepted a changed file: %v\n%s", err, out)
		}
	})
	t.Run("ManifestField", func(t *testing.T) {
		bad := t.TempDir()
		copyDir(t, dir, bad)
		m, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
		m = bytes.Replace(m, []byte(`"type":"transaction_summary"`), []byte(`"type":"activity_log"`), 1)
		if err := os.WriteFile(filepath.Join(bad, "manifest.json"), m, 0o600); err != nil {
			t.Fatal(err)
		}
		var ve *evidence.VerifyError
		if err := verifyOffline(t, bad); !errors.As(err, &ve) || ve.Check != "signature" {
			t.Errorf("verify of a changed manifest: %v, want a signature failure", err)
		}
		if out, err := runOpenSSLCheck(t, bad); err == nil || !strings.Contains(out, "Signature Verification Failure") {
			t.Errorf("openssl accepted a changed manifest: %v\n%s", err, out)
		}
	})
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	for _, name := range []string{"manifest.json", "keys.json", "report.csv"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A report signed before a key rotation still verifies after it: the new
// key signs new reports, the retired one stays in the key set.
func TestManifestSignedBeforeRotationVerifiesAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	oldKey, _ := evidence.GenerateKey()
	newKey, _ := evidence.GenerateKey()

	stop := b.runWorker(t, func(o *worker.Opts) { o.Keys = evidence.KeysOf(oldKey) })
	before := b.readyReport(t)
	stop()
	b.runWorker(t, func(o *worker.Opts) {
		o.Keys = evidence.KeysOf(newKey, evidence.Key{ID: oldKey.ID, Public: oldKey.Public})
	})
	after := b.readyReport(t)

	for id, kid := range map[string]string{before: oldKey.ID, after: newKey.ID} {
		dir := b.evidenceFiles(t, id)
		if err := verifyOffline(t, dir); err != nil {
			t.Errorf("report %s: %v", id, err)
		}
		if out, err := runOpenSSLCheck(t, dir); err != nil {
			t.Errorf("report %s: OpenSSL check: %v\n%s", id, err, out)
		}
		m, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if !bytes.Contains(m, []byte(`"key_id":"`+kid+`"`)) {
			t.Errorf("report %s manifest %s, want key %s", id, m, kid)
		}
	}
}
