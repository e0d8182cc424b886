-- Least privilege for the service, and idempotency records that outlive an erasure as
-- tombstones.
--
-- The service may now log in as a role of its own that is only a member of `kairos_service`
-- (`DATABASE_URL`), while migrations and rebuilds run with the owner's URL
-- (`KAIROS_MIGRATE_DATABASE_URL`; `kairos migrate` makes the service's login a member of
-- `kairos_service`). Serving with the owner's URL still works: its pools `SET ROLE
-- kairos_service` as before.

-- 1. Nobody is a member of the service role just for having migrated.
--
-- The first migration granted `kairos_service` to whoever ran it. Roles are cluster-wide
-- while privileges are per database, so that made every Kairos database owner of a cluster a
-- member of a role holding the service's rights in every other Kairos database of it. The
-- membership is taken back here; `kairos migrate` grants it again only to the role that
-- serves (`DATABASE_URL`'s login), and only when that role needs it (a superuser does not).
-- REVOKE of a membership that does not exist is a warning, not an error.
REVOKE kairos_service FROM CURRENT_USER;

-- 2. The log is written only through `append_to_log`.
--
-- The service used to INSERT into `events` (and the tables written with it) directly; a bug
-- or an injected statement could then append an event without its claims, its hash chain or
-- its idempotency record. Now the function runs with its owner's rights (SECURITY DEFINER)
-- and the service keeps only SELECT on the log and its companions: it reads claims (the next
-- free slug), idempotency records (replays) and data keys (opening personal fields).
--
-- What the function cannot know is whether the events are true: the service still decides
-- them, and the hashes it passes are checked by `kairos audit verify`, not here. It does
-- confine every effect to the aggregates the call appends to: a call cannot erase another
-- person's data key, release another aggregate's claims or key another subject.
--
-- A definer function must not resolve names through a search_path its caller controls: it is
-- fixed to pg_catalog first (built-ins cannot be shadowed by a better-matching overload), then
-- public, with pg_temp last; and nobody but the owner may create objects in public.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON events, claims, idempotency_keys, data_keys
    FROM kairos_service;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- 3. Idempotency records survive their subject's erasure as tombstones.
--
-- Erasing a person deleted their idempotency records with the stored response (it holds their
-- email and slug), so replaying the `POST /v4/user` that created them created a second user.
-- The record now stays with its fingerprint and status; only the response is dropped and the
-- erasure noted, and a replay answers 409 instead of acting again.
ALTER TABLE idempotency_keys ALTER COLUMN response_body DROP NOT NULL;
ALTER TABLE idempotency_keys ADD COLUMN erased_at timestamptz;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_body_or_tombstone
    CHECK ((response_body IS NULL) = (erased_at IS NOT NULL));

-- The function as in migration …0004 (same arguments, results and raised errors; see its
-- comments), with the tombstone instead of the DELETE at the end, and run as its owner.
CREATE OR REPLACE FUNCTION append_to_log(
    idempotency_company     uuid,
    idempotency_key         text,
    idempotency_aggregate   text,
    idempotency_fingerprint text,
    idempotency_status      int2,
    idempotency_body        jsonb,
    release_kinds           text[],
    release_owners          text[],
    release_all_types       text[],
    release_all_ids         text[],
    claim_kinds             text[],
    claim_scopes            text[],
    claim_values            text[],
    claim_owners            text[],
    claim_aggregate_types   text[],
    claim_aggregate_ids     text[],
    key_subjects            text[],
    key_wrapped             bytea[],
    event_aggregate_types   text[],
    event_aggregate_ids     text[],
    event_sequences         int8[],
    event_types             text[],
    event_versions          text[],
    event_payloads          jsonb[],
    event_metadata          jsonb[],
    event_ids               uuid[],
    event_recorded_ats      timestamptz[],
    event_company_ids       uuid[],
    event_hashes            bytea[],
    erase_subjects          text[]
) RETURNS TABLE (appended_tx_id text, appended_position bigint)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    refused_at bigint;
    inserted bigint;
    last_tx  text;
    last_pos bigint;
BEGIN
    IF cardinality(release_kinds) <> cardinality(release_owners)
       OR cardinality(release_all_types) <> cardinality(release_all_ids)
       OR cardinality(claim_kinds) <> ANY (ARRAY[cardinality(claim_scopes),
              cardinality(claim_values), cardinality(claim_owners),
              cardinality(claim_aggregate_types), cardinality(claim_aggregate_ids)])
       OR cardinality(key_subjects) <> cardinality(key_wrapped)
       OR cardinality(event_sequences) <> ANY (ARRAY[cardinality(event_aggregate_types),
              cardinality(event_aggregate_ids), cardinality(event_types),
              cardinality(event_versions), cardinality(event_payloads),
              cardinality(event_metadata), cardinality(event_ids),
              cardinality(event_recorded_ats), cardinality(event_company_ids),
              cardinality(event_hashes)])
       OR cardinality(event_sequences) = 0 THEN
        RAISE EXCEPTION 'append_to_log: the arrays of one kind differ in length, or no event was given'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Effects reach only the aggregates this call appends to.
    IF EXISTS (SELECT 1 FROM unnest(erase_subjects) AS s(id) WHERE s.id <> ALL (event_aggregate_ids))
       OR EXISTS (SELECT 1 FROM unnest(key_subjects) AS s(id) WHERE s.id <> ALL (event_aggregate_ids))
       OR EXISTS (SELECT 1 FROM unnest(release_all_types, release_all_ids) AS r(t, id)
                  WHERE NOT EXISTS (SELECT 1 FROM unnest(event_aggregate_types, event_aggregate_ids) AS e(t, id)
                                    WHERE e.t = r.t AND e.id = r.id))
       OR EXISTS (SELECT 1 FROM unnest(claim_aggregate_types, claim_aggregate_ids) AS r(t, id)
                  WHERE NOT EXISTS (SELECT 1 FROM unnest(event_aggregate_types, event_aggregate_ids) AS e(t, id)
                                    WHERE e.t = r.t AND e.id = r.id)) THEN
        RAISE EXCEPTION 'append_to_log: an effect names an aggregate the call does not append to'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF idempotency_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (company_id, key, aggregate_id, request_fingerprint,
                                      response_status, response_body)
        VALUES (idempotency_company, idempotency_key, idempotency_aggregate,
                idempotency_fingerprint, idempotency_status, idempotency_body)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the idempotency key was used by a concurrent request'
                USING ERRCODE = 'KA002';
        END IF;
    END IF;

    IF cardinality(release_kinds) > 0 THEN
        DELETE FROM claims c
        USING unnest(release_kinds, release_owners) AS r(kind, owner_id)
        WHERE c.kind = r.kind AND c.owner_id = r.owner_id
          AND EXISTS (SELECT 1 FROM unnest(event_aggregate_types, event_aggregate_ids) AS e(t, id)
                      WHERE e.t = c.aggregate_type AND e.id = c.aggregate_id);
    END IF;
    IF cardinality(release_all_types) > 0 THEN
        DELETE FROM claims c
        USING unnest(release_all_types, release_all_ids) AS r(aggregate_type, aggregate_id)
        WHERE c.aggregate_type = r.aggregate_type AND c.aggregate_id = r.aggregate_id;
    END IF;

    IF cardinality(claim_kinds) > 0 THEN
        INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id)
        SELECT * FROM unnest(claim_kinds, claim_scopes, claim_values, claim_owners,
                             claim_aggregate_types, claim_aggregate_ids)
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted < cardinality(claim_kinds) THEN
            SELECT w.n INTO refused_at
            FROM unnest(claim_kinds, claim_scopes, claim_values,
                        claim_aggregate_types, claim_aggregate_ids)
                 WITH ORDINALITY AS w(kind, scope, value, aggregate_type, aggregate_id, n)
            JOIN claims c ON c.kind = w.kind AND c.scope = w.scope AND c.value = w.value
            WHERE (c.aggregate_type, c.aggregate_id) <> (w.aggregate_type, w.aggregate_id)
            ORDER BY w.n
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'claim taken'
                    USING ERRCODE = 'KA001', DETAIL = refused_at::text;
            END IF;
            RAISE EXCEPTION 'concurrent change: the aggregate took this claim meanwhile'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;

    WITH appended AS (
        INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                            payload, metadata, event_id, recorded_at, company_id, hash)
        SELECT * FROM unnest(event_aggregate_types, event_aggregate_ids, event_sequences,
                             event_types, event_versions, event_payloads, event_metadata,
                             event_ids, event_recorded_ats, event_company_ids, event_hashes)
        ON CONFLICT ON CONSTRAINT events_pkey DO NOTHING
        RETURNING events.global_position, events.tx_id
    )
    SELECT count(*), max(a.global_position), min(a.tx_id::text) INTO inserted, last_pos, last_tx
    FROM appended a;
    IF inserted <> cardinality(event_sequences) THEN
        RAISE EXCEPTION 'concurrent change: another command appended to the same aggregate first'
            USING ERRCODE = 'serialization_failure';
    END IF;

    IF cardinality(key_subjects) > 0 THEN
        INSERT INTO data_keys (subject_id, wrapped_key)
        SELECT * FROM unnest(key_subjects, key_wrapped);
    END IF;

    IF cardinality(erase_subjects) > 0 THEN
        DELETE FROM data_keys WHERE subject_id = ANY (erase_subjects);
        -- The tombstone: which request it was and how it was answered, not what it said.
        UPDATE idempotency_keys
        SET response_body = NULL, erased_at = now()
        WHERE aggregate_id = ANY (erase_subjects) AND erased_at IS NULL;
    END IF;

    RETURN QUERY SELECT last_tx, last_pos;
END
$$;

-- CREATE OR REPLACE keeps the function's owner (the migrating owner) and its grants; stated
-- again so this file alone says who may call it.
REVOKE ALL ON FUNCTION append_to_log FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_to_log TO kairos_service;

-- 4. The service may see which migrations are applied, so `kairos serve` under a login that
-- cannot migrate can still refuse to start on a database that lacks some.
GRANT SELECT ON _sqlx_migrations TO kairos_service;
