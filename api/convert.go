package api

import (
	"encoding/json"
	"time"

	"github.com/tally-compliance/tally/db"
)

// Report is the report object of the API. It never carries a storage URL or
// object key.
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

// toAPIReport converts a database report to the API's report object.
func toAPIReport(r *db.Report) Report {
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

func toAPIReports(rs []db.Report) []Report {
	out := make([]Report, len(rs))
	for i := range rs {
		out[i] = toAPIReport(&rs[i])
	}
	return out
}
