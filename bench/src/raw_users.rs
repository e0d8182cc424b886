//! `kairos-bench raw-users`: the "raw transaction" baseline for user creation.
//!
//! Per user, one transaction writes what Kairos writes when `POST /v4/user` creates a
//! default user: its data key, its three claims (one multi-row insert), its three events (one
//! `unnest` insert, each with a SHA-256 chain hash computed here), and the rows Kairos's
//! projectors derive from them (`user_profiles`, `availabilities`, `meeting_types`,
//! `bookable_windows`). No HTTP, no aggregate, no projector: only the SQL. `--clients` tasks,
//! each holding one pooled connection, run transactions back to back until `--users`
//! transactions have been attempted or `--duration` has passed. Durability is the server's
//! (`synchronous_commit` untouched).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Datelike as _, NaiveDate, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng as _, RngCore as _, SeedableRng as _};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection as _, Postgres};
use uuid::Uuid;

use kairos::event_store::hash::{self, HashedFields};

use crate::hist::Histogram;

#[derive(clap::Args, Debug, Clone)]
pub struct RawUsersArgs {
    /// PostgreSQL URL of a migrated Kairos database, as its owner: the baseline writes the
    /// log's tables directly, which the service role may not (it appends through
    /// `append_to_log`).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Concurrent clients, each with its own pooled connection and one transaction in flight.
    #[arg(long, default_value_t = 32)]
    pub clients: u32,
    /// Transactions (users) to attempt; failed ones count as errors, not users.
    #[arg(long, default_value_t = 2000)]
    pub users: u64,
    /// Stop starting transactions after this many seconds (fractions allowed), even if fewer
    /// than --users were written.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RawUsersReport {
    /// Committed transactions: users written.
    pub users: u64,
    /// Transactions that failed (rolled back).
    pub errors: u64,
    /// From the moment every client held its connection to the last commit.
    pub duration_seconds: f64,
    pub users_per_second: f64,
    /// Latency of committed transactions, from BEGIN to COMMIT returning.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl fmt::Display for RawUsersReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "users       {} ({} errors)", self.users, self.errors)?;
        writeln!(f, "duration    {:.3} s", self.duration_seconds)?;
        writeln!(f, "throughput  {:.1} users/s", self.users_per_second)?;
        write!(
            f,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  (BEGIN to COMMIT)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.max_ms
        )
    }
}

/// A client gives up after this many failed transactions in a row (a dead connection, a
/// missing table): the failures are reported, not retried forever.
const MAX_CONSECUTIVE_ERRORS: u32 = 10;

/// What every user of one run shares.
struct Plan {
    company_id: Uuid,
    api_key_id: Uuid,
    acting_user_id: Uuid,
    schedule: Value,
    windows: Windows,
}

/// The `bookable_windows` row of a default user: Monday to Friday 09:00–17:00 in
/// Europe/Berlin, 30-minute slots, 60 days ahead, as one arithmetic run per working day.
#[derive(Debug, Clone, PartialEq)]
pub struct Windows {
    pub covers_from: DateTime<Utc>,
    pub covers_until: DateTime<Utc>,
    pub refresh_at: DateTime<Utc>,
    pub starts: Vec<DateTime<Utc>>,
    pub steps: Vec<i32>,
    pub counts: Vec<i32>,
}

/// Runs in a default user's windows: the working days of 60 days.
pub const WINDOW_RUNS: usize = 44;

