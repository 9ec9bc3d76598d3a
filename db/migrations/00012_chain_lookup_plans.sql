-- The sequencer's lookups (00009) read each organization's first unchained
-- event from activity_events_org_xact_idx, stopping at the first one. The
-- planner does not: it estimates a row comparison such as (xact, id) >
-- (head) at a third of the organization's events, so once a log holds some
-- 100k events it scans the whole table, hashes activity_chain and sorts,
-- 50-350 ms a call where the index reads a few entries (0.2 ms). Every
-- worker calls both functions every TALLY_CHAIN_INTERVAL, so that cost grew
-- with the log and with the worker processes (measured: after 172k create
-- events, 2 ms of PostgreSQL CPU per small report with two workers). The
-- functions now run with sequential scans and sorts off, which leaves the
-- plan they were written for.

-- +goose Up
ALTER FUNCTION tally_chain_pending_orgs() SET enable_seqscan = off;
ALTER FUNCTION tally_chain_pending_orgs() SET enable_sort = off;
ALTER FUNCTION tally_chain_lag() SET enable_seqscan = off;
ALTER FUNCTION tally_chain_lag() SET enable_sort = off;

-- +goose Down
ALTER FUNCTION tally_chain_lag() RESET enable_sort;
ALTER FUNCTION tally_chain_lag() RESET enable_seqscan;
ALTER FUNCTION tally_chain_pending_orgs() RESET enable_sort;
ALTER FUNCTION tally_chain_pending_orgs() RESET enable_seqscan;
