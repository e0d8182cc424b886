//! The projector runtime: commit-order reading (the gap case), exactly-once batches across a
//! crash, and one leader per projector across runtimes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aggregates::input::Raw;
use aggregates::user::{CreatePlatformUser, User, UserCommand, UserType};
use async_trait::async_trait;
use kairos::commands::{decide, stream_append};
use kairos::event_store::{AppendBatch, EventStore, StreamAppend};
use projections::keyring::Keyring;
use projections::log::{LogEvent, LogPosition};
use projections::runtime::{self, ProjectionError, Projector, Runtime, RuntimeConfig, Shutdown};
use projections::users::{self, UsersProjector};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::helpers::{fast_runtime, fresh_database, spawn_app};

/// The events of a new user, decided by the real aggregate.
async fn new_user(company_id: Uuid, email: &str) -> (StreamAppend, Uuid) {
    let user_id = Uuid::now_v7();
    let events = decide(
        User::default(),
        UserCommand::CreatePlatformUser(Box::new(CreatePlatformUser {
            user_id,
            company_id,
            user_type: UserType::ApiPlatform,
            is_owner: false,
            availability_id: Uuid::now_v7(),
            meeting_type_id: Uuid::now_v7(),
            email: Raw::Given(email.into()),
            given_name: Raw::Given("Pro".into()),
            family_name: Raw::Given("Jection".into()),
            timezone: Raw::Given("Europe/Berlin".into()),
            slug: Raw::Given(format!("user-{}", user_id.simple())),
            availability: Raw::Missing,
            meeting_type: Raw::Missing,
            taken_user_slugs: Default::default(),
            at: chrono::Utc::now(),
        })),
    )
    .await
    .unwrap();
    (
        stream_append::<User>(&user_id.to_string(), 0, &events).unwrap(),
        user_id,
    )
}

fn batch(stream: StreamAppend, company_id: Uuid) -> AppendBatch {
    AppendBatch {
        streams: vec![stream],
        metadata: json!({"origin": "test"}),
        company_id: Some(company_id),
        idempotency: None,
        recorded_at: chrono::Utc::now(),
    }
}

async fn profile_count(pool: &sqlx::PgPool, user_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM user_profiles WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_writer_that_took_a_lower_position_and_committed_later_is_seen_completely() {
    let app = spawn_app().await;
    let company = app.company.company_id;
    let store = EventStore::new(app.pool.clone(), app.keyring.clone());
    let (slow_stream, slow_user) = new_user(company, "slow@example.com").await;
    let (fast_stream, fast_user) = new_user(company, "fast@example.com").await;

    // Writer 1 takes the lower positions and keeps its transaction open…
    let mut slow = app.pool.begin().await.unwrap();
    let first = store
        .append_in(&mut slow, &batch(slow_stream, company))
        .await
        .unwrap();
    // …while writer 2 takes higher positions and commits first.
    let second = store.append(&batch(fast_stream, company)).await.unwrap();
    assert!(first.position.position < second.position.position);

    // Give the projector ample time to look. Reading by position alone would apply writer 2
    // now and move its checkpoint past writer 1's positions for good.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        profile_count(&app.pool, fast_user).await,
        0,
        "nothing behind an open writer is applied yet"
    );

    slow.commit().await.unwrap();
    let target = first.position.max(second.position);
    assert!(
        app.bus().wait_for(&[users::NAME], Some(target)).await,
        "the projector caught up"
    );
    assert_eq!(
        profile_count(&app.pool, slow_user).await,
        1,
        "writer 1's event was not skipped"
    );
    assert_eq!(profile_count(&app.pool, fast_user).await, 1);
    app.stop().await;
}

/// Wraps the real projector and fails its first `failures` batches after writing its rows.
struct CrashAfterWriting {
    inner: UsersProjector,
    failures: AtomicUsize,
    attempts: AtomicUsize,
}

