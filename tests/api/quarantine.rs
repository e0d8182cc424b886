//! Issue 15, items 1 and 2: client text never poisons a projector, and an event a projector
//! cannot apply sets aside its own aggregate only (reads 503), while every other aggregate
//! keeps flowing, until the cause is fixed and the aggregate retried.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use base64::Engine;
use kairos::event_store::{AppendBatch, EventStore, PendingEvent, StreamAppend};
use projections::rebuild::{self, Silent};
use projections::runtime::ProjectorStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, user_body};

/// Client text that looks like a sealed field: the bare prefix, and the prefix followed by
/// well-formed base64 of the length of a real ciphertext.
fn lookalikes() -> Vec<String> {
    vec![
        "kairos:enc:v1:x".to_string(),
        format!(
            "kairos:enc:v1:{}",
            base64::engine::general_purpose::STANDARD.encode([42u8; 40])
        ),
    ]
}

fn id(body: &Value) -> String {
    body["userId"].as_str().unwrap().to_string()
}

async fn statuses(app: &TestApp) -> Vec<ProjectorStatus> {
    projections::runtime::status(&app.pool).await.unwrap()
}

/// Every projector led, not failing, nothing set aside.
async fn assert_all_running_and_clean(app: &TestApp) {
    for status in statuses(app).await {
        assert_eq!(status.state, "running", "{status:?}");
        assert!(status.quarantined.is_empty(), "{status:?}");
    }
}