impl Windows {
    /// The next [`WINDOW_RUNS`] weekdays after `today` at 08:00Z, each 16 starts 1,800 s apart;
    /// covering [today − 1 day, the day after the last run); refreshed at the next midnight
    /// in Berlin (23:00Z, winter time).
    pub fn after(today: NaiveDate) -> Self {
        let midnight = |day: NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc();
        let starts: Vec<DateTime<Utc>> = today
            .iter_days()
            .skip(1)
            .filter(|day| !matches!(day.weekday(), Weekday::Sat | Weekday::Sun))
            .take(WINDOW_RUNS)
            .map(|day| midnight(day) + chrono::Duration::hours(8))
            .collect();
        let last_day = starts.last().map_or(today, DateTime::date_naive);
        Self {
            covers_from: midnight(today) - chrono::Duration::days(1),
            covers_until: midnight(last_day) + chrono::Duration::days(1),
            refresh_at: midnight(today) + chrono::Duration::hours(23),
            steps: vec![1800; starts.len()],
            counts: vec![16; starts.len()],
            starts,
        }
    }
}

fn default_schedule() -> Value {
    let days = ["monday", "tuesday", "wednesday", "thursday", "friday"];
    Value::Array(
        days.iter()
            .map(|day| json!({"dayOfWeek": day, "intervals": [{"from": "09:00", "to": "17:00"}]}))
            .collect(),
    )
}

/// Standard base64 with padding (RFC 4648), for sealed-field look-alikes.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// What Kairos stores for a personal field of `plaintext_len` bytes: `kairos:enc:v1:` and
/// the base64 of nonce (12) ‖ ciphertext ‖ tag (16). Random bytes here: nothing decrypts it.
fn sealed(rng: &mut StdRng, plaintext_len: usize) -> String {
    let mut bytes = vec![0; 12 + plaintext_len + 16];
    rng.fill_bytes(&mut bytes);
    format!("kairos:enc:v1:{}", base64(&bytes))
}

const EVENT_TYPES: [&str; 3] = [
    "UserCreated",
    "AvailabilityProvisioned",
    "MeetingTypeProvisioned",
];

/// Everything one user's transaction writes, prepared before BEGIN.
struct UserRows {
    user_id: Uuid,
    availability_id: Uuid,
    meeting_type_id: Uuid,
    aggregate_id: String,
    email: String,
    slug: String,
    wrapped_key: Vec<u8>,
    at: DateTime<Utc>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
    event_ids: Vec<Uuid>,
    hashes: Vec<Vec<u8>>,
}

impl UserRows {
    fn new(plan: &Plan, rng: &mut StdRng) -> Self {
        let user_id = Uuid::now_v7();
        let availability_id = Uuid::now_v7();
        let meeting_type_id = Uuid::now_v7();
        let aggregate_id = user_id.to_string();
        // The v7 id's 74 random bits keep emails and slugs unique, run after run.
        let email = format!("{}@raw.example", user_id.simple());
        let slug = format!("raw-{}", user_id.simple());
        let (given_name, family_name) = ("Raw", "User");
        // Postgres keeps microseconds: hash what will be read back.
        let now = Utc::now();
        let at = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut wrapped_key = vec![0; 60];
        rng.fill_bytes(&mut wrapped_key);
        let payloads = vec![
            json!({
                "userId": user_id,
                "companyId": plan.company_id,
                "userType": "api-platform",
                "isOwner": false,
                "email": sealed(rng, email.len()),
                "givenName": sealed(rng, given_name.len()),
                "familyName": sealed(rng, family_name.len()),
                "slug": sealed(rng, slug.len()),
                "timezone": "Europe/Berlin",
                "createdAt": at_text,
            }),
            json!({
                "availabilityId": availability_id,
                "name": "Business Hours",
                "timezone": null,
                "schedule": plan.schedule,
                "isDefault": true,
                "at": at_text,
            }),
            json!({
                "meetingTypeId": meeting_type_id,
                "availabilityId": availability_id,
                "name": "30min Meeting",
                "slug": "30min-meeting",
                "settings": {
                    "durationMinutes": 30,
                    "slotIntervalMinutes": 30,
                    "bufferBeforeMinutes": 0,
                    "bufferAfterMinutes": 0,
                    "minimumNoticeMinutes": 0,
                    "horizonDays": 60,
                },
                "isDefault": true,
                "at": at_text,
            }),
        ];
        let metadata = json!({
            "origin": "http",
            "requestId": Uuid::new_v4(),
            "apiKeyId": plan.api_key_id,
            "actingUserId": plan.acting_user_id,
            "companyId": plan.company_id,
        });
        let mut previous = [0; 32];
        let mut event_ids = Vec::with_capacity(3);
        let mut hashes = Vec::with_capacity(3);
        for (i, (event_type, payload)) in EVENT_TYPES.iter().zip(&payloads).enumerate() {
            let event_id = Uuid::now_v7();
            // Kairos's own chain function: the baseline hashes exactly what Kairos hashes.
            previous = hash::chain(
                &previous,
                &HashedFields {
                    event_id,
                    aggregate_type: "User",
                    aggregate_id: &aggregate_id,
                    sequence: i as i64 + 1,
                    event_type,
                    event_version: "1",
                    company_id: Some(plan.company_id),
                    recorded_at: at,
                    payload,
                    metadata: &metadata,
                },
            );
            event_ids.push(event_id);
            hashes.push(previous.to_vec());
        }
        Self {
            user_id,
            availability_id,
            meeting_type_id,
            aggregate_id,
            email,
            slug,
            wrapped_key,
            at,
            payloads,
            metadata: vec![metadata; 3],
            event_ids,
            hashes,
        }
    }
}

