package db

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CreateOrganization inserts an organization.
func CreateOrganization(ctx context.Context, q DBTX, name string) (*Organization, error) {
	rows, _ := q.Query(ctx, `INSERT INTO organizations (id, name) VALUES ($1, $2) RETURNING *`,
		NewID(PrefixOrganization), name)
	org, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Organization])
	if err != nil {
		return nil, fmt.Errorf("inserting organization: %w", translate(err))
	}
	return org, nil
}

// CreateApplicationParams are the fields of a new application.
type CreateApplicationParams struct {
	OrgID     string
	ForeignID string
	Name      string
}

// CreateApplication inserts an application.
func CreateApplication(ctx context.Context, q DBTX, p CreateApplicationParams) (*Application, error) {
	rows, _ := q.Query(ctx, `INSERT INTO applications (id, org_id, foreign_id, name) VALUES ($1, $2, $3, $4) RETURNING *`,
		NewID(PrefixApplication), p.OrgID, p.ForeignID, p.Name)
	app, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Application])
	if err != nil {
		return nil, fmt.Errorf("inserting application: %w", translate(err))
	}
	return app, nil
}

// GetApplicationByForeignID returns the organization's application with that
// route segment, or ErrNotFound.
func GetApplicationByForeignID(ctx context.Context, q DBTX, orgID, foreignID string) (*Application, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM applications WHERE org_id = $1 AND foreign_id = $2`, orgID, foreignID)
	app, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Application])
	if err != nil {
		return nil, translate(err)
	}
	return app, nil
}

// CreateUserParams are the fields of a new user and their membership.
type CreateUserParams struct {
	OrgID            string
	Email            string
	Name             string
	OwnerPermissions []string
}

// CreateUser inserts a user and their membership of OrgID in one transaction.
func CreateUser(ctx context.Context, q DBTX, p CreateUserParams) (*User, error) {
	var u *User
	err := WithTx(ctx, q, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `INSERT INTO users (id, email, name) VALUES ($1, $2, $3) RETURNING *`,
			NewID(PrefixUser), p.Email, p.Name)
		var err error
		u, err = pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[User])
		if err != nil {
			return fmt.Errorf("inserting user: %w", translate(err))
		}
		perms := p.OwnerPermissions
		if perms == nil {
			perms = []string{}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO memberships (org_id, user_id, permissions) VALUES ($1, $2, $3)`,
			p.OrgID, u.ID, perms); err != nil {
			return fmt.Errorf("inserting membership: %w", translate(err))
		}
		return nil
	})
	return u, err
}

// GetUserByEmail returns the user with that email (case-insensitive).
func GetUserByEmail(ctx context.Context, q DBTX, email string) (*User, error) {
	rows, _ := q.Query(ctx, `SELECT * FROM users WHERE lower(email) = lower($1)`, email)
	u, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[User])
	if err != nil {
		return nil, translate(err)
	}
	return u, nil
}

