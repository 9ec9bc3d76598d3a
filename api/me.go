package api

import (
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/tally-compliance/tally/db"
)

// Me is the body of GET /auth/me.
type Me struct {
	User         MeUser          `json:"user"`
	Organization MeOrganization  `json:"organization"`
	Permissions  MeOwner         `json:"permissions"`
	Applications []MeApplication `json:"applications"`
}

// MeUser is the caller.
type MeUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// MeOrganization is the caller's organization.
type MeOrganization struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// MeOwner holds the caller's owner-level permissions.
type MeOwner struct {
	Owner []string `json:"owner"`
}

// MeApplication is an application the caller has a grant on.
type MeApplication struct {
	ID          string              `json:"id"`
	ForeignID   string              `json:"foreign_id"`
	Name        string              `json:"name"`
	Permissions map[string][]string `json:"permissions"`
}

// me handles GET /auth/me.
func (s *Server) me(c echo.Context) error {
	p := principal(c)
	grants, err := db.ListGrants(c.Request().Context(), s.pool, p.User.ID)
	if err != nil {
		return fmt.Errorf("loading grants: %w", err)
	}
	out := Me{
		User:         MeUser{ID: p.User.ID, Email: p.User.Email, Name: p.User.Name},
		Organization: MeOrganization{ID: p.Organization.ID, Name: p.Organization.Name},
		Permissions:  MeOwner{Owner: nonNil(p.OwnerPermissions)},
		Applications: make([]MeApplication, 0, len(grants)),
	}
	for _, g := range grants {
		out.Applications = append(out.Applications, MeApplication{
			ID: g.ApplicationID, ForeignID: g.ForeignID, Name: g.Name,
			Permissions: map[string][]string{g.Bucket: nonNil(g.Permissions)},
		})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
