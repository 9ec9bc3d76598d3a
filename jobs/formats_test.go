package jobs_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/xuri/excelize/v2"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/report"
	"github.com/tally-compliance/tally/storage"
)

// csvTotals reads the total rows of a transaction_summary CSV.
func csvTotals(t *testing.T, data []byte) map[string][2]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]string{}
	for _, r := range recs {
		if r[0] == "total" {
			out[r[2]] = [2]string{r[8], r[9]}
		}
	}
	return out
}

// TestGenerateReportFormatsAgree builds the CSV, the workbook and the
// attestation of one case: each has its content type and key extension, the
// workbook's and the attestation's totals equal the CSV's, and the
// attestation names the CSV's SHA-256.
func TestGenerateReportFormatsAgree(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatal("pdftotext not found: install Debian's poppler-utils (.ci/run does)")
	}
	b := setup(t, nil)
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names", "descriptions"}})

	ready := func(typ string) *db.Report {
		t.Helper()
		rep, _ := b.createReport(t, c, reportOpts{Type: typ})
		r := b.waitReport(t, rep.ID, 60*time.Second, db.ReportReady, db.ReportFailed)
		if r.Status != db.ReportReady {
			t.Fatalf("%s: status %s (%s: %s), want ready", typ, r.Status, deref(r.ErrorCode), deref(r.ErrorMessage))
		}
		return r
	}
	csvRep := ready("transaction_summary")
	csvData := b.download(t, csvRep)
	want := csvTotals(t, csvData)
	if len(want) < 2 {
		t.Fatalf("fixture has totals %v, want several currencies", want)
	}
	xlsxRep, pdfRep := ready("transaction_summary_xlsx"), ready("case_attestation")

	for _, tc := range []struct {
		r          *db.Report
		format, ct string
		wantPrefix string
	}{
		{xlsxRep, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "PK\x03\x04"},
		{pdfRep, "pdf", "application/pdf", "%PDF-"},
	} {
		if deref(tc.r.ContentType) != tc.ct {
			t.Errorf("%s: content_type %q, want %q", tc.format, deref(tc.r.ContentType), tc.ct)
		}
		if k := deref(tc.r.ObjectKey); !strings.HasPrefix(k, storage.ReportsPrefix+tc.r.OrgID+"/"+tc.r.ApplicationID+"/"+tc.r.ID+"/") ||
			!strings.HasSuffix(k, "."+tc.format) {
			t.Errorf("%s: object_key %q, want a run key ending .%s", tc.format, k, tc.format)
		}
		data := b.download(t, tc.r)
		if !bytes.HasPrefix(data, []byte(tc.wantPrefix)) || sha256Hex(data) != deref(tc.r.SHA256) {
			t.Errorf("%s: file does not start with %q or does not match its sha256", tc.format, tc.wantPrefix)
		}
		var meta struct {
			Totals map[string]report.CurrencyTotal `json:"totals"`
		}
		if err := json.Unmarshal(tc.r.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		got := map[string][2]string{}
		for cur, tot := range meta.Totals {
			got[cur] = [2]string{strconv.FormatInt(tot.Count, 10), tot.Amount}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: metadata totals mismatch (-csv +%s):\n%s", tc.format, tc.format, diff)
		}
	}

	// The workbook read back: its totals are the CSV's, and it has one
	// transaction row per CSV transaction row.
	f, err := excelize.OpenReader(bytes.NewReader(b.download(t, xlsxRep)))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := f.GetRows("Summary", excelize.Options{RawCellValue: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, r := range recs {
		if len(r) >= 4 && r[0] == "total" {
			v, err := strconv.ParseFloat(r[3], 64)
			if err != nil {
				t.Fatalf("total amount %q: %v", r[3], err)
			}
			decimals := 0
			if _, frac, ok := strings.Cut(want[r[1]][1], "."); ok {
				decimals = len(frac)
			}
			got[r[1]] = [2]string{r[2], strconv.FormatFloat(v, 'f', decimals, 64)}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("workbook totals mismatch (-csv +xlsx):\n%s", diff)
	}
	txRows, err := f.GetRows("Transactions")
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(csvData, []byte("\ntransaction,")); len(txRows)-1 != n {
		t.Errorf("workbook has %d transactions, CSV %d", len(txRows)-1, n)
	}

	// The attestation read back: scope, totals and the CSV's SHA-256.
	path := filepath.Join(t.TempDir(), "a.pdf")
	if err := os.WriteFile(path, b.download(t, pdfRep), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	text := string(out)
	for _, s := range []string{c.ID, pdfRep.ID, "SHA-256 " + deref(csvRep.SHA256), csvRep.ID,
		b.dataAsOf.UTC().Format("2006-01-02 15:04:05 UTC"), "Ann, Auditor <ann@example.com>"} {
		if !strings.Contains(text, s) {
			t.Errorf("attestation lacks %q:\n%s", s, text)
		}
	}
	for cur, tot := range want {
		if !strings.Contains(text, cur) || !strings.Contains(text, tot[0]) || !strings.Contains(text, tot[1]) {
			t.Errorf("attestation lacks the total %s %v", cur, tot)
		}
	}
}

// TestGenerateReportBOM: a type with bom: true writes the UTF-8 BOM and
// then exactly the bytes of the type without it.
func TestGenerateReportBOM(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	var err error
	b.portal, err = config.ParsePortal([]byte(`report_types:
  - {name: transaction_summary, builder: transaction_summary, format: csv}
  - {name: transaction_summary_excel, builder: transaction_summary, format: csv, bom: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, b.workerOpts(t))
	c := b.createCase(t, caseOpts{Flags: []string{"line_items", "counterparty_names"}})
	files := map[string][]byte{}
	for _, typ := range []string{"transaction_summary", "transaction_summary_excel"} {
		rep, _ := b.createReport(t, c, reportOpts{Type: typ})
		r := b.waitReport(t, rep.ID, 60*time.Second, db.ReportReady, db.ReportFailed)
		if r.Status != db.ReportReady {
			t.Fatalf("%s: status %s", typ, r.Status)
		}
		files[typ] = b.download(t, r)
		if sha256Hex(files[typ]) != deref(r.SHA256) {
			t.Errorf("%s: sha256 does not describe the stored file", typ)
		}
	}
	plain, bom := files["transaction_summary"], files["transaction_summary_excel"]
	if bytes.HasPrefix(plain, []byte(report.UTF8BOM)) {
		t.Error("the default type writes a BOM")
	}
	if !bytes.Equal(bom, append([]byte(report.UTF8BOM), plain...)) {
		t.Errorf("bom file starts %q, want the BOM then the plain file", bom[:min(len(bom), 20)])
	}
}
