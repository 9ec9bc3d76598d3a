package api

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/storage"
)

// downloadAppReport handles GET .../applications/:foreignId/reports/:reportId/download.
func (s *Server) downloadAppReport(c echo.Context) error {
	return s.download(c, application(c).ID)
}

// downloadOrgReport handles GET /api/reports/:reportId/download.
func (s *Server) downloadOrgReport(c echo.Context) error {
	return s.download(c, "")
}

// copyBufSize is the size of a download's copy buffer: the most one read
// from the store returns, and the largest piece stream writes when the
// minimum rate allows it (minRate × stallTimeout bytes or more). Every
// read and write is a system call, and every write wakes the client up:
// at the default minimum rate (30 KiB pieces) 256 KiB took a quarter fewer
// system calls per MB than 64 KiB, and where pieces may be 256 KiB the API
// and a same-host reader each spent 10-20% less CPU per MB than with 64 KiB.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// gzipWriters are reused across downloads: a gzip writer's state is about
// a megabyte. BestSpeed compresses a transaction summary CSV about 10:1 at
// twice the speed of the default level, whose ratio is barely better
// (BenchmarkGzipCSV in report/formats_bench_test.go).
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed) // a valid level: no error
	return zw
}}

// gzipReader reads the gzip compression of a file: a goroutine compresses
// it into a pipe, so that the download's stream (with its write deadlines)
// sends compressed bytes as they come, holding one buffer.
type gzipReader struct {
	pr       *io.PipeReader
	done     chan struct{}
	consumed atomic.Int64
}

func newGzipReader(file io.Reader) *gzipReader {
	pr, pw := io.Pipe()
	g := &gzipReader{pr: pr, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		zw := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(zw)
		zw.Reset(pw)
		buf := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(buf)
		_, err := io.CopyBuffer(zw, countingReader{file, &g.consumed}, *buf)
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err) // nil: EOF
	}()
	return g
}

func (g *gzipReader) Read(p []byte) (int, error) { return g.pr.Read(p) }

// Consumed is the number of bytes of the file compressed so far.
func (g *gzipReader) Consumed() int64 { return g.consumed.Load() }

