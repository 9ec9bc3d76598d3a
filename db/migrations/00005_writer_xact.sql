-- +goose Up
-- Every transaction and activity event records the top-level transaction
-- that wrote it. A report counts a row only when that transaction is visible
-- in the report's creation_snapshot: it had committed before the report was
-- created. Membership is then a pure function of stored values, decided at
-- creation, so no reader ever waits for a writer that is still open.
--
-- Rows written before this migration are frozen ('2', FrozenTransactionId:
-- older than every snapshot), so they count for every report.
ALTER TABLE transactions ADD COLUMN xact xid8 NOT NULL DEFAULT '2';
ALTER TABLE transactions ALTER COLUMN xact SET DEFAULT pg_current_xact_id();
ALTER TABLE activity_events ADD COLUMN xact xid8 NOT NULL DEFAULT '2';
ALTER TABLE activity_events ALTER COLUMN xact SET DEFAULT pg_current_xact_id();

-- The scope index carries xact, so the subtotals-only aggregation stays an
-- index-only scan.
DROP INDEX transactions_scope_idx;
CREATE INDEX transactions_scope_idx ON transactions
    (application_id, contract_id, currency, kind, occurred_at, id)
    INCLUDE (amount_minor, ingested_at, xact);

-- +goose Down
DROP INDEX transactions_scope_idx;
CREATE INDEX transactions_scope_idx ON transactions
    (application_id, contract_id, currency, kind, occurred_at, id)
    INCLUDE (amount_minor, ingested_at);
ALTER TABLE activity_events DROP COLUMN xact;
ALTER TABLE transactions DROP COLUMN xact;