/// One user's transaction: BEGIN, seven inserts, COMMIT.
async fn write_user(
    conn: &mut PoolConnection<Postgres>,
    plan: &Plan,
    user: &UserRows,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    let company = plan.company_id.to_string();
    let user_text = &user.aggregate_id;
    let meeting_type_text = user.meeting_type_id.to_string();

    sqlx::query("INSERT INTO data_keys (subject_id, wrapped_key) VALUES ($1, $2)")
        .bind(user_text)
        .bind(&user.wrapped_key)
        .execute(&mut *tx)
        .await?;

    sqlx::query(
        "INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id) \
         VALUES ('user-email', $1, $2, $4, 'User', $4), ('user-slug', '', $3, $4, 'User', $4), \
         ('meeting-type-slug', $4, '30min-meeting', $5, 'User', $4)",
    )
    .bind(&company)
    .bind(&user.email)
    .bind(&user.slug)
    .bind(user_text)
    .bind(&meeting_type_text)
    .execute(&mut *tx)
    .await?;

    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
         metadata, event_id, recorded_at, company_id, hash) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], \
                              $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::uuid[], $11::bytea[])",
    )
    .bind(["User"; 3].as_slice())
    .bind([user_text.as_str(); 3].as_slice())
    .bind([1i64, 2, 3].as_slice())
    .bind(EVENT_TYPES.as_slice())
    .bind(["1"; 3].as_slice())
    .bind(&user.payloads)
    .bind(&user.metadata)
    .bind(&user.event_ids)
    .bind([user.at; 3].as_slice())
    .bind([plan.company_id; 3].as_slice())
    .bind(&user.hashes)
    .execute(&mut *tx)
    .await?;

    // The read models, as the projectors write them (personal fields in clear).
    sqlx::query(
        "INSERT INTO user_profiles (user_id, company_id, email, given_name, family_name, slug, timezone, \
         user_type, is_owner, default_availability_id, default_meeting_type_id, created_at, updated_at) \
         VALUES ($1, $2, $3, 'Raw', 'User', $4, 'Europe/Berlin', 'api-platform', false, $5, $6, $7, $7)",
    )
    .bind(user.user_id)
    .bind(plan.company_id)
    .bind(&user.email)
    .bind(&user.slug)
    .bind(user.availability_id)
    .bind(user.meeting_type_id)
    .bind(user.at)
    .execute(&mut *tx)
    .await?;

    sqlx::query(
        "INSERT INTO availabilities (availability_id, user_id, company_id, name, own_timezone, schedule, \
         is_default, created_at, updated_at) \
         VALUES ($1, $2, $3, 'Business Hours', NULL, $4, true, $5, $5)",
    )
    .bind(user.availability_id)
    .bind(user.user_id)
    .bind(plan.company_id)
    .bind(&plan.schedule)
    .bind(user.at)
    .execute(&mut *tx)
    .await?;

    sqlx::query(
        "INSERT INTO meeting_types (meeting_type_id, user_id, company_id, availability_id, name, slug, \
         duration_minutes, slot_interval_minutes, buffer_before_minutes, buffer_after_minutes, \
         minimum_notice_minutes, horizon_days, enabled, is_default, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, '30min Meeting', '30min-meeting', 30, 30, 0, 0, 0, 60, true, true, $5, $5)",
    )
    .bind(user.meeting_type_id)
    .bind(user.user_id)
    .bind(plan.company_id)
    .bind(user.availability_id)
    .bind(user.at)
    .execute(&mut *tx)
    .await?;

    let windows = &plan.windows;
    sqlx::query(
        "INSERT INTO bookable_windows (meeting_type_id, user_id, company_id, is_default, user_timezone, \
         availability_timezone, minimum_notice_minutes, horizon_days, covers_from, covers_until, refresh_at, \
         run_starts, run_steps, run_counts) \
         VALUES ($1, $2, $3, true, 'Europe/Berlin', 'Europe/Berlin', 0, 60, $4, $5, $6, $7, $8, $9)",
    )
    .bind(user.meeting_type_id)
    .bind(user.user_id)
    .bind(plan.company_id)
    .bind(windows.covers_from)
    .bind(windows.covers_until)
    .bind(windows.refresh_at)
    .bind(&windows.starts)
    .bind(&windows.steps)
    .bind(&windows.counts)
    .execute(&mut *tx)
    .await?;

    tx.commit().await
}

