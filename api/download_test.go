package api_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
)

func TestDownload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	path := "/api/applications/alpha/reports/" + id + "/download"

	notReady := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil)
	if notReady.Code != http.StatusConflict || notReady.errorCode(t) != api.CodeReportNotReady {
		t.Fatalf("pending: %d %s, want 409 report_not_ready", notReady.Code, notReady.Body)
	}

	content := []byte("row_type,contract_id\ntotal,,EUR\n" + strings.Repeat("x", 100000))
	b.makeReady(t, id, content)

	r := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil)
	if r.Code != 200 || r.Body.String() != string(content) {
		t.Fatalf("download: %d, %d bytes, want 200 with %d bytes", r.Code, r.Body.Len(), len(content))
	}
	h := r.Header()
	if h.Get("Content-Type") != "text/csv; charset=utf-8" || h.Get("Content-Length") != strconv.Itoa(len(content)) ||
		h.Get("ETag") != `"`+sha256Hex(content)+`"` ||
		h.Get("Content-Disposition") != `attachment; filename="transaction_summary-`+b.fx.caseOK.ID+`-`+id+`.csv"` {
		t.Errorf("headers = %v", h)
	}

	// Range.
	rr := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("Range", "bytes=4-11"))
	if rr.Code != http.StatusPartialContent || rr.Body.String() != string(content[4:12]) ||
		rr.Header().Get("Content-Range") != "bytes 4-11/"+strconv.Itoa(len(content)) {
		t.Fatalf("range: %d %q %q", rr.Code, rr.Body, rr.Header().Get("Content-Range"))
	}
	suffix := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("Range", "bytes=-5"))
	if suffix.Code != 206 || suffix.Body.String() != string(content[len(content)-5:]) {
		t.Fatalf("suffix range: %d %q", suffix.Code, suffix.Body)
	}
	bad := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("Range", "bytes=999999999-"))
	if bad.Code != http.StatusRequestedRangeNotSatisfiable || bad.errorCode(t) != api.CodeRangeNotSatisfiable {
		t.Fatalf("unsatisfiable range: %d %s", bad.Code, bad.Body)
	}

	// If-None-Match.
	nm := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, withHeader("If-None-Match", h.Get("ETag")))
	if nm.Code != http.StatusNotModified || nm.Body.Len() != 0 {
		t.Fatalf("If-None-Match: %d", nm.Code)
	}

	// Owner-level download of the same report.
	od := b.do(t, http.MethodGet, "/api/reports/"+id+"/download", b.fx.tokens["owner"], nil)
	if od.Code != 200 || od.Body.String() != string(content) {
		t.Fatalf("owner download: %d", od.Code)
	}

	// Events: created, then one downloaded per transfer (full, two ranges,
	// owner); none for 304, 409 or 416.
	evs, err := tallytest.ListReportEvents(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	want := "report.created,report.downloaded,report.downloaded,report.downloaded,report.downloaded"
	if strings.Join(kinds, ",") != want {
		t.Errorf("events = %v, want %s", kinds, want)
	}
	if *evs[len(evs)-1].ActorID != b.fx.users["owner"].ID {
		t.Errorf("last download actor = %s, want the owner", *evs[len(evs)-1].ActorID)
	}
}

func TestDownload410(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tests := []struct {
		name string
		set  func(id string)
		code string
	}{
		{"Failed", func(id string) {
			if _, err := db.MarkReportFailed(ctx, b.pool, id, "storage_unavailable", "the file store was unreachable", true); err != nil {
				t.Fatal(err)
			}
		}, api.CodeReportFailed},
		{"Canceled", func(id string) {
			if _, err := tallytest.MarkReportCanceled(ctx, b.pool, id, "canceled by an administrator"); err != nil {
				t.Fatal(err)
			}
		}, api.CodeReportCanceled},
		{"Expired", func(id string) {
			b.makeReady(t, id, []byte("x"))
			if _, err := db.MarkReportExpired(ctx, b.pool, id); err != nil {
				t.Fatal(err)
			}
		}, api.CodeReportExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
			tt.set(id)
			r := b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+id+"/download", b.fx.tokens["full"], nil)
			if r.Code != http.StatusGone || r.errorCode(t) != tt.code {
				t.Fatalf("got %d %s, want 410 %s", r.Code, r.Body, tt.code)
			}
			if !strings.Contains(r.Body.String(), `"message":"the report`) {
				t.Errorf("410 gives no reason: %s", r.Body)
			}
			// The list shows the error object.
			l := decode[[]api.Report](t, b.do(t, http.MethodGet, "/api/applications/alpha/reports", b.fx.tokens["full"], nil))
			if l[0].ID != id || l[0].Error == nil || l[0].Error.Code == "" {
				t.Errorf("listed report lacks its error: %+v", l[0])
			}
		})
	}
}

func TestSafeFileName(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"transaction_summary-case_1-rpt_1.csv": "transaction_summary-case_1-rpt_1.csv",
		"../../etc/passwd":                     "_.._etc_passwd",
		"a\"b\r\nSet-Cookie: x.csv":            "a_b__Set-Cookie__x.csv",
		"...":                                  "report",
		"résumé.csv":                           "r_sum_.csv",
	}
	for in, want := range tests {
		if got := api.SafeFileName(in); got != want {
			t.Errorf("SafeFileName(%q) = %q, want %q", in, got, want)
		}
	}
}
