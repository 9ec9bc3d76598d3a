package api

import (
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tally-compliance/tally/db"
)

// FuzzDecodeCreateReport: decoding never panics, every rejection is a 4xx
// Error with a code, and an accepted body has exactly the two known fields.
func FuzzDecodeCreateReport(f *testing.F) {
	for _, s := range []string{
		`{"case_id":"case_01aaaaaaaaaaaaaaaaaaaaaaaa","report_type":"transaction_summary"}`,
		`{"case_id":"x","case_id":"y","report_type":"t"}`,
		`{"case_id":1}`, `[]`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"case_id":"\u0000","report_type":"\ud800"}`,
		"{\"case_id\":\"\xff\"}", `{"case_id":"a","report_type":"b"} {}`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeCreateReport(body)
		if err != nil {
			e, ok := err.(*Error)
			if !ok || e.Status < 400 || e.Status >= 500 || e.Code == "" {
				t.Fatalf("rejection %v is not a 4xx API error", err)
			}
			return
		}
		if req.CaseID == "" || req.ReportType == "" || len(req.CaseID) > 100 || len(req.ReportType) > 100 {
			t.Fatalf("accepted invalid request %+v", req)
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8")
		}
	})
}

// FuzzCursor: any string decodes to an error or to a cursor that encodes
// back for the same filters; a cursor never crosses filters.
func FuzzCursor(f *testing.F) {
	r := &db.Report{ID: "rpt_01aaaaaaaaaaaaaaaaaaaaaaaa", CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)}
	f.Add(encodeCursor(r, filterKey("", "", "", "")))
	f.Add("")
	f.Add("eyJ0IjoiMjAyNS0wMS0wMVQwMDowMDowMFoiLCJpIjoieCIsImYiOiJ5In0")
	f.Add(strings.Repeat("A", 600))
	f.Fuzz(func(t *testing.T, s string) {
		filter := filterKey("app", "ready", "", "")
		c, err := decodeCursor(s, filter)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.Status != http.StatusUnprocessableEntity {
				t.Fatalf("bad cursor gave %v, want a 422", err)
			}
			return
		}
		if !db.ValidID(db.PrefixReport, c.ID) {
			t.Fatalf("cursor with invalid id %q accepted", c.ID)
		}
		if _, err := decodeCursor(s, filterKey("other", "", "", "")); err == nil {
			t.Fatal("cursor accepted for other filters")
		}
	})
}

// FuzzSafeFileName: the name never carries a byte that could break a header
// or a path, never starts with a dot, and stays short.
func FuzzSafeFileName(f *testing.F) {
	for _, s := range []string{"report.csv", "../../etc/passwd", "a\r\nSet-Cookie: x", "\"quoted\"", "résumé", "...", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name := SafeFileName(s)
		if name == "" || len(name) > 150 || name[0] == '.' {
			t.Fatalf("SafeFileName(%q) = %q", s, name)
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
				t.Fatalf("SafeFileName(%q) = %q has byte %q", s, name, c)
			}
		}
		if strings.Contains(name, "..") && strings.Contains(name, "/") {
			t.Fatalf("path traversal survived: %q", name)
		}
		if cd := ContentDisposition(s); strings.ContainsAny(cd, "\r\n") || strings.Count(cd, `"`) != 2 {
			t.Fatalf("ContentDisposition(%q) = %q", s, cd)
		}
	})
}
