-- +goose Up
-- The activity chain is built after the fact by a sequencer, not by a
-- trigger in each event's transaction. 00008's trigger held a per-
-- organization lock through the commit's WAL flush, so one organization
-- committed one event at a time (BENCHMARKS.md, row 8). Events are now
-- inserted with no lock and no chain work; tally_chain_activity (below),
-- called by every worker every TALLY_CHAIN_INTERVAL and before a checkpoint
-- or an activity_log report, appends each organization's committed events to
-- its chain in (xact, id) order.
--
-- The hash is unchanged: hash = sha256(prev_hash || canonical event), the
-- canonical event being the same bytes as before (its seq is now the chain
-- position's). Existing chain positions move, as they are, to their own
-- append-only table, so activity_events stays insert-only.

-- Stop chaining in the writers' transactions first: the lock below waits
-- for every writer still inside one.
DROP TRIGGER tally_chain_activity_event ON activity_events;
DROP FUNCTION tally_chain_activity_event();

-- One row per chained event: its position in its organization's chain.
-- Rows are only ever inserted (a trigger refuses UPDATE and DELETE).
-- (No foreign key: the sequencer takes org_id from the event, whose own
-- key checks it, and a per-row check would double the sequencer's cost.)
CREATE TABLE activity_chain (
    org_id    text NOT NULL,
    seq       bigint NOT NULL CHECK (seq >= 1),
    event_id  bigint NOT NULL UNIQUE,
    prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
    hash      bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (org_id, seq)
);
INSERT INTO activity_chain (org_id, seq, event_id, prev_hash, hash)
SELECT org_id, chain_seq, id, prev_hash, hash FROM activity_events;

DROP INDEX activity_events_chain_idx;
ALTER TABLE activity_events DROP COLUMN chain_seq, DROP COLUMN prev_hash, DROP COLUMN hash;

-- The sequencer finds an organization's unchained events by xact.
CREATE INDEX activity_events_org_xact_idx ON activity_events (org_id, xact, id);

-- The canonical form of an event at chain position seq: RFC 8785 JSON of its
-- stored fields, keys sorted, details as the string of its jsonb text,
-- occurred_at in UTC with microseconds, xact as a string; the same bytes as
-- 00008's and as evidence.EventCanonical.
DROP FUNCTION tally_activity_canonical(activity_events);
-- +goose StatementBegin
CREATE FUNCTION tally_activity_canonical(e activity_events, seq bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"actor_id":' || coalesce(to_json(e.actor_id)::text, 'null')
        || ',"application_id":' || to_json(e.application_id)::text
        || ',"case_id":' || to_json(e.case_id)::text
        || ',"details":' || to_json(e.details::text)::text
        || ',"id":' || e.id::text
        || ',"kind":' || to_json(e.kind)::text
        || ',"occurred_at":"' || to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
        || ',"org_id":' || to_json(e.org_id)::text
        || ',"report_id":' || to_json(e.report_id)::text
        || ',"report_type":' || to_json(e.report_type)::text
        || ',"seq":' || seq::text
        || ',"xact":"' || e.xact::text || '"}'
$$;
-- +goose StatementEnd

-- (chained_xact, chained_id) is the organization's watermark: every event
-- at or before it in (xact, id) order is chained, and none can appear there
-- any more. The sequencer looks for unchained events after it. Every event
-- committed so far is chained (by 00008's trigger), and a transaction whose
-- xid is below this statement's snapshot xmin has ended.
ALTER TABLE activity_chain_heads ADD COLUMN chained_xact xid8 NOT NULL DEFAULT '0',
                                 ADD COLUMN chained_id bigint NOT NULL DEFAULT 0;
UPDATE activity_chain_heads SET chained_xact = pg_snapshot_xmin(pg_current_snapshot());

-- +goose StatementBegin
CREATE FUNCTION tally_activity_chain_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'activity_chain is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER tally_activity_chain_append_only
    BEFORE UPDATE OR DELETE ON activity_chain
    FOR EACH ROW EXECUTE FUNCTION tally_activity_chain_append_only();

-- tally_chain_bound returns an xid below which every transaction that
-- could have written to this database has ended: the oldest transaction in
-- progress in a snapshot, skipping those known to run in another database of
-- the cluster (a transaction writes to one database only), or the snapshot's
-- xmax when none is left. pg_snapshot_xmin alone would let any long
-- transaction anywhere on the server hold up the chain. The other databases'
-- transactions are read first, the snapshot taken after: an xid the activity
-- views did not list is kept, and it can only be one that began after they
-- were read, so it never holds up an event committed before the call.
-- +goose StatementBegin
CREATE FUNCTION tally_chain_bound() RETURNS xid8
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    others xid[];
    snap   pg_snapshot;
    bound  xid8;
BEGIN
    SELECT coalesce(array_agg(a.backend_xid), '{}') INTO others
      FROM pg_stat_activity a
     WHERE a.backend_xid IS NOT NULL AND a.datname IS DISTINCT FROM current_database();
    others := others || ARRAY(SELECT p.transaction FROM pg_prepared_xacts p WHERE p.database <> current_database());
    snap := pg_current_snapshot();
    SELECT min(x) INTO bound FROM pg_snapshot_xip(snap) AS x WHERE NOT (xid(x) = ANY (others));
    RETURN coalesce(bound, pg_snapshot_xmax(snap));
END;
$$;
-- +goose StatementEnd

-- tally_chain_activity appends up to batch of an organization's unchained
-- events to its chain and returns how many. An event is chained once the
-- transaction that wrote it (xact) is below tally_chain_bound(): every such
-- transaction has ended, so every event it committed is visible and none can
-- appear later (rows of aborted ones never appear). Events are chained in
-- (xact, id) order, so the chain's order does not depend on when or by whom
-- the sequencer runs. The per-organization lock is transaction-scoped and
-- serializes sequencers (not writers); the chain's primary key and the
-- unique event_id refuse a fork or a double chaining whatever happens.
-- Call it in a READ COMMITTED transaction of its own: its statements after
-- the lock must see what the previous holder committed.
-- +goose StatementBegin
CREATE FUNCTION tally_chain_activity(p_org text, p_batch int) RETURNS int
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    head_seq  bigint;
    head_hash bytea;
    w_xact    xid8;
    w_id      bigint;
    o_xact    xid8;
    o_id      bigint;
    bound     xid8;
    r         activity_events%ROWTYPE;
    n         int := 0;
    ids       bigint[] := '{}';
    prevs     bytea[] := '{}';
    hashes    bytea[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('tally.activity_chain.' || p_org, 0));
    SELECT seq, hash, chained_xact, chained_id INTO head_seq, head_hash, w_xact, w_id
      FROM activity_chain_heads WHERE org_id = p_org;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
        w_xact := '0';
        w_id := 0;
    END IF;
    o_xact := w_xact;
    o_id := w_id;
    bound := tally_chain_bound();
    -- In index order ((org_id, xact, id)), stopping after batch.
    FOR r IN
        SELECT * FROM activity_events e
         WHERE e.org_id = p_org AND (e.xact, e.id) > (w_xact, w_id) AND e.xact < bound
           AND NOT EXISTS (SELECT 1 FROM activity_chain c WHERE c.event_id = e.id)
         ORDER BY e.xact, e.id
         LIMIT p_batch
    LOOP
        n := n + 1;
        ids[n] := r.id;
        prevs[n] := head_hash;
        head_hash := sha256(head_hash || convert_to(tally_activity_canonical(r, head_seq + n), 'UTF8'));
        hashes[n] := head_hash;
        w_xact := r.xact;
        w_id := r.id;
    END LOOP;
    IF n > 0 THEN
        INSERT INTO activity_chain (org_id, seq, event_id, prev_hash, hash)
        SELECT p_org, head_seq + i, ids[i], prevs[i], hashes[i] FROM generate_series(1, n) AS i;
        head_seq := head_seq + n;
    END IF;
    -- A full batch: more may remain after the last event chained, which is
    -- the watermark. Otherwise everything below the bound is chained.
    IF n < p_batch AND bound > w_xact THEN
        w_xact := bound;
        w_id := 0;
    END IF;
    IF n > 0 OR (w_xact, w_id) <> (o_xact, o_id) THEN
        INSERT INTO activity_chain_heads (org_id, seq, hash, chained_xact, chained_id)
        VALUES (p_org, head_seq, head_hash, w_xact, w_id)
        ON CONFLICT (org_id) DO UPDATE
           SET seq = EXCLUDED.seq, hash = EXCLUDED.hash,
               chained_xact = EXCLUDED.chained_xact, chained_id = EXCLUDED.chained_id;
    END IF;
    RETURN n;
END;
$$;
-- +goose StatementEnd

-- The organizations with events the sequencer can chain now, and the age
-- in seconds of the first event waiting to be chained (0 when none). Each
-- organization's first waiting event is looked up in the sequencer's order:
-- LIMIT 1 keeps the planner from joining whole tables, so either reads a few
-- index entries per organization however long the log. jit is off: the
-- estimates (every organization, every event) would have it compile the
-- query for hundreds of milliseconds, every second.
-- +goose StatementBegin
CREATE FUNCTION tally_chain_pending_orgs() RETURNS SETOF text
LANGUAGE sql VOLATILE SET jit = off AS $$
    WITH bound AS MATERIALIZED (SELECT tally_chain_bound() AS xact)
    SELECT o.id FROM bound b, organizations o LEFT JOIN activity_chain_heads h ON h.org_id = o.id
     CROSS JOIN LATERAL (
           SELECT 1 FROM activity_events e
            WHERE e.org_id = o.id AND (e.xact, e.id) > (coalesce(h.chained_xact, '0'), coalesce(h.chained_id, 0))
              AND e.xact < b.xact
              AND NOT EXISTS (SELECT 1 FROM activity_chain c WHERE c.event_id = e.id)
            ORDER BY e.xact, e.id LIMIT 1) w
     ORDER BY o.id
$$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE FUNCTION tally_chain_lag() RETURNS float8
LANGUAGE sql VOLATILE SET jit = off AS $$
    SELECT coalesce(extract(epoch FROM clock_timestamp() - min(w.occurred_at)), 0)::float8
      FROM organizations o LEFT JOIN activity_chain_heads h ON h.org_id = o.id
     CROSS JOIN LATERAL (
           SELECT e.occurred_at FROM activity_events e
            WHERE e.org_id = o.id AND (e.xact, e.id) > (coalesce(h.chained_xact, '0'), coalesce(h.chained_id, 0))
              AND NOT EXISTS (SELECT 1 FROM activity_chain c WHERE c.event_id = e.id)
            ORDER BY e.xact, e.id LIMIT 1) w
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tally_chain_lag();
DROP FUNCTION tally_chain_pending_orgs();
DROP FUNCTION tally_chain_activity(text, int);
DROP FUNCTION tally_chain_bound();
ALTER TABLE activity_events ADD COLUMN chain_seq bigint, ADD COLUMN prev_hash bytea, ADD COLUMN hash bytea;
UPDATE activity_events e SET chain_seq = c.seq, prev_hash = c.prev_hash, hash = c.hash
  FROM activity_chain c WHERE c.event_id = e.id;
-- +goose StatementBegin
CREATE FUNCTION tally_activity_canonical(e activity_events) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT tally_activity_canonical(e, e.chain_seq)
$$;
-- +goose StatementEnd
-- Events still unchained are chained as 00008's trigger would have, in
-- (xact, id) order after each organization's head.
-- +goose StatementBegin
DO $$
DECLARE
    r activity_events%ROWTYPE;
    s bigint;
    prev bytea;
BEGIN
    FOR r IN SELECT * FROM activity_events WHERE chain_seq IS NULL ORDER BY org_id, xact, id LOOP
        SELECT seq, hash INTO s, prev FROM activity_chain_heads WHERE org_id = r.org_id;
        IF NOT FOUND THEN
            s := 0;
            prev := decode(repeat('00', 32), 'hex');
        END IF;
        s := s + 1;
        r.chain_seq := s;
        UPDATE activity_events
           SET chain_seq = s, prev_hash = prev, hash = sha256(prev || convert_to(tally_activity_canonical(r), 'UTF8'))
         WHERE id = r.id
        RETURNING hash INTO prev;
        INSERT INTO activity_chain_heads (org_id, seq, hash) VALUES (r.org_id, s, prev)
            ON CONFLICT (org_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash;
    END LOOP;
END;
$$;
-- +goose StatementEnd
ALTER TABLE activity_events ALTER COLUMN chain_seq SET NOT NULL;
ALTER TABLE activity_events ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE activity_events ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX activity_events_chain_idx ON activity_events (org_id, chain_seq);
DROP INDEX activity_events_org_xact_idx;
ALTER TABLE activity_chain_heads DROP COLUMN chained_xact, DROP COLUMN chained_id;
DROP TABLE activity_chain;
DROP FUNCTION tally_activity_chain_append_only();
-- The canonical form of 00008, standing alone again.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tally_activity_canonical(e activity_events) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{"actor_id":' || coalesce(to_json(e.actor_id)::text, 'null')
        || ',"application_id":' || to_json(e.application_id)::text
        || ',"case_id":' || to_json(e.case_id)::text
        || ',"details":' || to_json(e.details::text)::text
        || ',"id":' || e.id::text
        || ',"kind":' || to_json(e.kind)::text
        || ',"occurred_at":"' || to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'
        || ',"org_id":' || to_json(e.org_id)::text
        || ',"report_id":' || to_json(e.report_id)::text
        || ',"report_type":' || to_json(e.report_type)::text
        || ',"seq":' || e.chain_seq::text
        || ',"xact":"' || e.xact::text || '"}'
$$;
-- +goose StatementEnd
DROP FUNCTION tally_activity_canonical(activity_events, bigint);
-- +goose StatementBegin
CREATE FUNCTION tally_chain_activity_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash bytea;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('tally.activity_chain.' || NEW.org_id, 0));
    SELECT seq, hash INTO head_seq, head_hash FROM activity_chain_heads WHERE org_id = NEW.org_id FOR UPDATE;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := decode(repeat('00', 32), 'hex');
    END IF;
    NEW.chain_seq := head_seq + 1;
    NEW.prev_hash := head_hash;
    NEW.hash := sha256(head_hash || convert_to(tally_activity_canonical(NEW), 'UTF8'));
    INSERT INTO activity_chain_heads (org_id, seq, hash) VALUES (NEW.org_id, NEW.chain_seq, NEW.hash)
        ON CONFLICT (org_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER tally_chain_activity_event
    BEFORE INSERT ON activity_events
    FOR EACH ROW EXECUTE FUNCTION tally_chain_activity_event();
