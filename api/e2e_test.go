package api_test

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/api"
	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/worker"
)

// startWorker runs a real worker on the bundle's database and bucket until
// the test ends.
func (b *testBundle) startWorker(t *testing.T, tweak func(*worker.Opts)) {
	t.Helper()
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	opts := worker.Opts{
		Pool: b.pool, Store: b.store, Portal: portal, Logger: tallytest.Logger(t), PseudonymKeys: tallytest.PseudonymKeys(t),
		SmallConcurrency: 4, LargeConcurrency: 1, JobTimeout: time.Minute, ShutdownTimeout: 5 * time.Second,
		FetchPollInterval: 100 * time.Millisecond, TestOnly: true,
	}
	if tweak != nil {
		tweak(&opts)
	}
	w, err := worker.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

// waitStatus polls the list as the portal would until every report is in
// a final state, and returns them by id.
func (b *testBundle) waitFinal(t *testing.T, role, foreignID string, ids []string) map[string]api.Report {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := b.do(t, http.MethodGet, "/api/applications/"+foreignID+"/reports?limit=200", b.fx.tokens[role], nil)
		got := map[string]api.Report{}
		for _, rep := range decode[[]api.Report](t, r) {
			got[rep.ID] = rep
		}
		done := true
		for _, id := range ids {
			if s := got[id].Status; s == db.ReportPending || s == db.ReportRunning || s == "" {
				done = false
			}
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports not final after 60 s: %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type e2eTx struct {
	db.Transaction
	seq int
}

// seedE2E writes transactions that exercise every rule of the scope:
// periods, contract filters, late ingestion, another application, and text
// that needs quoting or the formula guard.
func seedE2E(t *testing.T, b *testBundle) (*db.Application, []e2eTx) {
	t.Helper()
	app, err := db.CreateApplication(context.Background(), b.pool, db.CreateApplicationParams{OrgID: b.fx.orgA.ID, ForeignID: "e2e", Name: "E2E"})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.GrantPermissions(context.Background(), b.pool, b.fx.users["full"].ID, app.ID,
		[]string{db.PermReportsCreate, db.PermReportsList, db.PermReportsDownload}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	past := time.Now().Add(-time.Hour)
	var txs []e2eTx
	add := func(app *db.Application, contract, cur, kind string, at time.Time, amount int64, cp, desc string, ingested time.Time) {
		txs = append(txs, e2eTx{seq: len(txs), Transaction: db.Transaction{
			ApplicationID: app.ID, ContractID: contract, ExternalID: fmt.Sprintf("e2e-%03d", len(txs)), OccurredAt: at,
			AmountMinor: amount, Currency: cur, Kind: kind, Counterparty: cp, Description: desc, IngestedAt: ingested}})
	}
	cps := []string{"ACME, Inc.", `Quote "Q" Ltd`, "=HYPERLINK(\"x\")", "Ünïcödé GmbH", "", "-minus corp", " leading space"}
	descs := []string{"monthly fee", "line\nbreak", "+sum", "@at", "", "plain"}
	i := 0
	for _, contract := range []string{"c1", "c2", "c3"} {
		for _, cur := range []string{"EUR", "JPY", "KWD"} {
			for _, kind := range []string{"payment", "refund", "fee"} {
				for k := 0; k < 3; k++ {
					i++
					amount := int64(i*137%100000) - 20000
					add(app, contract, cur, kind, base.Add(time.Duration(i)*time.Hour+time.Duration(k)*time.Microsecond),
						amount, cps[i%len(cps)], descs[i%len(descs)], past)
				}
			}
		}
	}
	add(app, "c1", "EUR", "payment", time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC), 1, "before", "", past)
	add(app, "c1", "EUR", "payment", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 2, "at end (excluded)", "", past)
	add(app, "c1", "EUR", "payment", base, 3, "late", "", time.Now().Add(time.Hour)) // ingested after data_as_of
	add(b.fx.alpha, "c1", "EUR", "payment", base, 4, "other app", "", past)
	rows := make([][]any, len(txs))
	for i := range txs {
		rows[i] = db.TransactionValues(&txs[i].Transaction)
	}
	if _, err := db.CopyTransactions(context.Background(), b.pool, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	return app, txs
}

// expectedSummary computes a transaction_summary file from the seeded rows,
// independently of package report: plain filtering, sorting and
// encoding/csv.
func expectedSummary(txs []e2eTx, appID, reportID string, s db.Scope) []byte {
	var in []e2eTx
	for _, tx := range txs {
		if tx.ApplicationID == appID && !tx.OccurredAt.Before(s.PeriodStart) && tx.OccurredAt.Before(s.PeriodEnd) &&
			!tx.IngestedAt.After(s.DataAsOf) && (len(s.ContractFilters) == 0 || slices.Contains(s.ContractFilters, tx.ContractID)) {
			in = append(in, tx)
		}
	}
	sort.SliceStable(in, func(i, j int) bool {
		a, b := in[i], in[j]
		if a.ContractID != b.ContractID {
			return a.ContractID < b.ContractID
		}
		if a.Currency != b.Currency {
			return a.Currency < b.Currency
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if !a.OccurredAt.Equal(b.OccurredAt) {
			return a.OccurredAt.Before(b.OccurredAt)
		}
		return a.seq < b.seq
	})
	exp := map[string]int{"JPY": 0, "KWD": 3}
	amount := func(minor int64, cur string) string {
		e, ok := exp[cur]
		if !ok {
			e = 2
		}
		r := new(big.Rat).SetFrac(big.NewInt(minor), new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(e)), nil))
		return r.FloatString(e)
	}
	guard := func(s string) string {
		if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
			return "'" + s
		}
		return s
	}
	pseudonym := func(cp string) string {
		if cp == "" {
			return ""
		}
		m := hmac.New(sha256.New, testPseudonymKey(reportID))
		m.Write([]byte(cp))
		return "cp_" + hex.EncodeToString(m.Sum(nil))[:12]
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(strings.Split("row_type,contract_id,currency,kind,occurred_at,external_id,counterparty,description,count,amount", ","))
	type total struct{ n, sum int64 }
	totals := map[string]*total{}
	for i := 0; i < len(in); {
		j := i
		var n, sum int64
		for ; j < len(in) && in[j].ContractID == in[i].ContractID && in[j].Currency == in[i].Currency && in[j].Kind == in[i].Kind; j++ {
			tx := in[j]
			n++
			sum += tx.AmountMinor
			if s.HasFlag("line_items") {
				cp := pseudonym(tx.Counterparty)
				if s.HasFlag("counterparty_names") {
					cp = tx.Counterparty
				}
				desc := ""
				if s.HasFlag("descriptions") {
					desc = tx.Description
				}
				_ = w.Write([]string{"transaction", guard(tx.ContractID), tx.Currency, tx.Kind, tx.OccurredAt.UTC().Format(time.RFC3339Nano),
					guard(tx.ExternalID), guard(cp), guard(desc), "", amount(tx.AmountMinor, tx.Currency)})
			}
		}
		g := in[i]
		_ = w.Write([]string{"subtotal", guard(g.ContractID), g.Currency, g.Kind, "", "", "", "", fmt.Sprint(n), amount(sum, g.Currency)})
		if totals[g.Currency] == nil {
			totals[g.Currency] = &total{}
		}
		totals[g.Currency].n += n
		totals[g.Currency].sum += sum
		i = j
	}
	curs := make([]string, 0, len(totals))
	for c := range totals {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	for _, c := range curs {
		_ = w.Write([]string{"total", "", c, "", "", "", "", "", fmt.Sprint(totals[c].n), amount(totals[c].sum, c)})
	}
	w.Flush()
	return buf.Bytes()
}

// testPseudonymKey is the report's pseudonym key, derived here independently
// of package report from the test workers' master key: HKDF-SHA256 without
// salt, the report id as info.
func testPseudonymKey(reportID string) []byte {
	key, err := hkdf.Key(sha256.New, tallytest.PseudonymMasterKey, nil, reportID, 32)
	if err != nil {
		panic(err)
	}
	return key
}

// TestEndToEndEveryFlagCombination creates reports through HTTP for cases
// with every combination of disclosure flags (and contract filters), lets a
// real worker build them, downloads them through HTTP, and compares each
// byte with the file computed independently from the seeded rows.
func TestEndToEndEveryFlagCombination(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	app, txs := seedE2E(t, b)
	b.startWorker(t, nil)

	flagNames := []string{"line_items", "counterparty_names", "descriptions"}
	var cases []*db.Case
	for mask := 0; mask < 8; mask++ {
		var flags []string
		for i, f := range flagNames {
			if mask&(1<<i) != 0 {
				flags = append(flags, f)
			}
		}
		cases = append(cases, b.newCase(t, app, flags, nil))
	}
	cases = append(cases, b.newCase(t, app, flagNames, []string{"c1", "c3"}), b.newCase(t, app, []string{"line_items"}, []string{"c2", "nope"}),
		b.newCase(t, app, []string{"line_items"}, []string{"does-not-exist"}))

	var ids []string
	for _, c := range cases {
		r := b.create(t, "full", "e2e", c.ID, "transaction_summary")
		if r.Code != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.Code, r.Body)
		}
		ids = append(ids, decode[api.Report](t, r).ID)
	}
	final := b.waitFinal(t, "full", "e2e", ids)
	for i, id := range ids {
		rep := final[id]
		t.Run(strings.Join(cases[i].DisclosureFlags, "+")+"/filters="+strings.Join(cases[i].ContractFilters, "+"), func(t *testing.T) {
			if rep.Status != db.ReportReady {
				t.Fatalf("status %s, error %+v", rep.Status, rep.Error)
			}
			row, err := db.GetReportByID(ctx, b.pool, id)
			if err != nil {
				t.Fatal(err)
			}
			scope, err := row.Scope()
			if err != nil {
				t.Fatal(err)
			}
			want := expectedSummary(txs, app.ID, id, scope)
			dl := b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+id+"/download", b.fx.tokens["full"], nil)
			if dl.Code != 200 {
				t.Fatalf("download: %d %s", dl.Code, dl.Body)
			}
			if got := dl.Body.Bytes(); !bytes.Equal(got, want) {
				t.Fatalf("file differs from the expected file:\n--- got\n%s\n--- want\n%s", got, want)
			}
			if *rep.SHA256 != sha256Hex(want) || *rep.SizeBytes != int64(len(want)) {
				t.Errorf("sha256/size = %s/%d, want %s/%d", *rep.SHA256, *rep.SizeBytes, sha256Hex(want), len(want))
			}
		})
	}

	// A ranged download of a real report returns exactly those bytes.
	full := b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+ids[7]+"/download", b.fx.tokens["full"], nil).Body.Bytes()
	part := b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+ids[7]+"/download", b.fx.tokens["full"], nil,
		withHeader("Range", "bytes=100-299"))
	if part.Code != http.StatusPartialContent || !bytes.Equal(part.Body.Bytes(), full[100:300]) {
		t.Fatalf("range download: %d, %d bytes", part.Code, part.Body.Len())
	}

	// Each report has created, generated and its downloads, in order.
	evs, err := tallytest.ListReportEvents(ctx, b.pool, ids[7])
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "report.created,report.generated,report.downloaded,report.downloaded,report.downloaded" {
		t.Errorf("events = %s", got)
	}
}

