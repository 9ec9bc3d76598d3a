package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/view"
)

// createReport handles POST /api/applications/:foreignId/case-reports: it
// checks the request and the case, replays an earlier request with the same
// Idempotency-Key, and otherwise has jobs.CreateReport write the report, its
// job and the report.created event in one transaction; it answers 202 at
// once.
func (s *Server) createReport(c echo.Context) error {
	ctx := c.Request().Context()
	p, app := principal(c), application(c)

	if ok, wait := s.limiter.allow(p.User.ID, s.now()); !ok {
		return &Error{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message: "too many reports created, slow down", Headers: map[string]string{"Retry-After": retryAfterSeconds(wait)}}
	}
	req, err := decodeCreateReport(c)
	if err != nil {
		return err
	}
	typ, ok := s.portal.ReportType(req.ReportType)
	if !ok {
		supported := s.portal.TypeNames()
		return &Error{Status: http.StatusUnprocessableEntity, Code: CodeUnsupportedReportType,
			Message: "report_type must be one of: " + strings.Join(supported, ", "),
			Fields:  []FieldError{{Field: "report_type", Message: "must be one of: " + strings.Join(supported, ", ")}},
			Details: map[string]any{"supported_report_types": supported}}
	}

	idemKey := c.Request().Header.Get("Idempotency-Key")
	var reqHash []byte
	if idemKey != "" {
		if !validIdempotencyKey(idemKey) {
			return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidationFailed,
				Message: "Idempotency-Key must be 1 to 255 printable ASCII characters",
				Fields:  []FieldError{{Field: "Idempotency-Key", Message: "must be 1 to 255 printable ASCII characters"}}}
		}
		h := sha256.Sum256([]byte(app.ID + "\x00" + req.CaseID + "\x00" + req.ReportType))
		reqHash = h[:]
		if r, err := s.replay(ctx, p, app, idemKey, reqHash); r != nil || err != nil {
			if err != nil {
				return err
			}
			return replayed(c, r)
		}
	}

	caseNotFound := newError(http.StatusNotFound, CodeCaseNotFound, "case not found in this application")
	if !db.ValidID(db.PrefixCase, req.CaseID) {
		return caseNotFound
	}
	// The case rules are applied to the case as the creating transaction
	// reads and locks it: a revocation cannot slip in between the check and
	// the scope's snapshot.
	report, err := jobs.CreateReport(ctx, s.pool, s.river, jobs.CreateReportParams{
		Application: app, CaseID: req.CaseID, CheckCase: s.checkCase, Type: typ, UserID: p.User.ID, RequestID: requestID(c),
		ClientIP: c.RealIP(), UserAgent: userAgent(c),
		IdempotencyKey: idemKey, RequestHash: reqHash, LargeReportRows: s.largeRows, MaxAttempts: s.maxAttempts,
	})
	if errors.Is(err, jobs.ErrCaseNotFound) {
		return caseNotFound
	}
	if errors.Is(err, jobs.ErrIdempotencyConflict) {
		// A concurrent request with this key won; answer with its report.
		r, err := s.replay(ctx, p, app, idemKey, reqHash)
		if err != nil {
			return err
		}
		if r == nil {
			return newError(http.StatusConflict, CodeIdempotencyInProgress, "a request with this Idempotency-Key is in progress; retry")
		}
		return replayed(c, r)
	}
	if err != nil {
		return err
	}
	s.metrics.created.WithLabelValues(report.Type).Inc()
	s.logger.InfoContext(ctx, "report created", slog.String("request_id", requestID(c)),
		slog.String("report_id", report.ID), slog.String("type", report.Type), slog.String("case_id", report.CaseID))
	return c.JSON(http.StatusAccepted, view.ReportFor(report, mayDownload(c)))
}

// replayed answers with the report an earlier request with the same
// Idempotency-Key created, as it is now: its content only to a caller who
// may download it.
func replayed(c echo.Context, r *db.Report) error {
	c.Response().Header().Set("Idempotent-Replayed", "true")
	return c.JSON(http.StatusAccepted, view.ReportFor(r, mayDownload(c)))
}

func validIdempotencyKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// replay returns the report an earlier request with the same key created, nil
// when the key is new, or 422 when the key was used for another request.
func (s *Server) replay(ctx context.Context, p *db.Principal, app *db.Application, key string, hash []byte) (*db.Report, error) {
	rec, err := db.GetIdempotencyKey(ctx, s.pool, p.User.ID, key)
	if errors.Is(err, db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading idempotency key: %w", err)
	}
	if !bytes.Equal(rec.RequestHash, hash) {
		return nil, newError(http.StatusUnprocessableEntity, CodeIdempotencyKeyReused,
			"this Idempotency-Key was already used with a different request")
	}
	r, err := db.GetReport(ctx, s.pool, db.GetReportParams{OrgID: p.Organization.ID, ApplicationID: app.ID, ReportID: rec.ReportID})
	if err != nil {
		return nil, fmt.Errorf("loading replayed report: %w", err)
	}
	return r, nil
}

// checkCase applies caseAccess to the case of a new report, as the
// creating transaction read it (jobs.CreateReportParams.CheckCase).
func (s *Server) checkCase(cs *db.Case, assigned bool) error {
	if err := caseAccess(cs, assigned, s.now()); err != nil {
		return err
	}
	return nil
}

