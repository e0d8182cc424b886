//! The event store: concurrency, claims, idempotency, append-only, hash chains, and cqrs-es
//! running on our repository.

use std::collections::HashMap;

use aggregates::effects::{Claim, ClaimKind, StoreEffect};
use aggregates::input::Raw;
use aggregates::user::{UpdateProfile, User, UserCommand};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{AggregateError, CqrsFramework};
use futures::future::join_all;
use kairos::commands::{CommandContext, CommandError};
use kairos::event_store::{
    AppendBatch, AppendError, Appended, EventStore, PendingEvent, StreamAppend,
};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_app, user_body};

async fn sequences(app: &crate::helpers::TestApp, aggregate_id: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT sequence FROM events WHERE aggregate_id = $1 ORDER BY sequence")
        .bind(aggregate_id)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn concurrent_commands_on_one_aggregate_succeed_or_conflict_clearly_and_leave_no_gap() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("race@example.com", "Race", "Condition"))
        .await;
    let user_id = user["userId"].as_str().unwrap().to_string();
    let context = CommandContext {
        company_id: Some(app.company.company_id),
        ..Default::default()
    };
    let renames = (0..24).map(|i| {
        let command = UserCommand::UpdateProfile(UpdateProfile {
            company_id: app.company.company_id,
            given_name: Raw::Given(format!("Runner{i}")),
            at: app.clock_now(),
            ..Default::default()
        });
        let bus = app.bus().clone();
        let user_id = user_id.clone();
        let context = context.clone();
        async move { bus.execute::<User>(&user_id, command, &context).await }
    });
    let results = join_all(renames).await;
    let mut succeeded = 0;
    for result in results {
        match result {
            Ok(committed) => {
                assert_eq!(
                    committed.events.len(),
                    1,
                    "each rename records exactly one event"
                );
                succeeded += 1;
            }
            Err(CommandError::Conflict) => {}
            Err(other) => {
                panic!("a rename failed with something other than a clear conflict: {other}")
            }
        }
    }
    assert!(succeeded >= 1);
    let stored = sequences(&app, &user_id).await;
    assert_eq!(
        stored,
        (1..=3 + succeeded as i64).collect::<Vec<_>>(),
        "no gap and no duplicate"
    );
    app.stop().await;
}

fn timezone_change(zone: &str) -> PendingEvent {
    PendingEvent {
        event_type: "UserTimezoneChanged".into(),
        event_version: "1".into(),
        payload: json!({"timezone": zone, "at": "2026-01-01T00:00:00Z"}),
        effects: Vec::new(),
    }
}

#[tokio::test]
async fn of_concurrent_appends_at_one_sequence_exactly_one_wins_and_the_rest_are_conflicts() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("seq@example.com", "Seq", "Uence"))
        .await;
    let user_id = user["userId"].as_str().unwrap().to_string();
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let appends = (0..10).map(|_| {
        let store = store.clone();
        let batch = AppendBatch {
            streams: vec![StreamAppend {
                aggregate_type: "User".into(),
                aggregate_id: user_id.clone(),
                expected_sequence: 3,
                events: vec![timezone_change("Asia/Tokyo")],
            }],
            metadata: json!({"origin": "test"}),
            company_id: Some(app.company.company_id),
            idempotency: None,
            recorded_at: app.clock_now(),
        };
        async move { store.append(&batch).await }
    });
    let results = join_all(appends).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(AppendError::Conflict)))
        .count();
    assert_eq!((wins, conflicts), (1, 9), "{results:?}");
    assert_eq!(sequences(&app, &user_id).await, vec![1, 2, 3, 4]);
    app.stop().await;
}

