package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
)

// TestDownloadGzip: a CSV asked for with Accept-Encoding gzip is sent
// gzipped and decompresses to the report's bytes (its ETag, sha256 and
// size); a Range is served uncompressed; q=0 and no header get the plain
// file with its Content-Length.
func TestDownloadGzip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	path := "/api/applications/alpha/reports/" + id + "/download"
	var content bytes.Buffer
	content.WriteString("row_type,contract_id,currency,kind,occurred_at,external_id,counterparty,description,count,amount\n")
	for i := range 5000 {
		content.WriteString("transaction,CTR-A,EUR,payment,2025-01-02T03:04:05Z,ext-" + strconv.Itoa(i) + ",Zoë,,," + strconv.Itoa(i%997) + ".25\n")
	}
	b.makeReady(t, id, content.Bytes())
	token := b.fx.tokens["full"]

	r := b.do(t, http.MethodGet, path, token, nil, withHeader("Accept-Encoding", "br, gzip;q=0.8"))
	h := r.Header()
	if r.Code != 200 || h.Get("Content-Encoding") != "gzip" || h.Get("Vary") != "Accept-Encoding" || h.Get("Content-Length") != "" {
		t.Fatalf("gzip download: %d, headers %v", r.Code, h)
	}
	if r.Body.Len() >= content.Len()/4 {
		t.Errorf("gzipped body is %d bytes for a %d-byte file", r.Body.Len(), content.Len())
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := db.GetReportByID(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := sha256Hex(plain); got != *rep.SHA256 || h.Get("ETag") != `"`+got+`"` || int64(len(plain)) != *rep.SizeBytes {
		t.Errorf("decompressed sha256 %s (%d bytes), want report's %s (%d), ETag %s", got, len(plain), *rep.SHA256, *rep.SizeBytes, h.Get("ETag"))
	}

	rr := b.do(t, http.MethodGet, path, token, nil, withHeader("Accept-Encoding", "gzip"), withHeader("Range", "bytes=100-199"))
	if rr.Code != http.StatusPartialContent || rr.Header().Get("Content-Encoding") != "" || rr.Body.String() != content.String()[100:200] ||
		rr.Header().Get("Content-Length") != "100" {
		t.Errorf("range with gzip accepted: %d, headers %v", rr.Code, rr.Header())
	}

	for _, ae := range []string{"", "gzip;q=0", "identity", "br"} {
		p := b.do(t, http.MethodGet, path, token, nil, withHeader("Accept-Encoding", ae))
		if p.Code != 200 || p.Header().Get("Content-Encoding") != "" || p.Body.String() != content.String() ||
			p.Header().Get("Content-Length") != strconv.Itoa(content.Len()) || p.Header().Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: %d, headers %v", ae, p.Code, p.Header())
		}
	}

	head := b.do(t, http.MethodHead, path, token, nil, withHeader("Accept-Encoding", "gzip"))
	if head.Code != 200 || head.Header().Get("Content-Encoding") != "gzip" || head.Body.Len() != 0 {
		t.Errorf("HEAD with gzip: %d, headers %v", head.Code, head.Header())
	}
}

// TestDownloadFormatFileName: an XLSX or PDF report is sent with its
// content type, a file name with its type's extension, and never gzipped.
func TestDownloadFormatFileName(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for typ, want := range map[string][2]string{
		"transaction_summary_xlsx": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
		"case_attestation":         {"application/pdf", "pdf"},
	} {
		id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, typ)).ID
		b.makeReady(t, id, []byte("binary file of "+typ))
		if _, err := b.pool.Exec(context.Background(), `UPDATE reports SET content_type = $2 WHERE id = $1`, id, want[0]); err != nil {
			t.Fatal(err)
		}
		r := b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+id+"/download", b.fx.tokens["full"], nil,
			withHeader("Accept-Encoding", "gzip"))
		h := r.Header()
		if r.Code != 200 || h.Get("Content-Type") != want[0] || h.Get("Content-Encoding") != "" || h.Get("Vary") != "" ||
			!strings.HasSuffix(h.Get("Content-Disposition"), `-`+id+`.`+want[1]+`"`) || r.Body.String() != "binary file of "+typ {
			t.Errorf("%s: %d, headers %v", typ, r.Code, h)
		}
		if got := api.DownloadFileName(&db.Report{ID: id, Type: typ, CaseID: "c", ContentType: &want[0]}); !strings.HasSuffix(got, "."+want[1]) {
			t.Errorf("%s: DownloadFileName %q", typ, got)
		}
	}
}
