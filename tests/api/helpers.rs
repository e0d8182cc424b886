//! The test harness: a fresh PostgreSQL database per test (copied from a migrated template)
//! and a started Kairos on it, driven through its real router.
//!
//! The cluster comes from `KAIROS_TEST_DATABASE_URL` (set by `make test`) or `DATABASE_URL`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use chrono::Utc;
use http_body_util::BodyExt;
use kairos::provisioning::{self, CreatedCompany, NewCompany};
use kairos::server::{Kairos, Options};
use projections::clock::ManualClock;
use projections::keyring::Keyring;
use projections::runtime::RuntimeConfig;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tower::ServiceExt;
use uuid::Uuid;

/// The runtime, tuned so tests do not wait on production poll intervals.
pub fn fast_runtime() -> RuntimeConfig {
    RuntimeConfig {
        batch_size: 500,
        idle_poll: Duration::from_millis(50),
        standby_poll: Duration::from_millis(50),
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        maintenance_interval: Duration::from_millis(50),
        ..RuntimeConfig::default()
    }
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
}

fn cluster_url() -> String {
    std::env::var("KAIROS_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .expect("set KAIROS_TEST_DATABASE_URL (make test does) to a PostgreSQL database whose role may CREATE DATABASE")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// `url` logging in as `user` (no password: the test cluster trusts local connections).
pub fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a database URL has a scheme");
    let host = match rest.split_once('/') {
        Some((authority, _)) => match authority.rsplit_once('@') {
            Some((_, host)) => &rest[authority.len() - host.len()..],
            None => rest,
        },
        None => rest,
    };
    format!("{scheme}://{user}@{host}")
}

/// The template is named after the migrations it holds, so a changed migration gets a new
/// template instead of a stale one.
fn template_name() -> String {
    let mut fingerprint = String::new();
    for migration in kairos::db::MIGRATOR.iter() {
        fingerprint.push_str(&format!(
            "{}:{};",
            migration.version,
            hex::encode(&*migration.checksum)
        ));
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(fingerprint.as_bytes());
    format!("kairos_tpl_{}", &hex::encode(digest)[..12])
}

pub async fn fresh_database() -> TestDb {
    // Logs show with `RUST_LOG=…` and `--no-capture`.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let cluster = cluster_url();
    let template = template_name();
    let mut admin = PgConnection::connect(&cluster)
        .await
        .expect("connect to the test cluster");
    // One test process at a time builds the template; the others wait and reuse it.
    admin
        .execute("SELECT pg_advisory_lock(hashtext('kairos-test-template'))")
        .await
        .expect("template lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut admin)
            .await
            .expect("look for the template");
    if !exists {
        admin
            .execute(format!("CREATE DATABASE \"{template}\"").as_str())
            .await
            .expect("create the template");
        kairos::db::migrate(&with_database(&cluster, &template))
            .await
            .expect("migrate the template");
    }
    admin
        .execute("SELECT pg_advisory_unlock(hashtext('kairos-test-template'))")
        .await
        .expect("template unlock");
    let name = format!("kt_{}", Uuid::new_v4().simple());
    admin
        .execute(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"").as_str())
        .await
        .expect("create the test database");
    TestDb {
        url: with_database(&cluster, &name),
    }
}

/// A response, parsed.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope of api.md section 0 and returns its message.
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text);
        assert_eq!(self.body["statusCode"], status, "{}", self.text);
        assert_eq!(self.body["message"], message, "{}", self.text);
        let reason = StatusCode::from_u16(status)
            .unwrap()
            .canonical_reason()
            .unwrap();
        assert_eq!(self.body["error"], reason, "{}", self.text);
    }

    /// The `(field, message)` pairs of a validation error.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array in {}", self.text))
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_string(),
                    e["message"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

/// A request under construction.
pub struct Call<'a> {
    app: &'a TestApp,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    key: Option<String>,
}

impl<'a> Call<'a> {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(serde_json::to_vec(&body).unwrap());
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Authenticate with this key instead of the test company's.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(key.to_string());
        self
    }

    pub fn no_key(mut self) -> Self {
        self.key = None;
        self
    }

    pub fn acting_as(self, user_id: impl std::fmt::Display) -> Self {
        let value = user_id.to_string();
        self.header("x-meetergo-api-user-id", &value)
    }

    pub async fn send(self) -> TestResponse {
        let mut builder = Request::builder().method(self.method).uri(&self.path);
        if let Some(key) = &self.key {
            builder = builder.header("authorization", format!("Bearer {key}"));
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Body::from(self.body.unwrap_or_default()))
            .unwrap();
        let response = self.app.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }
}