// SetOwnerPermissions replaces the owner-level permissions of a user's membership.
func SetOwnerPermissions(ctx context.Context, q DBTX, userID string, perms []string) error {
	if perms == nil {
		perms = []string{}
	}
	tag, err := q.Exec(ctx, `UPDATE memberships SET permissions = $2 WHERE user_id = $1`, userID, perms)
	if err != nil {
		return fmt.Errorf("updating membership: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// GrantPermissions adds permissions to a user's auditor bucket on an
// application of their own organization. An unknown user is ErrNotFound; an
// application that does not exist or belongs to another organization is
// ErrInvalid.
func GrantPermissions(ctx context.Context, q DBTX, userID, applicationID string, perms []string) error {
	tag, err := q.Exec(ctx, `
		INSERT INTO application_grants (org_id, user_id, application_id, bucket, permissions)
		SELECT m.org_id, m.user_id, $2, 'auditor', ARRAY(SELECT DISTINCT unnest($3::text[]) ORDER BY 1)
		  FROM memberships m WHERE m.user_id = $1
		ON CONFLICT (user_id, application_id, bucket) DO UPDATE
		   SET permissions = ARRAY(SELECT DISTINCT unnest(application_grants.permissions || EXCLUDED.permissions) ORDER BY 1),
		       updated_at = now()`, userID, applicationID, perms)
	if err != nil {
		return fmt.Errorf("granting permissions: %w", translate(err))
	}
	if tag.RowsAffected() == 0 { // no membership: the user does not exist
		return fmt.Errorf("granting permissions: user %s: %w", userID, ErrNotFound)
	}
	return nil
}

// RevokePermissions removes permissions from a user's auditor bucket on an
// application; a grant left empty is deleted.
func RevokePermissions(ctx context.Context, q DBTX, userID, applicationID string, perms []string) error {
	return WithTx(ctx, q, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE application_grants
			   SET permissions = ARRAY(SELECT unnest(permissions) EXCEPT SELECT unnest($3::text[]) ORDER BY 1),
			       updated_at = now()
			 WHERE user_id = $1 AND application_id = $2 AND bucket = 'auditor'`, userID, applicationID, perms)
		if err != nil {
			return fmt.Errorf("revoking permissions: %w", translate(err))
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		_, err = tx.Exec(ctx, `DELETE FROM application_grants WHERE user_id = $1 AND application_id = $2 AND permissions = '{}'`,
			userID, applicationID)
		return translate(err)
	})
}

// ListGrants returns a user's application grants with each application's
// route segment and name, ordered by foreign id.
func ListGrants(ctx context.Context, q DBTX, userID string) ([]Grant, error) {
	rows, _ := q.Query(ctx, `
		SELECT g.application_id, a.foreign_id, a.name, g.bucket, g.permissions
		  FROM application_grants g JOIN applications a ON a.id = g.application_id
		 WHERE g.user_id = $1 ORDER BY a.foreign_id`, userID)
	grants, err := pgx.CollectRows(rows, pgx.RowToStructByName[Grant])
	if err != nil {
		return nil, fmt.Errorf("listing grants: %w", translate(err))
	}
	return grants, nil
}

// TokenPrefix starts every session token, so that secret scanners can find them.
const TokenPrefix = "tly_"

// HashToken returns the SHA-256 of a bearer token, as stored.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateSession issues a bearer token for a user, valid for ttl. The token is
// returned once; only its hash is stored.
func CreateSession(ctx context.Context, q DBTX, userID string, ttl time.Duration) (sessionID, token string, err error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", "", err
	}
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sessionID = NewID(PrefixSession)
	_, err = q.Exec(ctx, `INSERT INTO sessions (id, token_hash, user_id, expires_at) VALUES ($1, $2, $3, now() + $4::interval)`,
		sessionID, HashToken(token), userID, ttl)
	if err != nil {
		return "", "", fmt.Errorf("inserting session: %w", translate(err))
	}
	return sessionID, token, nil
}

// RevokeSession revokes a session by its id or by its token.
func RevokeSession(ctx context.Context, q DBTX, idOrToken string) error {
	var tag interface{ RowsAffected() int64 }
	var err error
	if strings.HasPrefix(idOrToken, TokenPrefix) {
		tag, err = q.Exec(ctx, `UPDATE sessions SET revoked_at = coalesce(revoked_at, now()) WHERE token_hash = $1`, HashToken(idOrToken))
	} else {
		tag, err = q.Exec(ctx, `UPDATE sessions SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, idOrToken)
	}
	if err != nil {
		return fmt.Errorf("revoking session: %w", translate(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Authenticate resolves a bearer token to its principal. Unknown, expired and
// revoked tokens are ErrNotFound. The lookup is by hash, so the comparison
// never touches the secret byte by byte. last_used_at is written at most once
// a minute per session.
func Authenticate(ctx context.Context, q DBTX, token string) (*Principal, error) {
	return authenticate(ctx, q, token, "", "", nil)
}

// AuthenticateAuditor is Authenticate and AuditorApplication in one query:
// the principal of a bearer token, the application of the principal's
// organization with that route segment, and the principal's auditor-bucket
// permissions on it (empty when there is no grant), all read in one
// snapshot. Unknown, expired and revoked tokens are ErrNotFound; an
// organization without such an application gives a nil *Application and no
// error.
func AuthenticateAuditor(ctx context.Context, q DBTX, token, foreignID string) (*Principal, *Application, []string, error) {
	var appID, appOrgID, appForeignID, appName *string
	var appCreatedAt *time.Time
	var perms []string
	p, err := authenticate(ctx, q, token,
		`, a.id, a.org_id, a.foreign_id, a.name, a.created_at, coalesce(g.permissions, '{}')`,
		` LEFT JOIN applications a ON a.org_id = o.id AND a.foreign_id = $2
		  LEFT JOIN application_grants g ON g.application_id = a.id AND g.user_id = u.id AND g.bucket = 'auditor'`,
		[]any{foreignID}, &appID, &appOrgID, &appForeignID, &appName, &appCreatedAt, &perms)
	if err != nil {
		return nil, nil, nil, err
	}
	if appID == nil {
		return p, nil, nil, nil
	}
	app := &Application{ID: *appID, OrgID: *appOrgID, ForeignID: *appForeignID, Name: *appName, CreatedAt: *appCreatedAt}
	return p, app, perms, nil
}

// authenticate reads the principal of token's live session in one query,
// with the caller's columns (scanned into dest), joins (which may use s,
// u, m and o) and arguments ($2 on; $1 is the token's hash), then touches
// the session.
func authenticate(ctx context.Context, q DBTX, token, columns, joins string, args []any, dest ...any) (*Principal, error) {
	var p Principal
	var lastUsed *time.Time
	err := q.QueryRow(ctx, `
		SELECT s.id, s.last_used_at, u.id, u.email, u.name, u.created_at,
		       o.id, o.name, o.created_at, m.permissions`+columns+`
		  FROM sessions s
		  JOIN users u ON u.id = s.user_id
		  JOIN memberships m ON m.user_id = u.id
		  JOIN organizations o ON o.id = m.org_id`+joins+`
		 WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`,
		append([]any{HashToken(token)}, args...)...).
		Scan(append([]any{&p.SessionID, &lastUsed, &p.User.ID, &p.User.Email, &p.User.Name, &p.User.CreatedAt,
			&p.Organization.ID, &p.Organization.Name, &p.Organization.CreatedAt, &p.OwnerPermissions}, dest...)...)
	if err != nil {
		return nil, translate(err)
	}
	if err := touchSession(ctx, q, p.SessionID, lastUsed); err != nil {
		return nil, err
	}
	return &p, nil
}

// touchSession writes a session's last_used_at when the value read,
// lastUsed, is over a minute old: at most once a minute per session.
func touchSession(ctx context.Context, q DBTX, sessionID string, lastUsed *time.Time) error {
	if lastUsed != nil && time.Since(*lastUsed) <= time.Minute {
		return nil
	}
	if _, err := q.Exec(ctx, `UPDATE sessions SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, sessionID); err != nil {
		return fmt.Errorf("touching session: %w", translate(err))
	}
	return nil
}
