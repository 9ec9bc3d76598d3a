package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
)

// manifestAppReport handles GET .../applications/:foreignId/reports/:reportId/manifest.
func (s *Server) manifestAppReport(c echo.Context) error {
	return s.manifest(c, application(c).ID)
}

// manifestOrgReport handles GET /api/reports/:reportId/manifest.
func (s *Server) manifestOrgReport(c echo.Context) error {
	return s.manifest(c, "")
}

// manifest returns a report's signed manifest, as stored when it became
// ready, and records a report.manifest_viewed event. It is served for as
// long as the report exists, expired included: a file downloaded before
// expiry still needs it to be verified.
func (s *Server) manifest(c echo.Context, applicationID string) error {
	ctx := c.Request().Context()
	p := principal(c)
	r, err := s.reportForFile(c, applicationID)
	if err != nil {
		return err
	}
	m, err := db.GetReportManifest(ctx, s.pool, r.ID)
	if errors.Is(err, db.ErrNotFound) {
		if r.Status == db.ReportExpired {
			return newError(http.StatusNotFound, CodeReportNotFound, "the report has no signed manifest")
		}
		if err := downloadable(r); err != nil {
			return err
		}
		return newError(http.StatusNotFound, CodeReportNotFound, "the report has no signed manifest")
	}
	if err != nil {
		return fmt.Errorf("loading manifest: %w", err)
	}
	if err := db.CreateReportEvent(ctx, s.pool, r, db.EventReportManifestViewed, p.User.ID,
		auditDetails(c, map[string]any{"key_id": m.KeyID})); err != nil {
		return fmt.Errorf("recording manifest view: %w", err)
	}
	c.Response().Header().Set("Cache-Control", "private, no-cache")
	return c.JSON(http.StatusOK, evidence.Signed{
		Manifest:  json.RawMessage(m.Manifest),
		Signature: evidence.EncodeSignature(m.Signature),
		KeyID:     m.KeyID,
	})
}

// signingKeys handles GET /.well-known/tally-signing-keys: every public key
// that ever signed a manifest or checkpoint, retired ones included, as a
// JWK set (RFC 7517, OKP/Ed25519 as RFC 8037 writes it).
func (s *Server) signingKeys(c echo.Context) error {
	keys, err := db.ListSigningKeys(c.Request().Context(), s.pool)
	if err != nil {
		return err
	}
	set := evidence.JWKSet{Keys: make([]evidence.JWK, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, evidence.Key{ID: k.ID, Public: k.PublicKey}.ToJWK())
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=300")
	return c.JSON(http.StatusOK, set)
}
