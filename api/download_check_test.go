package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// counter returns the value of a counter on the API's registry, 0 when the
// series does not exist.
func (b *testBundle) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := b.server.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// TestDownloadRefusesObjectNotMatchingReport: before the first byte, a
// download compares the object with the report; other bytes (same size or
// not) or no object at all are a 500 with a code of its own and a counter,
// never a stream. HEAD answers the same status.
func TestDownloadRefusesObjectNotMatchingReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	content := []byte("row_type,contract_id\ntotal,,EUR\n")
	tests := []struct {
		name    string
		replace []byte // nil: delete the object
		code    string
		metric  string
		labels  map[string]string
	}{
		{"SameSizeOtherBytes", bytes.ToUpper(content), api.CodeReportObjectMismatch, "tally_report_object_mismatch_total", map[string]string{"field": "sha256"}},
		{"OtherSize", append(bytes.Clone(content), "extra\n"...), api.CodeReportObjectMismatch, "tally_report_object_mismatch_total", map[string]string{"field": "size"}},
		{"Missing", nil, api.CodeReportObjectMissing, "tally_report_object_missing_total", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
			b.makeReady(t, id, content)
			r, err := db.GetReportByID(ctx, b.pool, id)
			if err != nil {
				t.Fatal(err)
			}
			if tt.replace == nil {
				err = b.store.Delete(ctx, *r.ObjectKey)
			} else {
				_, err = b.store.Put(ctx, *r.ObjectKey, bytes.NewReader(tt.replace), "text/csv; charset=utf-8")
			}
			if err != nil {
				t.Fatal(err)
			}
			before := b.counter(t, tt.metric, tt.labels)
			path := "/api/applications/alpha/reports/" + id + "/download"
			for _, opt := range []reqOpt{func(*http.Request) {}, withHeader("Range", "bytes=0-3")} {
				resp := b.do(t, http.MethodGet, path, b.fx.tokens["full"], nil, opt)
				if resp.Code != http.StatusInternalServerError || resp.errorCode(t) != tt.code {
					t.Fatalf("got %d %s, want 500 %s", resp.Code, resp.Body, tt.code)
				}
				if strings.Contains(resp.Body.String(), "row_type") || strings.Contains(resp.Body.String(), "ROW_TYPE") {
					t.Errorf("file bytes in the error: %s", resp.Body)
				}
			}
			if head := b.do(t, http.MethodHead, path, b.fx.tokens["full"], nil); head.Code != http.StatusInternalServerError {
				t.Errorf("HEAD: %d, want 500", head.Code)
			}
			if got := b.counter(t, tt.metric, tt.labels) - before; got != 3 {
				t.Errorf("%s%v grew by %v, want 3", tt.metric, tt.labels, got)
			}
			if kinds := eventKindsOf(t, b, id); strings.Contains(kinds, "report.downloaded") {
				t.Errorf("events %s: a refused download was recorded", kinds)
			}
		})
	}
}

func eventKindsOf(t *testing.T, b *testBundle, id string) string {
	t.Helper()
	evs, err := tallytest.ListReportEvents(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	return strings.Join(kinds, ",")
}

// racingStore downloads the report through the API just before and just
// after expiry deletes its object.
type racingStore struct {
	*storage.Store
	download func() // runs before and after each Delete
}

func (s *racingStore) Delete(ctx context.Context, key string) error {
	s.download()
	err := s.Store.Delete(ctx, key)
	s.download()
	return err
}

// TestDownloadRacingExpiryIsGone: a download while expiry works on the
// report, before or after its object is deleted, answers 410
// report_expired, never 500 or the file.
func TestDownloadRacingExpiryIsGone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id := decode[api.Report](t, b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")).ID
	b.makeReady(t, id, []byte("a,b\n1,2\n"))
	if _, err := b.pool.Exec(ctx, `UPDATE reports SET expires_at = now() - interval '1 minute' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	var got []string
	store := &racingStore{Store: b.store, download: func() {
		r := b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+id+"/download", b.fx.tokens["full"], nil)
		code := ""
		if r.Code >= 400 {
			code = r.errorCode(t)
		}
		got = append(got, http.StatusText(r.Code)+" "+code)
	}}
	w := &jobs.ExpireReportsWorker{Pool: b.pool, Store: store}
	if err := w.Work(ctx, &river.Job[jobs.ExpireReportsArgs]{JobRow: &rivertype.JobRow{ID: 1, Attempt: 1}}); err != nil {
		t.Fatal(err)
	}
	want := "Gone report_expired"
	if len(got) != 2 || got[0] != want || got[1] != want {
		t.Errorf("downloads during expiry: %q, want two %q", got, want)
	}
	r, err := db.GetReportByID(ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tallytest.Stat(ctx, b.store, *r.ObjectKey); r.Status != db.ReportExpired || err == nil {
		t.Errorf("after expiry: status %s, object stat err %v; want expired and no object", r.Status, err)
	}
}
