package api

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/view"
)

// streamChunk is how many bytes of a streamed list are buffered before
// they are written and flushed to the client.
const streamChunk = 32 << 10

// streamReports answers a list without limit or cursor: every report of the
// scope, newest first, as one JSON array written while the rows arrive from
// the database, so that memory stays flat whatever the count.
//
// The weak ETag is computed before the body from the list's stamp (count,
// newest updated_at and a sum over the rows' versions, see
// db.ReportListStamp), the scope and filters, and whether the caller sees
// content fields; a matching If-None-Match is answered 304 without reading
// a report. Stamp and rows are read in one snapshot, so the ETag describes
// exactly the body sent.
//
// The response is committed before the first row: an error after it (the
// database gone, the request deadline passed) aborts the connection, so a
// client never takes a truncated array for a whole one.
func (s *Server) streamReports(c echo.Context, params db.ListReportsParams, filter string) error {
	ctx := c.Request().Context()
	content := mayDownload(c)
	committed := false
	err := db.ReadSnapshot(ctx, s.pool, func(tx pgx.Tx) error {
		stamp, err := db.ReportListStamp(ctx, tx, params)
		if err != nil {
			return err
		}
		sum := sha256.New()
		fmt.Fprintf(sum, "all\x00%s\x00%s\x00%t\x00%d\x00%s\x00%s", params.OrgID, filter, content,
			stamp.Count, stamp.MaxUpdatedAt.UTC().Format("2006-01-02T15:04:05.999999Z"), stamp.RowSum)
		if notModified(c, sum.Sum(nil), "Authorization") {
			return c.NoContent(http.StatusNotModified)
		}
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		c.Response().WriteHeader(http.StatusOK)
		committed = true

		w := bufio.NewWriterSize(c.Response(), streamChunk+4<<10)
		enc := json.NewEncoder(w)
		first := true
		_ = w.WriteByte('[')
		err = db.EachReport(ctx, tx, params, func(r *db.Report) error {
			if !first {
				_ = w.WriteByte(',')
			}
			first = false
			if err := enc.Encode(view.ReportFor(r, content)); err != nil {
				return err
			}
			if w.Buffered() >= streamChunk {
				if err := w.Flush(); err != nil {
					return err
				}
				c.Response().Flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
		_ = w.WriteByte(']')
		if err := w.Flush(); err != nil {
			return err
		}
		c.Response().Flush()
		return nil
	})
	if err != nil && committed {
		s.logger.WarnContext(ctx, "report list interrupted", slog.String("request_id", requestID(c)), slog.Any("error", err))
		panic(http.ErrAbortHandler)
	}
	return err
}
