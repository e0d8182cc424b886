-- The event store: the append-only log every read model is built from, and the tables that
-- go into the same transaction as an append (claims, idempotency keys, data keys), plus the
-- checkpoints of the projectors that follow the log.
--
-- Migrations run as the database owner. The service itself connects as the owner but
-- immediately `SET ROLE kairos_service` on every pooled connection, and that role may only
-- SELECT and INSERT on `events`: even a bug in Kairos cannot rewrite history.

-- Roles are cluster-wide; several Kairos databases (tests, say) share this one. Creating it
-- can race between databases, hence the exception handler instead of IF NOT EXISTS alone.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kairos_service') THEN
        CREATE ROLE kairos_service NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;
GRANT kairos_service TO CURRENT_USER;
GRANT USAGE ON SCHEMA public TO kairos_service;

-- Every table the owner creates from here on (the read models) is readable and writable by
-- the service; `events` is narrowed again below.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO kairos_service;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO kairos_service;

-- postgres-es's schema (aggregate_type, aggregate_id, sequence, event_type, event_version,
-- payload, metadata; primary key on the first three), extended:
--   global_position  the order of insertion across all aggregates (identity, never reused);
--   tx_id            the inserting transaction; projectors read in (tx_id, global_position)
--                    order and only below the oldest running transaction, because positions
--                    are taken at insert time but become visible at commit, out of order;
--   event_id         a stable id for the event, independent of its position;
--   recorded_at      when it was appended (set by Kairos so the hash can cover it);
--   company_id       the tenant, for audit queries and partitioning;
--   hash             SHA-256 over the previous event's hash in the same aggregate and this
--                    event's content: a tamper-evident chain per aggregate.
-- payload and metadata are jsonb: stored parsed, queried by the audit endpoints.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 1),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    company_id      uuid,
    hash            bytea       NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT events_pkey PRIMARY KEY (aggregate_type, aggregate_id, sequence),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_global_position_key UNIQUE (global_position)
);

-- Projectors read "after (tx_id, global_position), below the xmin horizon, in that order".
CREATE INDEX events_commit_order ON events (tx_id, global_position);
-- The audit endpoints list one company's events in commit order.
CREATE INDEX events_company_commit_order ON events (company_id, tx_id, global_position);

-- Append-only, enforced for every role including the owner: statement triggers reject
-- UPDATE, DELETE and TRUNCATE. (A superuser can still disable triggers; the hash chain is
-- what makes such tampering visible: `kairos audit verify`.)
CREATE FUNCTION reject_event_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION reject_event_mutation();

REVOKE ALL ON events FROM PUBLIC;
REVOKE ALL ON events FROM kairos_service;
GRANT SELECT, INSERT ON events TO kairos_service;

-- Claims: unique keys that span aggregates (an email per company, a user slug per
-- installation, a meeting-type slug per user). Written and released in the same
-- transaction as the events that cause them, so a violation rejects the whole append.
-- `value` uses the C collation so prefix searches (`john-smith%`) can use the primary key.
CREATE TABLE claims (
    kind           text        NOT NULL,
    scope          text        NOT NULL,
    value          text        COLLATE "C" NOT NULL,
    owner_id       text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT claims_pkey PRIMARY KEY (kind, scope, value)
);
CREATE INDEX claims_by_owner ON claims (owner_id, kind);
CREATE INDEX claims_by_aggregate ON claims (aggregate_type, aggregate_id);

-- Idempotency keys: the first result of a request sent with an `Idempotency-Key` header,
-- stored in the transaction of its append so a replay returns it and appends nothing.
-- `aggregate_id` ties the stored response to the aggregate it created or changed, so erasing
-- a person also erases responses that mention them (a booking URL holds their slug).
CREATE TABLE idempotency_keys (
    company_id          uuid        NOT NULL,
    key                 text        NOT NULL,
    aggregate_id        text        NOT NULL,
    request_fingerprint text        NOT NULL,
    response_status     smallint    NOT NULL,
    response_body       jsonb       NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (company_id, key)
);
CREATE INDEX idempotency_keys_aggregate ON idempotency_keys (aggregate_id);

-- Data keys for crypto-shredding: personal fields in events are encrypted under a key per
-- aggregate (a user), stored here wrapped by the master key from the environment. Erasing a
-- person deletes the row; their events keep shape and hashes but no longer decrypt.
CREATE TABLE data_keys (
    subject_id  text        PRIMARY KEY,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per projector: how far it has applied the log, in commit order, and its health.
CREATE TABLE projector_checkpoints (
    projector      text        PRIMARY KEY,
    tx_id          xid8        NOT NULL DEFAULT '0',
    position       bigint      NOT NULL DEFAULT 0,
    events_applied bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    last_error     text,
    last_error_at  timestamptz,
    failing_since  timestamptz
);
