package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// chain runs the sequencer, as a worker does every TALLY_CHAIN_INTERVAL.
func (b *testBundle) chain(t *testing.T) int {
	t.Helper()
	n, err := db.ChainPending(b.ctx, b.pool, 4)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// forge runs statements as a database administrator would to rewrite
// history: in one transaction, with triggers off.
func (b *testBundle) forge(stmts ...func(tx pgx.Tx) error) error {
	tx, err := b.pool.Begin(b.ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(b.ctx)
	if _, err := tx.Exec(b.ctx, `SET LOCAL session_replication_role = replica`); err != nil {
		return err
	}
	for _, s := range stmts {
		if err := s(tx); err != nil {
			return err
		}
	}
	return tx.Commit(b.ctx)
}

func exec(ctx context.Context, sql string, args ...any) func(tx pgx.Tx) error {
	return func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, sql, args...)
		return err
	}
}

// eventIDs returns an organization's chained events in chain order.
func (b *testBundle) eventIDs(t *testing.T, orgID string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(b.ctx, `SELECT event_id FROM activity_chain WHERE org_id = $1 ORDER BY seq`, orgID)
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
		}, func(ids []int64) string {
			return fmt.Sprintf("event %d (seq 5) was removed: its chain position remains", ids[4])
		}},
		{"DeleteWithItsChainPosition", func(b *testBundle, ids []int64) error {
			return b.forge(
				exec(b.ctx, `DELETE FROM activity_events WHERE id = $1`, ids[4]),
				exec(b.ctx, `DELETE FROM activity_chain WHERE event_id = $1`, ids[4]))
		}, func(ids []int64) string { return fmt.Sprintf("1 event(s) removed before event %d", ids[5]) }},
		{"ChainPositionChanged", func(b *testBundle, ids []int64) error {
			return b.forge(exec(b.ctx, `UPDATE activity_chain SET hash = sha256(hash) WHERE event_id = $1`, ids[6]))
		}, func(ids []int64) string { return fmt.Sprintf("event %d (seq 7) was changed", ids[6]) }},
		{"InsertInTheMiddle", func(b *testBundle, ids []int64) error {
			// A forger with the database: triggers off, later positions
			// renumbered, an event with a valid hash linked to its
			// predecessor.
			var forged int64
			return b.forge(
				exec(b.ctx, `UPDATE activity_chain SET seq = seq + 1000000 WHERE event_id = ANY($1) AND seq >= 5`, ids),
				exec(b.ctx, `UPDATE activity_chain SET seq = seq - 999999 WHERE event_id = ANY($1) AND seq > 1000000`, ids),
				func(tx pgx.Tx) error {
					return tx.QueryRow(b.ctx, `
						INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details)
						SELECT org_id, application_id, case_id, report_id, report_type, 'report.downloaded', '{"forged": true}'
						  FROM activity_events WHERE id = $1 RETURNING id`, ids[3]).Scan(&forged)
				},
				func(tx pgx.Tx) error {
					_, err := tx.Exec(b.ctx, `
						INSERT INTO activity_chain (org_id, seq, event_id, prev_hash, hash)
						SELECT e.org_id, 5, e.id, p.hash, sha256(p.hash || convert_to(tally_activity_canonical(e, 5), 'UTF8'))
						  FROM activity_events e, activity_chain p WHERE e.id = $1 AND p.event_id = $2`, forged, ids[3])
					return err
				})
		}, func([]int64) string { return "(seq 5) was inserted: event" }},
		{"InsertedBehindTheSequencer", func(b *testBundle, ids []int64) error {
			// An event slipped in with an old date and below the chain's
			// watermark: the sequencer never chains it, and audit verify
			// names it once it is older than the grace.
			_, err := b.pool.Exec(b.ctx, `
				INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details, occurred_at, xact)
				SELECT org_id, application_id, case_id, report_id, report_type, 'report.downloaded', '{"forged": true}',
				       now() - interval '1 hour', '3' FROM activity_events WHERE id = $1`, ids[3])
			return err
		}, func([]int64) string { return "is not chained: no worker is running the sequencer" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			o := b.newChainOrg(t, "Acme")
			b.addEvents(t, o, 9) // and report.created? no: CreateReport writes none
			if n := b.chain(t); n != 9 {
				t.Fatalf("the sequencer chained %d events, want 9", n)
			}
			ids := b.eventIDs(t, o.org.ID)
			if len(ids) != 9 {
				t.Fatalf("%d events, want 9", len(ids))
			}
			b.mustRun(t, "audit", "verify", "--org", o.org.ID)
			if err := tc.tamper(b, ids); err != nil {
				t.Fatal(err)
			}
			b.chain(t) // the workers' sequencer keeps running
			r := b.run(t, "audit", "verify", "--org", o.org.ID, "--pending-grace", "1s")
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
	err := b.forge(
		exec(b.ctx, `DELETE FROM activity_events WHERE id = (SELECT event_id FROM activity_chain WHERE org_id = $1 AND seq = 5)`, o.org.ID),
		exec(b.ctx, `DELETE FROM activity_chain WHERE org_id = $1 AND seq = 5`, o.org.ID))
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, b.run(t, "audit", "verify", "--org", o.org.ID), "event(s) removed after seq 4: the checkpoint")
}

