package jobs_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/internal/tallytest"
	"github.com/tally-compliance/tally/jobs"
	"github.com/tally-compliance/tally/storage"
	"github.com/tally-compliance/tally/worker"
)

// The scope period of the fixture's cases.
var (
	periodStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	periodEnd   = time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
)

// testBundle is one test's world: its own database and bucket, an
// organization with two applications, an auditor, seeded transactions, and
// an insert-only River client like the API's.
type testBundle struct {
	ctx      context.Context
	pool     *pgxpool.Pool
	s3       storage.Opts
	store    *storage.Store
	portal   *config.Portal
	org      *db.Organization
	app      *db.Application
	otherApp *db.Application
	user     *db.User
	dataAsOf time.Time
	seeded   []db.Transaction // in insertion (id) order, both applications
	inserter *river.Client[pgx.Tx]
}

type setupOpts struct {
	// Rows replaces the seeded transactions (nil: the standard fixture).
	Rows func(b *testBundle) []db.Transaction
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	b := &testBundle{ctx: ctx, pool: tallytest.DB(t), s3: tallytest.S3Opts(t)}
	var err error
	if b.store, err = storage.New(b.s3); err != nil {
		t.Fatal(err)
	}
	if b.portal, err = config.LoadPortal(""); err != nil {
		t.Fatal(err)
	}
	if b.org, err = db.CreateOrganization(ctx, b.pool, "Acme Bank"); err != nil {
		t.Fatal(err)
	}
	if b.app, err = db.CreateApplication(ctx, b.pool, db.CreateApplicationParams{OrgID: b.org.ID, ForeignID: "payments", Name: "Payments"}); err != nil {
		t.Fatal(err)
	}
	if b.otherApp, err = db.CreateApplication(ctx, b.pool, db.CreateApplicationParams{OrgID: b.org.ID, ForeignID: "cards", Name: "Cards"}); err != nil {
		t.Fatal(err)
	}
	if b.user, err = db.CreateUser(ctx, b.pool, db.CreateUserParams{OrgID: b.org.ID, Email: "ann@example.com", Name: "Ann, Auditor"}); err != nil {
		t.Fatal(err)
	}
	b.dataAsOf = time.Now().UTC().Truncate(time.Microsecond)
	if opts != nil && opts.Rows != nil {
		b.seeded = opts.Rows(b)
	} else {
		b.seeded = standardRows(b)
	}
	b.copyRows(t, b.seeded)
	if b.inserter, err = river.NewClient(riverpgxv5.New(b.pool), &river.Config{}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *testBundle) copyRows(t *testing.T, rows []db.Transaction) {
	t.Helper()
	err := db.WithTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		_, err := db.CopyTransactions(b.ctx, tx, pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			return db.TransactionValues(&rows[i]), nil
		}))
		return err
	})
	if err != nil {
		t.Fatalf("seeding transactions: %v", err)
	}
}

