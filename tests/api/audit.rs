//! The history (api.md section 7), erasure, and live rebuilds (section 8).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::join_all;
use projections::rebuild::{self, RebuildError, RebuildOptions, Silent};
use projections::runtime::Projector;
use serde_json::{Value, json};

use crate::helpers::{TestApp, read_tables, spawn_app, table_rows, user_body};

fn projectors(app: &TestApp) -> Vec<Arc<dyn Projector>> {
    projections::all_projectors(Arc::new(app.clock.clone()), &projections::Caches::unused())
}

/// `kairos projections rebuild --all`, in-process and quiet, with `options`.
async fn rebuild_all(
    app: &TestApp,
    options: &RebuildOptions,
) -> Result<rebuild::RebuildReport, RebuildError> {
    rebuild::rebuild(
        &app.owner,
        &app.keyring,
        &projectors(app),
        options,
        &mut Silent,
    )
    .await
}

/// Every row of every read table, in a stable order.
async fn snapshot(app: &TestApp) -> Vec<Value> {
    let mut tables = Vec::new();
    for table in read_tables() {
        let rows = table_rows(app, table).await;
        // The table's shape, not only its rows: storage options and index names survive too.
        let (options, indexes): (Option<String>, Option<String>) = sqlx::query_as(
            "SELECT (SELECT reloptions::text FROM pg_class WHERE oid = ('public.' || $1)::regclass), \
                    (SELECT string_agg(indexname || ' ' || indexdef, '; ' ORDER BY indexname) \
                     FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1)",
        )
        .bind(table)
        .fetch_one(&app.owner)
        .await
        .unwrap();
        tables.push(json!({ table: rows, "options": options, "indexes": indexes }));
    }
    tables
}

/// A change is recorded a moment after it happened (the append follows the decision), and
/// may cross a second boundary: `asOf=<updatedAt as shown>` still finds it, because `asOf`
/// goes by when the change happened, which is what `updatedAt` shows.
#[tokio::test]
async fn as_of_goes_by_when_a_change_happened_not_when_it_was_recorded() {
    let app = spawn_app().await;
    let created = app
        .create_user(user_body("late@example.com", "Early", "Bird"))
        .await;
    let user_id = created["userId"].as_str().unwrap();
    // Renamed at :00.998 of some second, recorded 6 ms later, in the next second.
    let happened = chrono::DateTime::parse_from_rfc3339("2031-05-06T07:08:09.998Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let renamed = aggregates::user::UserEvent::UserRenamed {
        given_name: "Late".into(),
        family_name: "Bird".into(),
        at: happened,
    };
    let stream =
        kairos::commands::stream_append::<aggregates::user::User>(user_id, 3, &[renamed]).unwrap();
    kairos::event_store::EventStore::new(app.pool.clone(), app.keyring.clone())
        .append(&kairos::event_store::AppendBatch {
            streams: vec![stream],
            metadata: json!({"origin": "test"}),
            company_id: Some(app.company.company_id),
            idempotency: None,
            recorded_at: happened + chrono::Duration::milliseconds(6),
        })
        .await
        .unwrap();
    let then = app
        .get(&format!("/v4/user/{user_id}?asOf=2031-05-06T07:08:09Z"))
        .send()
        .await;
    assert_eq!(then.status, 200, "{}", then.text);
    assert_eq!(then.body["givenName"], "Late");
    assert_eq!(then.body["updatedAt"], "2031-05-06T07:08:09Z");
    // The same second with an offset whose `+` the client did not percent-encode.
    let unencoded = app
        .get(&format!(
            "/v4/user/{user_id}?asOf=2031-05-06T09:08:09+02:00"
        ))
        .send()
        .await;
    assert_eq!(unencoded.status, 200, "{}", unencoded.text);
    assert_eq!(unencoded.body["givenName"], "Late");
    app.stop().await;
}

