package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
)

// Error codes. They are part of the API contract: never renamed. Each is
// listed in the ErrorCode enum of openapi.yaml (TestOpenAPISpecValid checks
// both ways).
const (
	CodeMissingToken          = "missing_token"
	CodeInvalidToken          = "invalid_token"
	CodeAdminAuthRequired     = "admin_auth_required"
	CodePermissionDenied      = "permission_denied"
	CodeNotFound              = "not_found"
	CodeApplicationNotFound   = "application_not_found"
	CodeReportNotFound        = "report_not_found"
	CodeCaseNotFound          = "case_not_found"
	CodeCaseNotApproved       = "case_not_approved"
	CodeCaseNotAssigned       = "case_not_assigned"
	CodeAccessWindowClosed    = "access_window_closed"
	CodeCaseRevoked           = "case_revoked"
	CodeCaseClosed            = "case_closed"
	CodeValidationFailed      = "validation_failed"
	CodeUnsupportedReportType = "unsupported_report_type"
	CodeMalformedJSON         = "malformed_json"
	CodeUnsupportedMediaType  = "unsupported_media_type"
	CodePayloadTooLarge       = "payload_too_large"
	CodeIdempotencyKeyReused  = "idempotency_key_reused"
	CodeIdempotencyInProgress = "idempotency_key_in_progress"
	CodeInvalidCursor         = "invalid_cursor"
	CodeReportNotReady        = "report_not_ready"
	CodeReportFailed          = "report_failed"
	CodeReportCanceled        = "report_canceled"
	CodeReportExpired         = "report_expired"
	CodeRangeNotSatisfiable   = "range_not_satisfiable"
	CodeRateLimited           = "rate_limited"
	CodeTooManyDownloads      = "too_many_downloads"
	CodeTooManyWaits          = "too_many_waits"
	CodeMethodNotAllowed      = "method_not_allowed"
	CodeServiceUnavailable    = "service_unavailable"
	CodeRequestTimeout        = "request_timeout"
	CodeBadRequest            = "bad_request"
	CodeInternal              = "internal_error"
	CodeReportObjectMismatch  = "report_object_mismatch"
	CodeReportObjectMissing   = "report_object_missing"
)

// CodeStorageUnavailable (503, the file store is unreachable) is also the
// reason code of a report that failed for that reason: one word for one
// condition, declared once, by jobs.
const CodeStorageUnavailable = jobs.CodeStorageUnavailable

// FieldError names one failing request field.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is an error with a public status, code and message. Err, when set,
// is logged and never shown to the client.
type Error struct {
	Status  int
	Code    string
	Message string
	Fields  []FieldError
	Details map[string]any
	Headers map[string]string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

func newError(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func validationError(fields ...FieldError) *Error {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Field
	}
	return &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidationFailed,
		Message: "invalid fields: " + strings.Join(names, ", "), Fields: fields}
}

// errorBody is the one JSON shape of every error response.
type errorBody struct {
	Error errorPayload `json:"error"`
}

type errorPayload struct {
	Code      string         `json:"code"`
	Message   string         `json:"message"`
	Fields    []FieldError   `json:"fields,omitempty"`
	Details   map[string]any `json:"details,omitempty"`
	RequestID string         `json:"request_id,omitempty"`
}

