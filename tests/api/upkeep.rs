//! The projectors' upkeep: horizons that move under sustained writes, replays onto rows that
//! exist already, failures that clear, and waits that keep their deadline.

use std::time::Duration;

use chrono::{DateTime, Utc};
use projections::log::LogPosition;
use projections::runtime::{self, Progress};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

use crate::helpers::{
    AppOptions, TestApp, fast_runtime, read_tables, spawn_app_with, table_rows, user_body,
};

fn wednesday() -> DateTime<Utc> {
    "2026-02-25T08:00:00Z".parse().unwrap()
}

async fn app_at_wednesday() -> TestApp {
    spawn_app_with(AppOptions {
        now: Some(wednesday()),
        ..Default::default()
    })
    .await
}

/// Every row of every read table, as JSON, in a stable order.
async fn read_models(app: &TestApp) -> Vec<Value> {
    let mut tables = Vec::new();
    for table in read_tables() {
        tables.push(json!({ table: table_rows(app, table).await }));
    }
    tables
}

async fn wait_until_caught_up(app: &TestApp) {
    let head = projections::log::head(&mut app.pool.acquire().await.unwrap())
        .await
        .unwrap();
    // Generous: on a loaded machine a log of thousands of one-event batches takes a while.
    for _ in 0..2400 {
        let status = runtime::status(&app.pool).await.unwrap();
        if status
            .iter()
            .all(|s| s.position >= head.position && s.state == "running")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "projectors did not catch up: {:?}",
        runtime::status(&app.pool).await.unwrap()
    );
}

/// Appends `count` events of an aggregate type no projector reads, as the owner, in one
/// transaction: work that keeps every projector busy without changing any read model.
async fn append_noise(app: &TestApp, count: i64) -> i64 {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, event_id, hash) \
         SELECT 'Noise', 'noise', g, 'NoiseMade', '1', '{}', '{}', gen_random_uuid(), sha256(g::text::bytea) \
         FROM generate_series(1, $1::bigint) g",
    )
    .bind(count)
    .execute(&app.owner)
    .await
    .unwrap();
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&app.owner)
        .await
        .unwrap()
}