#[tokio::test]
async fn history_lists_a_users_events_in_order_with_their_metadata_and_as_of_shows_the_past() {
    let app = spawn_app().await;
    let created = app
        .post("/v4/user")
        .header("x-request-id", "req-create")
        .json(user_body("hist@example.com", "Before", "Rename"))
        .send()
        .await;
    let user_id = created.body["userId"].as_str().unwrap().to_string();
    let as_created = app.get(&format!("/v4/user/{user_id}")).send().await;
    let after_creation = app.clock_now();
    app.clock.advance(chrono::Duration::seconds(10));
    let acting = app
        .create_user(user_body("actor@example.com", "Ac", "Tor"))
        .await;
    let actor = acting["userId"].as_str().unwrap();
    let renamed = app
        .patch(&format!("/v4/user/{user_id}"))
        .header("x-request-id", "req-rename")
        .acting_as(actor)
        .json(json!({"givenName": "After"}))
        .send()
        .await;

    let history = app.get(&format!("/v4/user/{user_id}/history")).send().await;
    assert_eq!(history.status, 200, "{}", history.text);
    let events = history.body["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "UserCreated",
            "AvailabilityProvisioned",
            "MeetingTypeProvisioned",
            "UserRenamed"
        ]
    );
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4]);
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["position"].as_i64() < w[1]["position"].as_i64())
    );
    assert_eq!(
        events[0]["payload"]["email"], "hist@example.com",
        "personal fields are opened for the owner company"
    );
    assert_eq!(events[0]["metadata"]["requestId"], "req-create");
    assert_eq!(
        events[0]["metadata"]["apiKeyId"],
        app.company.api_key_id.to_string()
    );
    assert_eq!(
        events[0]["metadata"]["actingUserId"],
        app.company.owner_user_id.to_string()
    );
    assert_eq!(events[3]["metadata"]["requestId"], "req-rename");
    assert_eq!(events[3]["metadata"]["actingUserId"], actor);
    assert_eq!(events[3]["payload"]["givenName"], "After");
    assert_eq!(events[3]["version"], "1");

    // Five seconds after the creation, five before the rename.
    let as_of = (after_creation + chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let before = app
        .get(&format!("/v4/user/{user_id}?asOf={as_of}"))
        .send()
        .await;
    assert_eq!(before.status, 200, "{}", before.text);
    assert_eq!(before.body["givenName"], "Before");
    assert_eq!(
        app.get(&format!("/v4/user/{user_id}")).send().await.body["givenName"],
        "After"
    );
    // The instants the API showed, to the second (section 0), name the state as of the end
    // of that second: the user as created, and as renamed. (The events happened within the
    // second, after the truncated instant.)
    for (instant, name) in [
        (&as_created.body["createdAt"], "Before"),
        (&renamed.body["updatedAt"], "After"),
    ] {
        let instant = instant.as_str().unwrap();
        let then = app
            .get(&format!("/v4/user/{user_id}?asOf={instant}"))
            .send()
            .await;
        assert_eq!(then.status, 200, "asOf={instant}: {}", then.text);
        assert_eq!(then.body["givenName"], name, "asOf={instant}");
    }
    let earlier = (after_creation - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    app.get(&format!("/v4/user/{user_id}?asOf={earlier}"))
        .send()
        .await
        .assert_error(404, "User not found");
    app.get(&format!("/v4/user/{user_id}?asOf=yesterday"))
        .send()
        .await
        .assert_error(
            400,
            "asOf must be an RFC 3339 instant, e.g. 2024-01-15T10:30:00Z",
        );

    let other = app.another_company("Wonka").await;
    app.get(&format!("/v4/user/{user_id}/history"))
        .key(&other.api_key)
        .send()
        .await
        .assert_error(404, "User not found");
    app.stop().await;
}

#[tokio::test]
async fn the_audit_log_pages_through_the_companys_events_in_order() {
    let app = spawn_app().await;
    for i in 0..4 {
        app.create_user(user_body(
            &format!("audit{i}@example.com"),
            "Au",
            &format!("Dit{i}"),
        ))
        .await;
    }
    let other = app.another_company("Cyberdyne").await;
    let all = app.get("/v4/audit/events?limit=100").send().await;
    let events = all.body["events"].as_array().unwrap();
    assert_eq!(
        events.len(),
        2 + 3 + 4 * 3,
        "company, owner and four users; nothing of the other company"
    );
    assert!(
        events
            .iter()
            .all(|e| e["metadata"]["companyId"] == app.company.company_id.to_string())
    );

    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = app
            .get(&format!("/v4/audit/events?after={after}&limit=5"))
            .send()
            .await;
        let batch = page.body["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            assert_eq!(page.body["lastPosition"], Value::Null);
            break;
        }
        after = page.body["lastPosition"].as_i64().unwrap();
        paged.extend(batch);
    }
    assert_eq!(
        &paged, events,
        "paging with after gives the whole log once, in order"
    );

    let created = app.get("/v4/audit/events?type=UserCreated").send().await;
    assert_eq!(created.body["count"], 5);
    let one = events[5]["aggregateId"].as_str().unwrap();
    let stream = app
        .get(&format!("/v4/audit/events?aggregateId={one}"))
        .send()
        .await;
    assert!(
        stream.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["aggregateId"] == one)
    );

    let theirs = app.get("/v4/audit/events").key(&other.api_key).send().await;
    assert_eq!(
        theirs.body["count"], 5,
        "the other company sees its own five events only"
    );

    let bad = app.get("/v4/audit/events?after=-1&limit=0").send().await;
    assert_eq!(
        bad.field_errors()
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["after", "limit"]
    );
    assert_eq!(
        app.get("/v4/audit/events?limit=101").send().await.status,
        400
    );
    assert_eq!(
        app.get("/v4/audit/events").send().await.body["count"],
        17,
        "the default page (20) holds them all"
    );
    app.get("/v4/audit/events?after=999999")
        .send()
        .await
        .assert_error(400, "after must be the position of an event you received");
    // Another company's position is answered exactly like one that does not exist.
    let foreign = theirs.body["events"][0]["position"].as_i64().unwrap();
    app.get(&format!("/v4/audit/events?after={foreign}"))
        .send()
        .await
        .assert_error(400, "after must be the position of an event you received");
    app.stop().await;
}