// caseAccess says why an auditor may not work on a case now, if they may
// not: not assigned (403 case_not_assigned, before anything about the case's
// state is revealed), revoked (403 case_revoked), closed (403 case_closed),
// another state than approved (409 case_not_approved), outside the access
// window (403 access_window_closed). Creating a report and downloading one
// at auditor scope apply the same rules.
func caseAccess(cs *db.Case, assigned bool, now time.Time) *Error {
	if !assigned {
		return newError(http.StatusForbidden, CodeCaseNotAssigned, "you are not assigned to this case")
	}
	switch cs.Status {
	case db.CaseApproved:
	case db.CaseRevoked:
		return &Error{Status: http.StatusForbidden, Code: CodeCaseRevoked,
			Message: "the case was revoked", Details: map[string]any{"case_status": cs.Status}}
	case db.CaseClosed:
		return &Error{Status: http.StatusForbidden, Code: CodeCaseClosed,
			Message: "the case is closed", Details: map[string]any{"case_status": cs.Status}}
	default:
		return &Error{Status: http.StatusConflict, Code: CodeCaseNotApproved,
			Message: fmt.Sprintf("the case is %s, not approved", cs.Status), Details: map[string]any{"case_status": cs.Status}}
	}
	if now.Before(cs.AccessWindowStart) || !now.Before(cs.AccessWindowEnd) {
		return &Error{Status: http.StatusForbidden, Code: CodeAccessWindowClosed,
			Message: "the case's access window is closed",
			Details: map[string]any{"access_window_start": cs.AccessWindowStart.UTC(), "access_window_end": cs.AccessWindowEnd.UTC()}}
	}
	return nil
}

// maxUserAgent bounds the User-Agent recorded in activity events.
const maxUserAgent = 256

// userAgent is the request's User-Agent as recorded: valid UTF-8, at most
// maxUserAgent bytes.
func userAgent(c echo.Context) string {
	return truncate(strings.ToValidUTF8(c.Request().UserAgent(), "\uFFFD"), maxUserAgent)
}

// listAppReports handles GET /api/applications/:foreignId/reports.
func (s *Server) listAppReports(c echo.Context) error {
	app := application(c)
	return s.listReports(c, app.ID, "/api/applications/"+url.PathEscape(app.ForeignID)+"/reports")
}

// listOrgReports handles GET /api/reports.
func (s *Server) listOrgReports(c echo.Context) error {
	return s.listReports(c, "", "/api/reports")
}

var reportStatuses = []string{db.ReportPending, db.ReportRunning, db.ReportReady, db.ReportFailed, db.ReportCanceled, db.ReportExpired}

func (s *Server) listReports(c echo.Context, applicationID, path string) error {
	p := principal(c)
	q := c.QueryParams()
	var fields []FieldError
	for k, v := range q {
		switch k {
		case "status", "type", "case_id", "limit", "cursor":
			if len(v) > 1 {
				fields = append(fields, FieldError{Field: k, Message: "must be given once"})
			}
		default:
			fields = append(fields, FieldError{Field: truncate(k, 64), Message: "unknown query parameter"})
		}
	}
	status, typ, caseID := q.Get("status"), q.Get("type"), q.Get("case_id")
	if status != "" && !slices.Contains(reportStatuses, status) {
		fields = append(fields, FieldError{Field: "status", Message: "must be one of: " + strings.Join(reportStatuses, ", ")})
	}
	if typ != "" {
		if _, ok := s.portal.ReportType(typ); !ok {
			fields = append(fields, FieldError{Field: "type", Message: "must be one of: " + strings.Join(s.portal.TypeNames(), ", ")})
		}
	}
	if caseID != "" && !db.ValidID(db.PrefixCase, caseID) {
		fields = append(fields, FieldError{Field: "case_id", Message: "is not a case id"})
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			fields = append(fields, FieldError{Field: "limit", Message: "must be an integer from 1 to 200"})
		} else {
			limit = n
		}
	}
	if len(fields) > 0 {
		return validationError(fields...)
	}
	filter := filterKey(applicationID, status, typ, caseID)
	params := db.ListReportsParams{
		OrgID: p.Organization.ID, ApplicationID: applicationID, Status: status, Type: typ, CaseID: caseID,
	}
	if !q.Has("limit") && !q.Has("cursor") {
		return s.streamReports(c, params, filter)
	}
	var after *db.ReportCursor
	if v := q.Get("cursor"); v != "" {
		var err error
		if after, err = decodeCursor(v, filter); err != nil {
			return err
		}
	}
	params.Limit, params.After = limit+1, after
	reports, err := db.ListReports(c.Request().Context(), s.pool, params)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	if len(reports) > limit {
		reports = reports[:limit]
		next := url.Values{}
		for _, k := range []string{"status", "type", "case_id"} {
			if v := q.Get(k); v != "" {
				next.Set(k, v)
			}
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("cursor", encodeCursor(&reports[len(reports)-1], filter))
		h.Set("Link", "<"+path+"?"+next.Encode()+`>; rel="next"`)
	}
	body, err := json.Marshal(view.Reports(reports, mayDownload(c)))
	if err != nil {
		return err
	}
	// The ETag covers the body and the next link, so a poll with
	// If-None-Match costs one indexed query and no transfer.
	sum := sha256.New()
	sum.Write(body)
	sum.Write([]byte(h.Get("Link")))
	if notModified(c, sum.Sum(nil), "Authorization") {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}

// notModified sets the weak ETag made of the first 16 bytes of sum and the
// cache headers of a report answer (private, revalidated, varying with the
// headers in vary), and reports whether the request's If-None-Match matches
// that ETag: then the caller answers 304.
func notModified(c echo.Context, sum []byte, vary string) bool {
	etag := fmt.Sprintf(`W/"%x"`, sum[:16])
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Vary", vary)
	return etagMatches(c.Request().Header.Get("If-None-Match"), etag)
}

// etagMatches implements If-None-Match's weak comparison.
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || strings.TrimPrefix(part, "W/") == want {
			return true
		}
	}
	return false
}