#[async_trait]
impl Projector for CrashAfterWriting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(tx, events).await?;
        let written: i64 = sqlx::query_scalar("SELECT count(*) FROM user_profiles")
            .fetch_one(&mut *tx)
            .await?;
        assert!(written > 0, "the batch wrote rows before failing");
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            // A transient failure (a connection lost): retried, never quarantined.
            return Err(ProjectionError::Database(sqlx::Error::Io(
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected crash after writing rows, before commit",
                ),
            )));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_batch_that_fails_after_writing_leaves_no_trace_and_is_applied_exactly_once_on_retry() {
    let db = fresh_database().await;
    let pool = kairos::db::service_pool(&db.url, 6, None).await.unwrap();
    let keyring = Keyring::from_base64(&Keyring::generate_base64()).unwrap();
    let store = EventStore::new(pool.clone(), keyring.clone());
    let company = Uuid::now_v7();
    let mut users = Vec::new();
    let mut target = LogPosition::START;
    for i in 0..3 {
        let (stream, user) = new_user(company, &format!("crash{i}@example.com")).await;
        target = store
            .append(&batch(stream, company))
            .await
            .unwrap()
            .position;
        users.push(user);
    }

    let projector = Arc::new(CrashAfterWriting {
        inner: UsersProjector,
        failures: AtomicUsize::new(1),
        attempts: AtomicUsize::new(0),
    });
    let config = RuntimeConfig {
        first_backoff: Duration::from_millis(600),
        ..fast_runtime()
    };
    let runtime = Runtime::new(
        pool.clone(),
        keyring,
        vec![projector.clone() as Arc<dyn Projector>],
        config,
    );
    let progress = runtime.progress();
    let (stop, shutdown) = Shutdown::new();
    let handle = runtime.start(shutdown).await.unwrap();

    // The failure is recorded, and nothing of the failed batch is visible.
    let mut failing = None;
    for _ in 0..100 {
        let status = runtime::status(&pool).await.unwrap();
        if let Some(s) = status.into_iter().find(|s| s.state == "failing") {
            failing = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let failing = failing.expect("the failure shows in the projector's status");
    assert!(
        failing
            .last_error
            .as_deref()
            .unwrap()
            .contains("injected crash"),
        "{failing:?}"
    );
    assert_eq!(failing.position, 0, "the checkpoint did not move");
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM user_profiles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(visible, 0, "the failed batch left no trace");

    // The retry applies everything once.
    assert!(
        progress
            .wait_past(&pool, &[users::NAME], target, Duration::from_secs(10))
            .await
    );
    for user in &users {
        assert_eq!(profile_count(&pool, *user).await, 1);
    }
    let status = runtime::status(&pool).await.unwrap().remove(0);
    assert_eq!(status.state, "running");
    assert_eq!(
        status.events_applied, 9,
        "each of the 9 events applied once"
    );
    assert_eq!(
        projector.attempts.load(Ordering::SeqCst),
        2,
        "one failed attempt, one retry"
    );
    stop.trigger();
    handle.join().await;
    pool.close().await;
}

/// Records which runtime applied each batch and how many applied at once.
struct Witness {
    runtime: &'static str,
    inner: UsersProjector,
    in_flight: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
    batches_by_runtime: Arc<Mutex<HashMap<&'static str, usize>>>,
}

#[async_trait]
impl Projector for Witness {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let result = self.inner.apply(tx, events).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        *self
            .batches_by_runtime
            .lock()
            .unwrap()
            .entry(self.runtime)
            .or_default() += 1;
        result
    }
}

#[tokio::test]
async fn two_runtimes_on_one_database_never_both_apply_a_projector_and_one_takes_over() {
    let db = fresh_database().await;
    let keyring = Keyring::from_base64(&Keyring::generate_base64()).unwrap();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let batches = Arc::new(Mutex::new(HashMap::new()));
    let mut runtimes = Vec::new();
    for name in ["a", "b"] {
        let pool = kairos::db::service_pool(&db.url, 6, None).await.unwrap();
        let witness = Arc::new(Witness {
            runtime: name,
            inner: UsersProjector,
            in_flight: in_flight.clone(),
            most_at_once: most_at_once.clone(),
            batches_by_runtime: batches.clone(),
        });
        let runtime = Runtime::new(
            pool.clone(),
            keyring.clone(),
            vec![witness as Arc<dyn Projector>],
            fast_runtime(),
        );
        let progress = runtime.progress();
        let (stop, shutdown) = Shutdown::new();
        let handle = runtime.start(shutdown).await.unwrap();
        runtimes.push((name, pool, progress, stop, handle));
    }
    let store = EventStore::new(runtimes[0].1.clone(), keyring.clone());
    let company = Uuid::now_v7();
    let mut users = Vec::new();
    let mut target = LogPosition::START;
    for wave in 0..5 {
        for i in 0..8 {
            let (stream, user) = new_user(company, &format!("lead{wave}-{i}@example.com")).await;
            target = target.max(
                store
                    .append(&batch(stream, company))
                    .await
                    .unwrap()
                    .position,
            );
            users.push(user);
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let pool = runtimes[0].1.clone();
    assert!(
        runtimes[0]
            .2
            .wait_past(&pool, &[users::NAME], target, Duration::from_secs(10))
            .await
    );
    assert_eq!(
        most_at_once.load(Ordering::SeqCst),
        1,
        "never two batches of one projector at once"
    );
    let leaders: Vec<&str> = batches.lock().unwrap().keys().copied().collect();
    assert_eq!(
        leaders.len(),
        1,
        "one runtime led the projector: {leaders:?}"
    );
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM user_profiles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(total, users.len() as i64, "every user applied exactly once");

    // Stop the leader: the other runtime takes over and applies what comes next.
    let leader = leaders[0];
    let index = runtimes.iter().position(|r| r.0 == leader).unwrap();
    let (_, leader_pool, _, stop, handle) = runtimes.remove(index);
    stop.trigger();
    handle.join().await;
    leader_pool.close().await;
    let (follower, follower_pool, follower_progress, follower_stop, follower_handle) =
        runtimes.remove(0);
    let store = EventStore::new(follower_pool.clone(), keyring);
    let (stream, late_user) = new_user(company, "late@example.com").await;
    let late = store
        .append(&batch(stream, company))
        .await
        .unwrap()
        .position;
    assert!(
        follower_progress
            .wait_past(
                &follower_pool,
                &[users::NAME],
                late,
                Duration::from_secs(10)
            )
            .await
    );
    assert_eq!(profile_count(&follower_pool, late_user).await, 1);
    assert!(
        batches.lock().unwrap().get(follower).copied().unwrap_or(0) > 0,
        "the standby took over"
    );
    follower_stop.trigger();
    follower_handle.join().await;
    follower_pool.close().await;
}

#[tokio::test]
async fn the_log_is_read_in_numeric_transaction_order_across_a_digit_boundary() {
    let db = fresh_database().await;
    let owner = kairos::db::owner_pool(&db.url, 2).await.unwrap();
    // Transaction ids 999 and 1000: as text, "1000" sorts first.
    for (tx_id, aggregate) in [("1000", "second"), ("999", "first")] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata, event_id, tx_id, hash) \
             VALUES ('Probe', $1, 1, 'Probed', '1', '{}', '{}', gen_random_uuid(), $2::text::xid8, $3)",
        )
        .bind(aggregate)
        .bind(tx_id)
        .bind(vec![0u8; 32])
        .execute(&owner)
        .await
        .unwrap();
    }
    let mut connection = owner.acquire().await.unwrap();
    let all = projections::log::read_after(&mut connection, LogPosition::START, 10)
        .await
        .unwrap();
    let order: Vec<(u64, &str)> = all
        .iter()
        .map(|e| (e.tx_id, e.aggregate_id.as_str()))
        .collect();
    assert_eq!(order, [(999, "first"), (1000, "second")]);
    let rest = projections::log::read_after(&mut connection, all[0].log_position(), 10)
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].aggregate_id, "second");
    assert_eq!(
        projections::log::head(&mut connection).await.unwrap().tx_id,
        1000
    );
    drop(connection);
    owner.close().await;
}
