package api

import (
	"net"
	"net/netip"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tally-compliance/tally/db"
)

// routes lists every route with the rule that guards it: this file is the
// whole access surface of the API.
func (s *Server) routes() *echo.Echo {
	e := s.newEcho()

	// Public: probes and the API contract.
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/openapi.yaml", s.openAPI)
	// Public: the keys that verify report manifests, retired ones included.
	e.GET("/.well-known/tally-signing-keys", s.signingKeys)

	// Every route below needs a valid bearer token, then its own rule. The
	// rules are attached per route (not through groups) so that unknown paths
	// answer 404 and wrong methods 405 whoever asks.
	authn := s.authenticate
	e.GET("/auth/me", s.me, authn)

	// Auditor bucket of the application named by :foreignId (404 outside the
	// caller's organization, 403 without the permission); requireAuditor
	// authenticates too, in the same query. Downloads stream
	// outside request admission, at most DownloadsPerUser and DownloadsPerOrg
	// at once (429 too_many_downloads), cut off below the minimum rate.
	const app = "/api/applications/:foreignId"
	e.POST(app+"/case-reports", s.createReport, s.requireAuditor(db.PermReportsCreate))
	e.GET(app+"/reports", s.listAppReports, s.requireAuditor(db.PermReportsList))
	// One report, as the list shows it; Prefer: wait holds the request
	// until its status changes, outside admission, at most WaitsPerUser at
	// once (429 too_many_waits).
	e.GET(app+"/reports/:reportId", s.getAppReport, s.requireAuditor(db.PermReportsList))
	e.GET(app+"/reports/:reportId/download", s.downloadAppReport, s.requireAuditor(db.PermReportsDownload))
	e.HEAD(app+"/reports/:reportId/download", s.downloadAppReport, s.requireAuditor(db.PermReportsDownload))
	e.GET(app+"/reports/:reportId/manifest", s.manifestAppReport, s.requireAuditor(db.PermReportsDownload))

	// Owner-level permissions of the caller's organization.
	e.GET("/api/reports", s.listOrgReports, authn, s.requireOwner(db.PermReportsList))
	e.GET("/api/reports/:reportId", s.getOrgReport, authn, s.requireOwner(db.PermReportsList))
	e.GET("/api/reports/:reportId/download", s.downloadOrgReport, authn, s.requireOwner(db.PermReportsDownload))
	e.HEAD("/api/reports/:reportId/download", s.downloadOrgReport, authn, s.requireOwner(db.PermReportsDownload))
	e.GET("/api/reports/:reportId/manifest", s.manifestOrgReport, authn, s.requireOwner(db.PermReportsDownload))

	// The admin surface, unless it has a listener of its own (404 here then).
	if !s.separateAdmin {
		s.mountAdmin(e)
	}
	return e
}

// adminRoutes is AdminHandler: the admin surface alone, for a listener kept
// off the portal's network (TALLY_ADMIN_ADDR).
func (s *Server) adminRoutes() *echo.Echo {
	e := s.newEcho()
	s.mountAdmin(e)
	return e
}

// mountAdmin adds the admin surface.
func (s *Server) mountAdmin(e *echo.Echo) {
	// Metrics: no authentication; they count requests, reports and
	// downloads and name no user, case or report.
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})))

	// Admins: HTTP basic auth with TALLY_ADMIN_USER / TALLY_ADMIN_PASSWORD;
	// 404 when not configured. Bearer tokens do not open it. After 5 failed
	// logins an address gets one try every 10 s, 429 in between.
	s.mountRiverUI(e)
}

// newEcho returns an Echo instance with the error handler and the middleware
// chain (middleware.go) every listener shares.
func (s *Server) newEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = clientIPExtractor(s.trustedProxies)
	if tp := s.telemetry.TracerProvider(); tp != nil {
		e.Use(tracing(tp, s.telemetry.Propagator()))
	}
	e.Use(requestIDMiddleware, securityHeaders, s.accessLog, s.recoverMiddleware, s.admission, s.timeout, bodyLimit)
	return e
}

// clientIPExtractor returns how the client address recorded in activity
// events is found: the peer address, or, when the peer is one of the trusted
// proxies, the right-most address of X-Forwarded-For that is not one of
// them. Nothing else is trusted: not loopback, link-local or private
// networks, whatever Echo's defaults.
func clientIPExtractor(trusted []netip.Prefix) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, p := range trusted {
		p = p.Masked()
		opts = append(opts, echo.TrustIPRange(&net.IPNet{
			IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}
