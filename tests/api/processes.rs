//! Several server processes on one database, as behind a load balancer: a change made through
//! one must reach what the others serve from their in-memory caches, not only their tables.

use std::str::FromStr;
use std::time::{Duration, Instant};

use projections::listener::ListenerConfig;
use projections::runtime::RuntimeConfig;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{AppOptions, TestApp, eventually, fast_runtime, spawn_app_with, user_body};

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

/// A TCP proxy to the test cluster that can go silent: while frozen it forwards nothing in
/// either direction and closes nothing, as a connection whose server vanished in a failover.
struct FreezableProxy {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, _) = tokio::sync::watch::channel(false);
        let gate = frozen.clone();
        let task = tokio::spawn(async move {
            let mut pairs = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)).await else {
                    continue;
                };
                // Forward each message at once, as a direct connection would.
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                pairs.spawn(forward(client_read, server_write, gate.subscribe()));
                pairs.spawn(forward(server_read, client_write, gate.subscribe()));
            }
        });
        Self { port, frozen, task }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops every forwarding task with it: sockets close.
        self.task.abort();
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_gone_silent_is_detected_the_caches_stand_aside_and_it_reconnects() {
    let a = spawn_app_with(AppOptions {
        now: Some("2026-02-25T00:00:00Z".parse().unwrap()),
        ..Default::default()
    })
    .await;
    // B listens through a proxy that will go silent; everything else of B goes direct.
    let direct = PgConnectOptions::from_str(&a.db.url).unwrap();
    let proxy = FreezableProxy::start((direct.get_host().to_string(), direct.get_port())).await;
    // A short interval, but a timeout a loaded CI machine's round trip never reaches: a false
    // alarm would empty B's cache in the middle of the test.
    let heartbeat = Duration::from_millis(300);
    let b = a
        .another_process_with(RuntimeConfig {
            listener: ListenerConfig {
                connect: Some(direct.clone().host("127.0.0.1").port(proxy.port)),
                heartbeat_interval: heartbeat,
                heartbeat_timeout: Duration::from_secs(2),
                ..ListenerConfig::default()
            },
            ..fast_runtime()
        })
        .await;
    let cached_at_b = || b.kairos.as_ref().unwrap().state.caches.windows.len();
    let created = a
        .create_user(user_body("silent@example.com", "Si", "Lent"))
        .await;
    let user = created["userId"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(10), async || {
            first_monday_slot(&b, &user).await == "2026-03-09T08:00:00Z" && cached_at_b() > 0
        })
        .await,
        "B follows and serves the windows from memory"
    );
    // Let the notices of the creation reach B before its listener goes silent (several
    // heartbeats: each marker comes back after every notice sent before it).
    tokio::time::sleep(heartbeat * 3).await;
    assert_eq!(first_monday_slot(&b, &user).await, "2026-03-09T08:00:00Z");
    assert!(cached_at_b() >= 1, "the new user is in B's memory");

    // The socket goes silent without closing; A changes the user meanwhile. B's listener
    // never hears of it, so only its liveness check can make B stop serving its copy.
    proxy.freeze(true);
    let frozen_at = Instant::now();
    let patched = a
        .patch(&format!("/v4/user/{user}"))
        .json(json!({"timezone": "Asia/Tokyo"}))
        .send()
        .await;
    assert_eq!(patched.status, 200);
    assert!(
        eventually(Duration::from_secs(15), async || first_monday_slot(
            &b, &user
        )
        .await
            == "2026-03-09T00:00:00Z")
        .await,
        "B kept serving windows its silent listener could not invalidate"
    );
    // Interval plus timeout is the bound; the margin is for a loaded machine.
    let detected = frozen_at.elapsed();
    assert!(detected < Duration::from_secs(10), "took {detected:?}");
    // Standing aside, B keeps nothing, and reads the table each time.
    first_monday_slot(&b, &user).await;
    assert_eq!(cached_at_b(), 0, "a cache that stood aside kept a value");

    // The network comes back: B reconnects, follows again and serves from memory.
    proxy.freeze(false);
    assert!(
        eventually(Duration::from_secs(30), async || {
            first_monday_slot(&b, &user).await;
            cached_at_b() > 0
        })
        .await,
        "B never followed again"
    );
    let patched = a
        .patch(&format!("/v4/user/{user}"))
        .json(json!({"timezone": "Europe/Berlin"}))
        .send()
        .await;
    assert_eq!(patched.status, 200);
    assert!(
        eventually(Duration::from_secs(10), async || first_monday_slot(
            &b, &user
        )
        .await
            == "2026-03-09T08:00:00Z")
        .await,
        "the reconnected listener does not relay invalidations"
    );
    b.stop().await;
    a.stop().await;
}