#[tokio::test]
async fn a_claim_violation_writes_no_event_at_all() {
    let app = spawn_app().await;
    app.create_user(user_body("taken@example.com", "First", "Holder"))
        .await;
    let events_before = app.scalar("SELECT count(*) FROM events").await;

    let second = app
        .post("/v4/user")
        .json(user_body("  TAKEN@Example.COM ", "Second", "Try"))
        .send()
        .await;
    second.assert_error(409, "A user with this email already exists");

    let events_after = app.scalar("SELECT count(*) FROM events").await;
    assert_eq!(
        events_after, events_before,
        "the refused command appended nothing"
    );
    let claims = app
        .scalar("SELECT count(*) FROM claims WHERE value LIKE 'second-try%'")
        .await;
    assert_eq!(claims, 0, "no claim of the refused command remains");
    let keys = app.scalar("SELECT count(*) FROM data_keys").await;
    assert_eq!(keys, 2, "only the owner and the first user have data keys");
    app.stop().await;
}

#[tokio::test]
async fn a_claim_violation_is_a_typed_error_not_a_concurrency_conflict() {
    let app = spawn_app().await;
    app.create_user(
        json!({"email": "a@example.com", "givenName": "A", "familyName": "B",
        "timezone": "UTC", "slug": "shared-slug"}),
    )
    .await;
    let context = CommandContext {
        company_id: Some(app.company.company_id),
        ..Default::default()
    };
    let user_id = Uuid::now_v7();
    let command = UserCommand::CreatePlatformUser(Box::new(aggregates::user::CreatePlatformUser {
        user_id,
        company_id: app.company.company_id,
        user_type: aggregates::user::UserType::ApiPlatform,
        is_owner: false,
        availability_id: Uuid::now_v7(),
        meeting_type_id: Uuid::now_v7(),
        email: Raw::Given("other@example.com".into()),
        given_name: Raw::Given("Other".into()),
        family_name: Raw::Given("Person".into()),
        timezone: Raw::Given("UTC".into()),
        slug: Raw::Given("shared-slug".into()),
        availability: Raw::Missing,
        meeting_type: Raw::Missing,
        taken_user_slugs: Default::default(),
        at: app.clock_now(),
    }));
    match app
        .bus()
        .execute::<User>(&user_id.to_string(), command, &context)
        .await
    {
        Err(CommandError::ClaimTaken {
            kind: ClaimKind::UserSlug,
            value,
        }) => assert_eq!(value, "shared-slug"),
        Err(other) => panic!("expected a taken slug claim, got {other}"),
        Ok(_) => panic!("a taken slug was accepted"),
    }
    assert_eq!(app.count_events(&user_id.to_string()).await, 0);
    app.stop().await;
}

fn slug_claimed(user_id: &str, slug: &str) -> PendingEvent {
    PendingEvent {
        event_type: "UserSlugChanged".into(),
        event_version: "1".into(),
        payload: json!({"slug": slug, "at": "2026-01-01T00:00:00Z"}),
        effects: vec![StoreEffect::Claim(Claim {
            kind: ClaimKind::UserSlug,
            scope: String::new(),
            value: slug.into(),
            owner: user_id.into(),
        })],
    }
}

/// Appends `events` straight to the store after a freshly created user's three events.
async fn append_to_new_user(
    app: &crate::helpers::TestApp,
    user_id: &str,
    events: Vec<PendingEvent>,
) -> Result<Appended, AppendError> {
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    store
        .append(&AppendBatch {
            streams: vec![StreamAppend {
                aggregate_type: "User".into(),
                aggregate_id: user_id.into(),
                expected_sequence: 3,
                events,
            }],
            metadata: json!({"origin": "test"}),
            company_id: Some(app.company.company_id),
            idempotency: None,
            recorded_at: app.clock_now(),
        })
        .await
}