/// Counts, per table, the rows whose text contains `needle` (case-insensitively).
async fn tables_containing(app: &TestApp, needle: &str) -> Vec<(String, i64)> {
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(&app.owner)
    .await
    .unwrap();
    assert!(tables.len() >= 10, "every table is searched: {tables:?}");
    let mut found = Vec::new();
    for (schema, table) in tables {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" t WHERE t::text ILIKE '%' || $1 || '%'"
        ))
        .bind(needle)
        .fetch_one(&app.owner)
        .await
        .unwrap();
        if count > 0 {
            found.push((format!("{schema}.{table}"), count));
        }
    }
    found
}

#[tokio::test]
async fn a_deleted_users_personal_data_is_erased_everywhere_yet_the_log_verifies_and_rebuilds() {
    let app = spawn_app().await;
    let created = app
        .post("/v4/user")
        .header("Idempotency-Key", "erase-me")
        .json(user_body(
            "zebulon.quixote@example.com",
            "Zebulon",
            "Quixote",
        ))
        .send()
        .await;
    let user_id = created.body["userId"].as_str().unwrap().to_string();
    app.patch(&format!("/v4/user/{user_id}"))
        .json(json!({"familyName": "Quixotic"}))
        .send()
        .await;
    for needle in ["zebulon", "quixot"] {
        assert!(
            !tables_containing(&app, needle).await.is_empty(),
            "{needle} is stored while the user lives"
        );
    }

    assert_eq!(
        app.delete(&format!("/v4/user/{user_id}"))
            .send()
            .await
            .status,
        204
    );

    for needle in [
        "zebulon",
        "quixote",
        "quixotic",
        "zebulon.quixote@example.com",
    ] {
        assert_eq!(
            tables_containing(&app, needle).await,
            Vec::<(String, i64)>::new(),
            "{needle} is gone"
        );
    }
    let history = app.get(&format!("/v4/user/{user_id}/history")).send().await;
    assert_eq!(history.status, 200);
    let events = history.body["events"].as_array().unwrap();
    assert_eq!(events.len(), 5, "the history keeps its shape");
    assert_eq!(events[0]["payload"]["email"], "[erased]");
    assert_eq!(events[0]["payload"]["givenName"], "[erased]");
    assert_eq!(events[0]["payload"]["slug"], "[erased]");
    assert_eq!(events[3]["payload"]["familyName"], "[erased]");
    assert_eq!(
        events[0]["payload"]["timezone"], "Europe/Berlin",
        "what is not personal stays"
    );
    let audit = app
        .get(&format!("/v4/audit/events?aggregateId={user_id}"))
        .send()
        .await;
    assert_eq!(audit.body["events"][0]["payload"]["familyName"], "[erased]");

    let verified = kairos::audit::verify_chains(&app.pool, None).await.unwrap();
    assert_eq!(
        verified.first_broken, None,
        "erasure does not break the hash chain"
    );

    let before = snapshot(&app).await;
    rebuild_all(&app, &RebuildOptions::default())
        .await
        .expect("a full rebuild over erased events succeeds");
    assert_eq!(snapshot(&app).await, before);
    // The freed email can be used again.
    app.create_user(user_body("zebulon.quixote@example.com", "Zeb", "Q"))
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_while_serving_never_shows_readers_an_error_or_a_gap_and_ends_identical() {
    let app = Arc::new(spawn_app().await);
    let mut users = Vec::new();
    for i in 0..40 {
        let created = app
            .create_user(user_body(
                &format!("live{i}@example.com"),
                "Live",
                &format!("Reader{i}"),
            ))
            .await;
        users.push(created["userId"].as_str().unwrap().to_string());
    }
    let before = snapshot(&app).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers = (0..4).map(|r| {
        let (app, users, stop, reads) = (app.clone(), users.clone(), stop.clone(), reads.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = r;
            while !stop.load(Ordering::SeqCst) {
                let user = &users[i % users.len()];
                i += 1;
                let one = app.get(&format!("/v4/user/{user}")).send().await;
                if one.status != 200 || one.body["id"] != user.as_str() {
                    failures.push(format!("GET user: {} {}", one.status, one.text));
                }
                let list = app.get("/v4/user?limit=100").send().await;
                if list.status != 200 || list.body["total"] != 41 {
                    failures.push(format!("list: {} {}", list.status, list.text));
                }
                let windows = app
                    .get(&format!(
                        "/v4/user/{user}/bookable-windows?startDate=2030-01-07&endDate=2030-01-07"
                    ))
                    .send()
                    .await;
                if windows.status != 200 {
                    failures.push(format!("windows: {} {}", windows.status, windows.text));
                }
                let me = app.get("/v4/user/me").send().await;
                if me.status != 200 {
                    failures.push(format!("auth: {} {}", me.status, me.text));
                }
                reads.fetch_add(4, Ordering::SeqCst);
            }
            failures
        })
    });
    let readers: Vec<_> = readers.collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let small_batches = RebuildOptions {
        batch_size: 7,
        ..Default::default()
    };
    let report = rebuild_all(&app, &small_batches)
        .await
        .expect("the rebuild succeeds");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    let failures: Vec<String> = join_all(readers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    assert_eq!(failures, Vec::<String>::new());
    assert!(
        reads.load(Ordering::SeqCst) > 40,
        "the readers really read during the rebuild"
    );
    assert_eq!(report.events, 2 + 3 + 40 * 3);
    assert_eq!(
        snapshot(&app).await,
        before,
        "every read table is identical row by row"
    );

    // The rebuilt tables are live: the projectors keep applying to them.
    let late = app
        .create_user(user_body("late@example.com", "La", "Te"))
        .await;
    assert_eq!(
        app.get(&format!("/v4/user/{}", late["userId"].as_str().unwrap()))
            .send()
            .await
            .status,
        200
    );
    let status = projections::runtime::status(&app.pool).await.unwrap();
    assert!(
        status.iter().all(|s| s.state == "running" && s.lag == 0),
        "{status:?}"
    );
    let leftovers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema IN ('kairos_rebuild', 'kairos_retired')",
    )
    .fetch_one(&app.owner)
    .await
    .unwrap();
    assert_eq!(leftovers, 0, "no shadow or retired table is left behind");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'user_profiles' ORDER BY 1",
    )
    .fetch_all(&app.owner)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "user_profiles_company",
            "user_profiles_pkey",
            "user_profiles_slug"
        ],
        "the migrations' index names survive"
    );
    Arc::try_unwrap(app).ok().unwrap().stop().await;
}

