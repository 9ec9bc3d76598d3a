-- +goose Up
-- Webhooks: an application's endpoints, one delivery per (endpoint, event),
-- and every attempt of a delivery.
--
-- A delivery and the River job that sends it are inserted by a trigger on
-- reports, in the very transaction that makes a report ready or failed,
-- whoever makes it so: the worker's finishing transaction (Go), a worker
-- giving up (Go), or the river_job triggers when a job is discarded (SQL).
-- One mechanism covers every path, and a delivery exists exactly when the
-- status change commits.

-- Ids generated in SQL have the shape of db.NewID: a prefix and a ULID in
-- lower-case Crockford base32 (48 bits of milliseconds, 80 random bits).
-- +goose StatementBegin
CREATE FUNCTION tally_new_id(prefix text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789abcdefghjkmnpqrstvwxyz';
    ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    u bytea := decode(replace(gen_random_uuid()::text, '-', ''), 'hex');
    -- Bytes 0-5 and 9-12 of a version 4 UUID are random: 80 bits.
    bits bit(130);
    out text := prefix;
BEGIN
    bits := B'00' || ms::bit(48) || ('x' || encode(substring(u FROM 1 FOR 6) || substring(u FROM 10 FOR 4), 'hex'))::bit(80);
    FOR i IN 0..25 LOOP
        out := out || substr(alphabet, substring(bits FROM i * 5 + 1 FOR 5)::int + 1, 1);
    END LOOP;
    RETURN out;
END;
$$;
-- +goose StatementEnd

-- An application's endpoint. The signing secret is stored sealed
-- (AES-256-GCM under a key derived with HKDF from the worker's pseudonym
-- master key named secret_key_id, see webhook.Sealer): the database alone
-- does not sign. After a rotation the previous secret keeps signing, next to
-- the new one, until previous_secret_until, so that deliveries in flight
-- verify with either.
CREATE TABLE webhook_endpoints (
    id                     text PRIMARY KEY CHECK (id ~ '^wh_[0-9a-z]{26}$'),
    org_id                 text NOT NULL,
    application_id         text NOT NULL,
    url                    text NOT NULL CHECK (url ~ '^https?://' AND length(url) <= 2000),
    events                 text[] NOT NULL
        CHECK (cardinality(events) > 0 AND events <@ ARRAY['report.ready', 'report.failed']::text[]),
    secret_key_id          text NOT NULL,
    secret_sealed          bytea NOT NULL,
    previous_secret_key_id text,
    previous_secret_sealed bytea,
    previous_secret_until  timestamptz,
    disabled_at            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, application_id) REFERENCES applications (org_id, id) ON DELETE CASCADE,
    CHECK ((previous_secret_sealed IS NULL) = (previous_secret_until IS NULL)),
    CHECK ((previous_secret_sealed IS NULL) = (previous_secret_key_id IS NULL))
);
CREATE INDEX webhook_endpoints_app_idx ON webhook_endpoints (application_id) WHERE disabled_at IS NULL;

-- One event for one endpoint. The id is the webhook-id header: the same on
-- every attempt, so that a receiver can drop a repeat. payload holds the
-- exact body, fixed by the first attempt and re-sent byte for byte. A
-- delivery is pending, then succeeded (a 2xx), failed (no 2xx within the
-- retry window) or canceled (its endpoint was disabled first).
CREATE TABLE webhook_deliveries (
    id             text PRIMARY KEY CHECK (id ~ '^msg_[0-9a-z]{26}$'),
    endpoint_id    text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    org_id         text NOT NULL,
    application_id text NOT NULL,
    report_id      text NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    event_type     text NOT NULL CHECK (event_type IN ('report.ready', 'report.failed')),
    occurred_at    timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed', 'canceled')),
    payload        bytea,
    job_id         bigint,
    attempts       integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    CHECK ((status = 'pending') = (finished_at IS NULL))
);
CREATE INDEX webhook_deliveries_app_idx ON webhook_deliveries (application_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id);
CREATE INDEX webhook_deliveries_report_idx ON webhook_deliveries (report_id);

-- Every HTTP attempt: its answer's status code (null when none came: a
-- refused address, a timeout, a connection error), how long it took (in
-- microseconds), and
-- the error.
CREATE TABLE webhook_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL CHECK (attempt >= 1),
    job_id      bigint,
    started_at  timestamptz NOT NULL,
    latency_us  bigint NOT NULL CHECK (latency_us >= 0),
    status_code integer CHECK (status_code BETWEEN 100 AND 999),
    succeeded   boolean NOT NULL,
    error       text CHECK (length(error) <= 1000)
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, id);

-- The trigger: a report becoming ready or failed gets one delivery per
-- enabled endpoint of its application subscribed to the event, each with a
-- deliver_webhook job on the webhooks queue (the row River's InsertTx
-- would write: args, kind, queue, max_attempts, the defaults for the rest)
-- and the insert notification River's clients listen to.
-- +goose StatementBegin
CREATE FUNCTION tally_enqueue_webhooks() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ev text := 'report.' || NEW.status;
    ep record;
    did text;
    jid bigint;
    n int := 0;
BEGIN
    FOR ep IN
        SELECT id FROM webhook_endpoints
         WHERE org_id = NEW.org_id AND application_id = NEW.application_id
           AND disabled_at IS NULL AND ev = ANY (events)
         ORDER BY id
    LOOP
        did := tally_new_id('msg_');
        INSERT INTO river_job (args, kind, queue, max_attempts, priority, metadata, tags, state, scheduled_at)
        VALUES (jsonb_build_object('delivery_id', did), 'deliver_webhook', 'webhooks', 25, 1,
                '{}', '{}', 'available', now())
        RETURNING id INTO jid;
        INSERT INTO webhook_deliveries (id, endpoint_id, org_id, application_id, report_id, event_type,
                                        occurred_at, job_id)
        VALUES (did, ep.id, NEW.org_id, NEW.application_id, NEW.id, ev, now(), jid);
        n := n + 1;
    END LOOP;
    IF n > 0 THEN
        PERFORM pg_notify(current_schema() || '.river_insert', '{"queue": "webhooks"}');
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER tally_enqueue_webhooks
    AFTER UPDATE OF status ON reports
    FOR EACH ROW
    WHEN (NEW.status IN ('ready', 'failed') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tally_enqueue_webhooks();

-- +goose Down
DROP TRIGGER tally_enqueue_webhooks ON reports;
DROP FUNCTION tally_enqueue_webhooks();
DROP TABLE webhook_attempts, webhook_deliveries, webhook_endpoints;
DROP FUNCTION tally_new_id(text);