// Close stops the compression (when the client went away) and waits for
// it, so that the file's reader is no longer used.
func (g *gzipReader) Close() {
	_ = g.pr.CloseWithError(io.ErrClosedPipe)
	<-g.done
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip
// (listed, or by "*", and not with q=0).
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "x-gzip" && coding != "*" {
			continue
		}
		for _, param := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(param, "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && q == 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// downloadFileName is DownloadFileName with the extension of the report's
// type when the portal still offers it with the same content type.
func (s *Server) downloadFileName(r *db.Report) string {
	if rt, ok := s.portal.ReportType(r.Type); ok && r.ContentType != nil && rt.ContentType() == *r.ContentType {
		return SafeFileName(r.Type + "-" + r.CaseID + "-" + r.ID + "." + rt.FileExtension())
	}
	return DownloadFileName(r)
}

// reportForFile loads the report named by :reportId for a download or its
// manifest: 404 when it does not exist in the caller's scope, and on
// application routes the case rules of downloads (403, with a
// report.download_refused event for a GET).
func (s *Server) reportForFile(c echo.Context, applicationID string) (*db.Report, error) {
	ctx := c.Request().Context()
	p := principal(c)
	reportID := c.Param("reportId")
	notFound := newError(http.StatusNotFound, CodeReportNotFound, "report not found")
	if !db.ValidID(db.PrefixReport, reportID) {
		return nil, notFound
	}
	r, err := db.GetReport(ctx, s.pool, db.GetReportParams{OrgID: p.Organization.ID, ApplicationID: applicationID, ReportID: reportID})
	if errors.Is(err, db.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading report: %w", err)
	}
	if applicationID != "" {
		if err := s.checkDownloadCase(c, p, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// download streams a ready report's file from the object store: with its
// SHA-256 as ETag, If-None-Match, a single Range, and a report.downloaded
// event written before the first byte.
func (s *Server) download(c echo.Context, applicationID string) error {
	ctx := c.Request().Context()
	p := principal(c)
	r, err := s.reportForFile(c, applicationID)
	if err != nil {
		return err
	}
	if err := downloadable(r); err != nil {
		return err
	}

	size, etag := *r.SizeBytes, `"`+*r.SHA256+`"`
	h := c.Response().Header()
	h.Set("ETag", etag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "private, no-cache")
	h.Set("Content-Type", *r.ContentType)
	h.Set("Content-Disposition", ContentDisposition(s.downloadFileName(r)))
	compressible := strings.HasPrefix(*r.ContentType, "text/csv")
	if compressible {
		h.Set("Vary", "Accept-Encoding")
	}
	if etagMatches(c.Request().Header.Get("If-None-Match"), etag) {
		return c.NoContent(http.StatusNotModified)
	}

	offset, length, partial, err := parseRange(c.Request(), size, etag)
	if err != nil {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		return err
	}

	// From here on the work is streaming: it may outlive the request
	// deadline for as long as the client reads, up to downloadTimeout.
	releaseDownload, err := s.admitDownload(c, p)
	if err != nil {
		return err
	}
	defer releaseDownload()
	streamCtx, cancel := s.streamContext(c)
	defer cancel()
	body, info, err := s.store.Get(streamCtx, *r.ObjectKey, offset, length)
	if errors.Is(err, storage.ErrNotFound) {
		return s.objectMissing(c, r, err)
	}
	if err != nil {
		return fmt.Errorf("opening report file: %w", err)
	}
	defer body.Close()
	if err := s.checkObject(r, info); err != nil {
		return err
	}

	if c.Request().Method == http.MethodGet {
		details := auditDetails(c, map[string]any{"bytes": length, "offset": offset, "partial": partial})
		if err := db.CreateReportEvent(ctx, s.pool, r, db.EventReportDownloaded, p.User.ID, details); err != nil {
			return fmt.Errorf("recording download: %w", err)
		}
		s.metrics.downloads.WithLabelValues(r.Type).Inc()
	}

	// A whole CSV is gzipped while it streams when the client accepts it;
	// ranges are served as stored, so that offsets mean the file's bytes.
	gzipped := compressible && !partial && acceptsGzip(c.Request().Header.Get("Accept-Encoding"))
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	} else {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	}
	status := http.StatusOK
	if partial {
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", offset, offset+length-1, size))
	}
	c.Response().WriteHeader(status)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	var src io.Reader = io.LimitReader(body, length)
	var gz *gzipReader
	if gzipped {
		gz = newGzipReader(src)
		defer gz.Close()
		src = gz
	}
	n, err := s.stream(c, src)
	if gz != nil {
		n = gz.Consumed() // of the file, as length counts
	}
	if err != nil || n != length {
		s.logger.WarnContext(ctx, "download interrupted", slog.String("request_id", requestID(c)),
			slog.String("report_id", r.ID), slog.Int64("sent", n), slog.Int64("want", length), slog.Any("error", err))
	}
	return nil
}

// objectMissing answers a download whose object is gone. Expiry marks a
// report expired before it deletes the object, so a report that was ready
// when the download started and is now expired gets its 410; a report still
// ready without its object is an incident: 500 report_object_missing.
func (s *Server) objectMissing(c echo.Context, r *db.Report, err error) error {
	ctx := c.Request().Context()
	cur, rerr := db.GetReportByID(ctx, s.pool, r.ID)
	if rerr == nil && cur.Status != db.ReportReady {
		if derr := downloadable(cur); derr != nil {
			return derr
		}
	}
	s.metrics.objectMissing.Inc()
	return &Error{Status: http.StatusInternalServerError, Code: CodeReportObjectMissing,
		Message: "the report's file is missing; the incident was logged",
		Err:     fmt.Errorf("report %s is ready but its object %s is missing: %w", r.ID, *r.ObjectKey, err)}
}

// checkObject compares the object about to be sent with the report, before
// the first byte: its whole size, and the SHA-256 that Put stored as its
// metadata. A mismatch means the store holds other bytes than the ones the
// report certifies: 500 report_object_mismatch, never a silent stream.
// Objects are written once under a run's key and get their digest before
// the report refers to them, so a missing digest means an object stored
// before digests were kept: it is checked by size alone.
func (s *Server) checkObject(r *db.Report, info storage.ObjectInfo) error {
	field := ""
	switch {
	case info.Size != *r.SizeBytes:
		field = "size"
	case info.SHA256 != "" && info.SHA256 != *r.SHA256:
		field = "sha256"
	case info.SHA256 == "":
		s.logger.Warn("report object has no stored digest; checked by size only",
			slog.String("report_id", r.ID), slog.String("object_key", *r.ObjectKey))
		return nil
	default:
		return nil
	}
	s.metrics.objectMismatch.WithLabelValues(field).Inc()
	return &Error{Status: http.StatusInternalServerError, Code: CodeReportObjectMismatch,
		Message: "the stored file does not match the report; the incident was logged",
		Err: fmt.Errorf("report %s: object %s has %d bytes and SHA-256 %q, the report says %d bytes and %s",
			r.ID, *r.ObjectKey, info.Size, info.SHA256, *r.SizeBytes, *r.SHA256)}
}

// checkDownloadCase applies the case rules of creation (caseAccess) to an
// auditor's download, before anything about the report's state is revealed:
// revoking or closing a case, ending its access window or unassigning the
// auditor withdraws its reports. A refused GET is recorded as a
// report.download_refused event. Owner-level downloads do not come here.
func (s *Server) checkDownloadCase(c echo.Context, p *db.Principal, r *db.Report) error {
	ctx := c.Request().Context()
	cs, assigned, err := db.GetCaseForUser(ctx, s.pool, r.CaseID, p.User.ID)
	if err != nil {
		return fmt.Errorf("loading the report's case: %w", err)
	}
	refusal := caseAccess(cs, assigned, s.now())
	if refusal == nil {
		return nil
	}
	if c.Request().Method == http.MethodGet {
		details := auditDetails(c, map[string]any{"code": refusal.Code})
		if err := db.CreateReportEvent(ctx, s.pool, r, db.EventReportDownloadRefused, p.User.ID, details); err != nil {
			return fmt.Errorf("recording refused download: %w", err)
		}
	}
	return refusal
}

// auditDetails adds the request's id, client address and User-Agent to an
// activity event's details.
func auditDetails(c echo.Context, details map[string]any) map[string]any {
	details["request_id"] = requestID(c)
	details["client_ip"] = c.RealIP()
	if ua := userAgent(c); ua != "" {
		details["user_agent"] = ua
	}
	return details
}

// downloadable says why a report cannot be downloaded, if it cannot.
func downloadable(r *db.Report) error {
	reason := func(def string) string {
		if r.ErrorMessage != nil && *r.ErrorMessage != "" {
			return *r.ErrorMessage
		}
		return def
	}
	switch r.Status {
	case db.ReportReady:
		if r.ObjectKey == nil || r.SizeBytes == nil || r.SHA256 == nil || r.ContentType == nil {
			return fmt.Errorf("report %s is ready without a file", r.ID)
		}
		return nil
	case db.ReportPending, db.ReportRunning:
		return &Error{Status: http.StatusConflict, Code: CodeReportNotReady,
			Message: "the report is " + r.Status + "; poll the list until it is ready",
			Headers: map[string]string{"Retry-After": "2"}, Details: map[string]any{"status": r.Status}}
	case db.ReportFailed:
		code := ""
		if r.ErrorCode != nil {
			code = *r.ErrorCode
		}
		return &Error{Status: http.StatusGone, Code: CodeReportFailed, Message: "the report failed: " + reason("unknown error"),
			Details: map[string]any{"status": r.Status, "reason_code": code}}
	case db.ReportCanceled:
		return &Error{Status: http.StatusGone, Code: CodeReportCanceled, Message: "the report was canceled: " + reason("canceled"),
			Details: map[string]any{"status": r.Status}}
	case db.ReportExpired:
		return &Error{Status: http.StatusGone, Code: CodeReportExpired, Message: "the report expired: " + reason("past retention"),
			Details: map[string]any{"status": r.Status}}
	}
	return fmt.Errorf("report %s has unknown status %q", r.ID, r.Status)
}

// parseRange reads a single "bytes=" range. Several ranges, a stale If-Range
// or a header it does not understand mean the whole file, as RFC 9110 allows;
// an unsatisfiable range is 416.
func parseRange(req *http.Request, size int64, etag string) (offset, length int64, partial bool, err error) {
	h := req.Header.Get("Range")
	if h == "" || req.Method != http.MethodGet {
		return 0, size, false, nil
	}
	if ir := req.Header.Get("If-Range"); ir != "" && ir != etag {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	unsatisfiable := &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: CodeRangeNotSatisfiable,
		Message: "the requested range is outside the file"}
	startS, endS, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, size, false, nil
	}
	switch {
	case startS == "": // suffix: the last N bytes
		n, perr := strconv.ParseInt(endS, 10, 64)
		if perr != nil || n < 0 {
			return 0, size, false, nil
		}
		if n == 0 || size == 0 {
			return 0, 0, false, unsatisfiable
		}
		if n > size {
			n = size
		}
		return size - n, n, true, nil
	default:
		start, perr := strconv.ParseInt(startS, 10, 64)
		if perr != nil || start < 0 {
			return 0, size, false, nil
		}
		if start >= size {
			return 0, 0, false, unsatisfiable
		}
		end := size - 1
		if endS != "" {
			e, perr := strconv.ParseInt(endS, 10, 64)
			if perr != nil || e < start {
				return 0, size, false, nil
			}
			if e < end {
				end = e
			}
		}
		return start, end - start + 1, true, nil
	}
}

// DownloadFileName is the file name offered for a report: built from its
// type, case and id, all generated by the service, then made safe anyway.
func DownloadFileName(r *db.Report) string {
	ext := "bin"
	if r.ContentType != nil {
		for _, f := range config.Formats {
			if f.ContentType == *r.ContentType || strings.HasPrefix(*r.ContentType, "text/csv") && f.Extension == "csv" {
				ext = f.Extension
			}
		}
	}
	return SafeFileName(r.Type + "-" + r.CaseID + "-" + r.ID + "." + ext)
}

// SafeFileName keeps ASCII letters, digits, dot, dash and underscore, never
// starts with a dot, and is at most 150 bytes, so that no header or path
// trickery survives.
func SafeFileName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == '.':
			if b.Len() > 0 {
				b.WriteRune(r)
			}
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 150 {
			break
		}
	}
	out := b.String()
	if len(out) > 150 {
		out = out[:150]
	}
	if strings.Trim(out, "._") == "" {
		return "report"
	}
	return out
}

// ContentDisposition returns an attachment header value for a safe name.
func ContentDisposition(name string) string {
	return `attachment; filename="` + SafeFileName(name) + `"`
}
