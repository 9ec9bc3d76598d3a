package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/ingest"
	"github.com/tally-compliance/tally/internal/tallytest"
)

// testBundle is what a database test of ingest works with.
type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
	app  *db.Application
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{ctx: context.Background(), pool: tallytest.DB(t)}
	b.app = b.newApp(t)
	return b
}

// newApp creates an organization with one application.
func (b *testBundle) newApp(t *testing.T) *db.Application {
	t.Helper()
	org, err := db.CreateOrganization(b.ctx, b.pool, "Org "+t.Name())
	if err != nil {
		t.Fatal(err)
	}
	app, err := db.CreateApplication(b.ctx, b.pool, db.CreateApplicationParams{OrgID: org.ID, ForeignID: "app", Name: "App"})
	if err != nil {
		t.Fatal(err)
	}
	return app
}

// count returns the number of transactions of an application.
func (b *testBundle) count(t *testing.T, appID string) int64 {
	t.Helper()
	n, err := tallytest.CountTransactions(b.ctx, b.pool, appID)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// storedRow is a transaction as read back, without its application.
type storedRow struct {
	ContractID   string    `db:"contract_id"`
	ExternalID   string    `db:"external_id"`
	OccurredAt   time.Time `db:"occurred_at"`
	AmountMinor  int64     `db:"amount_minor"`
	Currency     string    `db:"currency"`
	Kind         string    `db:"kind"`
	Counterparty string    `db:"counterparty"`
	Description  string    `db:"description"`
	IngestedAt   time.Time `db:"ingested_at"`
}

// rows reads back an application's transactions in external id order.
func (b *testBundle) rows(t *testing.T, appID string) []storedRow {
	t.Helper()
	rows, _ := b.pool.Query(b.ctx, `
		SELECT contract_id, external_id, occurred_at, amount_minor, currency, kind, counterparty, description, ingested_at
		  FROM transactions WHERE application_id = $1 ORDER BY external_id`, appID)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[storedRow])
	if err != nil {
		t.Fatalf("reading back transactions: %v", err)
	}
	for i := range got {
		got[i].OccurredAt = got[i].OccurredAt.UTC()
		got[i].IngestedAt = got[i].IngestedAt.UTC()
	}
	return got
}

// generatedCSV returns an import file of n generated rows.
func generatedCSV(t *testing.T, seed uint64, n int64) []byte {
	t.Helper()
	g, err := ingest.NewGenerator(ingest.GeneratorOpts{Seed: seed, Count: n})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := g.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// row formats a valid import record with the given external id.
func row(externalID string) string {
	return fmt.Sprintf("contract-1,%s,2025-03-04T05:06:07Z,1250,EUR,payment,Acme,Invoice", externalID)
}

// dbNow returns the database's clock.
func (b *testBundle) dbNow(t *testing.T) time.Time {
	t.Helper()
	now, err := db.Now(b.ctx, b.pool)
	if err != nil {
		t.Fatal(err)
	}
	return now.UTC()
}
