//! Least privilege (issue 15, item 6): `kairos serve` runs as a login that is only a member of
//! `kairos_service`; that login writes the log only through `append_to_log`, and the owner's
//! work (migrations, DDL, rebuilds) is refused to it.
//!
//! The login role is cluster-wide and shared by these tests (`kairos migrate`'s code path
//! creates it when missing); it holds no right of its own, only the service role's.

use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::{
    AppOptions, TestApp, fresh_database, spawn_app_with, user_body, with_database, with_user,
};

/// The login every test here serves as.
const LOGIN: &str = "kairos_test_service_login";

/// Serving as [`LOGIN`], on 2026-02-25 (so the windows asked for below are in the horizon).
async fn spawn_as_service_login() -> TestApp {
    spawn_app_with(AppOptions {
        login: Some(LOGIN.into()),
        now: Some("2026-02-25T00:00:00Z".parse().unwrap()),
        ..AppOptions::default()
    })
    .await
}

/// The SQLSTATE a statement fails with, or `None` when it succeeds.
async fn refusal<'e>(executor: impl sqlx::PgExecutor<'e>, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(executor).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().unwrap_or_default().to_string()),
        Err(other) => panic!("{sql}: {other}"),
    }
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Writes the service must not make itself; each must be refused for lack of privilege.
const FORBIDDEN_WRITES: &[&str] = &[
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
     payload, metadata, event_id, hash) \
     VALUES ('User', 'forged', 1, 'UserCreated', '1', '{}', '{}', gen_random_uuid(), \
             decode(repeat('00', 32), 'hex'))",
    "UPDATE events SET payload = '{}'",
    "DELETE FROM events",
    "INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id) \
     VALUES ('user-slug', '', 'forged', 'x', 'User', 'x')",
    "DELETE FROM claims",
    "UPDATE idempotency_keys SET response_status = 200",
    "DELETE FROM data_keys",
];

/// The owner's work: changing the schema, the log's triggers, the append function.
const OWNER_WORK: &[&str] = &[
    "CREATE TABLE intruder (id int)",
    "ALTER TABLE events DISABLE TRIGGER events_append_only",
    "DROP TABLE user_profiles",
    "ALTER FUNCTION append_to_log SECURITY INVOKER",
];

#[tokio::test]
async fn serving_as_a_login_that_is_only_the_service_role_works_end_to_end() {
    let app = spawn_as_service_login().await;
    // The pools log in as the login and act as the service; neither is a superuser or owns
    // anything.
    let (session, current, superuser): (String, String, bool) = sqlx::query_as(
        "SELECT session_user::text, current_user::text, \
         (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        (session.as_str(), current.as_str(), superuser),
        (LOGIN, "kairos_service", false)
    );

    let created = app
        .create_user(json!({
            "email": "least@example.com", "givenName": "Least", "familyName": "Privilege",
            "timezone": "Europe/Berlin",
            "availability": {"schedule": [{"dayOfWeek": "monday", "intervals": [{"from": "09:00", "to": "10:00"}]}]}
        }))
        .await;
    let user_id = created["userId"].as_str().unwrap().to_string();
    let read = app.get(&format!("/v4/user/{user_id}")).send().await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["email"], "least@example.com");
    let renamed = app
        .patch(&format!("/v4/user/{user_id}"))
        .json(json!({"familyName": "Privileged"}))
        .send()
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.body["familyName"], "Privileged");
    let windows = app
        .get(&format!(
            "/v4/user/{user_id}/bookable-windows?startDate=2026-03-02&endDate=2026-03-02"
        ))
        .send()
        .await;
    assert_eq!(windows.status, 200, "{}", windows.text);
    assert!(
        windows.text.contains("2026-03-02T08:00:00Z"),
        "Monday 09:00 Berlin is offered: {}",
        windows.text
    );
    let history = app.get(&format!("/v4/user/{user_id}/history")).send().await;
    assert_eq!(history.status, 200, "{}", history.text);
    let audit = app.get("/v4/audit/events?limit=100").send().await;
    assert_eq!(audit.status, 200, "{}", audit.text);
    assert_eq!(
        app.delete(&format!("/v4/user/{user_id}"))
            .send()
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/v4/user/{user_id}")).send().await.status,
        404
    );
    assert_eq!(app.get("/v4/user/me").send().await.status, 200);

    let statuses = projections::runtime::status(&app.pool).await.unwrap();
    assert_eq!(statuses.len(), 3, "{statuses:?}");
    for status in &statuses {
        assert_eq!(status.state.to_string(), "running", "{status:?}");
        assert_eq!(status.last_error, None, "{status:?}");
        assert_eq!(status.lag, 0, "{status:?}");
    }
    let verified = kairos::audit::verify_chains(&app.pool, None).await.unwrap();
    assert_eq!(verified.first_broken, None);
    app.stop().await;
}

