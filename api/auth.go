package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
)

// Authentication resolves the bearer token to a typed principal in the
// request's context; authorization then checks, per route (see routes.go),
// the caller's auditor bucket on the application or their owner-level
// permissions.

// authenticate resolves the bearer token to a principal.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		token, err := requestToken(c)
		if err != nil {
			return err
		}
		p, err := db.Authenticate(c.Request().Context(), s.pool, token)
		if err != nil {
			return authError(err)
		}
		c.Set(ctxPrincipal, p)
		return next(c)
	}
}

// requestToken returns the request's bearer token, or the 401 that says why
// there is none.
func requestToken(c echo.Context) (string, error) {
	h := c.Request().Header.Values(echo.HeaderAuthorization)
	if len(h) == 0 {
		return "", newError(http.StatusUnauthorized, CodeMissingToken, "an Authorization: Bearer <token> header is required")
	}
	token, ok := bearerToken(h)
	if !ok {
		return "", newError(http.StatusUnauthorized, CodeInvalidToken, "the Authorization header must be a single \"Bearer <token>\"")
	}
	return token, nil
}

// authError is the answer to a failed token lookup: 401 for a token that is
// unknown, expired or revoked.
func authError(err error) error {
	if errors.Is(err, db.ErrNotFound) {
		return newError(http.StatusUnauthorized, CodeInvalidToken, "the token is unknown, expired or revoked")
	}
	return fmt.Errorf("authenticating: %w", err)
}

// bearerToken extracts the token from exactly one well-formed header value.
func bearerToken(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(token, db.TokenPrefix) || len(token) > 200 {
		return "", false
	}
	for i := 0; i < len(token); i++ {
		b := token[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return "", false
		}
	}
	return token, true
}

func principal(c echo.Context) *db.Principal {
	p, _ := c.Get(ctxPrincipal).(*db.Principal)
	return p
}

func application(c echo.Context) *db.Application {
	a, _ := c.Get(ctxApp).(*db.Application)
	return a
}

// ctxAuditorPerms holds the caller's auditor-bucket permissions on the
// route's application.
const ctxAuditorPerms = "tally.auditor_permissions"

// mayDownload reports whether the caller holds reports:download in the scope
// of the route they called: their auditor bucket of the application on
// application routes, their owner-level permissions otherwise. Content
// derived from a report's file is shown only to them.
func mayDownload(c echo.Context) bool {
	if perms, ok := c.Get(ctxAuditorPerms).([]string); ok {
		return slices.Contains(perms, db.PermReportsDownload)
	}
	return slices.Contains(principal(c).OwnerPermissions, db.PermReportsDownload)
}

// requireAuditor authenticates the caller as authenticate does, resolves
// :foreignId inside the caller's organization and checks perm in the
// caller's auditor bucket on it (403), with one query for all of it. An
// application on which the caller holds no grant at all answers 404, exactly
// as one that does not exist or belongs to another organization, so that
// members cannot enumerate the organization's applications.
func (s *Server) requireAuditor(perm string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			token, err := requestToken(c)
			if err != nil {
				return err
			}
			ctx := c.Request().Context()
			foreignID := c.Param("foreignId")
			if len(foreignID) > 63 {
				// No application has such a segment: authenticate alone,
				// so that a bad token still answers 401.
				p, err := db.Authenticate(ctx, s.pool, token)
				if err != nil {
					return authError(err)
				}
				c.Set(ctxPrincipal, p)
				return newError(http.StatusNotFound, CodeApplicationNotFound, "application not found")
			}
			p, app, perms, err := db.AuthenticateAuditor(ctx, s.pool, token, foreignID)
			if err != nil {
				return authError(err)
			}
			c.Set(ctxPrincipal, p)
			if app == nil || len(perms) == 0 {
				return newError(http.StatusNotFound, CodeApplicationNotFound, "application not found")
			}
			if !slices.Contains(perms, perm) {
				return newError(http.StatusForbidden, CodePermissionDenied,
					"this action needs %s in your auditor bucket for this application", perm)
			}
			c.Set(ctxApp, app)
			c.Set(ctxAuditorPerms, perms)
			return next(c)
		}
	}
}

// requireOwner checks an owner-level permission of the caller's organization.
func (s *Server) requireOwner(perm string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !slices.Contains(principal(c).OwnerPermissions, perm) {
				return newError(http.StatusForbidden, CodePermissionDenied,
					"this action needs the owner-level permission %s", perm)
			}
			return next(c)
		}
	}
}
