package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tally-compliance/tally/db"
)

// routes lists every route with the rule that guards it: this file is the
// whole access surface of the API.
func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.Use(requestIDMiddleware, securityHeaders, s.accessLog, s.recoverMiddleware, s.admission, s.timeout, bodyLimit)

	// Public: probes, metrics and the API contract.
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))
	e.GET("/openapi.yaml", s.openAPI)

	// Any valid bearer token.
	authed := e.Group("", s.authenticate)
	authed.GET("/auth/me", s.me)

	// Auditor bucket of the application named by :foreignId (404 outside the
	// caller's organization, 403 without the permission).
	app := authed.Group("/api/applications/:foreignId")
	app.POST("/case-reports", s.createReport, s.requireAuditor(db.PermReportsCreate))
	app.GET("/reports", s.listAppReports, s.requireAuditor(db.PermReportsList))
	app.GET("/reports/:reportId/download", s.downloadAppReport, s.requireAuditor(db.PermReportsDownload))
	app.HEAD("/reports/:reportId/download", s.downloadAppReport, s.requireAuditor(db.PermReportsDownload))

	// Owner-level permissions of the caller's organization.
	authed.GET("/api/reports", s.listOrgReports, s.requireOwner(db.PermReportsList))
	authed.GET("/api/reports/:reportId/download", s.downloadOrgReport, s.requireOwner(db.PermReportsDownload))
	authed.HEAD("/api/reports/:reportId/download", s.downloadOrgReport, s.requireOwner(db.PermReportsDownload))

	// Admins: HTTP basic auth with TALLY_ADMIN_USER / TALLY_ADMIN_PASSWORD;
	// 404 when not configured. Bearer tokens do not open it.
	s.mountRiverUI(e)

	e.RouteNotFound("/*", func(c echo.Context) error {
		return newError(http.StatusNotFound, CodeNotFound, "no such resource")
	})
	return e
}
