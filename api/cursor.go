package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/tally-compliance/tally/db"
)

// cursor is the opaque pagination position: the last report of a page, bound
// to the filters it was issued for.
type cursor struct {
	CreatedAt time.Time `json:"t"`
	ID        string    `json:"i"`
	Filter    string    `json:"f"`
}

// filterKey names the filters a cursor was issued for: a short hash of the
// application id (empty for the organization's list), status, type and case
// id, so that a cursor cannot be replayed under other filters.
func filterKey(scope, status, typ, caseID string) string {
	h := sha256.Sum256([]byte(scope + "\x00" + status + "\x00" + typ + "\x00" + caseID))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

// encodeCursor returns the opaque cursor after r for the given filter key.
func encodeCursor(r *db.Report, filter string) string {
	b, _ := json.Marshal(cursor{CreatedAt: r.CreatedAt.UTC(), ID: r.ID, Filter: filter})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses a cursor and checks it belongs to the same filters.
func decodeCursor(s, filter string) (*db.ReportCursor, error) {
	bad := &Error{Status: http.StatusUnprocessableEntity, Code: CodeInvalidCursor,
		Message: "cursor is invalid or was issued for other filters", Fields: []FieldError{{Field: "cursor", Message: "invalid"}}}
	if len(s) > 512 {
		return nil, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.Filter != filter || !db.ValidID(db.PrefixReport, c.ID) || c.CreatedAt.IsZero() {
		return nil, bad
	}
	return &db.ReportCursor{CreatedAt: c.CreatedAt, ID: c.ID}, nil
}