/// `refresh_at` of a user's windows and the windows projector's checkpoint, read together.
async fn refresh_and_checkpoint(app: &TestApp, user_id: &str) -> (DateTime<Utc>, i64) {
    sqlx::query_as(
        "SELECT (SELECT min(refresh_at) FROM bookable_windows WHERE user_id = $1::uuid), \
                (SELECT position FROM projector_checkpoints WHERE projector = 'bookable_windows')",
    )
    .bind(user_id)
    .fetch_one(&app.owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn replaying_the_log_onto_rows_that_exist_converges_on_the_same_read_models() {
    let app = app_at_wednesday().await;
    let ada = app
        .create_user(user_body("ada@example.com", "Ada", "Lovelace"))
        .await;
    let ada_id = ada["userId"].as_str().unwrap();
    app.create_user(json!({"email": "tok@example.com", "givenName": "Tok", "familyName": "Yo",
        "timezone": "Asia/Tokyo", "meetingType": {"name": "Long", "duration": 90, "slotInterval": 15}}))
        .await;
    let gone = app
        .create_user(user_body("gone@example.com", "Gone", "Soon"))
        .await;
    let renamed = app
        .patch(&format!("/v4/user/{ada_id}"))
        .json(json!({"familyName": "King"}))
        .send()
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let deleted = app
        .delete(&format!("/v4/user/{}", gone["userId"].as_str().unwrap()))
        .send()
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    wait_until_caught_up(&app).await;
    let before = read_models(&app).await;

    // An operator moves every checkpoint back to the start by hand: each projector applies
    // the whole log again onto the rows it wrote the first time.
    sqlx::query("UPDATE projector_checkpoints SET tx_id = '0', position = 0")
        .execute(&app.owner)
        .await
        .unwrap();
    wait_until_caught_up(&app).await;
    let status = runtime::status(&app.pool).await.unwrap();
    assert!(
        status.iter().all(|s| s.last_error.is_none()),
        "no duplicate key or other failure on the way: {status:?}"
    );
    assert_eq!(read_models(&app).await, before);
    let me = app.get(&format!("/v4/user/{ada_id}")).send().await;
    assert_eq!(me.body["familyName"], "King", "{}", me.text);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn horizons_move_forward_while_the_projector_never_goes_idle() {
    // One event per batch, so a few thousand events keep the leaders busy for seconds, far
    // longer than the maintenance interval.
    let app = spawn_app_with(AppOptions {
        now: Some(wednesday()),
        runtime: Some(runtime::RuntimeConfig {
            batch_size: 1,
            ..fast_runtime()
        }),
        ..Default::default()
    })
    .await;
    let user = app
        .create_user(user_body("busy@example.com", "Bu", "Sy"))
        .await;
    let user_id = user["userId"].as_str().unwrap();
    wait_until_caught_up(&app).await;
    let (first_refresh, _) = refresh_and_checkpoint(&app, user_id).await;

    let last = append_noise(&app, 2000).await;
    // Midnight passes while the projectors chew through the log.
    app.clock.advance(chrono::Duration::days(1));
    let mut seen = None;
    for _ in 0..2000 {
        let (refresh, checkpoint) = refresh_and_checkpoint(&app, user_id).await;
        if refresh > first_refresh {
            seen = Some(checkpoint);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let checkpoint = seen.expect("the horizon moved at all");
    assert!(
        checkpoint < last,
        "the horizon moved while the log was still being applied (checkpoint {checkpoint} of {last})"
    );
    wait_until_caught_up(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_user_whose_windows_cannot_be_extended_does_not_hold_up_the_others() {
    let app = app_at_wednesday().await;
    let broken = app
        .create_user(user_body("broken@example.com", "Bro", "Ken"))
        .await;
    let broken_id = broken["userId"].as_str().unwrap().to_string();
    let healthy = app
        .create_user(user_body("healthy@example.com", "Heal", "Thy"))
        .await;
    let healthy_id = healthy["userId"].as_str().unwrap().to_string();
    wait_until_caught_up(&app).await;
    let (broken_refresh, _) = refresh_and_checkpoint(&app, &broken_id).await;
    let (healthy_refresh, _) = refresh_and_checkpoint(&app, &healthy_id).await;

    // The broken user's availability no longer decodes (as after a bad hand edit): folding its
    // stream fails every time maintenance tries.
    let position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE aggregate_id = $1 AND event_type = 'AvailabilityProvisioned'",
    )
    .bind(&broken_id)
    .fetch_one(&app.owner)
    .await
    .unwrap();
    app.tamper_with_event(
        position,
        "payload = payload || '{\"schedule\": \"every day\"}'",
    )
    .await;
    app.clock.advance(chrono::Duration::days(1));

    let mut moved = false;
    for _ in 0..400 {
        let (refresh, _) = refresh_and_checkpoint(&app, &healthy_id).await;
        if refresh > healthy_refresh {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        moved,
        "the healthy user's horizon moved past the broken one"
    );
    let (refresh, _) = refresh_and_checkpoint(&app, &broken_id).await;
    let now = app.clock_now();
    assert!(
        refresh > now && refresh != broken_refresh,
        "the broken user is put back for a later try ({refresh}), not retried in a loop"
    );
    let status = runtime::status(&app.pool).await.unwrap();
    let windows = status
        .iter()
        .find(|s| s.name == "bookable_windows")
        .unwrap();
    assert_eq!(windows.state, "running", "{windows:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_successful_maintenance_run_clears_a_failure_an_earlier_one_recorded() {
    let app = app_at_wednesday().await;
    app.create_user(user_body("upkeep@example.com", "Up", "Keep"))
        .await;
    wait_until_caught_up(&app).await;
    // As a maintenance run that failed leaves it; no event follows to clear it.
    sqlx::query(
        "UPDATE projector_checkpoints SET failing_since = now(), last_error = 'maintenance: database: timeout', \
         last_error_at = now() WHERE projector = 'bookable_windows'",
    )
    .execute(&app.owner)
    .await
    .unwrap();
    let mut state = String::new();
    for _ in 0..200 {
        let status = runtime::status(&app.pool).await.unwrap();
        state = status
            .into_iter()
            .find(|s| s.name == "bookable_windows")
            .unwrap()
            .state;
        if state == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(state, "running", "the next good maintenance run cleared it");
    app.stop().await;
}

#[tokio::test]
async fn waiting_for_read_models_never_outlasts_its_deadline() {
    let app = app_at_wednesday().await;
    // A pool whose only connection is taken: every checkpoint re-read waits on the pool,
    // which itself would give up only after a minute.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(60))
        .connect(&app.db.url)
        .await
        .unwrap();
    let held = pool.acquire().await.unwrap();
    let progress = Progress::new(&["users"]);
    let target = LogPosition {
        tx_id: u64::MAX,
        position: i64::MAX,
    };
    let started = tokio::time::Instant::now();
    let caught_up = progress
        .wait_past(&pool, &["users"], target, Duration::from_millis(300))
        .await;
    let waited = started.elapsed();
    assert!(!caught_up);
    assert!(
        waited < Duration::from_secs(5),
        "a 300 ms wait returned after {waited:?}"
    );
    drop(held);
    pool.close().await;
    app.stop().await;
}
