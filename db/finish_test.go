package db_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// TestFinishReportSigningKeyRegistered: FinishReport registers the signing
// key unless told it is registered already; told so about a key that is
// not, it fails (the manifest's foreign key) and commits nothing, so a
// worker that trusted a stale cache never leaves a report ready without
// its manifest.
func TestFinishReportSigningKeyRegistered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupJobSync(t)
	pub := make([]byte, 32) // a key id is 43 base64url characters, a public key 32 bytes
	if _, err := rand.Read(pub); err != nil {
		t.Fatal(err)
	}
	keyID := base64.RawURLEncoding.EncodeToString(append(pub[:0:0], pub...))[:43]

	finish := func(reportID string, registered bool) (bool, error) {
		var marked bool
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			marked, err = db.FinishReport(ctx, tx, db.FinishReportParams{
				Ready: db.MarkReportReadyParams{ID: reportID, Metadata: db.ReadyMetadata{RowCount: 1}, SizeBytes: 3,
					SHA256: strings.Repeat("ab", 32), ContentType: "text/csv", ObjectKey: "k/" + reportID + ".csv",
					ExpiresAt: time.Now().Add(24 * time.Hour)},
				SigningKeyID: keyID, SigningKey: pub, SigningKeyRegistered: registered,
				Manifest: db.ReportManifest{ReportID: reportID, KeyID: keyID, Manifest: "{}", Signature: make([]byte, 64)},
				Event: db.CreateEventParams{OrgID: b.app.OrgID, ApplicationID: b.app.ID, CaseID: b.kase.ID, ReportID: reportID,
					ReportType: "transaction_summary", Kind: db.EventReportGenerated},
			})
			return err
		})
		return marked, err
	}
	status := func(reportID string) string {
		var s string
		if err := b.pool.QueryRow(ctx, `SELECT status FROM reports WHERE id = $1`, reportID).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	claim := func() string {
		reportID, jobID := b.newReport(t)
		if _, claimed, err := db.ClaimReport(ctx, b.pool, reportID, jobID); err != nil || !claimed {
			t.Fatalf("ClaimReport: %v, %v", claimed, err)
		}
		return reportID
	}

	first := claim()
	if marked, err := finish(first, true); err == nil || marked && status(first) == db.ReportReady {
		t.Fatalf("FinishReport with an unregistered key said registered = %v, %v (status %s); want an error and nothing committed",
			marked, err, status(first))
	}
	if s := status(first); s != db.ReportRunning {
		t.Fatalf("status after the failed finish = %s, want running", s)
	}
	if marked, err := finish(first, false); err != nil || !marked || status(first) != db.ReportReady {
		t.Fatalf("FinishReport registering the key = %v, %v (status %s); want the report ready", marked, err, status(first))
	}
	second := claim()
	if marked, err := finish(second, true); err != nil || !marked || status(second) != db.ReportReady {
		t.Fatalf("FinishReport with the key registered = %v, %v (status %s); want the report ready", marked, err, status(second))
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM report_manifests WHERE key_id = $1`, keyID).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d manifests signed with the key (err %v), want 2", n, err)
	}
}