pub struct TestApp {
    pub db: TestDb,
    pub router: Router,
    pub kairos: Option<Kairos>,
    pub clock: ManualClock,
    pub keyring: Keyring,
    /// The master key of `keyring`, base64, for CLI processes run against this app.
    pub master_key: String,
    /// The service-role pool the app uses.
    pub pool: PgPool,
    /// An owner connection pool, for what the service may not do (tampering tests).
    pub owner: PgPool,
    /// A company with a valid key, created through the CLI's code path.
    pub company: CreatedCompany,
    rate_limit_per_minute: u32,
    runtime: RuntimeConfig,
}

/// How a test app differs from the default (rate limiting off, the clock at the real now).
#[derive(Default)]
pub struct AppOptions {
    /// Serve as this login role instead of the cluster's owner: `kairos migrate`'s code path
    /// makes it a member of `kairos_service` (creating it in the cluster if missing), no more.
    pub login: Option<String>,
    pub rate_limit_per_minute: u32,
    /// Where the manual clock starts, before anything (the test company included) is created.
    pub now: Option<chrono::DateTime<Utc>>,
    /// The projector runtime's tunables ([`fast_runtime`] when not given).
    pub runtime: Option<RuntimeConfig>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

/// A fresh database, as the app serves it (its owner's URL, or `options.login`'s) and as the
/// owner.
async fn serving_database(options: &AppOptions) -> (TestDb, TestDb) {
    let db = fresh_database().await;
    let Some(login) = &options.login else {
        return (
            TestDb {
                url: db.url.clone(),
            },
            db,
        );
    };
    let url = with_user(&db.url, login);
    kairos::db::admit_service_login(&db.url, &url)
        .await
        .expect("admit the service login");
    (TestDb { url }, db)
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let (db, owner_db) = serving_database(&options).await;
    let master_key = Keyring::generate_base64();
    let keyring = Keyring::from_base64(&master_key).unwrap();
    let clock = ManualClock::new(options.now.unwrap_or_else(Utc::now));
    let runtime = options.runtime.unwrap_or_else(fast_runtime);
    let kairos = start_kairos(
        &db,
        &keyring,
        &clock,
        options.rate_limit_per_minute,
        runtime.clone(),
    )
    .await;
    let company = provisioning::create_company(
        &kairos.state.bus,
        NewCompany {
            name: "Acme".into(),
            owner_email: "owner@acme.example.com".into(),
            owner_given_name: "Olive".into(),
            owner_family_name: "Owner".into(),
            timezone: "Europe/Berlin".into(),
            key_days: 30,
        },
    )
    .await
    .expect("create the test company");
    let owner = kairos::db::owner_pool(&owner_db.url, 3).await.unwrap();
    TestApp {
        router: kairos.router(),
        pool: kairos.state.pool.clone(),
        db: owner_db,
        kairos: Some(kairos),
        clock,
        keyring,
        master_key,
        owner,
        company,
        rate_limit_per_minute: options.rate_limit_per_minute,
        runtime,
    }
}

async fn start_kairos(
    db: &TestDb,
    keyring: &Keyring,
    clock: &ManualClock,
    rate_limit_per_minute: u32,
    runtime: RuntimeConfig,
) -> Kairos {
    Kairos::start(Options {
        database_url: db.url.clone(),
        keyring: keyring.clone(),
        clock: Arc::new(clock.clone()),
        public_url: "http://localhost:8080".into(),
        pool_size: 20,
        rate_limit_per_minute,
        read_your_writes_timeout: Duration::from_secs(10),
        runtime,
        windows_cache_bytes: 64 << 20,
        auth_failures_per_minute: 60,
    })
    .await
    .expect("start kairos")
}

impl TestApp {
    fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            app: self,
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            key: Some(self.company.api_key.clone()),
        }
    }

    pub fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub fn patch(&self, path: &str) -> Call<'_> {
        self.call(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    pub fn method(&self, method: Method, path: &str) -> Call<'_> {
        self.call(method, path)
    }

    /// A second Kairos server process on the same database (its own pools, projector
    /// runtime, listener and caches), as behind a load balancer; calls go to its router.
    pub async fn another_process(&self) -> TestApp {
        self.another_process_with(self.runtime.clone()).await
    }

    /// [`Self::another_process`] with its own runtime tunables (its listener's, say).
    pub async fn another_process_with(&self, runtime: RuntimeConfig) -> TestApp {
        let kairos = start_kairos(
            &self.db,
            &self.keyring,
            &self.clock,
            self.rate_limit_per_minute,
            runtime.clone(),
        )
        .await;
        TestApp {
            router: kairos.router(),
            pool: kairos.state.pool.clone(),
            db: TestDb {
                url: self.db.url.clone(),
            },
            kairos: Some(kairos),
            clock: self.clock.clone(),
            keyring: self.keyring.clone(),
            master_key: self.master_key.clone(),
            owner: self.owner.clone(),
            company: self.company.clone(),
            rate_limit_per_minute: self.rate_limit_per_minute,
            runtime,
        }
    }

    /// Runs the `kairos` binary against this app's database, as an operator would.
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kairos"))
            .args(args)
            .env("DATABASE_URL", &self.db.url)
            .env("KAIROS_MASTER_KEY", &self.master_key)
            .env("RUST_LOG", "warn")
            .output()
            .await
            .expect("run kairos")
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        projections::clock::Clock::now(&self.clock)
    }

    pub fn bus(&self) -> &kairos::commands::CommandBus {
        &self.kairos.as_ref().unwrap().state.bus
    }

    /// Another company with its own key, as a second tenant.
    pub async fn another_company(&self, name: &str) -> CreatedCompany {
        provisioning::create_company(
            self.bus(),
            NewCompany {
                name: name.into(),
                owner_email: format!("owner@{}.example.com", name.to_lowercase()),
                owner_given_name: "Other".into(),
                owner_family_name: "Owner".into(),
                timezone: "America/New_York".into(),
                key_days: 30,
            },
        )
        .await
        .expect("create another company")
    }

    /// Creates a user over HTTP and returns the 201 body.
    pub async fn create_user(&self, body: Value) -> Value {
        let response = self.post("/v4/user").json(body).send().await;
        assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
        response.body
    }

    /// The one number a query without parameters answers (a count, mostly), as the service.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn count_events(&self, aggregate_id: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_id = $1")
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Rewrites the stored event at `position` (`set` is the SQL `SET` clause) the only way
    /// it can be done: as the owner, with the append-only triggers off for the moment.
    pub async fn tamper_with_event(&self, position: i64, set: &str) {
        let mut owner = self.owner.begin().await.unwrap();
        sqlx::query("ALTER TABLE events DISABLE TRIGGER events_append_only")
            .execute(&mut *owner)
            .await
            .unwrap();
        sqlx::query(&format!(
            "UPDATE events SET {set} WHERE global_position = $1"
        ))
        .bind(position)
        .execute(&mut *owner)
        .await
        .unwrap();
        sqlx::query("ALTER TABLE events ENABLE TRIGGER events_append_only")
            .execute(&mut *owner)
            .await
            .unwrap();
        owner.commit().await.unwrap();
    }

    pub async fn stop(mut self) {
        if let Some(kairos) = self.kairos.take() {
            kairos.stop().await;
        }
        self.owner.close().await;
    }
}

/// Every read table, as the projectors declare them (the tables rebuilds copy and swap).
pub fn read_tables() -> Vec<&'static str> {
    let clock: projections::clock::SharedClock = Arc::new(ManualClock::new(Utc::now()));
    projections::all_projectors(clock, &projections::Caches::unused())
        .iter()
        .flat_map(|projector| projector.tables().iter().copied())
        .collect()
}

/// Every row of `table`, as JSON, in a stable order (read as the owner).
pub async fn table_rows(app: &TestApp, table: &str) -> Value {
    sqlx::query_scalar(&format!(
        "SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]') FROM {table} t"
    ))
    .fetch_one(&app.owner)
    .await
    .unwrap_or_else(|e| panic!("rows of {table}: {e}"))
}

/// Calls `probe` until it returns true; false if `within` passes first. Cross-process
/// invalidation travels by NOTIFY, so another process follows within milliseconds, but not
/// necessarily before the writer answered.
pub async fn eventually(within: Duration, mut probe: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if probe().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A minimal user body.
pub fn user_body(email: &str, given: &str, family: &str) -> Value {
    serde_json::json!({"email": email, "givenName": given, "familyName": family, "timezone": "Europe/Berlin"})
}