struct Shared {
    attempts: AtomicU64,
    max_attempts: u64,
    deadline: Option<Instant>,
}

struct ClientStats {
    hist: Histogram,
    errors: u64,
    last_commit: Option<Instant>,
    first_error: Option<String>,
}

async fn client(
    mut conn: PoolConnection<Postgres>,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
) -> ClientStats {
    let mut rng = StdRng::seed_from_u64(rand::thread_rng().r#gen());
    let mut stats = ClientStats {
        hist: Histogram::new(),
        errors: 0,
        last_commit: None,
        first_error: None,
    };
    let mut consecutive_errors = 0;
    loop {
        if shared
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
            || shared.attempts.fetch_add(1, Ordering::Relaxed) >= shared.max_attempts
        {
            return stats;
        }
        let user = UserRows::new(&plan, &mut rng);
        let began = Instant::now();
        match write_user(&mut conn, &plan, &user).await {
            Ok(()) => {
                let done = Instant::now();
                stats
                    .hist
                    .record((done - began).as_micros().try_into().unwrap_or(u64::MAX));
                stats.last_commit = Some(done);
                consecutive_errors = 0;
            }
            Err(error) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| error.to_string());
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return stats;
                }
            }
        }
    }
}

/// Connects `clients` connections as the URL's role. Not `SET ROLE kairos_service` as Kairos
/// does: since migration 20261202000002 the service writes `events`, `claims` and
/// `data_keys` only through `append_to_log`, and this baseline writes them with plain SQL.
/// The owner's rights cost nothing per statement, so the comparison stays fair.
async fn connect(url: &str, clients: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(clients)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .context("connecting to the database")
}

