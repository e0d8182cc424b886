-- Aggregates a projector has set aside because one of their events cannot be applied.
--
-- A projector applies the log in commit order and never skips an event. Before this table,
-- one event that could never be applied (it does not decode, a sealed field does not open,
-- the projector's code or a table constraint rejects it) stopped that projector for every
-- company forever. Now the failure is confined to the aggregate it belongs to: the projector
-- records the aggregate here, in the same transaction that advances its checkpoint past the
-- event, and goes on with every other aggregate. It skips the aggregate's later events too
-- (applying them onto a read model that missed an earlier one would serve wrong data), and
-- reads of the aggregate answer 503 rather than stale or missing data.
--
-- Transient failures (a lost connection, a timeout, a serialization failure, a deadlock:
-- anything not clearly caused by the data) never land here: the batch is retried whole.
--
-- A quarantined aggregate is applied again, from `position` up to the projector's checkpoint,
-- when `retry_requested` is set: by `kairos projections retry`, and for every row of a
-- projector when a process takes its leadership (a restart, typically after the code or the
-- event was fixed). Success deletes the row; failure keeps it with the new reason.
--
-- One row per (projector, aggregate): the projectors fail independently (the windows of a
-- user may be fine while its profile is not), and an aggregate is quarantined at its first
-- failing event only.
CREATE TABLE projector_quarantine (
    projector       text        NOT NULL REFERENCES projector_checkpoints (projector),
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    -- The first event of the aggregate the projector could not apply (commit order).
    tx_id           xid8        NOT NULL,
    position        bigint      NOT NULL,
    event_type      text        NOT NULL,
    event_id        uuid        NOT NULL,
    -- Why, as the projector said it; never a personal value (errors name positions and
    -- types, not payloads).
    reason          text        NOT NULL,
    quarantined_at  timestamptz NOT NULL DEFAULT now(),
    retry_requested boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (projector, aggregate_type, aggregate_id)
);

-- The projectors run as the service role (and the default privileges of the first
-- migration would grant this already; said here so this table does not depend on them).
GRANT SELECT, INSERT, UPDATE, DELETE ON projector_quarantine TO kairos_service;
