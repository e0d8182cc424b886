-- One append, one statement: `append_to_log` takes everything a command writes (its
-- idempotency record, the claims it releases and takes, the data keys it creates, its events
-- with their hashes, the data subjects it erases) as arrays and writes it atomically.
--
-- Why a function: the same writes as separate statements inside BEGIN ... COMMIT cost five
-- client round trips for a user creation, and on a loaded machine each round trip is two
-- context switches and a trip through the TCP stack on both sides; `make bench` measured the
-- server spending more CPU in `send` than in all of its own code. A single statement is
-- atomic on its own, so a new aggregate's append is one round trip. The hashes and sealed
-- fields are still computed by Kairos (the database never sees a personal field in clear);
-- reads an append needs first (the previous hash, an existing data key) stay separate
-- queries, which is safe because the events' primary key refuses a stale sequence.
--
-- Failures are raised, which rolls back everything the call wrote:
--   KA001  a claim is held by another aggregate; DETAIL is the 1-based index, in the claim
--          arrays, of the first such claim. Only the index: a raised error lands in the
--          server log, and a claim's value can be an email, which must not outlive its
--          owner's erasure there;
--   KA002  the idempotency key was stored meanwhile by a concurrent request;
--   40001  (serialization_failure) another writer got there first: an event's sequence is
--          taken, or a claim is held by this very aggregate (a concurrent command on it won);
--   22023  (invalid_parameter_value) arrays of one kind differ in length, or no event was
--          given: a caller's bug, refused before anything is written.
-- None of them carries a value. The call's parameters do (claims hold emails, the idempotency
-- record a response body): keep PostgreSQL's parameter logging off for this database
-- (log_parameter_max_length_on_error = 0, the default; no log_statement with parameters).
CREATE FUNCTION append_to_log(
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
LANGUAGE plpgsql AS $$
DECLARE
    refused_at bigint;
    inserted bigint;
    last_tx  text;
    last_pos bigint;
BEGIN
    -- unnest pads shorter arrays with NULLs, and a NOT NULL violation would quote the row
    -- (values included) in its error: refuse mismatched arrays before touching a table.
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
        WHERE c.kind = r.kind AND c.owner_id = r.owner_id;
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
            -- Some claim was held already (the rare path: the common one costs no lookup).
            -- By another aggregate: that value is taken. Only by this one: a concurrent
            -- command on this aggregate took it first, and this command decided on a stale
            -- state.
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

    -- After the events: a stale first append of a stream (two writers both creating its first
    -- key) is then refused by the events' primary key as the race it is, not by this key.
    IF cardinality(key_subjects) > 0 THEN
        INSERT INTO data_keys (subject_id, wrapped_key)
        SELECT * FROM unnest(key_subjects, key_wrapped);
    END IF;

    IF cardinality(erase_subjects) > 0 THEN
        DELETE FROM data_keys WHERE subject_id = ANY (erase_subjects);
        DELETE FROM idempotency_keys WHERE aggregate_id = ANY (erase_subjects);
    END IF;

    RETURN QUERY SELECT last_tx, last_pos;
END
$$;

REVOKE ALL ON FUNCTION append_to_log FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_to_log TO kairos_service;
