package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
	"github.com/tally-compliance/tally/jobs"
)

// chainOrg is an organization with one report to hang events on.
type chainOrg struct {
	org *db.Organization
	rep *db.Report
}

func (b *testBundle) newChainOrg(t *testing.T, name string) chainOrg {
	t.Helper()
	ctx := b.ctx
	org, err := db.CreateOrganization(ctx, b.pool, name)
	if err != nil {
		t.Fatal(err)
	}
	app, err := db.CreateApplication(ctx, b.pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "app", Name: "App"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := db.CreateUser(ctx, b.pool, db.CreateUserParams{OrgID: org.ID, Email: strings.ToLower(name) + "@x.test", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	c, err := db.CreateCase(ctx, b.pool, db.CreateCaseParams{ApplicationID: app.ID, Title: "c",
		PeriodStart: now.Add(-48 * time.Hour), PeriodEnd: now, AccessWindowStart: now.Add(-time.Hour), AccessWindowEnd: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := db.CreateReport(ctx, b.pool, db.CreateReportParams{OrgID: org.ID, ApplicationID: app.ID, CaseID: c.ID,
		Type: "transaction_summary", Metadata: map[string]any{"case_id": c.ID}, CreatedBy: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	return chainOrg{org: org, rep: rep}
}

func (b *testBundle) addEvents(t *testing.T, o chainOrg, n int) {
	t.Helper()
	for i := range n {
		if err := db.CreateReportEvent(b.ctx, b.pool, o.rep, db.EventReportDownloaded, "", map[string]any{"n": i, "s": "ä\n\"x\"\u0001"}); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *testBundle) eventIDs(t *testing.T, orgID string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT id FROM activity_events WHERE org_id = $1 ORDER BY chain_seq`, orgID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestAuditVerifyDetectsTampering changes, removes and inserts one activity
// row in the middle of a chain; audit verify names that event.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		tamper func(b *testBundle, ids []int64) error
		want   func(ids []int64) string
	}{
		{"Intact", func(*testBundle, []int64) error { return nil }, nil},
		{"Update", func(b *testBundle, ids []int64) error {
			_, err := b.pool.Exec(b.ctx, `UPDATE activity_events SET details = '{"n": 99}' WHERE id = $1`, ids[4])
			return err
		}, func(ids []int64) string { return fmt.Sprintf("event %d (seq 5) was changed", ids[4]) }},
		{"UpdateActor", func(b *testBundle, ids []int64) error {
			_, err := b.pool.Exec(b.ctx, `UPDATE activity_events SET occurred_at = occurred_at + interval '1 microsecond' WHERE id = $1`, ids[2])
			return err
		}, func(ids []int64) string { return fmt.Sprintf("event %d (seq 3) was changed", ids[2]) }},
		{"Delete", func(b *testBundle, ids []int64) error {
			_, err := b.pool.Exec(b.ctx, `DELETE FROM activity_events WHERE id = $1`, ids[4])
			return err
		}, func(ids []int64) string { return fmt.Sprintf("1 event(s) removed before event %d", ids[5]) }},
		{"InsertInTheMiddle", func(b *testBundle, ids []int64) error {
			// A forger with the database: triggers off, later events
			// renumbered, a row with a valid hash linked to its predecessor.
			tx, err := b.pool.Begin(b.ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(b.ctx)
			for _, q := range []string{
				`SET LOCAL session_replication_role = replica`,
				`UPDATE activity_events SET chain_seq = chain_seq + 1000000 WHERE id = ANY($1) AND chain_seq >= 5`,
				`UPDATE activity_events SET chain_seq = chain_seq - 999999 WHERE id = ANY($1) AND chain_seq > 1000000`,
			} {
				args := []any{ids}
				if !strings.Contains(q, "$1") {
					args = nil
				}
				if _, err := tx.Exec(b.ctx, q, args...); err != nil {
					return err
				}
			}
			var forged int64
			err = tx.QueryRow(b.ctx, `
				INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details,
				                             chain_seq, prev_hash, hash)
				SELECT org_id, application_id, case_id, report_id, report_type, 'report.downloaded', '{"forged": true}',
				       5, hash, '\x00'::bytea
				  FROM activity_events WHERE id = $1 RETURNING id`, ids[3]).Scan(&forged)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(b.ctx, `UPDATE activity_events SET hash = sha256(prev_hash || convert_to(tally_activity_canonical(activity_events), 'UTF8'))
				WHERE id = $1`, forged); err != nil {
				return err
			}
			return tx.Commit(b.ctx)
		}, func([]int64) string { return "(seq 5) was inserted: event" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			o := b.newChainOrg(t, "Acme")
			b.addEvents(t, o, 9) // and report.created? no: CreateReport writes none
			ids := b.eventIDs(t, o.org.ID)
			if len(ids) != 9 {
				t.Fatalf("%d events, want 9", len(ids))
			}
			b.mustRun(t, "audit", "verify", "--org", o.org.ID)
			if err := tc.tamper(b, ids); err != nil {
				t.Fatal(err)
			}
			r := b.run(t, "audit", "verify", "--org", o.org.ID)
			if tc.want == nil {
				if r.err != nil || !strings.HasPrefix(r.stdout, "OK: 9 events") {
					t.Fatalf("intact chain: %v %q", r.err, r.stdout)
				}
				return
			}
			wantError(t, r, tc.want(ids))
		})
	}
}

// TestAuditVerifyCheckpoints: removing the last events or rewriting the
// whole chain after a checkpoint is caught by the checkpoint.
func TestAuditVerifyCheckpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.newChainOrg(t, "Acme")
	b.addEvents(t, o, 5)
	key, _ := evidence.GenerateKey()
	if n, err := jobs.CheckpointActivity(b.ctx, b.pool, evidence.KeysOf(key), time.Now()); err != nil || n != 1 {
		t.Fatalf("CheckpointActivity: %d, %v", n, err)
	}
	b.mustRun(t, "audit", "verify", "--org", o.org.ID)
	if _, err := b.pool.Exec(b.ctx, `DELETE FROM activity_events WHERE org_id = $1 AND chain_seq = 5`, o.org.ID); err != nil {
		t.Fatal(err)
	}
	wantError(t, b.run(t, "audit", "verify", "--org", o.org.ID), "event(s) removed after seq 4: the checkpoint")
}

// TestChainConcurrentWriters: many goroutines writing events for several
// organizations at once leave every chain intact, without forks.
func TestChainConcurrentWriters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	orgs := []chainOrg{b.newChainOrg(t, "One"), b.newChainOrg(t, "Two"), b.newChainOrg(t, "Three")}
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o := orgs[(w+i)%len(orgs)]
				if err := db.CreateReportEvent(context.Background(), b.pool, o.rep, db.EventReportDownloaded, "",
					map[string]any{"w": w, "i": i}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for _, o := range orgs {
		out := b.mustRun(t, "audit", "verify", "--org", o.org.ID)
		var n int
		if _, err := fmt.Sscanf(out, "OK: %d events", &n); err != nil {
			t.Fatalf("audit verify: %q", out)
		}
		total += n
	}
	if total != writers*each {
		t.Errorf("%d events in the chains, want %d", total, writers*each)
	}
}

// TestVerifyOffline runs tallyctl verify with no database: a good file, a
// changed byte, a changed manifest field, an unknown key.
func TestVerifyOffline(t *testing.T) {
	t.Parallel()
	b := &testBundle{ctx: context.Background()} // no database
	dir := t.TempDir()
	key, _ := evidence.GenerateKey()
	other, _ := evidence.GenerateKey()
	file := []byte("row_type,contract_id\nsubtotal,c1\n")
	sum := fmt.Sprintf("%x", sha256Sum(file))
	m := &evidence.Manifest{ReportID: "rpt_01aaaaaaaaaaaaaaaaaaaaaaaa", OrgID: "org_x", Type: "transaction_summary", Format: "csv",
		SHA256: sum, SizeBytes: int64(len(file)), RowCount: 1}
	canonical, sig, err := evidence.SignManifest(key, m)
	if err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`{"manifest":%s,"signature":%q,"key_id":%q}`, canonical, evidence.EncodeSignature(sig), key.ID)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	jwks := func(keys ...evidence.Key) []byte {
		var parts []string
		for _, k := range keys {
			j := k.ToJWK()
			parts = append(parts, fmt.Sprintf(`{"kty":%q,"crv":%q,"x":%q,"kid":%q}`, j.Kty, j.Crv, j.X, j.Kid))
		}
		return []byte(`{"keys":[` + strings.Join(parts, ",") + `]}`)
	}
	manifest := write("manifest.json", []byte(doc))
	keys := write("keys.json", jwks(other, key))
	good := write("report.csv", file)
	out := b.mustRun(t, "verify", "--manifest", manifest, "--keys", keys, good)
	if !strings.HasPrefix(out, "OK: ") {
		t.Errorf("verify: %q", out)
	}

	bad := append([]byte(nil), file...)
	bad[3] ^= 1
	wantError(t, b.run(t, "verify", "--manifest", manifest, "--keys", keys, write("bad.csv", bad)), "sha256: the file's SHA-256 is")
	wantError(t, b.run(t, "verify", "--manifest", manifest, "--keys", keys, write("short.csv", file[1:])), "size: the file is")
	changed := write("changed.json", []byte(strings.Replace(doc, `"row_count":1`, `"row_count":2`, 1)))
	wantError(t, b.run(t, "verify", "--manifest", changed, "--keys", keys, good), "signature: does not verify")
	wantError(t, b.run(t, "verify", "--manifest", manifest, "--keys", write("other.json", jwks(other)), good), "is not in the key set")
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }
