package api

import (
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
	// Public: the keys that verify report manifests, retired ones included.
	e.GET("/.well-known/tally-signing-keys", s.signingKeys)

	// Every route below needs a valid bearer token, then its own rule. The
	// rules are attached per route (not through groups) so that unknown paths
	// answer 404 and wrong methods 405 whoever asks.
	authn := s.authenticate
	e.GET("/auth/me", s.me, authn)

	// Auditor bucket of the application named by :foreignId (404 outside the
	// caller's organization, 403 without the permission).
	const app = "/api/applications/:foreignId"
	e.POST(app+"/case-reports", s.createReport, authn, s.requireAuditor(db.PermReportsCreate))
	e.GET(app+"/reports", s.listAppReports, authn, s.requireAuditor(db.PermReportsList))
	e.GET(app+"/reports/:reportId/download", s.downloadAppReport, authn, s.requireAuditor(db.PermReportsDownload))
	e.HEAD(app+"/reports/:reportId/download", s.downloadAppReport, authn, s.requireAuditor(db.PermReportsDownload))
	e.GET(app+"/reports/:reportId/manifest", s.manifestAppReport, authn, s.requireAuditor(db.PermReportsDownload))

	// Owner-level permissions of the caller's organization.
	e.GET("/api/reports", s.listOrgReports, authn, s.requireOwner(db.PermReportsList))
	e.GET("/api/reports/:reportId/download", s.downloadOrgReport, authn, s.requireOwner(db.PermReportsDownload))
	e.HEAD("/api/reports/:reportId/download", s.downloadOrgReport, authn, s.requireOwner(db.PermReportsDownload))
	e.GET("/api/reports/:reportId/manifest", s.manifestOrgReport, authn, s.requireOwner(db.PermReportsDownload))

	// Admins: HTTP basic auth with TALLY_ADMIN_USER / TALLY_ADMIN_PASSWORD;
	// 404 when not configured. Bearer tokens do not open it.
	s.mountRiverUI(e)
	return e
}