/// The store names the first claim held by someone else, in the order the events ask for
/// them, and keeps none of the append's other claims.
#[tokio::test]
async fn a_refused_append_names_the_first_claim_held_elsewhere_and_keeps_none_of_its_claims() {
    let app = spawn_app().await;
    app.create_user(
        json!({"email": "holder@example.com", "givenName": "Slug", "familyName": "Holder",
        "timezone": "UTC", "slug": "held-slug"}),
    )
    .await;
    app.create_user(
        json!({"email": "later@example.com", "givenName": "Later", "familyName": "Holder",
        "timezone": "UTC", "slug": "later-slug"}),
    )
    .await;
    let user = app
        .create_user(user_body("mover@example.com", "Slug", "Mover"))
        .await;
    let user_id = user["userId"].as_str().unwrap().to_string();
    let result = append_to_new_user(
        &app,
        &user_id,
        vec![
            slug_claimed(&user_id, "free-slug"),
            slug_claimed(&user_id, "held-slug"),
            slug_claimed(&user_id, "later-slug"),
        ],
    )
    .await;
    match result {
        Err(AppendError::ClaimTaken { kind, scope, value }) => {
            assert_eq!(
                (kind, scope.as_str(), value.as_str()),
                (ClaimKind::UserSlug, "", "held-slug")
            );
        }
        other => panic!("expected the held slug to be named, got {other:?}"),
    }
    let free_claims = app
        .scalar("SELECT count(*) FROM claims WHERE value = 'free-slug'")
        .await;
    assert_eq!(
        free_claims, 0,
        "the refused append's other claim was not kept"
    );
    assert_eq!(sequences(&app, &user_id).await, vec![1, 2, 3]);
    app.stop().await;
}

