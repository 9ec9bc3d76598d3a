-- +goose Up
-- The transactions in progress when a report was created. A worker waits
-- until they have ended before reading, so that rows they wrote with an
-- ingested_at before the report's data_as_of (an import that started
-- earlier and committed later) are in the file, and every rerun of the
-- report reads exactly the same rows.
ALTER TABLE reports ADD COLUMN creation_snapshot pg_snapshot;

-- +goose Down
ALTER TABLE reports DROP COLUMN creation_snapshot;