// newCase makes an approved case on app, assigned to the full auditor.
func (b *testBundle) newCase(t *testing.T, app *db.Application, flags, contracts []string) *db.Case {
	t.Helper()
	ctx := context.Background()
	c, err := db.CreateCase(ctx, b.pool, db.CreateCaseParams{
		ApplicationID: app.ID, Title: "e2e", PeriodStart: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		PeriodEnd: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), DisclosureFlags: flags, ContractFilters: contracts,
		AccessWindowStart: time.Now().Add(-time.Hour), AccessWindowEnd: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = db.ApproveCase(ctx, b.pool, c.ID, b.fx.users["owner"].ID); err != nil {
		t.Fatal(err)
	}
	if err := db.AssignCase(ctx, b.pool, c.ID, b.fx.users["full"].ID); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEndToEndFailingJobEndsFailed: a report whose file cannot be stored
// ends failed after its attempts, with a stable code, one report.failed
// event, a 410 on download and the error in the list.
func TestEndToEndFailingJobEndsFailed(t *testing.T) {
	t.Parallel()
	b := setupWith(t, setupOpts{maxAttempts: 2})
	// The worker writes to a bucket that does not exist, and retries fast.
	opts := tallytest.GetServices(t).S3
	opts.Bucket = "tally-missing-bucket-e2e"
	missing, err := storage.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.startWorker(t, func(o *worker.Opts) {
		o.Store = missing
		o.RetryPolicy = fastRetry{}
	})
	r := b.create(t, "full", "alpha", b.fx.caseOK.ID, "transaction_summary")
	id := decode[api.Report](t, r).ID
	rep := b.waitFinal(t, "full", "alpha", []string{id})[id]
	if rep.Status != db.ReportFailed || rep.Error == nil || rep.Error.Code != jobs.CodeStorageUnavailable {
		t.Fatalf("report = %+v, want failed with storage_unavailable", rep)
	}
	evs, err := tallytest.ListReportEvents(context.Background(), b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for _, e := range evs {
		if e.Kind == db.EventReportFailed {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d report.failed events, want 1", failed)
	}
	dl := b.do(t, http.MethodGet, "/api/applications/alpha/reports/"+id+"/download", b.fx.tokens["full"], nil)
	if dl.Code != http.StatusGone || dl.errorCode(t) != api.CodeReportFailed {
		t.Fatalf("download of a failed report: %d %s", dl.Code, dl.Body)
	}
}

// fastRetry retries a failed job after 100 ms.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time {
	return time.Now().Add(100 * time.Millisecond)
}

var _ river.ClientRetryPolicy = fastRetry{}

// TestEndToEndInFlightImportIsNotInTheReport: an import that began before a
// report was created, with an ingested_at before data_as_of, but commits
// after it, is not the report's: the report is ready while the import is
// still open, without its rows, and stays so once it commits (rebuilt from
// its snapshot, the file is the same). A report created after the commit
// has them.
func TestEndToEndInFlightImportIsNotInTheReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	app, txs := seedE2E(t, b)
	c := b.newCase(t, app, []string{"line_items"}, nil)

	// The import begins (its ingested_at is its start) and stays open.
	imp, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Rollback(ctx)
	late := e2eTx{seq: len(txs), Transaction: db.Transaction{
		ApplicationID: app.ID, ContractID: "c2", ExternalID: "in-flight-1", OccurredAt: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC),
		AmountMinor: 4242, Currency: "EUR", Kind: "fee", Counterparty: "Late Import Ltd"}}
	if late.IngestedAt, err = db.Now(ctx, imp); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CopyTransactions(ctx, imp, pgx.CopyFromRows([][]any{db.TransactionValues(&late.Transaction)})); err != nil {
		t.Fatal(err)
	}

	b.startWorker(t, nil)
	createReady := func() (string, db.Scope, []byte) {
		t.Helper()
		r := b.create(t, "full", "e2e", c.ID, "transaction_summary")
		if r.Code != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.Code, r.Body)
		}
		id := decode[api.Report](t, r).ID
		if rep := b.waitFinal(t, "full", "e2e", []string{id})[id]; rep.Status != db.ReportReady {
			t.Fatalf("status %s", rep.Status)
		}
		row, err := db.GetReportByID(ctx, b.pool, id)
		if err != nil {
			t.Fatal(err)
		}
		scope, _ := row.Scope()
		return id, scope, b.do(t, http.MethodGet, "/api/applications/e2e/reports/"+id+"/download", b.fx.tokens["full"], nil).Body.Bytes()
	}

	id, scope, got := createReady()
	if imp.Conn().PgConn().TxStatus() != 'T' {
		t.Fatal("the import ended before the report was checked")
	}
	if want := expectedSummary(txs, app.ID, id, scope); !bytes.Equal(got, want) {
		t.Fatalf("file differs from the expected file (without the in-flight import's row):\n--- got\n%s\n--- want\n%s", got, want)
	}
	if err := imp.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	row, err := db.GetReportByID(ctx, b.pool, id)
	if err != nil {
		t.Fatal(err)
	}
	portal, err := config.LoadPortal("")
	if err != nil {
		t.Fatal(err)
	}
	var rebuilt bytes.Buffer
	err = db.WithSnapshotTx(ctx, b.pool, func(tx pgx.Tx) error {
		_, err := jobs.WriteReport(ctx, tx, portal, tallytest.PseudonymKeys(t), row, &rebuilt)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt.Bytes(), got) {
		t.Fatalf("rebuilt once the import committed, the file differs:\n--- rebuilt\n%s\n--- stored\n%s", rebuilt.Bytes(), got)
	}

	id, scope, got = createReady()
	if want := expectedSummary(append(txs, late), app.ID, id, scope); !bytes.Equal(got, want) {
		t.Fatalf("file of a report created after the import differs from the expected file (with its row):\n--- got\n%s\n--- want\n%s", got, want)
	}
	if !bytes.Contains(got, []byte("in-flight-1")) {
		t.Fatal("the committed import's row is missing")
	}
}