/// Runs the baseline. The first error message, if any, goes to stderr.
pub async fn run(args: &RawUsersArgs) -> anyhow::Result<RawUsersReport> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    let limit = match args.duration {
        Some(seconds) => Some(
            Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .context("--duration must be a positive number of seconds")?,
        ),
        None => None,
    };
    let pool = connect(&args.database_url, args.clients).await?;
    let mut connections = Vec::with_capacity(args.clients as usize);
    for _ in 0..args.clients {
        connections.push(pool.acquire().await.context("opening the connections")?);
    }
    let plan = Arc::new(Plan {
        company_id: Uuid::now_v7(),
        api_key_id: Uuid::new_v4(),
        acting_user_id: Uuid::now_v7(),
        schedule: default_schedule(),
        windows: Windows::after(Utc::now().date_naive()),
    });
    // Every connection is open: the clock starts now.
    let started = Instant::now();
    let shared = Arc::new(Shared {
        attempts: AtomicU64::new(0),
        max_attempts: args.users,
        deadline: limit.and_then(|limit| started.checked_add(limit)),
    });
    let tasks: Vec<_> = connections
        .into_iter()
        .map(|conn| tokio::spawn(client(conn, Arc::clone(&plan), Arc::clone(&shared))))
        .collect();
    let mut hist = Histogram::new();
    let mut errors = 0;
    let mut last_commit: Option<Instant> = None;
    let mut first_error = None;
    for task in tasks {
        let stats = task.await.context("a raw-users client panicked")?;
        hist.merge(&stats.hist);
        errors += stats.errors;
        last_commit = last_commit.max(stats.last_commit);
        first_error = first_error.or(stats.first_error);
    }
    pool.close().await;
    if let Some(error) = first_error {
        eprintln!("kairos-bench raw-users: {errors} transactions failed; the first: {error}");
    }
    let seconds = last_commit
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(started)
        .as_secs_f64();
    let users = hist.count();
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(RawUsersReport {
        users,
        errors,
        duration_seconds: seconds,
        users_per_second: if seconds > 0.0 {
            users as f64 / seconds
        } else {
            0.0
        },
        p50_ms: ms(hist.quantile(0.50)),
        p90_ms: ms(hist.quantile(0.90)),
        p99_ms: ms(hist.quantile(0.99)),
        max_ms: ms(hist.max()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn windows_are_44_weekday_runs_at_eight() {
        // 2026-11-28 is a Saturday: the first run is Monday 2026-11-30.
        let w = Windows::after(NaiveDate::from_ymd_opt(2026, 11, 28).unwrap());
        assert_eq!(w.starts.len(), WINDOW_RUNS);
        assert_eq!((w.steps.len(), w.counts.len()), (WINDOW_RUNS, WINDOW_RUNS));
        assert_eq!(w.starts[0].to_rfc3339(), "2026-11-30T08:00:00+00:00");
        assert!(
            w.starts
                .iter()
                .all(|s| !matches!(s.weekday(), Weekday::Sat | Weekday::Sun))
        );
        assert!(w.covers_from < w.starts[0] && *w.starts.last().unwrap() < w.covers_until);
        assert!(w.refresh_at < w.starts[0]);
    }

    #[test]
    fn rows_are_shaped_like_kairos_events() {
        let plan = Plan {
            company_id: Uuid::now_v7(),
            api_key_id: Uuid::new_v4(),
            acting_user_id: Uuid::now_v7(),
            schedule: default_schedule(),
            windows: Windows::after(NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let user = UserRows::new(&plan, &mut rng);
        let other = UserRows::new(&plan, &mut rng);
        assert_ne!((&user.email, &user.slug), (&other.email, &other.slug));
        assert_eq!(user.payloads.len(), 3);
        let created = &user.payloads[0];
        assert_eq!(created["userId"], json!(user.user_id));
        for field in ["email", "givenName", "familyName", "slug"] {
            assert!(
                created[field]
                    .as_str()
                    .unwrap()
                    .starts_with("kairos:enc:v1:")
            );
        }
        assert_eq!(user.payloads[1]["schedule"].as_array().unwrap().len(), 5);
        assert_eq!(user.payloads[2]["settings"]["horizonDays"], json!(60));
        assert_eq!(user.metadata[0]["companyId"], json!(plan.company_id));
        assert!(user.hashes.iter().all(|h| h.len() == 32));
        assert_ne!(user.hashes[0], user.hashes[1]);
    }
}