/// Waits (up to 10 s) until `projector` has `aggregate_id` quarantined, or no longer has.
async fn wait_for_quarantine(app: &TestApp, projector: &str, aggregate_id: &str, present: bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now_present = statuses(app).await.iter().any(|s| {
            s.name == projector && s.quarantined.iter().any(|q| q.aggregate_id == aggregate_id)
        });
        if now_present == present {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{projector} quarantine of {aggregate_id} never became {present}: {:?}",
            statuses(app).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Appends one event to a user's stream as a buggy writer could, straight through the
/// store; returns its position.
async fn append_raw(
    app: &TestApp,
    user_id: &str,
    expected_sequence: i64,
    event_type: &str,
    payload: Value,
) -> i64 {
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let appended = store
        .append(&AppendBatch {
            streams: vec![StreamAppend {
                aggregate_type: "User".into(),
                aggregate_id: user_id.into(),
                expected_sequence,
                events: vec![PendingEvent {
                    event_type: event_type.into(),
                    event_version: "1".into(),
                    payload,
                    effects: Vec::new(),
                }],
            }],
            metadata: json!({"origin": "test"}),
            company_id: Some(app.company.company_id),
            idempotency: None,
            recorded_at: app.clock_now(),
        })
        .await
        .unwrap();
    appended.position.position
}

/// A `UserTimezoneChanged` whose payload does not decode (its field misnamed), appended to
/// a freshly created user (three events); returns the user and the event's position.
async fn poison_a_user(app: &TestApp, email: &str) -> (String, i64) {
    let victim = app.create_user(user_body(email, "Vic", "Tim")).await;
    let victim_id = id(&victim);
    let position = append_raw(
        app,
        &victim_id,
        3,
        "UserTimezoneChanged",
        json!({"zone": "Asia/Tokyo", "at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    (victim_id, position)
}

/// The fix an operator makes: the event rewritten to what it should have been.
async fn fix_the_poison(app: &TestApp, position: i64) {
    app.tamper_with_event(
        position,
        r#"payload = '{"timezone": "Asia/Tokyo", "at": "2026-01-01T00:00:00Z"}'::jsonb"#,
    )
    .await;
}

fn windows_path(user_id: &str) -> String {
    format!("/v4/user/{user_id}/bookable-windows?startDate=2026-12-07&endDate=2026-12-08")
}

#[tokio::test]
async fn client_text_that_looks_sealed_poisons_nothing_at_creation_or_by_patch() {
    let app = spawn_app().await;
    for (n, text) in lookalikes().into_iter().enumerate() {
        // Every client-controlled free-text field at creation.
        let poisoner = app
            .create_user(json!({
                "email": format!("poison{n}@example.com"),
                "givenName": text, "familyName": text, "timezone": "Europe/Berlin",
                "availability": {"name": text, "schedule": [
                    {"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "17:00"}]}]},
                "meetingType": {"name": text, "duration": 30}
            }))
            .await;
        let poisoner_id = id(&poisoner);
        // A slug cannot hold `:`: refused as input, a 400 naming it, not a 5xx.
        let slug = app
            .post("/v4/user")
            .json(
                json!({"email": format!("slug{n}@example.com"), "givenName": "S", "familyName": "L",
                         "timezone": "Europe/Berlin", "slug": text}),
            )
            .send()
            .await;
        assert_eq!(slug.status, StatusCode::BAD_REQUEST, "{}", slug.text);
        assert!(slug.text.contains("slug"), "{}", slug.text);

        // Another user, created after, is readable at once (the command waited for it).
        let other = app
            .create_user(user_body(&format!("other{n}@example.com"), "Ann", "Other"))
            .await;
        let read = app.get(&format!("/v4/user/{}", id(&other))).send().await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);

        // The poisoning user itself reads back its text as the text it is.
        let read = app.get(&format!("/v4/user/{poisoner_id}")).send().await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
        assert_eq!(read.body["givenName"], text.as_str());
        assert_eq!(read.body["familyName"], text.as_str());
        let availability = projections::availabilities::list_for_user(
            &app.pool,
            app.company.company_id,
            poisoner_id.parse().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(availability[0].name, text);
        let windows = app.get(&windows_path(&poisoner_id)).send().await;
        assert_eq!(windows.status, StatusCode::OK, "{}", windows.text);

        // …changeable by PATCH, again with the text…
        let patched = app
            .patch(&format!("/v4/user/{}", id(&other)))
            .json(json!({"givenName": text, "familyName": text}))
            .send()
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["givenName"], text.as_str());
        let patched = app
            .patch(&format!("/v4/user/{poisoner_id}"))
            .json(json!({"givenName": "Plain", "slug": format!("plain-{n}")}))
            .send()
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["givenName"], "Plain");
        assert_all_running_and_clean(&app).await;

        // …and erasable: its rows and its data key go, its history reads `[erased]`.
        let deleted = app.delete(&format!("/v4/user/{poisoner_id}")).send().await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
        let gone = app.get(&format!("/v4/user/{poisoner_id}")).send().await;
        assert_eq!(gone.status, StatusCode::NOT_FOUND);
        let rows: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM user_profiles WHERE user_id = $1) \
                  + (SELECT count(*) FROM data_keys WHERE subject_id = $1::text)",
        )
        .bind(poisoner_id.parse::<uuid::Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap();
        assert_eq!(rows, 0);
        let history = app
            .get(&format!(
                "/v4/audit/events?aggregateId={poisoner_id}&limit=100"
            ))
            .send()
            .await;
        assert_eq!(history.status, StatusCode::OK, "{}", history.text);
        let created = history.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "UserCreated")
            .unwrap()
            .clone();
        assert_eq!(created["payload"]["givenName"], "[erased]", "{created}");
        assert_all_running_and_clean(&app).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn an_event_no_projector_can_apply_quarantines_only_its_aggregate_until_fixed_and_retried() {
    let app = spawn_app().await;
    let before = app
        .create_user(user_body("before@example.com", "Bea", "Fore"))
        .await;
    let (victim_id, position) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    wait_for_quarantine(&app, "bookable_windows", &victim_id, true).await;

    // Its reads answer 503, in the error shape, naming nothing internal.
    for path in [format!("/v4/user/{victim_id}"), windows_path(&victim_id)] {
        let read = app.get(&path).send().await;
        read.assert_error(503, "Service temporarily unavailable; retry shortly");
    }
    let acting = app.get("/v4/user/me").acting_as(&victim_id).send().await;
    acting.assert_error(503, "Service temporarily unavailable; retry shortly");
    let list = app.get("/v4/user?limit=100").send().await;
    list.assert_error(503, "Service temporarily unavailable; retry shortly");

    // Every other aggregate flows: the user before it, and one created after it, at once.
    let read = app.get(&format!("/v4/user/{}", id(&before))).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let after = app
        .create_user(user_body("after@example.com", "Af", "Ter"))
        .await;
    let read = app.get(&format!("/v4/user/{}", id(&after))).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let windows = app.get(&windows_path(&id(&after))).send().await;
    assert_eq!(windows.status, StatusCode::OK, "{}", windows.text);
    // Another company never learns of it: the id is simply not theirs.
    let other = app.another_company("Globex").await;
    let foreign = app
        .get(&format!("/v4/user/{victim_id}"))
        .key(&other.api_key)
        .send()
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);

    // Status and metrics show it; every projector is still running.
    let users = statuses(&app)
        .await
        .into_iter()
        .find(|s| s.name == "users")
        .unwrap();
    assert_eq!(users.state, "running");
    assert_eq!(users.quarantined.len(), 1);
    assert_eq!(users.quarantined[0].position, position);
    assert_eq!(users.quarantined[0].event_type, "UserTimezoneChanged");
    assert!(
        users.quarantined[0].reason.contains("does not decode"),
        "{:?}",
        users.quarantined[0]
    );
    let companies = statuses(&app)
        .await
        .into_iter()
        .find(|s| s.name == "companies")
        .unwrap();
    assert!(companies.quarantined.is_empty());
    let text = app.cli(&["projections", "status"]).await;
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains(&victim_id) && text.contains("quarantined"),
        "{text}"
    );
    let json = app.cli(&["projections", "status", "--json"]).await;
    let json: Vec<Value> = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        json.iter()
            .any(|s| s["name"] == "users"
                && s["quarantined"][0]["aggregateId"] == victim_id.as_str())
    );
    metrics_showing(
        &app,
        "kairos_projector_quarantined_aggregates{projector=\"users\"} 1",
    )
    .await;

    // Retrying before the fix changes nothing (and says so with its exit status).
    let early = app.cli(&["projections", "retry", "users"]).await;
    assert!(!early.status.success());
    wait_for_quarantine(&app, "users", &victim_id, true).await;

    // Fixed, then retried by the CLI: applied, readable, nothing quarantined.
    fix_the_poison(&app, position).await;
    let retried = app.cli(&["projections", "retry"]).await;
    assert!(
        retried.status.success(),
        "{}{}",
        String::from_utf8_lossy(&retried.stdout),
        String::from_utf8_lossy(&retried.stderr)
    );
    let read = app.get(&format!("/v4/user/{victim_id}")).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["timezone"], "Asia/Tokyo");
    let windows = app.get(&windows_path(&victim_id)).send().await;
    assert_eq!(windows.status, StatusCode::OK, "{}", windows.text);
    assert_all_running_and_clean(&app).await;
    metrics_showing(
        &app,
        "kairos_projector_quarantined_aggregates{projector=\"users\"} 0",
    )
    .await;
    app.stop().await;
}

/// Waits for `/metrics` to contain `line`: it reads the projectors' state at most once a
/// second, so a change shows within the next reading.
async fn metrics_showing(app: &TestApp, line: &str) {
    let mut metrics = String::new();
    for _ in 0..40 {
        metrics = app.get("/metrics").no_key().send().await.text;
        if metrics.contains(line) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("/metrics never showed {line}: {metrics}");
}

#[tokio::test]
async fn a_quarantined_aggregate_is_retried_when_a_runner_takes_leadership() {
    let mut app = spawn_app().await;
    let (victim_id, position) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    // A second process knows it too (its listener reloaded the set on the notice).
    let second = app.another_process().await;
    let read = second.get(&format!("/v4/user/{victim_id}")).send().await;
    assert_eq!(
        read.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        read.text
    );

    // Fixed; then the leader goes away (a restart) and the second process takes over.
    fix_the_poison(&app, position).await;
    app.kairos.take().unwrap().stop().await;
    wait_for_quarantine(&second, "users", &victim_id, false).await;
    wait_for_quarantine(&second, "bookable_windows", &victim_id, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let read = second.get(&format!("/v4/user/{victim_id}")).send().await;
        if read.status == StatusCode::OK {
            assert_eq!(read.body["timezone"], "Asia/Tokyo");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", read.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_all_running_and_clean(&second).await;
    second.stop().await;
}

/// Waits (up to 10 s) until `projector` holds `aggregate_id` quarantined at `position`.
async fn wait_for_quarantine_at(app: &TestApp, projector: &str, aggregate_id: &str, position: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let at = statuses(app).await.into_iter().find_map(|s| {
            (s.name == projector)
                .then(|| {
                    s.quarantined
                        .into_iter()
                        .find(|q| q.aggregate_id == aggregate_id)
                        .map(|q| q.position)
                })
                .flatten()
        });
        if at == Some(position) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{projector} never quarantined {aggregate_id} at {position}: {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn an_aggregate_released_by_its_retry_whose_next_event_fails_in_the_same_batch_stays_quarantined()
 {
    let mut app = spawn_app().await;
    let (victim_id, position) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    // Fixed while no runner leads, and a new event that cannot be applied either appended
    // after it: the next leader retries the aggregate (released) and then meets the new
    // event in its first batch (quarantined again), in one transaction.
    fix_the_poison(&app, position).await;
    app.kairos.take().unwrap().stop().await;
    app.pool = app.owner.clone(); // the stopped process closed its own
    let again = append_raw(
        &app,
        &victim_id,
        4,
        "UserTimezoneChanged",
        json!({"zone": "Europe/Paris", "at": "2026-01-02T00:00:00Z"}),
    )
    .await;
    let second = app.another_process().await;
    wait_for_quarantine_at(&second, "users", &victim_id, again).await;
    wait_for_quarantine_at(&second, "bookable_windows", &victim_id, again).await;
    let read = second.get(&format!("/v4/user/{victim_id}")).send().await;
    read.assert_error(503, "Service temporarily unavailable; retry shortly");
    let windows = second.get(&windows_path(&victim_id)).send().await;
    windows.assert_error(503, "Service temporarily unavailable; retry shortly");
    second.stop().await;
}

#[tokio::test]
async fn a_quarantined_user_can_still_be_changed_and_erased() {
    let app = spawn_app().await;
    let (victim_id, position) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    // The event is fixed but nobody asked for a retry yet: the read model is still set
    // aside, while commands, which load from the log, work again.
    fix_the_poison(&app, position).await;

    // Changed: the answer comes from the log, as the read model cannot show it.
    let patched = app
        .patch(&format!("/v4/user/{victim_id}"))
        .json(json!({"givenName": "Still"}))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["givenName"], "Still");
    assert_eq!(patched.body["timezone"], "Asia/Tokyo");
    let read = app.get(&format!("/v4/user/{victim_id}")).send().await;
    assert_eq!(read.status, StatusCode::SERVICE_UNAVAILABLE);

    // Erased: the deletion is applied even to the quarantined aggregate; its rows, its data
    // key and its quarantine go.
    let deleted = app.delete(&format!("/v4/user/{victim_id}")).send().await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    wait_for_quarantine(&app, "users", &victim_id, false).await;
    wait_for_quarantine(&app, "bookable_windows", &victim_id, false).await;
    // The table says released a moment before the leader has reloaded its in-memory set.
    let gone = crate::helpers::eventually(Duration::from_secs(5), async || {
        app.get(&format!("/v4/user/{victim_id}"))
            .send()
            .await
            .status
            == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone, "the erased user answers 404");
    let rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM user_profiles WHERE user_id = $1) \
              + (SELECT count(*) FROM availabilities WHERE user_id = $1) \
              + (SELECT count(*) FROM meeting_types WHERE user_id = $1) \
              + (SELECT count(*) FROM bookable_windows WHERE user_id = $1) \
              + (SELECT count(*) FROM data_keys WHERE subject_id = $1::text)",
    )
    .bind(victim_id.parse::<uuid::Uuid>().unwrap())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(rows, 0);
    assert_all_running_and_clean(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_with_a_poisoned_aggregate_completes_and_keeps_it_quarantined() {
    let app = spawn_app().await;
    let before = app
        .create_user(user_body("before@example.com", "Bea", "Fore"))
        .await;
    let (victim_id, position) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    let after = app
        .create_user(user_body("after@example.com", "Af", "Ter"))
        .await;

    let projectors =
        projections::all_projectors(Arc::new(app.clock.clone()), &projections::Caches::unused());
    let report = rebuild::rebuild(
        &app.owner,
        &app.keyring,
        &projectors,
        &Default::default(),
        &mut Silent,
    )
    .await
    .expect("the rebuild completes");
    assert!(report.events > 0);
    wait_for_quarantine(&app, "users", &victim_id, true).await;
    wait_for_quarantine(&app, "bookable_windows", &victim_id, true).await;
    let read = app.get(&format!("/v4/user/{victim_id}")).send().await;
    assert_eq!(
        read.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        read.text
    );
    for user in [&before, &after] {
        let read = app.get(&format!("/v4/user/{}", id(user))).send().await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    }
    // Rebuilt after the fix, it is applied and released.
    fix_the_poison(&app, position).await;
    rebuild::rebuild(
        &app.owner,
        &app.keyring,
        &projectors,
        &Default::default(),
        &mut Silent,
    )
    .await
    .expect("the rebuild completes");
    wait_for_quarantine(&app, "users", &victim_id, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let read = app.get(&format!("/v4/user/{victim_id}")).send().await;
        if read.status == StatusCode::OK {
            assert_eq!(read.body["timezone"], "Asia/Tokyo");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", read.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_transient_failure_is_retried_and_never_quarantines() {
    let app = spawn_app().await;
    let user = app
        .create_user(user_body("steady@example.com", "Ste", "Ady"))
        .await;
    let user_id = id(&user);
    // The table goes away for a moment (SQLSTATE 42P01: not the data's fault).
    sqlx::query("ALTER TABLE user_profiles RENAME TO user_profiles_away")
        .execute(&app.owner)
        .await
        .unwrap();
    append_raw(
        &app,
        &user_id,
        3,
        "UserRenamed",
        json!({"givenName": "Re", "familyName": "Named", "at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let users = statuses(&app)
            .await
            .into_iter()
            .find(|s| s.name == "users")
            .unwrap();
        assert!(users.quarantined.is_empty(), "{users:?}");
        if users.state == "failing" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{users:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sqlx::query("ALTER TABLE user_profiles_away RENAME TO user_profiles")
        .execute(&app.owner)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let read = app.get(&format!("/v4/user/{user_id}")).send().await;
        if read.status == StatusCode::OK && read.body["givenName"] == "Re" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", read.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_all_running_and_clean(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_quarantined_user_does_not_hold_back_the_horizons_of_the_others() {
    let app = spawn_app().await;
    let steady = app
        .create_user(user_body("steady@example.com", "Ste", "Ady"))
        .await;
    let (victim_id, _) = poison_a_user(&app, "victim@example.com").await;
    wait_for_quarantine(&app, "bookable_windows", &victim_id, true).await;
    let covers = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "SELECT covers_until FROM bookable_windows WHERE user_id = $1",
        )
        .bind(id(&steady).parse::<uuid::Uuid>().unwrap())
        .fetch_one(&app.pool)
        .await
        .unwrap()
    };
    let before = covers().await;
    // Days pass: both users' windows are due for upkeep; the victim's stream cannot be
    // folded, the steady user's horizon moves anyway.
    app.clock.advance(chrono::Duration::days(3));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while covers().await == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the horizon never moved: {:?}",
            statuses(&app).await
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn database_errors_are_permanent_only_when_the_data_is_at_fault() {
    use projections::quarantine::is_permanent;
    use projections::runtime::ProjectionError;
    let app = spawn_app().await;
    let mut tx = app.pool.begin().await.unwrap();
    let error_of = |sql: &'static str| {
        let pool = app.pool.clone();
        async move { ProjectionError::Database(sqlx::query(sql).execute(&pool).await.unwrap_err()) }
    };
    // Class 22 (data exception) and 23 (integrity violation): the same data fails again.
    assert!(is_permanent(&error_of("SELECT 1 / 0").await));
    assert!(is_permanent(&error_of("SELECT 'x'::uuid").await));
    assert!(is_permanent(
        &error_of("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '23505'; END $$").await
    ));
    // A timeout, a missing table, a serialization failure: not the data's fault.
    sqlx::query("SET LOCAL statement_timeout = '10ms'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let timeout = sqlx::query("SELECT pg_sleep(1)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(!is_permanent(&ProjectionError::Database(timeout)));
    assert!(!is_permanent(
        &error_of("SELECT * FROM no_such_table").await
    ));
    assert!(!is_permanent(
        &error_of("DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '40001'; END $$").await
    ));
    drop(tx);
    app.stop().await;
}

#[tokio::test]
async fn a_sealed_field_that_does_not_open_quarantines_its_user_only() {
    let app = spawn_app().await;
    let victim = app
        .create_user(user_body("victim@example.com", "Vic", "Tim"))
        .await;
    let victim_id = id(&victim);
    let donor = app
        .create_user(user_body("donor@example.com", "Don", "Or"))
        .await;
    let donors_ciphertext: String = sqlx::query_scalar(
        "SELECT payload->>'givenName' FROM events WHERE aggregate_id = $1 AND event_type = 'UserCreated'",
    )
    .bind(id(&donor))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // A rename whose sealed name is another user's ciphertext (it cannot be moved: the
    // subject is bound into it), written and tampered with before any projector sees it.
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let mut owner = app.owner.begin().await.unwrap();
    store
        .append_in(
            &mut owner,
            &AppendBatch {
                streams: vec![StreamAppend {
                    aggregate_type: "User".into(),
                    aggregate_id: victim_id.clone(),
                    expected_sequence: 3,
                    events: vec![PendingEvent {
                        event_type: "UserRenamed".into(),
                        event_version: "1".into(),
                        payload: json!({"givenName": "New", "familyName": "Name",
                                        "at": "2026-01-01T00:00:00Z"}),
                        effects: Vec::new(),
                    }],
                }],
                metadata: json!({"origin": "test"}),
                company_id: Some(app.company.company_id),
                idempotency: None,
                recorded_at: app.clock_now(),
            },
        )
        .await
        .unwrap();
    for sql in [
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "UPDATE events SET payload = jsonb_set(payload, '{givenName}', to_jsonb($1::text)) \
         WHERE aggregate_id = $2 AND sequence = 4",
        "ALTER TABLE events ENABLE TRIGGER events_append_only",
    ] {
        let query = sqlx::query(sql);
        let query = if sql.contains("$1") {
            query.bind(&donors_ciphertext).bind(&victim_id)
        } else {
            query
        };
        query.execute(&mut *owner).await.unwrap();
    }
    owner.commit().await.unwrap();

    wait_for_quarantine(&app, "users", &victim_id, true).await;
    let users = statuses(&app)
        .await
        .into_iter()
        .find(|s| s.name == "users")
        .unwrap();
    assert_eq!(users.state, "running");
    assert!(
        users.quarantined[0]
            .reason
            .contains("a sealed field could not be opened"),
        "{:?}",
        users.quarantined[0]
    );
    let read = app.get(&format!("/v4/user/{victim_id}")).send().await;
    read.assert_error(503, "Service temporarily unavailable; retry shortly");
    let read = app.get(&format!("/v4/user/{}", id(&donor))).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body["givenName"], "Don");
    let after = app
        .create_user(user_body("after@example.com", "Af", "Ter"))
        .await;
    let read = app.get(&format!("/v4/user/{}", id(&after))).send().await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    app.stop().await;
}

#[tokio::test]
async fn a_quarantined_company_serves_none_of_its_keys_and_a_revocation_still_applies() {
    let app = spawn_app().await;
    let company_id = app.company.company_id;
    let second = kairos::provisioning::issue_key(app.bus(), company_id, 30)
        .await
        .unwrap();
    let me = app.get("/v4/user/me").key(&second.api_key).send().await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text);

    // A key issuance that does not decode sets the company aside in `companies`.
    let sequence: i64 = sqlx::query_scalar(
        "SELECT max(sequence) FROM events WHERE aggregate_type = 'Company' AND aggregate_id = $1",
    )
    .bind(company_id.to_string())
    .fetch_one(&app.owner)
    .await
    .unwrap();
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let poisoned = store
        .append(&AppendBatch {
            streams: vec![StreamAppend {
                aggregate_type: "Company".into(),
                aggregate_id: company_id.to_string(),
                expected_sequence: sequence,
                events: vec![PendingEvent {
                    event_type: "ApiKeyIssued".into(),
                    event_version: "1".into(),
                    payload: json!({"keyId": "not-a-uuid"}),
                    effects: Vec::new(),
                }],
            }],
            metadata: json!({"origin": "test"}),
            company_id: Some(company_id),
            idempotency: None,
            recorded_at: app.clock_now(),
        })
        .await
        .unwrap()
        .position
        .position;
    wait_for_quarantine(&app, "companies", &company_id.to_string(), true).await;

    // None of its keys is served while it is set aside: 503, never 200.
    for key in [&app.company.api_key, &second.api_key] {
        let me = app.get("/v4/user/me").key(key).send().await;
        me.assert_error(503, "Service temporarily unavailable; retry shortly");
    }

    // Fixed (so commands load the company again) but not retried: a revocation of its key
    // is applied at once all the same, and the revoked key answers 401.
    app.tamper_with_event(
        poisoned,
        &format!(
            "payload = '{}'::jsonb",
            json!({
                "keyId": uuid::Uuid::new_v4(),
                "secretHash": "00",
                "issuedAt": "2026-01-01T00:00:00Z",
                "expiresAt": "2026-01-02T00:00:00Z",
            })
        ),
    )
    .await;
    kairos::provisioning::revoke_key(app.bus(), second.api_key_id)
        .await
        .unwrap();
    let revoked_at: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE key_id = $1")
            .bind(second.api_key_id)
            .fetch_one(&app.owner)
            .await
            .unwrap();
    assert!(revoked_at.is_some(), "the revocation was skipped");
    wait_for_quarantine(&app, "companies", &company_id.to_string(), true).await;
    let me = app.get("/v4/user/me").key(&second.api_key).send().await;
    me.assert_error(401, "Invalid API key");
    let me = app
        .get("/v4/user/me")
        .key(&app.company.api_key)
        .send()
        .await;
    me.assert_error(503, "Service temporarily unavailable; retry shortly");
    app.stop().await;
}

#[tokio::test]
async fn a_quarantine_reason_of_the_windows_never_quotes_the_stored_value() {
    let app = spawn_app().await;
    let victim = app
        .create_user(user_body("victim@example.com", "Vic", "Tim"))
        .await;
    let victim_id = id(&victim);
    append_raw(
        &app,
        &victim_id,
        3,
        "UserTimezoneChanged",
        json!({"timezone": 4711, "at": "2026-01-01T00:00:00Z"}),
    )
    .await;
    wait_for_quarantine(&app, "bookable_windows", &victim_id, true).await;
    let windows = statuses(&app)
        .await
        .into_iter()
        .find(|s| s.name == "bookable_windows")
        .unwrap();
    let reason = &windows.quarantined[0].reason;
    assert!(reason.contains("UserTimezoneChanged"), "{reason}");
    assert!(!reason.contains("4711"), "{reason}");
    app.stop().await;
}

#[tokio::test]
async fn windows_computed_beside_a_poison_event_reach_the_cache_after_the_commit() {
    let app = spawn_app().await;
    let good = app
        .create_user(user_body("good@example.com", "Go", "Od"))
        .await;
    let victim = app
        .create_user(user_body("victim@example.com", "Vic", "Tim"))
        .await;
    let cache = &app.kairos.as_ref().unwrap().state.caches.windows;
    cache.clear();
    // One transaction, so one batch: the good user's windows change, then the victim's
    // event does not decode and is set aside in a savepoint.
    let event = |timezone: Value| PendingEvent {
        event_type: "UserTimezoneChanged".into(),
        event_version: "1".into(),
        payload: json!({"timezone": timezone, "at": "2026-01-01T00:00:00Z"}),
        effects: Vec::new(),
    };
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    store
        .append(&AppendBatch {
            streams: vec![
                StreamAppend {
                    aggregate_type: "User".into(),
                    aggregate_id: id(&good),
                    expected_sequence: 3,
                    events: vec![event(json!("Asia/Tokyo"))],
                },
                StreamAppend {
                    aggregate_type: "User".into(),
                    aggregate_id: id(&victim),
                    expected_sequence: 3,
                    events: vec![event(json!(4711))],
                },
            ],
            metadata: json!({"origin": "test"}),
            company_id: Some(app.company.company_id),
            idempotency: None,
            recorded_at: app.clock_now(),
        })
        .await
        .unwrap();
    wait_for_quarantine(&app, "bookable_windows", &id(&victim), true).await;
    // The good user's new windows were published to this process's cache (write-through),
    // not dropped with the failing event's rollback.
    assert!(
        crate::helpers::eventually(Duration::from_secs(5), async || cache.len() == 1).await,
        "the windows staged beside the poison event were dropped: {} cached",
        cache.len()
    );
    let windows = app.get(&windows_path(&id(&good))).send().await;
    assert_eq!(windows.status, StatusCode::OK, "{}", windows.text);
    app.stop().await;
}