/// A projector whose second batch fails as a lost connection would.
struct FailsOnSecondBatch {
    inner: Arc<dyn Projector>,
    calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Projector for FailsOnSecondBatch {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tables(&self) -> &'static [&'static str] {
        self.inner.tables()
    }

    async fn apply(
        &self,
        tx: &mut sqlx::PgConnection,
        events: &[projections::log::LogEvent],
    ) -> Result<(), projections::runtime::ProjectionError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 1 {
            return Err(projections::runtime::ProjectionError::Database(
                sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected: connection reset",
                )),
            ));
        }
        self.inner.apply(tx, events).await
    }
}

#[tokio::test]
async fn a_rebuild_that_fails_midway_leaves_the_live_tables_serving_and_says_why() {
    let app = spawn_app().await;
    let created = app
        .create_user(user_body("broken@example.com", "Bro", "Ken"))
        .await;
    let user_id = created["userId"].as_str().unwrap().to_string();
    app.patch(&format!("/v4/user/{user_id}"))
        .json(json!({"givenName": "Brokenly"}))
        .send()
        .await;
    for i in 0..5 {
        app.create_user(user_body(
            &format!("fine{i}@example.com"),
            "Fi",
            &format!("Ne{i}"),
        ))
        .await;
    }
    let before = snapshot(&app).await;
    // The database fails the replay's second batch in a way no retry of the rebuild itself
    // can paper over (an event that cannot be applied no longer fails a rebuild: it
    // quarantines its aggregate, see tests/api/quarantine.rs).
    let mut projectors = projectors(&app);
    let users = projectors.remove(1);
    assert_eq!(users.name(), "users");
    projectors.push(Arc::new(FailsOnSecondBatch {
        inner: users,
        calls: AtomicUsize::new(0),
    }));
    let error = rebuild::rebuild(
        &app.owner,
        &app.keyring,
        &projectors,
        &RebuildOptions {
            batch_size: 5,
            ..RebuildOptions::default()
        },
        &mut Silent,
    )
    .await
    .expect_err("the rebuild fails");
    assert!(matches!(error, RebuildError::Replay(_)), "{error}");
    let message = error.to_string() + &format!(" {:?}", std::error::Error::source(&error));
    assert!(
        message.contains("injected: connection reset"),
        "the failure says why: {message}"
    );

    assert_eq!(
        snapshot(&app).await,
        before,
        "the live tables are untouched"
    );
    let user = app.get(&format!("/v4/user/{user_id}")).send().await;
    assert_eq!(user.body["givenName"], "Brokenly", "and still serving");
    let shadows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'kairos_rebuild'",
    )
    .fetch_one(&app.owner)
    .await
    .unwrap();
    assert_eq!(shadows, 0);
    let status = projections::runtime::status(&app.pool).await.unwrap();
    assert!(status.iter().all(|s| s.state == "running"), "{status:?}");
    app.stop().await;
}