/// A raised error goes to the database server's log, which erasure cannot reach: the
/// append function's refusal names the claim by its index, never by its value (an email).
#[tokio::test]
async fn a_refused_claim_puts_no_claimed_value_into_the_database_error() {
    let app = spawn_app().await;
    app.create_user(user_body("private@example.com", "Private", "Person"))
        .await;
    let refused = sqlx::query(
        "SELECT * FROM append_to_log(NULL, NULL, '', NULL, NULL, NULL, '{}', '{}', '{}', '{}', \
         ARRAY['user-email'], ARRAY[$1], ARRAY[$2], ARRAY['someone'], ARRAY['User'], \
         ARRAY['someone'], '{}', '{}', ARRAY['User'], ARRAY['someone'], ARRAY[1::int8], \
         ARRAY['UserCreated'], ARRAY['1'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], \
         ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY[NULL::uuid], \
         ARRAY[decode(repeat('00', 32), 'hex')], '{}')",
    )
    .bind(app.company.company_id.to_string())
    .bind("private@example.com")
    .fetch_all(&app.pool)
    .await
    .expect_err("the email is taken");
    let error = refused
        .as_database_error()
        .and_then(|e| e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
        .expect("a database error");
    assert_eq!(error.code(), "KA001");
    assert_eq!(error.detail(), Some("1"), "the refused claim's index");
    let said = format!(
        "{} {:?} {:?} {:?}",
        error.message(),
        error.detail(),
        error.hint(),
        error.r#where()
    );
    assert!(
        !said.contains("private"),
        "the error names the email: {said}"
    );
    app.stop().await;
}

/// Arrays of one kind that differ in length (which `unnest` would pad with NULLs) are
/// refused before anything is written, and so is an append without events.
#[tokio::test]
async fn the_append_function_refuses_ragged_arrays_and_empty_appends_writing_nothing() {
    let app = spawn_app().await;
    let events_before = app.scalar("SELECT count(*) FROM events").await;
    let one_event = "ARRAY['User'], ARRAY['ragged'], ARRAY[1::int8], ARRAY['UserCreated'], \
         ARRAY['1'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], ARRAY[gen_random_uuid()], \
         ARRAY[now()], ARRAY[NULL::uuid], ARRAY[decode(repeat('00', 32), 'hex')]";
    let no_event = "'{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'";
    // A claim with a scope but no value; then a valid claim with no event.
    for (claim_values, events) in [("'{}'", one_event), ("ARRAY['ragged-claim']", no_event)] {
        let sql = format!(
            "SELECT * FROM append_to_log(NULL, NULL, '', NULL, NULL, NULL, '{{}}', '{{}}', \
             '{{}}', '{{}}', ARRAY['user-slug'], ARRAY[''], {claim_values}, ARRAY['ragged'], \
             ARRAY['User'], ARRAY['ragged'], '{{}}', '{{}}', {events}, '{{}}')"
        );
        let refused = sqlx::query(&sql)
            .fetch_all(&app.pool)
            .await
            .expect_err("refused");
        let code = refused.as_database_error().and_then(|e| e.code());
        assert_eq!(code.as_deref(), Some("22023"), "{refused}");
    }
    let events_after = app.scalar("SELECT count(*) FROM events").await;
    let claims = app
        .scalar("SELECT count(*) FROM claims WHERE owner_id = 'ragged'")
        .await;
    assert_eq!((events_after, claims), (events_before, 0));
    app.stop().await;
}

/// A claim already held by the appending aggregate itself means a concurrent command on it
/// took the claim first: this command decided on a stale state and must decide again. It
/// is not "someone else's value".
#[tokio::test]
async fn a_claim_the_aggregate_itself_holds_is_a_conflict_not_a_taken_value() {
    let app = spawn_app().await;
    let user = app
        .create_user(
            json!({"email": "self@example.com", "givenName": "Self", "familyName": "Holder",
            "timezone": "UTC", "slug": "my-own-slug"}),
        )
        .await;
    let user_id = user["userId"].as_str().unwrap().to_string();
    let result =
        append_to_new_user(&app, &user_id, vec![slug_claimed(&user_id, "my-own-slug")]).await;
    assert!(matches!(result, Err(AppendError::Conflict)), "{result:?}");
    assert_eq!(sequences(&app, &user_id).await, vec![1, 2, 3]);
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_first_result_and_appends_nothing() {
    let app = spawn_app().await;
    let body = user_body("idem@example.com", "Idem", "Potent");
    let first = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-idem-1")
        .json(body.clone())
        .send()
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let events = app.scalar("SELECT count(*) FROM events").await;

    let replay = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-idem-1")
        .json(body.clone())
        .send()
        .await;
    assert_eq!(replay.status, 201);
    assert_eq!(
        replay.body, first.body,
        "the replay answers the first result"
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let after = app.scalar("SELECT count(*) FROM events").await;
    assert_eq!(after, events, "a replay appends nothing");

    let different = app
        .post("/v4/user")
        .header("Idempotency-Key", "create-idem-1")
        .json(user_body("other@example.com", "Other", "Body"))
        .send()
        .await;
    different.assert_error(
        409,
        "This Idempotency-Key was already used with a different request",
    );
    app.stop().await;
}

#[tokio::test]
async fn simultaneous_requests_with_one_idempotency_key_create_one_user() {
    let app = spawn_app().await;
    let body = user_body("burst@example.com", "Burst", "Retry");
    let calls = (0..12).map(|_| {
        app.post("/v4/user")
            .header("Idempotency-Key", "burst-1")
            .json(body.clone())
            .send()
    });
    let responses = join_all(calls).await;
    let mut ids = HashMap::new();
    for response in &responses {
        assert_eq!(response.status, 201, "{}", response.text);
        *ids.entry(response.body["userId"].as_str().unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(ids.len(), 1, "every response names the same user: {ids:?}");
    let user_id = ids.keys().next().unwrap();
    assert_eq!(app.count_events(user_id).await, 3);
    let users = app
        .scalar("SELECT count(DISTINCT aggregate_id) FROM events WHERE event_type = 'UserCreated'")
        .await;
    assert_eq!(users, 2, "the owner and one user");
    app.stop().await;
}

#[tokio::test]
async fn update_delete_and_truncate_on_events_fail_for_the_service_role_and_the_owner() {
    let app = spawn_app().await;
    for (who, pool) in [("service role", &app.pool), ("owner", &app.owner)] {
        for statement in [
            "UPDATE events SET event_type = 'Forged'",
            "DELETE FROM events",
            "TRUNCATE events",
        ] {
            let result = sqlx::query(statement).execute(pool).await;
            let error = result.expect_err(&format!("{statement} must fail for the {who}"));
            let text = error.to_string();
            assert!(
                text.contains("append-only") || text.contains("permission denied"),
                "{who}: {statement}: {text}"
            );
        }
    }
    let remaining = app.scalar("SELECT count(*) FROM events").await;
    assert!(remaining > 0, "the log is intact");
    app.stop().await;
}

#[tokio::test]
async fn the_hash_chain_verifies_and_a_row_altered_behind_the_triggers_back_is_detected() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("chain@example.com", "Chain", "Link"))
        .await;
    let user_id = user["userId"].as_str().unwrap();
    app.patch(&format!("/v4/user/{user_id}"))
        .json(json!({"timezone": "Asia/Tokyo"}))
        .send()
        .await;

    let clean = kairos::audit::verify_chains(&app.pool, None).await.unwrap();
    assert_eq!(clean.first_broken, None);
    assert_eq!(
        clean.events_checked,
        3 + 3 + 2 + 1,
        "company (2) + owner (3) + user (3) + patch (1)"
    );

    let tampered_position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_id = $1 AND event_type = 'AvailabilityProvisioned'",
    )
    .bind(user_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    app.tamper_with_event(
        tampered_position,
        "payload = jsonb_set(payload, '{name}', '\"Forged Hours\"')",
    )
    .await;

    let report = kairos::audit::verify_chains(&app.pool, None).await.unwrap();
    let broken = report.first_broken.expect("the altered row is detected");
    assert_eq!(broken.position, tampered_position);
    assert_eq!(broken.aggregate_id, user_id);
    assert_eq!(broken.event_type, "AvailabilityProvisioned");
    app.stop().await;
}

#[tokio::test]
async fn cqrs_es_runs_on_our_repository_with_claims_enforced() {
    let app = spawn_app().await;
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let cqrs = CqrsFramework::new(
        PersistedEventStore::<_, User>::new_event_store(store.clone()),
        vec![],
        (),
    );
    let create = |email: &str, user_id: Uuid| {
        UserCommand::CreatePlatformUser(Box::new(aggregates::user::CreatePlatformUser {
            user_id,
            company_id: app.company.company_id,
            user_type: aggregates::user::UserType::ApiPlatform,
            is_owner: false,
            availability_id: Uuid::now_v7(),
            meeting_type_id: Uuid::now_v7(),
            email: Raw::Given(email.into()),
            given_name: Raw::Given("Via".into()),
            family_name: Raw::Given("Framework".into()),
            timezone: Raw::Given("UTC".into()),
            slug: Raw::Missing,
            availability: Raw::Missing,
            meeting_type: Raw::Missing,
            taken_user_slugs: Default::default(),
            at: app.clock_now(),
        }))
    };
    let mut metadata = HashMap::new();
    metadata.insert("companyId".to_string(), app.company.company_id.to_string());
    let first = Uuid::now_v7();
    cqrs.execute_with_metadata(
        &first.to_string(),
        create("via@example.com", first),
        metadata.clone(),
    )
    .await
    .expect("cqrs-es appends through our repository");
    assert_eq!(app.count_events(&first.to_string()).await, 3);
    let stored_email: String = sqlx::query_scalar(
        "SELECT payload->>'email' FROM events WHERE aggregate_id = $1 AND event_type = 'UserCreated'",
    )
    .bind(first.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        !stored_email.contains("via@example.com"),
        "personal fields are sealed: {stored_email}"
    );

    let second = Uuid::now_v7();
    let error = cqrs
        .execute_with_metadata(
            &second.to_string(),
            create("VIA@example.com", second),
            metadata,
        )
        .await
        .expect_err("the email claim holds through cqrs-es too");
    match error {
        AggregateError::UnexpectedError(inner) => {
            let append = inner
                .downcast_ref::<AppendError>()
                .expect("a typed append error");
            assert!(
                matches!(
                    append,
                    AppendError::ClaimTaken {
                        kind: ClaimKind::UserEmail,
                        ..
                    }
                ),
                "{append}"
            );
        }
        AggregateError::AggregateConflict => {
            panic!("a claim violation must not read as a concurrency conflict")
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(app.count_events(&second.to_string()).await, 0);

    // Loading through cqrs-es opens the sealed fields again.
    let loaded = store.load::<User>(&first.to_string()).await.unwrap();
    assert_eq!(loaded.aggregate.state().unwrap().email, "via@example.com");
    app.stop().await;
}