// standardRows are the fixture's transactions: edge cases of the scope
// (period bounds, ingestion after data_as_of, another application), text
// that needs quoting or the formula guard, three currencies with exponents
// 2, 0 and 3, and random rows over three contracts.
func standardRows(b *testBundle) []db.Transaction {
	in := b.dataAsOf.Add(-time.Hour)
	mk := func(contract, cur, kind string, at time.Time, amount int64, cp, desc string) db.Transaction {
		return db.Transaction{ApplicationID: b.app.ID, ContractID: contract, OccurredAt: at, AmountMinor: amount,
			Currency: cur, Kind: kind, Counterparty: cp, Description: desc, IngestedAt: in}
	}
	mid := periodStart.Add(10*24*time.Hour + 123456*time.Microsecond)
	rows := []db.Transaction{
		mk("CTR-A", "EUR", "payment", periodStart, 1000, "Acme, Inc.", `first, of "many"`),    // inclusive start
		mk("CTR-A", "EUR", "payment", periodStart.Add(-time.Microsecond), 7, "Before", "out"), // before the period
		mk("CTR-A", "EUR", "payment", periodEnd, 9, "After", "out"),                           // end is exclusive
		mk("CTR-A", "EUR", "payment", periodEnd.Add(-time.Microsecond), -5, `The "Quoted" Co`, "multi\nline"),
		mk("CTR-A", "EUR", "refund", mid, -250, `=HYPERLINK("http://evil")`, "@SUM(1)"),
		mk("CTR-A", "EUR", "refund", mid, -1, "+49 30 1234", "same time, next id"), // tie on occurred_at: id order
		mk("CTR-B", "JPY", "payment", mid, 123456, "-minus", " leading space"),
		mk("CTR-B", "KWD", "fee", mid, -1234, "\ttabbed", "\rcarriage"),
		mk("CTR-C", "EUR", "chargeback", mid, 4200, "", ""),
		mk("CTR-C", "KWD", "payment", mid, 5, "Plain Ltd", "tiny"),
	}
	late := mk("CTR-A", "EUR", "payment", mid, 99, "Late", "ingested after data_as_of")
	late.IngestedAt = b.dataAsOf.Add(time.Second)
	atAsOf := mk("CTR-A", "EUR", "payment", mid, 3, "On time", "ingested exactly at data_as_of")
	atAsOf.IngestedAt = b.dataAsOf
	other := mk("CTR-A", "EUR", "payment", mid, 100000, "Other app", "another application")
	other.ApplicationID = b.otherApp.ID
	rows = append(rows, late, atAsOf, other)

	r := rand.New(rand.NewPCG(11, 12))
	contracts := []string{"CTR-A", "CTR-B", "CTR-C"}
	currencies := []string{"EUR", "JPY", "KWD"}
	kinds := []string{"payment", "refund", "fee"}
	cps := []string{"Acme, Inc.", `The "Quoted" Co`, "=cmd|' /C calc'!A0", "Zeta GmbH", "Ünïcödé SA", "", "Bob"}
	descs := []string{"", "monthly fee", "a,b,c", "line\nbreak", `quote "q"`, "-negative looking"}
	span := int64(periodEnd.Sub(periodStart) / time.Microsecond)
	for i := 0; i < 80; i++ {
		rows = append(rows, mk(contracts[r.IntN(3)], currencies[r.IntN(3)], kinds[r.IntN(3)],
			periodStart.Add(time.Duration(r.Int64N(span))*time.Microsecond),
			r.Int64N(20_000_000)-10_000_000, cps[r.IntN(len(cps))], descs[r.IntN(len(descs))]))
	}
	for i := range rows {
		rows[i].ExternalID = fmt.Sprintf("ext-%03d", i)
	}
	rows[4].ExternalID = "=ext-formula" // formula guard on external_id too
	return rows
}

type caseOpts struct {
	Flags           []string
	ContractFilters []string
	PeriodStart     time.Time // zero: periodStart
	PeriodEnd       time.Time // zero: periodEnd
}