// toError maps any error a handler returns to the public Error to send.
func toError(err error) *Error {
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok && he.Code < 500 {
			msg = m
		}
		switch he.Code {
		case http.StatusNotFound:
			return &Error{Status: he.Code, Code: CodeNotFound, Message: "no such resource", Err: err}
		case http.StatusMethodNotAllowed:
			return &Error{Status: he.Code, Code: CodeMethodNotAllowed, Message: "method not allowed", Err: err}
		case http.StatusRequestEntityTooLarge:
			return &Error{Status: he.Code, Code: CodePayloadTooLarge, Message: "request body exceeds 64 KiB", Err: err}
		case http.StatusUnsupportedMediaType:
			return &Error{Status: he.Code, Code: CodeUnsupportedMediaType, Message: "request body must be application/json", Err: err}
		case http.StatusServiceUnavailable:
			return &Error{Status: he.Code, Code: CodeServiceUnavailable, Message: "service unavailable, retry shortly", Err: err,
				Headers: map[string]string{"Retry-After": "2"}}
		case http.StatusUnauthorized:
			return &Error{Status: he.Code, Code: CodeInvalidToken, Message: msg, Err: err}
		case http.StatusForbidden:
			return &Error{Status: he.Code, Code: CodePermissionDenied, Message: msg, Err: err}
		}
		if he.Code >= 400 && he.Code < 500 {
			return &Error{Status: he.Code, Code: CodeBadRequest, Message: msg, Err: err}
		}
	}
	switch {
	case errors.Is(err, storage.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeStorageUnavailable,
			Message: "the file store is unavailable, retry shortly", Err: err, Headers: map[string]string{"Retry-After": "5"}}
	case errors.Is(err, context.DeadlineExceeded):
		// Before db.ErrUnavailable: a query cancelled at the request's
		// deadline is translated to db.ErrUnavailable too, but what happened
		// is that the request ran out of time.
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeRequestTimeout,
			Message: "the request took too long, retry shortly", Err: err, Headers: map[string]string{"Retry-After": "2"}}
	case errors.Is(err, db.ErrUnavailable), errors.Is(err, errBusy):
		return &Error{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable,
			Message: "the service is busy or its database unavailable, retry shortly", Err: err, Headers: map[string]string{"Retry-After": "2"}}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "an internal error occurred", Err: err}
}

// statusClientClosed is logged and counted for requests whose client left.
const statusClientClosed = 499

// clientGone reports whether the request's client has disconnected (its
// base context ended without reaching a deadline).
func clientGone(c echo.Context) bool {
	base, ok := c.Get(ctxBase).(context.Context)
	if !ok {
		base = c.Request().Context()
	}
	return errors.Is(base.Err(), context.Canceled)
}

// handleError is the Echo HTTPErrorHandler: every error response leaves here.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		if !errors.Is(err, context.Canceled) {
			s.logger.WarnContext(c.Request().Context(), "error after response started",
				slog.String("request_id", requestID(c)), slog.Any("error", err))
		}
		return
	}
	e := toError(err)
	ctx := c.Request().Context()
	switch {
	case errors.Is(err, context.Canceled) && clientGone(c):
		// The client went away; nobody reads the answer. Record it as 499
		// (nginx's "client closed request") rather than as a server error.
		s.logger.DebugContext(ctx, "client canceled request", slog.String("request_id", requestID(c)))
		c.Response().WriteHeader(statusClientClosed)
		return
	case e.Status >= 500:
		s.logger.ErrorContext(ctx, "request failed", slog.String("request_id", requestID(c)),
			slog.String("code", e.Code), slog.Any("error", err))
		// The request's span, when tracing is on (a no-op span otherwise).
		trace.SpanFromContext(ctx).RecordError(err, trace.WithAttributes(attribute.String("tally.error_code", e.Code)))
	case e.Err != nil:
		s.logger.DebugContext(ctx, "request rejected", slog.String("request_id", requestID(c)),
			slog.String("code", e.Code), slog.Any("error", e.Err))
	}
	h := c.Response().Header()
	for k, v := range e.Headers {
		h.Set(k, v)
	}
	if e.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
		h.Set("WWW-Authenticate", `Bearer realm="tally"`)
	}
	// A handler may have set file headers before failing (a download does);
	// the error body is JSON and not an attachment.
	for _, k := range []string{echo.HeaderContentType, echo.HeaderContentLength, echo.HeaderContentDisposition} {
		h.Del(k)
	}
	h.Set("Cache-Control", "no-store")
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(e.Status)
		return
	}
	_ = c.JSON(e.Status, errorBody{Error: errorPayload{
		Code: e.Code, Message: e.Message, Fields: e.Fields, Details: e.Details, RequestID: requestID(c),
	}})
}