// TestChainConcurrentWriters: many goroutines writing events for several
// organizations at once, some of them rolling back, with a transaction held
// open across all of them and sequencers running concurrently, leave every
// chain intact once the sequencer has run: no fork, no hole, every committed
// event chained once, none of the rolled back ones.
func TestChainConcurrentWriters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := b.ctx
	orgs := []chainOrg{b.newChainOrg(t, "One"), b.newChainOrg(t, "Two"), b.newChainOrg(t, "Three")}

	// A long transaction, begun (and given its xid) before the writers:
	// every event committed after it waits for it to end before it can be
	// chained, and its own event is chained in xact order, first.
	long, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx)
	if err := db.CreateReportEvent(ctx, long, orgs[0].rep, db.EventReportDownloaded, "", map[string]any{"long": true}); err != nil {
		t.Fatal(err)
	}

	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	var committed, aborted sync.Map // event details "w/i" → org
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				o := orgs[(w+i)%len(orgs)]
				details := map[string]any{"w": w, "i": i}
				if (w+i)%5 != 0 {
					if err := db.CreateReportEvent(context.Background(), b.pool, o.rep, db.EventReportDownloaded, "", details); err != nil {
						errs <- err
						return
					}
					committed.Store(fmt.Sprint(w, "/", i), o.org.ID)
					continue
				}
				// An aborted writer: its event was inserted, then rolled back.
				err := db.WithTx(context.Background(), b.pool, func(tx pgx.Tx) error {
					if err := db.CreateReportEvent(context.Background(), tx, o.rep, db.EventReportDownloaded, "", details); err != nil {
						return err
					}
					return errRollback
				})
				if !errors.Is(err, errRollback) {
					errs <- fmt.Errorf("aborted writer: %v", err)
					return
				}
				aborted.Store(fmt.Sprint(w, "/", i), o.org.ID)
			}
		}()
	}
	// Two sequencers run while the writers write, as two workers would.
	stop := make(chan struct{})
	var seqWG sync.WaitGroup
	chainedWhileOpen := make([]int, 2)
	for s := range 2 {
		seqWG.Add(1)
		go func() {
			defer seqWG.Done()
			for {
				n, err := db.ChainPending(context.Background(), b.pool, 7)
				if err != nil {
					errs <- fmt.Errorf("sequencer: %w", err)
					return
				}
				chainedWhileOpen[s] += n
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	seqWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// The long transaction is older than every writer's: nothing they wrote
	// could be chained while it was open.
	if got := chainedWhileOpen[0] + chainedWhileOpen[1]; got != 0 {
		t.Errorf("%d events chained while an older transaction was open, want 0", got)
	}
	for _, o := range orgs {
		out := b.mustRun(t, "audit", "verify", "--org", o.org.ID)
		if !strings.HasPrefix(out, "OK: 0 events") || !strings.Contains(out, "pending, not chained yet") {
			t.Errorf("audit verify while the long transaction is open: %q, want no event chained, some pending", out)
		}
	}

	if err := long.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	b.chain(t)
	want := 1
	committed.Range(func(any, any) bool { want++; return true })
	total := 0
	for _, o := range orgs {
		out := b.mustRun(t, "audit", "verify", "--org", o.org.ID)
		var n int
		if _, err := fmt.Sscanf(out, "OK: %d events", &n); err != nil || strings.Contains(out, "pending") {
			t.Fatalf("audit verify: %q", out)
		}
		total += n
	}
	if total != want {
		t.Errorf("%d events in the chains, want %d committed", total, want)
	}
	// Every chain follows (xact, id) order and holds no rolled back event.
	var disorder int
	err = b.pool.QueryRow(ctx, `
		SELECT count(*) FROM (
		    SELECT (e.xact, e.id) < (lag(e.xact) OVER w, lag(e.id) OVER w) AS bad
		      FROM activity_chain c JOIN activity_events e ON e.id = c.event_id
		     WHERE c.org_id = ANY($1) WINDOW w AS (PARTITION BY c.org_id ORDER BY c.seq)) s
		 WHERE bad`, []string{orgs[0].org.ID, orgs[1].org.ID, orgs[2].org.ID}).Scan(&disorder)
	if err != nil {
		t.Fatal(err)
	}
	if disorder != 0 {
		t.Errorf("%d chain positions out of (xact, id) order", disorder)
	}
	var first bool
	if err := b.pool.QueryRow(ctx, `
		SELECT e.details @> '{"long": true}' FROM activity_chain c JOIN activity_events e ON e.id = c.event_id
		 WHERE c.org_id = $1 AND c.seq = 1`, orgs[0].org.ID).Scan(&first); err != nil || !first {
		t.Errorf("the long transaction's event is not first in its chain (%v, %v)", first, err)
	}
	aborted.Range(func(k, _ any) bool {
		var w, i int
		fmt.Sscanf(k.(string), "%d/%d", &w, &i)
		var n int
		if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM activity_events WHERE details @> $1`,
			map[string]any{"w": w, "i": i}).Scan(&n); err != nil || n != 0 {
			t.Errorf("rolled back event %s: %d rows (%v)", k, n, err)
		}
		return true
	})
}

var errRollback = errors.New("rollback")

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
