-- +goose Up
-- Verifiable evidence: signed report manifests, the public keys that verify
-- them, and a hash chain over each organization's activity events with
-- signed checkpoints of its head.

-- Every public key that ever signed, kept after the key is retired so that
-- what it signed still verifies. The id is the key's RFC 7638 thumbprint.
CREATE TABLE signing_keys (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{43}$'),
    public_key bytea NOT NULL UNIQUE CHECK (length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A ready report's signed manifest: manifest holds the exact canonical JSON
-- bytes that were signed (RFC 8785 for strings, integers, arrays, objects).
CREATE TABLE report_manifests (
    report_id  text PRIMARY KEY REFERENCES reports (id) ON DELETE CASCADE,
    key_id     text NOT NULL REFERENCES signing_keys (id),
    manifest   text NOT NULL,
    signature  bytea NOT NULL CHECK (length(signature) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired', 'report.requeued', 'report.download_refused',
                    'report.manifest_viewed'));

-- The chain: per organization, event n has chain_seq n, prev_hash = hash of
-- event n-1 (32 zero bytes for the first) and
--   hash = sha256(prev_hash || tally_activity_canonical(event)).
-- A trigger computes it in the event's own transaction, whoever inserts
-- (db.CreateEvent or the river_job triggers), serialized per organization.
ALTER TABLE activity_events ADD COLUMN chain_seq bigint;
ALTER TABLE activity_events ADD COLUMN prev_hash bytea;
ALTER TABLE activity_events ADD COLUMN hash bytea;

-- The canonical form of an event: RFC 8785 JSON of its stored fields, keys
-- sorted, details as the string of its jsonb text, occurred_at in UTC with
-- microseconds, xact as a string. to_json(text) escapes strings as RFC 8785
-- does. evidence.EventCanonical writes the same bytes in Go.
-- +goose StatementBegin
CREATE FUNCTION tally_activity_canonical(e activity_events) RETURNS text
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

-- The head of each organization's chain, locked by each append.
CREATE TABLE activity_chain_heads (
    org_id text PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    seq    bigint NOT NULL,
    hash   bytea NOT NULL
);

-- Existing events are chained in the order they occurred.
-- +goose StatementBegin
DO $$
DECLARE
    r activity_events%ROWTYPE;
    prev bytea;
    org text;
    s bigint;
BEGIN
    FOR r IN SELECT * FROM activity_events ORDER BY org_id, occurred_at, id LOOP
        IF org IS DISTINCT FROM r.org_id THEN
            org := r.org_id;
            prev := decode(repeat('00', 32), 'hex');
            s := 0;
        END IF;
        s := s + 1;
        r.chain_seq := s;
        UPDATE activity_events
           SET chain_seq = s, prev_hash = prev, hash = sha256(prev || convert_to(tally_activity_canonical(r), 'UTF8'))
         WHERE id = r.id
        RETURNING hash INTO prev;
    END LOOP;
    INSERT INTO activity_chain_heads (org_id, seq, hash)
    SELECT DISTINCT ON (org_id) org_id, chain_seq, hash FROM activity_events ORDER BY org_id, chain_seq DESC;
END;
$$;
-- +goose StatementEnd

ALTER TABLE activity_events ALTER COLUMN chain_seq SET NOT NULL;
ALTER TABLE activity_events ALTER COLUMN prev_hash SET NOT NULL;
ALTER TABLE activity_events ALTER COLUMN hash SET NOT NULL;
CREATE UNIQUE INDEX activity_events_chain_idx ON activity_events (org_id, chain_seq);

-- The lock is transaction-scoped: it is held until the event commits or
-- rolls back, so appends of one organization never fork. The head row is
-- read FOR UPDATE, so a REPEATABLE READ writer whose snapshot predates the
-- head gets a serialization failure rather than a fork.
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

-- Signed checkpoints of a chain's head: payload is the canonical JSON that
-- was signed ({"hash","key_id","org_id","seq","signed_at"}).
CREATE TABLE activity_checkpoints (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    hash       bytea NOT NULL,
    key_id     text NOT NULL REFERENCES signing_keys (id),
    payload    text NOT NULL,
    signature  bytea NOT NULL CHECK (length(signature) = 64),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX activity_checkpoints_org_idx ON activity_checkpoints (org_id, seq);

-- +goose Down
DROP TABLE activity_checkpoints;
DROP TRIGGER tally_chain_activity_event ON activity_events;
DROP FUNCTION tally_chain_activity_event();
DROP TABLE activity_chain_heads;
DROP INDEX activity_events_chain_idx;
ALTER TABLE activity_events DROP COLUMN hash, DROP COLUMN prev_hash, DROP COLUMN chain_seq;
DROP FUNCTION tally_activity_canonical(activity_events);
DELETE FROM activity_events WHERE kind = 'report.manifest_viewed';
ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired', 'report.requeued', 'report.download_refused'));
DROP TABLE report_manifests;
DROP TABLE signing_keys;
