-- +goose Up
-- Tally's schema. Every rule a row must obey is a constraint here, not only
-- Go code, so a bad import or a hand-written UPDATE cannot break it.

CREATE TABLE organizations (
    id         text PRIMARY KEY CHECK (id ~ '^org_[0-9a-z]{26}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE applications (
    id         text PRIMARY KEY CHECK (id ~ '^app_[0-9a-z]{26}$'),
    org_id     text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    foreign_id text NOT NULL CHECK (foreign_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, foreign_id),
    UNIQUE (org_id, id)
);

CREATE TABLE users (
    id         text PRIMARY KEY CHECK (id ~ '^usr_[0-9a-z]{26}$'),
    email      text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 254),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- A user belongs to one organization. Owner-level permissions live on the
-- membership; an empty set is a member without owner rights.
CREATE TABLE memberships (
    org_id      text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id     text NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    permissions text[] NOT NULL DEFAULT '{}'
        CHECK (permissions <@ ARRAY['reports:list', 'reports:download']::text[]),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);

-- Per-application grants. The composite foreign keys make a grant on another
-- organization's application impossible.
CREATE TABLE application_grants (
    org_id         text NOT NULL,
    user_id        text NOT NULL,
    application_id text NOT NULL,
    bucket         text NOT NULL DEFAULT 'auditor' CHECK (bucket = 'auditor'),
    permissions    text[] NOT NULL
        CHECK (permissions <@ ARRAY['reports:create', 'reports:list', 'reports:download']::text[]),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, application_id, bucket),
    FOREIGN KEY (org_id, user_id) REFERENCES memberships (org_id, user_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, application_id) REFERENCES applications (org_id, id) ON DELETE CASCADE
);

-- Bearer sessions. Only the SHA-256 of the token is stored.
CREATE TABLE sessions (
    id           text PRIMARY KEY CHECK (id ~ '^ses_[0-9a-z]{26}$'),
    token_hash   bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK (expires_at > created_at)
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

CREATE TABLE cases (
    id                  text PRIMARY KEY CHECK (id ~ '^case_[0-9a-z]{26}$'),
    org_id              text NOT NULL,
    application_id      text NOT NULL,
    title               text NOT NULL DEFAULT '',
    status              text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'approved', 'revoked', 'closed')),
    period_start        timestamptz NOT NULL,
    period_end          timestamptz NOT NULL,
    disclosure_flags    text[] NOT NULL DEFAULT '{}',
    contract_filters    text[] NOT NULL DEFAULT '{}',
    access_window_start timestamptz NOT NULL,
    access_window_end   timestamptz NOT NULL,
    approved_at         timestamptz,
    approved_by         text REFERENCES users (id),
    created_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, application_id) REFERENCES applications (org_id, id) ON DELETE CASCADE,
    CHECK (period_end > period_start),
    CHECK (access_window_end > access_window_start),
    CHECK (status <> 'approved' OR (approved_at IS NOT NULL AND approved_by IS NOT NULL))
);
CREATE INDEX cases_application_id_idx ON cases (application_id);

CREATE TABLE case_assignments (
    case_id    text NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, user_id)
);

CREATE TABLE transactions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    application_id text NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    contract_id    text NOT NULL CHECK (length(contract_id) BETWEEN 1 AND 100),
    external_id    text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 200),
    occurred_at    timestamptz NOT NULL,
    amount_minor   bigint NOT NULL,
    currency       text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    kind           text NOT NULL
        CHECK (kind IN ('payment', 'refund', 'fee', 'chargeback', 'payout', 'adjustment')),
    counterparty   text NOT NULL DEFAULT '' CHECK (length(counterparty) <= 500),
    description    text NOT NULL DEFAULT '' CHECK (length(description) <= 2000),
    ingested_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (application_id, external_id)
);
-- Serves the report scan in its output order; INCLUDE makes the
-- subtotals-only aggregation an index-only scan.
CREATE INDEX transactions_scope_idx ON transactions
    (application_id, contract_id, currency, kind, occurred_at, id)
    INCLUDE (amount_minor, ingested_at);
-- Serves narrow periods over many contracts and row-count estimates.
CREATE INDEX transactions_period_idx ON transactions (application_id, occurred_at);

CREATE TABLE reports (
    id              text PRIMARY KEY CHECK (id ~ '^rpt_[0-9a-z]{26}$'),
    org_id          text NOT NULL,
    application_id  text NOT NULL,
    case_id         text NOT NULL REFERENCES cases (id),
    type            text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]{0,62}$'),
    status          text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'ready', 'failed', 'canceled', 'expired')),
    metadata        jsonb NOT NULL DEFAULT '{}',
    created_by      text NOT NULL REFERENCES users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    completed_at    timestamptz,
    expires_at      timestamptz,
    size_bytes      bigint CHECK (size_bytes >= 0),
    sha256          text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content_type    text,
    object_key      text,
    job_id          bigint,
    error_code      text,
    error_message   text,
    error_retryable boolean,
    request_id      text,
    FOREIGN KEY (org_id, application_id) REFERENCES applications (org_id, id),
    CHECK (status <> 'ready' OR (object_key IS NOT NULL AND sha256 IS NOT NULL AND size_bytes IS NOT NULL)),
    CHECK (status <> 'failed' OR error_code IS NOT NULL)
);
CREATE INDEX reports_app_list_idx ON reports (org_id, application_id, created_at DESC, id DESC);
CREATE INDEX reports_org_list_idx ON reports (org_id, created_at DESC, id DESC);
CREATE INDEX reports_case_idx ON reports (case_id);
CREATE INDEX reports_expiry_idx ON reports (expires_at) WHERE status = 'ready';

-- Idempotency-Key records: one per (user, key), valid 24 hours.
CREATE TABLE idempotency_keys (
    user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash bytea NOT NULL,
    report_id    text NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- The audit trail. Rows are only ever inserted.
CREATE TABLE activity_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id         text NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    application_id text NOT NULL,
    case_id        text NOT NULL,
    report_id      text NOT NULL REFERENCES reports (id) ON DELETE CASCADE,
    report_type    text NOT NULL,
    kind           text NOT NULL CHECK (kind IN ('report.created', 'report.generated', 'report.failed',
                                                 'report.downloaded', 'report.canceled', 'report.expired')),
    actor_id       text REFERENCES users (id),
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    details        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX activity_events_case_idx ON activity_events (case_id, occurred_at, id);
CREATE INDEX activity_events_report_idx ON activity_events (report_id);

-- +goose Down
DROP TABLE activity_events, idempotency_keys, reports, transactions, case_assignments, cases,
    sessions, application_grants, memberships, users, applications, organizations;
