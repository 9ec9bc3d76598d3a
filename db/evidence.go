package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// SigningKey is a public key that signed manifests or checkpoints.
type SigningKey struct {
	ID        string    `db:"id"`
	PublicKey []byte    `db:"public_key"`
	CreatedAt time.Time `db:"created_at"`
}

// RegisterSigningKey records a public key, once; a second call is a no-op.
// Keys are never deleted, so that what a retired key signed still verifies.
const registerSigningKeySQL = `INSERT INTO signing_keys (id, public_key) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`

func RegisterSigningKey(ctx context.Context, q DBTX, id string, public []byte) error {
	_, err := q.Exec(ctx, registerSigningKeySQL, id, public)
	if err != nil {
		return fmt.Errorf("registering signing key: %w", translate(err))
	}
	return nil
}

// ListSigningKeys returns every public key that ever signed, oldest first.
func ListSigningKeys(ctx context.Context, q DBTX) ([]SigningKey, error) {
	rows, _ := q.Query(ctx, `SELECT id, public_key, created_at FROM signing_keys ORDER BY created_at, id`)
	keys, err := pgx.CollectRows(rows, pgx.RowToStructByName[SigningKey])
	if err != nil {
		return nil, fmt.Errorf("listing signing keys: %w", translate(err))
	}
	return keys, nil
}

// ReportManifest is a report's signed manifest: Manifest holds the exact
// canonical bytes that were signed.
type ReportManifest struct {
	ReportID  string    `db:"report_id"`
	KeyID     string    `db:"key_id"`
	Manifest  string    `db:"manifest"`
	Signature []byte    `db:"signature"`
	CreatedAt time.Time `db:"created_at"`
}

// CreateReportManifest stores a report's signed manifest. A report marked
// ready again (an admin's retry) gets the new run's manifest.
func CreateReportManifest(ctx context.Context, q DBTX, m ReportManifest) error {
	_, err := q.Exec(ctx, createReportManifestSQL, m.ReportID, m.KeyID, m.Manifest, m.Signature)
	if err != nil {
		return fmt.Errorf("storing report manifest: %w", translate(err))
	}
	return nil
}

const createReportManifestSQL = `
		INSERT INTO report_manifests (report_id, key_id, manifest, signature) VALUES ($1, $2, $3, $4)
		ON CONFLICT (report_id) DO UPDATE
		   SET key_id = EXCLUDED.key_id, manifest = EXCLUDED.manifest, signature = EXCLUDED.signature, created_at = now()`

// GetReportManifest returns a report's signed manifest, or ErrNotFound.
func GetReportManifest(ctx context.Context, q DBTX, reportID string) (*ReportManifest, error) {
	rows, _ := q.Query(ctx, `SELECT report_id, key_id, manifest, signature, created_at FROM report_manifests WHERE report_id = $1`, reportID)
	m, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[ReportManifest])
	if err != nil {
		return nil, translate(err)
	}
	return m, nil
}

// ChainHead is the last event of an organization's chain.
type ChainHead struct {
	OrgID string `db:"org_id"`
	Seq   int64  `db:"seq"`
	Hash  []byte `db:"hash"`
}

// ListUncheckpointedHeads returns the chain heads that moved since their
// organization's last checkpoint.
func ListUncheckpointedHeads(ctx context.Context, q DBTX) ([]ChainHead, error) {
	rows, _ := q.Query(ctx, `
		SELECT h.org_id, h.seq, h.hash FROM activity_chain_heads h
		 WHERE h.seq > coalesce((SELECT max(c.seq) FROM activity_checkpoints c WHERE c.org_id = h.org_id), 0)
		 ORDER BY h.org_id`)
	heads, err := pgx.CollectRows(rows, pgx.RowToStructByName[ChainHead])
	if err != nil {
		return nil, fmt.Errorf("listing chain heads: %w", translate(err))
	}
	return heads, nil
}

// Checkpoint is a signed statement of a chain's head: Payload holds the
// canonical bytes that were signed.
type Checkpoint struct {
	ID        int64     `db:"id"`
	OrgID     string    `db:"org_id"`
	Seq       int64     `db:"seq"`
	Hash      []byte    `db:"hash"`
	KeyID     string    `db:"key_id"`
	Payload   string    `db:"payload"`
	Signature []byte    `db:"signature"`
	CreatedAt time.Time `db:"created_at"`
}

// CreateCheckpoint stores a signed checkpoint.
func CreateCheckpoint(ctx context.Context, q DBTX, c Checkpoint) error {
	_, err := q.Exec(ctx, `
		INSERT INTO activity_checkpoints (org_id, seq, hash, key_id, payload, signature) VALUES ($1, $2, $3, $4, $5, $6)`,
		c.OrgID, c.Seq, c.Hash, c.KeyID, c.Payload, c.Signature)
	if err != nil {
		return fmt.Errorf("storing checkpoint: %w", translate(err))
	}
	return nil
}

// ListCheckpoints returns an organization's checkpoints, oldest first.
func ListCheckpoints(ctx context.Context, q DBTX, orgID string) ([]Checkpoint, error) {
	rows, _ := q.Query(ctx, `
		SELECT id, org_id, seq, hash, key_id, payload, signature, created_at
		  FROM activity_checkpoints WHERE org_id = $1 ORDER BY seq, id`, orgID)
	cps, err := pgx.CollectRows(rows, pgx.RowToStructByName[Checkpoint])
	if err != nil {
		return nil, fmt.Errorf("listing checkpoints: %w", translate(err))
	}
	return cps, nil
}

// ReportRef names a report and its type.
type ReportRef struct {
	ID   string `db:"id"`
	Type string `db:"type"`
}

// SampleRecentReadyReports returns up to n ready reports completed within
// the last window, chosen at random.
func SampleRecentReadyReports(ctx context.Context, q DBTX, window time.Duration, n int) ([]ReportRef, error) {
	rows, _ := q.Query(ctx, `
		SELECT id, type FROM reports
		 WHERE status = 'ready' AND completed_at > now() - $1::interval
		 ORDER BY random() LIMIT $2`, window, n)
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByName[ReportRef])
	if err != nil {
		return nil, fmt.Errorf("sampling reports: %w", translate(err))
	}
	return refs, nil
}
