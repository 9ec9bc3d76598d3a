package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// CreateReportRequest is the body of POST .../case-reports.
type CreateReportRequest struct {
	CaseID     string `json:"case_id"`
	ReportType string `json:"report_type"`
}

// decodeCreateReport reads a CreateReportRequest strictly: a JSON object of
// string fields, each known and given once. Anything else is a 4xx that
// names the problem.
func decodeCreateReport(c echo.Context) (*CreateReportRequest, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != echo.MIMEApplicationJSON {
		return nil, newError(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "request body must be application/json")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, newError(http.StatusRequestEntityTooLarge, CodePayloadTooLarge, "request body exceeds 64 KiB")
		}
		return nil, newError(http.StatusBadRequest, CodeBadRequest, "could not read the request body")
	}
	return DecodeCreateReport(body)
}

// DecodeCreateReport parses and validates a create-report body.
func DecodeCreateReport(body []byte) (*CreateReportRequest, error) {
	if !utf8.Valid(body) {
		return nil, newError(http.StatusBadRequest, CodeMalformedJSON, "request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, newError(http.StatusBadRequest, CodeMalformedJSON, "request body must be a JSON object")
	}
	var req CreateReportRequest
	seen := map[string]bool{}
	var fields []FieldError
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, newError(http.StatusBadRequest, CodeMalformedJSON, "duplicate key %q", truncate(key, 64))
		}
		seen[key] = true
		tok, err = dec.Token()
		if err != nil {
			return nil, malformed(err)
		}
		str, isString := tok.(string)
		if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
			// Skip the nested value without recursing on the call stack.
			if err := skipNested(dec); err != nil {
				return nil, malformed(err)
			}
		}
		switch key {
		case "case_id":
			if !isString {
				fields = append(fields, FieldError{Field: "case_id", Message: "must be a string"})
			}
			req.CaseID = str
		case "report_type":
			if !isString {
				fields = append(fields, FieldError{Field: "report_type", Message: "must be a string"})
			}
			req.ReportType = str
		default:
			fields = append(fields, FieldError{Field: truncate(key, 64), Message: "unknown field"})
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, newError(http.StatusBadRequest, CodeMalformedJSON, "unexpected data after the JSON object")
	}
	if !seen["case_id"] || (req.CaseID == "" && isStringField(fields, "case_id")) {
		fields = append(fields, FieldError{Field: "case_id", Message: "is required"})
	}
	if !seen["report_type"] || (req.ReportType == "" && isStringField(fields, "report_type")) {
		fields = append(fields, FieldError{Field: "report_type", Message: "is required"})
	}
	if len(req.CaseID) > 100 {
		fields = append(fields, FieldError{Field: "case_id", Message: "is too long"})
	}
	if len(req.ReportType) > 100 {
		fields = append(fields, FieldError{Field: "report_type", Message: "is too long"})
	}
	if len(fields) > 0 {
		return nil, validationError(fields...)
	}
	return &req, nil
}

// isStringField reports whether no type error was recorded for name.
func isStringField(fields []FieldError, name string) bool {
	for _, f := range fields {
		if f.Field == name {
			return false
		}
	}
	return true
}

func skipNested(dec *json.Decoder) error {
	depth := 1
	for depth > 0 {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
		}
	}
	return nil
}

func malformed(err error) *Error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "request body is empty or truncated")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON at byte %d", se.Offset)
	}
	return newError(http.StatusBadRequest, CodeMalformedJSON, "malformed JSON: %s", truncate(fmt.Sprint(err), 100))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
