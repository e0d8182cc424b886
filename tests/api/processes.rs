//! Several server processes on one database, as behind a load balancer: a change made through
//! one must reach what the others serve from their in-memory caches, not only their tables.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{AppOptions, TestApp, spawn_app_with, user_body};

/// Calls `probe` until it returns true; false if `within` passes first. Cross-process
/// invalidation travels by NOTIFY, so the other process follows within milliseconds, but
/// not necessarily before the writer answered.
async fn eventually(within: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn first_monday_slot(app: &TestApp, user: &str) -> String {
    let response = app
        .get(&format!(
            "/v4/user/{user}/bookable-windows?startDate=2026-03-09&endDate=2026-03-09"
        ))
        .send()
        .await;
    assert_eq!(response.status, 200, "{}", response.text);
    response.body["windows"][0].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_through_one_process_reaches_the_windows_another_serves_from_memory() {
    let a = spawn_app_with(AppOptions {
        now: Some("2026-02-25T00:00:00Z".parse().unwrap()),
        ..Default::default()
    })
    .await;
    let b = a.another_process().await;
    let created = a
        .create_user(user_body("moves@example.com", "Mo", "Ves"))
        .await;
    let user = created["userId"].as_str().unwrap().to_string();
    // B serves Berlin's 09:00 and keeps it in its cache (it just read it).
    assert!(
        eventually(Duration::from_secs(10), async || first_monday_slot(
            &b, &user
        )
        .await
            == "2026-03-09T08:00:00Z")
        .await
    );
    assert_eq!(first_monday_slot(&b, &user).await, "2026-03-09T08:00:00Z");

    let patched = a
        .patch(&format!("/v4/user/{user}"))
        .json(json!({"timezone": "Asia/Tokyo"}))
        .send()
        .await;
    assert_eq!(patched.status, 200);
    // 09:00 Tokyo is 00:00Z. Without cross-process invalidation B would serve 08:00Z forever.
    assert!(
        eventually(Duration::from_secs(10), async || first_monday_slot(
            &b, &user
        )
        .await
            == "2026-03-09T00:00:00Z")
        .await,
        "the other process kept serving the old windows"
    );
    assert_eq!(first_monday_slot(&a, &user).await, "2026-03-09T00:00:00Z");
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_through_one_process_stops_working_in_another() {
    let a = spawn_app_with(AppOptions::default()).await;
    let b = a.another_process().await;
    let issued = kairos::provisioning::issue_key(a.bus(), a.company.company_id, 30)
        .await
        .unwrap();
    let status_at_b = async || {
        b.get("/v4/user/me")
            .key(&issued.api_key)
            .send()
            .await
            .status
    };
    assert!(eventually(Duration::from_secs(10), async || status_at_b().await == 200).await);
    // B now holds the key in its cache.
    assert_eq!(status_at_b().await, 200);

    kairos::provisioning::revoke_key(a.bus(), issued.api_key_id)
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || status_at_b().await == 401).await,
        "the other process kept accepting a revoked key"
    );
    assert_eq!(
        a.get("/v4/user/me")
            .key(&issued.api_key)
            .send()
            .await
            .status,
        401
    );
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_leads_no_projector_still_reads_its_own_writes_at_once() {
    // A started first and leads every projector; B follows A's checkpoints and cache notices.
    let a = spawn_app_with(AppOptions {
        now: Some("2026-02-25T00:00:00Z".parse().unwrap()),
        ..Default::default()
    })
    .await;
    let b = a.another_process().await;
    let created = b
        .create_user(user_body("follower@example.com", "Fol", "Lower"))
        .await;
    let user = created["userId"].as_str().unwrap().to_string();
    assert_eq!(first_monday_slot(&b, &user).await, "2026-03-09T08:00:00Z");
    for (zone, first) in [
        ("Asia/Tokyo", "2026-03-09T00:00:00Z"),
        ("Europe/Berlin", "2026-03-09T08:00:00Z"),
        ("America/New_York", "2026-03-09T13:00:00Z"),
        ("Europe/Berlin", "2026-03-09T08:00:00Z"),
    ] {
        let patched = b
            .patch(&format!("/v4/user/{user}"))
            .json(json!({ "timezone": zone }))
            .send()
            .await;
        assert_eq!(patched.status, 200);
        // No retry here: B answered the PATCH, so B's very next read must see it.
        assert_eq!(
            first_monday_slot(&b, &user).await,
            first,
            "after moving to {zone}"
        );
    }
    b.stop().await;
    a.stop().await;
}
