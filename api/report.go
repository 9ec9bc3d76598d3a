package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/view"
)

// getAppReport handles GET /api/applications/:foreignId/reports/:reportId.
func (s *Server) getAppReport(c echo.Context) error {
	return s.getReport(c, application(c).ID)
}

// getOrgReport handles GET /api/reports/:reportId.
func (s *Server) getOrgReport(c echo.Context) error {
	return s.getReport(c, "")
}

// terminal reports whether a report's status never changes again by
// itself: ready becomes expired, but only after its retention.
func terminal(status string) bool {
	switch status {
	case db.ReportReady, db.ReportFailed, db.ReportCanceled, db.ReportExpired:
		return true
	}
	return false
}

// getReport answers one report of the scope (applicationID empty: the
// caller's organization), as the list shows it, with a weak ETag.
//
// With Prefer: wait=N (at most config.MaxWait) on a report that is not
// terminal, it holds the request until the report's status differs from the
// one it had when the request arrived, or N elapses, or the server shuts
// down, and then answers with the report as it is, with
// Preference-Applied. A waiting request holds no admission slot and no
// database connection: it subscribes to the watcher first, reads the
// report, gives its slot back, and waits for the watcher to say the status
// may have changed (then it reads again). At most waitsPerUser requests of
// one user wait at once; beyond, 429 too_many_waits.
func (s *Server) getReport(c echo.Context, applicationID string) error {
	p := principal(c)
	reportID := c.Param("reportId")
	if !db.ValidID(db.PrefixReport, reportID) {
		return newError(http.StatusNotFound, CodeReportNotFound, "report not found")
	}
	params := db.GetReportParams{OrgID: p.Organization.ID, ApplicationID: applicationID, ReportID: reportID}
	wait, ok := preferWait(c.Request().Header.Values("Prefer"), config.MaxWait)
	if ok {
		c.Response().Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
	}
	if wait == 0 {
		r, err := s.loadReport(c.Request().Context(), params)
		if err != nil {
			return err
		}
		return s.answerReport(c, r)
	}

	release, full := s.waits.acquire(p.User.ID)
	if release == nil {
		s.metrics.waitsRefused.Inc()
		return &Error{Status: http.StatusTooManyRequests, Code: CodeTooManyWaits,
			Message: fmt.Sprintf("at most %d requests of one %s may wait at once", s.waitsPerUser, full),
			Headers: map[string]string{"Retry-After": "1"}}
	}
	defer release()

	// Subscribe, then read: a change committed after the read notifies the
	// subscription.
	sub := s.watcher.Subscribe(reportID)
	defer func() { sub.Close() }()
	r, err := s.loadReport(c.Request().Context(), params)
	if err != nil || terminal(r.Status) {
		if err != nil {
			return err
		}
		return s.answerReport(c, r)
	}
	initial := r.Status

	releaseAdmission(c)
	s.metrics.waiting.Inc()
	defer s.metrics.waiting.Dec()
	base := s.baseContext(c)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-sub.C():
			// The status may have changed (or the watcher reconnected):
			// read again, subscribed again first.
			sub = s.watcher.Subscribe(reportID)
			r, err := s.reread(base, params)
			if err != nil {
				return err
			}
			if r.Status != initial {
				return s.answerReport(c, r)
			}
		case <-timer.C:
			return s.answerCurrent(c, base, params)
		case <-s.stopping:
			return s.answerCurrent(c, base, params)
		case <-base.Done():
			return base.Err() // the client went away
		}
	}
}

// answerCurrent reads the report again and answers with it.
func (s *Server) answerCurrent(c echo.Context, base context.Context, params db.GetReportParams) error {
	r, err := s.reread(base, params)
	if err != nil {
		return err
	}
	return s.answerReport(c, r)
}

// reread loads a report after a wait, under a deadline of its own: the
// request's may have passed while it waited.
func (s *Server) reread(base context.Context, params db.GetReportParams) (*db.Report, error) {
	ctx, cancel := context.WithTimeout(base, s.requestTimeout)
	defer cancel()
	return s.loadReport(ctx, params)
}

// baseContext is the request's context without the request deadline: it
// ends when the client goes away.
func (s *Server) baseContext(c echo.Context) context.Context {
	if base, ok := c.Get(ctxBase).(context.Context); ok {
		return base
	}
	return c.Request().Context()
}

// loadReport reads a report of the scope; another tenant's or
// application's report is 404 like a missing one.
func (s *Server) loadReport(ctx context.Context, params db.GetReportParams) (*db.Report, error) {
	r, err := db.GetReport(ctx, s.pool, params)
	if errors.Is(err, db.ErrNotFound) {
		return nil, newError(http.StatusNotFound, CodeReportNotFound, "report not found")
	}
	if err != nil {
		return nil, fmt.Errorf("loading report: %w", err)
	}
	return r, nil
}

// answerReport writes a report object as the caller may see it, with a
// weak ETag over the body, or 304 when If-None-Match matches it.
func (s *Server) answerReport(c echo.Context, r *db.Report) error {
	body, err := json.Marshal(view.ReportFor(r, mayDownload(c)))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	if notModified(c, sum[:], "Authorization, Prefer") {
		return c.NoContent(http.StatusNotModified)
	}
	return c.JSONBlob(http.StatusOK, body)
}