// createCase creates an approved case on the fixture's application with the
// auditor assigned.
func (b *testBundle) createCase(t *testing.T, o caseOpts) *db.Case {
	t.Helper()
	if o.PeriodStart.IsZero() {
		o.PeriodStart, o.PeriodEnd = periodStart, periodEnd
	}
	c, err := db.CreateCase(b.ctx, b.pool, db.CreateCaseParams{
		ApplicationID: b.app.ID, Title: "Audit", PeriodStart: o.PeriodStart, PeriodEnd: o.PeriodEnd,
		DisclosureFlags: o.Flags, ContractFilters: o.ContractFilters,
		AccessWindowStart: time.Now().Add(-time.Hour), AccessWindowEnd: time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err = db.ApproveCase(b.ctx, b.pool, c.ID, b.user.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.AssignCase(b.ctx, b.pool, c.ID, b.user.ID); err != nil {
		t.Fatal(err)
	}
	return c
}

// scopeOf is the snapshot of c as of dataAsOf, as the fixture pins it.
func scopeOf(c *db.Case, dataAsOf time.Time) db.Scope {
	return db.Scope{CaseID: c.ID, PeriodStart: c.PeriodStart, PeriodEnd: c.PeriodEnd,
		DisclosureFlags: c.DisclosureFlags, ContractFilters: c.ContractFilters, DataAsOf: dataAsOf}
}

type reportOpts struct {
	Type        string // "": transaction_summary; a type the portal does not know is created as is
	MaxAttempts int    // 0: 5
	Metadata    any    // nil: the production snapshot with data_as_of pinned to the fixture's
	RequestID   string
	Queue       string // "" or QueueReports: below the large-report threshold; QueueLarge: above it
	NoReport    bool   // insert only a job, for a report that does not exist
}

// createReport creates a report the way the API does, through
// jobs.CreateReport, and returns it with its job's id. It runs in a
// transaction of the fixture's so that, before anything commits (and a
// worker can see it), the snapshot's data_as_of is pinned to the fixture's:
// the seeded rows sit on both sides of it, so every expected file is fixed.
func (b *testBundle) createReport(t *testing.T, c *db.Case, o reportOpts) (*db.Report, int64) {
	t.Helper()
	if o.Type == "" {
		o.Type = "transaction_summary"
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.NoReport {
		res, err := b.inserter.Insert(b.ctx, jobs.GenerateReportArgs{ReportID: db.NewID(db.PrefixReport)},
			&river.InsertOpts{MaxAttempts: o.MaxAttempts})
		if err != nil {
			t.Fatalf("inserting a job without a report: %v", err)
		}
		return nil, res.Job.ID
	}
	typ, ok := b.portal.ReportType(o.Type)
	if !ok {
		typ = config.ReportType{Name: o.Type}
	}
	threshold := int64(1 << 40) // no scope reaches it
	if o.Queue == jobs.QueueLarge {
		threshold = -1 // every estimate exceeds it
	}
	var rep *db.Report
	err := db.WithTx(b.ctx, b.pool, func(tx pgx.Tx) error {
		var err error
		rep, err = jobs.CreateReport(b.ctx, tx, b.inserter, jobs.CreateReportParams{
			Application: b.app, CaseID: c.ID, Type: typ, UserID: b.user.ID, RequestID: o.RequestID,
			LargeReportRows: threshold, MaxAttempts: o.MaxAttempts,
		})
		if err != nil {
			return err
		}
		meta := o.Metadata
		if meta == nil {
			scope, err := rep.Scope()
			if err != nil {
				return err
			}
			scope.DataAsOf = b.dataAsOf
			meta = scope
		}
		data, err := json.Marshal(meta)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(b.ctx, `UPDATE reports SET metadata = $2 WHERE id = $1`, rep.ID, data); err != nil {
			return err
		}
		rep.Metadata = data
		return nil
	})
	if err != nil {
		t.Fatalf("creating report: %v", err)
	}
	job, err := b.inserter.JobGet(b.ctx, *rep.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if want := cmp.Or(o.Queue, jobs.QueueReports); job.Queue != want {
		t.Fatalf("report job queue %s, want %s", job.Queue, want)
	}
	return rep, job.ID
}

// fastRetry retries almost at once, so that tests do not wait for River's
// attempt^4 backoff.
type fastRetry struct{}

func (fastRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(20 * time.Millisecond) }

// workerOpts are test settings: short timeouts, fast pickup and retries.
func (b *testBundle) workerOpts(t *testing.T) worker.Opts {
	return worker.Opts{
		Pool: b.pool, Store: b.store, Portal: b.portal, Logger: testLogger(t), PseudonymKeys: tallytest.PseudonymKeys(t),
		SmallConcurrency: 4, LargeConcurrency: 1,
		JobTimeout: 20 * time.Second, ShutdownTimeout: time.Second,
		FetchPollInterval: 100 * time.Millisecond, RetryPolicy: fastRetry{}, TestOnly: true,
	}
}

// startWorker runs a worker until the test ends and returns it with a
// function that stops it early and returns Run's error.
func startWorker(t *testing.T, opts worker.Opts) (*worker.Worker, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := worker.New(ctx, opts)
	if err != nil {
		t.Fatalf("worker.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			runErr = <-done
		}
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("worker Run: %v", err)
		}
	})
	return w, stop
}

// waitReport polls until the report reaches one of the statuses.
func (b *testBundle) waitReport(t *testing.T, id string, timeout time.Duration, statuses ...string) *db.Report {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r, err := db.GetReportByID(b.ctx, b.pool, id)
		if err != nil {
			t.Fatalf("reading report: %v", err)
		}
		if slices.Contains(statuses, r.Status) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("report %s is %s after %s, want one of %v (error %v)", id, r.Status, timeout, statuses, deref(r.ErrorMessage))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitJob polls until the job reaches one of the states.
func (b *testBundle) waitJob(t *testing.T, id int64, timeout time.Duration, states ...rivertype.JobState) *rivertype.JobRow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := b.inserter.JobGet(b.ctx, id)
		if err != nil {
			t.Fatalf("reading job: %v", err)
		}
		if slices.Contains(states, j.State) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d is %s after %s, want one of %v", id, j.State, timeout, states)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (b *testBundle) download(t *testing.T, r *db.Report) []byte {
	t.Helper()
	if r.ObjectKey == nil {
		t.Fatalf("report %s has no object key", r.ID)
	}
	rc, _, err := b.store.Get(b.ctx, *r.ObjectKey, 0, -1)
	if err != nil {
		t.Fatalf("downloading: %v", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("downloading: %v", err)
	}
	return data
}

// reportObjects returns the keys of every object of a report's runs, sorted.
func (b *testBundle) reportObjects(t *testing.T, r *db.Report) []string {
	t.Helper()
	var keys []string
	prefix := storage.ReportsPrefix + r.OrgID + "/" + r.ApplicationID + "/" + r.ID + "/"
	if err := b.store.List(b.ctx, prefix, func(key string, _ int64) error {
		keys = append(keys, key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func (b *testBundle) events(t *testing.T, reportID string) []db.Event {
	t.Helper()
	evs, err := tallytest.ListReportEvents(b.ctx, b.pool, reportID)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func eventKinds(evs []db.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// --- The expected transaction_summary, computed independently of package
// report: filtering, ordering, grouping, money formatting, pseudonyms,
// quoting (by encoding/csv) and the formula guard are all redone here.

var testExponents = map[string]int{"JPY": 0, "KWD": 3, "EUR": 2}

func testDecimal(minor int64, cur string) string {
	exp := testExponents[cur]
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	digits := strconv.FormatInt(minor, 10)
	if exp == 0 {
		return sign + digits
	}
	for len(digits) <= exp {
		digits = "0" + digits
	}
	return sign + digits[:len(digits)-exp] + "." + digits[len(digits)-exp:]
}

func testGuard(s string) string {
	if s != "" && strings.ContainsAny(s[:1], "=+-@\t\r") {
		return "'" + s
	}
	return s
}

// testPseudonym derives the report's key from the test workers' master key
// (HKDF-SHA256, info = report id) and computes the pseudonym from it.
func testPseudonym(reportID, cp string) string {
	if cp == "" {
		return ""
	}
	key, err := hkdf.Key(sha256.New, tallytest.PseudonymMasterKey, nil, reportID, 32)
	if err != nil {
		panic(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(cp))
	return "cp_" + hex.EncodeToString(m.Sum(nil))[:12]
}

type testTotal struct {
	Count  int64  `json:"count"`
	Amount string `json:"amount"`
}

type expectedFile struct {
	data     []byte
	rowCount int64
	totals   map[string]testTotal
}

func expectedSummary(t *testing.T, seeded []db.Transaction, appID, reportID string, s db.Scope) expectedFile {
	t.Helper()
	type row struct {
		db.Transaction
		id int
	}
	var rows []row
	for i, tx := range seeded {
		if tx.ApplicationID != appID || tx.OccurredAt.Before(s.PeriodStart) || !tx.OccurredAt.Before(s.PeriodEnd) ||
			tx.IngestedAt.After(s.DataAsOf) {
			continue
		}
		if len(s.ContractFilters) > 0 && !slices.Contains(s.ContractFilters, tx.ContractID) {
			continue
		}
		rows = append(rows, row{tx, i})
	}
	slices.SortFunc(rows, func(a, b row) int {
		for _, c := range []int{strings.Compare(a.ContractID, b.ContractID), strings.Compare(a.Currency, b.Currency),
			strings.Compare(a.Kind, b.Kind), a.OccurredAt.Compare(b.OccurredAt)} {
			if c != 0 {
				return c
			}
		}
		return a.id - b.id
	})
	has := func(f string) bool { return slices.Contains(s.DisclosureFlags, f) }

	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	write := func(rec ...string) {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	write("row_type", "contract_id", "currency", "kind", "occurred_at", "external_id", "counterparty", "description", "count", "amount")
	type sum struct {
		count int64
		minor int64
	}
	totals := map[string]*sum{}
	for i := 0; i < len(rows); {
		g := rows[i]
		var sub sum
		for ; i < len(rows) && rows[i].ContractID == g.ContractID && rows[i].Currency == g.Currency && rows[i].Kind == g.Kind; i++ {
			r := rows[i]
			sub.count++
			sub.minor += r.AmountMinor
			if has("line_items") {
				cp := testPseudonym(reportID, r.Counterparty)
				if has("counterparty_names") {
					cp = testGuard(r.Counterparty)
				}
				desc := ""
				if has("descriptions") {
					desc = testGuard(r.Description)
				}
				write("transaction", testGuard(r.ContractID), r.Currency, r.Kind, r.OccurredAt.UTC().Format(time.RFC3339Nano),
					testGuard(r.ExternalID), cp, desc, "", testDecimal(r.AmountMinor, r.Currency))
			}
		}
		write("subtotal", testGuard(g.ContractID), g.Currency, g.Kind, "", "", "", "", strconv.FormatInt(sub.count, 10), testDecimal(sub.minor, g.Currency))
		if totals[g.Currency] == nil {
			totals[g.Currency] = &sum{}
		}
		totals[g.Currency].count += sub.count
		totals[g.Currency].minor += sub.minor
	}
	exp := expectedFile{totals: map[string]testTotal{}}
	currencies := make([]string, 0, len(totals))
	for c := range totals {
		currencies = append(currencies, c)
	}
	slices.Sort(currencies)
	for _, c := range currencies {
		write("total", "", c, "", "", "", "", "", strconv.FormatInt(totals[c].count, 10), testDecimal(totals[c].minor, c))
		exp.totals[c] = testTotal{Count: totals[c].count, Amount: testDecimal(totals[c].minor, c)}
		exp.rowCount += totals[c].count
	}
	w.Flush()
	exp.data = buf.Bytes()
	return exp
}

// levelHandler drops records below a level; River logs a lot at debug.
type levelHandler struct {
	slog.Handler
	min slog.Level
}

func (h levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.Handler.WithAttrs(as), h.min}
}

func (h levelHandler) WithGroup(n string) slog.Handler {
	return levelHandler{h.Handler.WithGroup(n), h.min}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(levelHandler{tallytest.Logger(t).Handler(), slog.LevelInfo})
}