#[tokio::test]
async fn the_service_login_and_its_pooled_connections_cannot_write_the_log_but_through_append_to_log()
 {
    let app = spawn_as_service_login().await;
    app.create_user(user_body("append@example.com", "Only", "Appends"))
        .await;
    let events = app.scalar("SELECT count(*) FROM events").await;

    // As the pools connect (login, then SET ROLE kairos_service) ...
    for sql in FORBIDDEN_WRITES {
        assert_eq!(
            refusal(&app.pool, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "pooled: {sql}"
        );
    }
    // ... and as the bare login, which inherits no more than the service role.
    let mut login = PgConnection::connect(&with_user(&app.db.url, LOGIN))
        .await
        .unwrap();
    for sql in FORBIDDEN_WRITES {
        assert_eq!(
            refusal(&mut login, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "login: {sql}"
        );
    }
    // What the append function checks cannot be skipped by calling it either: a second
    // UserCreated at sequence 1 of a live stream is a conflict, not a rewrite.
    let user_id: String = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'UserCreated' ORDER BY global_position DESC LIMIT 1",
    )
    .fetch_one(&mut login)
    .await
    .unwrap();
    let forged = sqlx::query(
        "SELECT * FROM append_to_log(NULL, NULL, '', NULL, NULL, NULL, '{}', '{}', '{}', '{}', \
         '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', ARRAY['User'], ARRAY[$1], ARRAY[1::int8], \
         ARRAY['UserCreated'], ARRAY['1'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb], \
         ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY[NULL::uuid], \
         ARRAY[decode(repeat('00', 32), 'hex')], '{}')",
    )
    .bind(&user_id)
    .execute(&mut login)
    .await
    .unwrap_err();
    assert_eq!(
        forged.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("40001"),
        "{forged}"
    );
    // Nor can a call reach past the aggregates it appends to: appending to a stream of its
    // own, it cannot erase that user's data key (crypto-shredding them).
    let keys_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM data_keys WHERE subject_id = $1")
            .bind(&user_id)
            .fetch_one(&mut login)
            .await
            .unwrap();
    assert_eq!(keys_before, 1);
    let shredding = sqlx::query(
        "SELECT * FROM append_to_log(NULL, NULL, '', NULL, NULL, NULL, '{}', '{}', '{}', '{}',          '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', ARRAY['Noise'], ARRAY['forged-stream'], ARRAY[1::int8],          ARRAY['NoiseMade'], ARRAY['1'], ARRAY['{}'::jsonb], ARRAY['{}'::jsonb],          ARRAY[gen_random_uuid()], ARRAY[now()], ARRAY[NULL::uuid],          ARRAY[decode(repeat('00', 32), 'hex')], ARRAY[$1])",
    )
    .bind(&user_id)
    .execute(&mut login)
    .await
    .unwrap_err();
    assert_eq!(
        shredding
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("22023"),
        "{shredding}"
    );
    let keys_after: i64 =
        sqlx::query_scalar("SELECT count(*) FROM data_keys WHERE subject_id = $1")
            .bind(&user_id)
            .fetch_one(&mut login)
            .await
            .unwrap();
    assert_eq!(keys_after, 1, "the user's data key survived");
    login.close().await.unwrap();
    assert_eq!(
        app.scalar("SELECT count(*) FROM events").await,
        events,
        "nothing was written"
    );
    app.stop().await;
}

/// A database of the test cluster with nothing in it (not even migrations).
async fn empty_database(owner_url: &str) -> String {
    let name = format!("kt_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(owner_url).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .unwrap();
    admin.close().await.unwrap();
    with_database(owner_url, &name)
}

async fn kairos(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KAIROS_MIGRATE_DATABASE_URL")
        .env("RUST_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().await.expect("run kairos")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_owners_migrations_ddl_and_rebuilds_are_refused_to_the_service_login() {
    let app = spawn_as_service_login().await;
    let login_url = with_user(&app.db.url, LOGIN);
    let mut login = PgConnection::connect(&login_url).await.unwrap();
    for sql in OWNER_WORK {
        assert_eq!(
            refusal(&mut login, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "login: {sql}"
        );
        assert_eq!(
            refusal(&app.pool, sql).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "pooled: {sql}"
        );
    }
    login.close().await.unwrap();
    assert!(!kairos::db::owns_schema(&login_url).await.unwrap());
    assert!(kairos::db::owns_schema(&app.db.url).await.unwrap());

    // The migrations themselves, on a database that has none yet.
    let empty = empty_database(&app.db.url).await;
    let migrated = kairos::db::migrate(&with_user(&empty, LOGIN)).await;
    assert!(
        migrated.is_err(),
        "the login cannot migrate a fresh database"
    );
    // Through the command line, which names the way out.
    for args in [&["migrate"][..], &["projections", "rebuild", "--all"][..]] {
        let output = kairos(
            &[
                ("DATABASE_URL", &login_url),
                ("KAIROS_MASTER_KEY", &app.master_key),
            ],
            args,
        )
        .await;
        assert_eq!(output.status.code(), Some(1), "{args:?}: {}", text(&output));
        assert!(
            text(&output).contains("KAIROS_MIGRATE_DATABASE_URL"),
            "{args:?}: {}",
            text(&output)
        );
    }
    // serve on the unmigrated database leaves the migrations alone and refuses to start.
    let output = kairos(
        &[
            ("DATABASE_URL", &with_user(&empty, LOGIN)),
            ("KAIROS_MASTER_KEY", &app.master_key),
            ("KAIROS_BIND", "127.0.0.1:0"),
        ],
        &["serve"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("the database lacks migrations"),
        "{}",
        text(&output)
    );
    app.stop().await;
}

/// `GET path` over a plain HTTP/1.1 connection: (status, body).
async fn http_get(port: u16, path: &str, key: Option<&str>) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

#[tokio::test]
async fn kairos_migrate_as_the_owner_then_kairos_serve_as_the_login_serves_requests() {
    // The make-run setup, from an empty database: the owner migrates and admits the login,
    // which then creates a company and serves.
    let owner_url = empty_database(&fresh_database().await.url).await;
    let login_url = with_user(&owner_url, LOGIN);
    let master_key = projections::keyring::Keyring::generate_base64();
    let as_login = [
        ("DATABASE_URL", login_url.as_str()),
        ("KAIROS_MASTER_KEY", master_key.as_str()),
    ];

    let migrated = kairos(
        &[
            ("DATABASE_URL", &login_url),
            ("KAIROS_MIGRATE_DATABASE_URL", &owner_url),
        ],
        &["migrate"],
    )
    .await;
    assert!(migrated.status.success(), "{}", text(&migrated));
    assert!(
        text(&migrated).contains(&format!("DATABASE_URL logs in as {LOGIN}")),
        "{}",
        text(&migrated)
    );

    let created = kairos(
        &as_login,
        &[
            "company",
            "create",
            "--name",
            "Least",
            "--owner-email",
            "owner@least.example.com",
            "--owner-given-name",
            "Lea",
            "--owner-family-name",
            "St",
            "--timezone",
            "Europe/Berlin",
            "--json",
        ],
    )
    .await;
    assert!(created.status.success(), "{}", text(&created));
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let key = created["apiKey"].as_str().unwrap().to_string();

    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let bind = format!("127.0.0.1:{port}");
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("serve")
        .env_remove("KAIROS_MIGRATE_DATABASE_URL")
        .env("DATABASE_URL", &login_url)
        .env("KAIROS_MASTER_KEY", &master_key)
        .env("KAIROS_BIND", &bind)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = http_get(port, "/health/ready", None).await {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not become ready"
        );
        assert!(server.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = http_get(port, "/v4/user/me", Some(&key)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("owner@least.example.com"), "{body}");
    server.kill().await.unwrap();
}

/// Whether `member` is a direct member of `kairos_service`.
async fn is_service_member(admin: &mut PgConnection, member: &str) -> bool {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
         WHERE m.roleid = 'kairos_service'::regrole AND r.rolname = $1)",
    )
    .bind(member)
    .fetch_one(admin)
    .await
    .unwrap()
}

#[tokio::test]
async fn migrating_no_longer_makes_the_owner_a_member_of_the_service_role_unless_it_serves() {
    // An owner that is not a superuser (a superuser may SET ROLE to anything, so the
    // membership would prove nothing), of a database of its own. Roles are cluster-wide: this
    // one is kept for the next run like the service login (it owns nothing once the test
    // databases are dropped), and the database is left to `make clean-test-dbs` like every
    // test's (dropping one forces a checkpoint that stalls every test running beside it).
    let cluster = fresh_database().await.url;
    let owner = "kairos_test_owner".to_string();
    let database = format!("kt_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&cluster).await.unwrap();
    let created = admin
        .execute(format!("CREATE ROLE {owner} LOGIN CREATEROLE").as_str())
        .await;
    if let Err(error) = created {
        let code = error.as_database_error().and_then(|e| e.code());
        assert!(
            matches!(code.as_deref(), Some("42710" | "23505")),
            "{error}"
        );
    }
    admin
        .execute(format!("CREATE DATABASE {database} OWNER {owner}").as_str())
        .await
        .unwrap();
    let owner_url = with_user(&with_database(&cluster, &database), &owner);

    kairos::db::migrate(&owner_url)
        .await
        .expect("the owner migrates");
    assert!(
        !is_service_member(&mut admin, &owner).await,
        "migrating does not leave the owner in the cluster-wide service role"
    );

    // Serving as a login of its own admits only that login.
    let login_url = with_user(&owner_url, LOGIN);
    let admitted = kairos::db::admit_service_login(&owner_url, &login_url)
        .await
        .unwrap();
    assert_eq!(
        (admitted.owner.as_str(), admitted.login.as_str()),
        (owner.as_str(), LOGIN)
    );
    assert!(is_service_member(&mut admin, LOGIN).await);
    assert!(!is_service_member(&mut admin, &owner).await);

    // Serving with the owner's own URL (as before) admits the owner, because it must SET ROLE.
    let admitted = kairos::db::admit_service_login(&owner_url, &owner_url)
        .await
        .unwrap();
    assert_eq!(admitted.admission, kairos::db::Admission::Granted);
    let pool = kairos::db::service_pool(&owner_url, 1, None).await.unwrap();
    let acting: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(acting, "kairos_service");
    pool.close().await;

    admin.close().await.unwrap();
}

#[tokio::test]
async fn serve_refuses_a_database_that_lacks_a_migration_it_knows_naming_it() {
    // A database as the previous release left it: this release's least-privilege migration
    // not applied, so the service cannot even read which migrations are.
    let db = fresh_database().await;
    let mut owner = PgConnection::connect(&db.url).await.unwrap();
    owner
        .execute(
            "DELETE FROM _sqlx_migrations WHERE version >= 20261202000002; \
             REVOKE SELECT ON _sqlx_migrations FROM kairos_service",
        )
        .await
        .unwrap();
    owner.close().await.unwrap();
    let master_key = projections::keyring::Keyring::generate_base64();
    let output = kairos(
        &[
            ("DATABASE_URL", &db.url),
            ("KAIROS_MASTER_KEY", &master_key),
            ("KAIROS_BIND", "127.0.0.1:0"),
        ],
        &["serve", "--no-migrate"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("the database lacks migrations [20261202000002"),
        "{}",
        text(&output)
    );
}
