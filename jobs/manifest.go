package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
)

// ManifestOf returns the manifest of a built report file, unsigned.
func ManifestOf(rep *db.Report, format, sha256 string, sizeBytes, rowCount int64, generatedAt time.Time) (*evidence.Manifest, error) {
	scope, err := rep.Scope()
	if err != nil {
		return nil, fmt.Errorf("reading report scope: %w", err)
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
	return &evidence.Manifest{
		ReportID: rep.ID, OrgID: rep.OrgID, ApplicationID: rep.ApplicationID, CaseID: rep.CaseID,
		Type: rep.Type, Format: format,
		Scope: evidence.Scope{
			PeriodStart: ts(scope.PeriodStart), PeriodEnd: ts(scope.PeriodEnd),
			DisclosureFlags: scope.DisclosureFlags, ContractFilters: scope.ContractFilters,
			DataAsOf: ts(scope.DataAsOf), CreationSnapshot: deref(rep.CreationSnapshot),
		},
		SHA256: sha256, SizeBytes: sizeBytes, RowCount: rowCount, GeneratedAt: ts(generatedAt),
	}, nil
}

// SignAndStoreManifest signs m with keys' current key and stores it, with
// the key's public half, on q (the transaction that marks the report ready).
func SignAndStoreManifest(ctx context.Context, q db.DBTX, keys *evidence.Keys, m *evidence.Manifest) error {
	canonical, sig, err := evidence.SignManifest(keys.Current, m)
	if err != nil {
		return fmt.Errorf("signing manifest: %w", err)
	}
	if err := db.RegisterSigningKey(ctx, q, keys.Current.ID, keys.Current.Public); err != nil {
		return err
	}
	return db.CreateReportManifest(ctx, q, db.ReportManifest{
		ReportID: m.ReportID, KeyID: keys.Current.ID, Manifest: string(canonical), Signature: sig,
	})
}

// EphemeralKeys returns a fresh signing key that lives as long as the
// process, logging loudly: what it signs verifies only while its public key
// is kept (it is, in signing_keys), but nobody holds its private half.
func EphemeralKeys(ctx context.Context, logger *slog.Logger) (*evidence.Keys, error) {
	k, err := evidence.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("generating an ephemeral signing key: %w", err)
	}
	logger.WarnContext(ctx, "NO SIGNING KEY CONFIGURED: signing report manifests with an EPHEMERAL key; "+
		"set TALLY_SIGNING_KEYS_DIR or TALLY_SIGNING_KEY_FILE in production", slog.String("key_id", k.ID))
	return evidence.KeysOf(k), nil
}

// lazyKeys gives a worker without configured keys one ephemeral key.
type lazyKeys struct {
	once sync.Once
	keys *evidence.Keys
	err  error
}

func (l *lazyKeys) get(ctx context.Context, configured *evidence.Keys, logger *slog.Logger) (*evidence.Keys, error) {
	if configured != nil {
		return configured, nil
	}
	l.once.Do(func() { l.keys, l.err = EphemeralKeys(ctx, logger) })
	return l.keys, l.err
}
