// Package view builds the objects Tally shows to callers, from database
// rows: the report object, the same bytes in an API answer and in a webhook
// payload. It decides what a caller without the download permission may
// not see.
package view

import (
	"encoding/json"
	"time"

	"github.com/tally-compliance/tally/db"
)

// Report is the report object of the API and of webhook payloads. It never
// carries a storage URL or object key.
type Report struct {
	ID             string          `json:"id"`
	OrgID          string          `json:"org_id"`
	ApplicationID  string          `json:"application_id"`
	Type           string          `json:"type"`
	Status         string          `json:"status"`
	Metadata       json.RawMessage `json:"metadata"`
	CreatedByEmail string          `json:"created_by_email"`
	CreatedByName  string          `json:"created_by_name"`
	CreatedAt      time.Time       `json:"created_at"`
	StartedAt      *time.Time      `json:"started_at"`
	CompletedAt    *time.Time      `json:"completed_at"`
	ExpiresAt      *time.Time      `json:"expires_at"`
	SizeBytes      *int64          `json:"size_bytes"`
	SHA256         *string         `json:"sha256"`
	ContentType    *string         `json:"content_type"`
	Error          *ReportError    `json:"error,omitempty"`
}

// ReportError says why a report is failed, canceled or expired.
type ReportError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retryable bool   `json:"retryable"`
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// scopeKeys are the metadata keys written at creation: the case's scope. The
// other keys (row_count, totals, format, pseudonym_key_id) are written when
// the file is built.
var scopeKeys = []string{"case_id", "period_start", "period_end", "disclosure_flags", "contract_filters", "data_as_of"}

// withoutContent hides what a report's file reveals (its size, hash, row
// count and totals, everything the worker added to the metadata) from a
// caller who may not download it: they see the report's identity, scope and
// status. The metadata keeps the creation-time keys only, so that a field
// added to it later is hidden until it is listed here.
func withoutContent(r Report) Report {
	r.SizeBytes, r.SHA256 = nil, nil
	var all map[string]json.RawMessage
	if json.Unmarshal(r.Metadata, &all) != nil {
		r.Metadata = json.RawMessage("{}")
		return r
	}
	scope := make(map[string]json.RawMessage, len(scopeKeys))
	for _, k := range scopeKeys {
		if v, ok := all[k]; ok {
			scope[k] = v
		}
	}
	b, err := json.Marshal(scope)
	if err != nil {
		b = []byte("{}")
	}
	r.Metadata = b
	return r
}

// ReportFor converts a report for a caller: with its content-derived fields
// when content is true (the caller may download it), without them
// otherwise.
func ReportFor(r *db.Report, content bool) Report {
	out := FullReport(r)
	if !content {
		out = withoutContent(out)
	}
	return out
}

// FullReport converts a database report to the report object, with every
// field.
func FullReport(r *db.Report) Report {
	out := Report{
		ID: r.ID, OrgID: r.OrgID, ApplicationID: r.ApplicationID, Type: r.Type, Status: r.Status,
		Metadata: r.Metadata, CreatedByEmail: r.CreatedByEmail, CreatedByName: r.CreatedByName,
		CreatedAt: r.CreatedAt.UTC(), StartedAt: utc(r.StartedAt), CompletedAt: utc(r.CompletedAt),
		ExpiresAt: utc(r.ExpiresAt), SizeBytes: r.SizeBytes, SHA256: r.SHA256, ContentType: r.ContentType,
	}
	if r.ErrorCode != nil && r.Status != db.ReportReady {
		out.Error = &ReportError{Code: *r.ErrorCode}
		if r.ErrorMessage != nil {
			out.Error.Message = *r.ErrorMessage
		}
		if r.ErrorRetryable != nil {
			out.Error.Retryable = *r.ErrorRetryable
		}
	}
	return out
}

// Reports converts a list of reports for one caller.
func Reports(rs []db.Report, content bool) []Report {
	out := make([]Report, len(rs))
	for i := range rs {
		out[i] = ReportFor(&rs[i], content)
	}
	return out
}
