//! Read model `bookable_windows`: every enabled meeting type's slot starts, precomputed for
//! `[today − 1 day, today + horizonDays + 1 day]` in its availability's zone (architecture.md,
//! "Bookable windows read model"). Owns table `bookable_windows` and the in-memory
//! [`WindowsCache`] the query side serves from.
//!
//! The projector recomputes one user at a time, from that user's own event stream folded by
//! the User aggregate itself (so the read model cannot drift from the rule the aggregate
//! keeps), through the pure slot rule of `aggregates::slots`. Starts are stored as arithmetic
//! runs (see the migration for why). Maintenance moves each meeting type's horizon when its
//! zone's date changes.
//!
//! Consistency: a reader that waited for this projector's progress sees the new windows. The
//! projector drops changed users from this process's cache after commit and before its
//! progress is published, and notifies other processes on `kairos_windows` inside the batch's
//! transaction, ahead of the checkpoint notification their listener relays.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use aggregates::slots::{self, Availability};
use aggregates::user::{User, UserEvent, UserState};
use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use cqrs_es::Aggregate;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder, Row};
use uuid::Uuid;

use crate::cache::{Filled, InvalidatingCache};
use crate::clock::SharedClock;
use crate::log::{LogEvent, LogPosition};
use crate::runtime::{ProjectionError, Projector, Subscription};

pub const NAME: &str = "bookable_windows";
/// Other processes drop the users named here (comma-separated; `*` for everyone).
pub const CHANNEL: &str = "kairos_windows";
/// Users recomputed per maintenance transaction.
const MAINTENANCE_CHUNK: i64 = 500;
/// Postgres caps a notification payload at 8000 bytes; 150 UUIDs stay well below.
const IDS_PER_NOTICE: usize = 150;
/// How long maintenance leaves a user whose stream it could not fold before trying again,
/// so one broken user never holds up the users due after it.
const BROKEN_USER_RETRY: Duration = Duration::hours(1);

/// `start + k · step` for `k < count`, in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub start: i64,
    pub step: u32,
    pub count: u32,
}

/// Compresses ascending starts into runs, greedily: a run grows while the next start is one
/// more step on.
pub fn encode_runs(starts: &[DateTime<Utc>]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for start in starts.iter().map(DateTime::timestamp) {
        if let Some(run) = runs.last_mut() {
            let next = run.start + i64::from(run.step) * i64::from(run.count);
            if run.count == 1 && start > run.start {
                if let Ok(step) = u32::try_from(start - run.start) {
                    run.step = step;
                    run.count = 2;
                    continue;
                }
            } else if run.step > 0 && start == next {
                run.count += 1;
                continue;
            }
        }
        runs.push(Run {
            start,
            step: 0,
            count: 1,
        });
    }
    runs
}

/// The starts of `runs` in `[from, to)`, ascending.
pub fn starts_in(runs: &[Run], from: i64, to: i64) -> impl Iterator<Item = i64> + '_ {
    runs.iter().flat_map(move |run| {
        let step = i64::from(run.step.max(1));
        let last = run.start + step * (i64::from(run.count) - 1);
        let first_k = if from <= run.start {
            0
        } else {
            (from - run.start + step - 1) / step
        };
        let (first_k, end_k) = if last < from || run.start >= to {
            (0, 0)
        } else {
            let last_k = if to > last {
                i64::from(run.count)
            } else {
                (to - run.start + step - 1) / step
            };
            (first_k, last_k)
        };
        (first_k..end_k).map(move |k| run.start + k * step)
    })
}

/// One meeting type's windows as the query side holds them.
#[derive(Debug, Clone, PartialEq)]
pub struct MeetingTypeWindows {
    pub meeting_type_id: Uuid,
    pub is_default: bool,
    pub minimum_notice_minutes: u32,
    pub horizon_days: u32,
    pub runs: Vec<Run>,
}

impl MeetingTypeWindows {
    /// Steps 4 and 5 of the rule on the precomputed starts: in `[from, to)`, no earlier than
    /// `now + minimum notice`, before `now + horizon`.
    pub fn starts(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        self.starts_seconds(from, to, now)
            .filter_map(|seconds| DateTime::from_timestamp(seconds, 0))
            .collect()
    }

    /// [`Self::starts`] as seconds since the epoch, without collecting (the query side
    /// formats them as they come).
    pub fn starts_seconds(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = i64> + '_ {
        let earliest = now + Duration::minutes(i64::from(self.minimum_notice_minutes));
        let horizon = now + Duration::days(i64::from(self.horizon_days));
        // Starts are whole seconds and `now` is not: round both bounds up, or a slot at
        // 10:00:00 would still be offered at 10:00:00.7 (`t < now + notice` drops it).
        let lower = whole_seconds_up(from.max(earliest));
        let upper = whole_seconds_up(to.min(horizon));
        starts_in(&self.runs, lower, upper.max(lower))
    }
}

/// The first whole second at or after `at`, as seconds since the epoch.
fn whole_seconds_up(at: DateTime<Utc>) -> i64 {
    at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0)
}

/// A user's windows: all its enabled meeting types, and what a query needs besides.
#[derive(Debug, Clone, PartialEq)]
pub struct UserWindows {
    pub user_id: Uuid,
    pub company_id: Uuid,
    /// The output zone of a query that names none.
    pub user_timezone: Tz,
    pub meeting_types: Vec<MeetingTypeWindows>,
}

impl UserWindows {
    /// What this user's windows cost in memory, the figure the windows cache is bounded by:
    /// the value and everything it owns, plus what the cache spends on an entry (key, the
    /// `Arc`'s counts, the table slot, allocator headers).
    pub fn bytes_in_memory(&self) -> u64 {
        const ENTRY_OVERHEAD: usize = 128;
        let meeting_types: usize = self
            .meeting_types
            .iter()
            .map(|m| m.runs.capacity() * size_of::<Run>())
            .sum();
        (ENTRY_OVERHEAD
            + size_of::<Self>()
            + self.meeting_types.capacity() * size_of::<MeetingTypeWindows>()
            + meeting_types) as u64
    }

    /// The meeting type asked for, or the user's default one.
    pub fn meeting_type(&self, id: Option<Uuid>) -> Option<&MeetingTypeWindows> {
        match id {
            Some(id) => self.meeting_types.iter().find(|m| m.meeting_type_id == id),
            None => self.meeting_types.iter().find(|m| m.is_default),
        }
    }
}

impl UserWindows {
    /// What a projector just wrote for one user (all of its rows).
    fn from_written(user_id: Uuid, rows: &[&WindowRow]) -> Option<Self> {
        let first = rows.first()?;
        Some(Self {
            user_id,
            company_id: first.company_id,
            user_timezone: first.user_tz,
            meeting_types: rows
                .iter()
                .map(|row| MeetingTypeWindows {
                    meeting_type_id: row.meeting_type_id,
                    is_default: row.is_default,
                    minimum_notice_minutes: u32::try_from(row.minimum_notice_minutes).unwrap_or(0),
                    horizon_days: u32::try_from(row.horizon_days).unwrap_or(0),
                    runs: row
                        .run_starts
                        .iter()
                        .zip(&row.run_steps)
                        .zip(&row.run_counts)
                        .map(|((start, step), count)| Run {
                            start: start.timestamp(),
                            step: u32::try_from(*step).unwrap_or(0),
                            count: u32::try_from(*count).unwrap_or(0),
                        })
                        .collect(),
                })
                .collect(),
        })
    }
}

/// The user's windows from the table; `None` if it has none (unknown, deleted, or no
/// enabled meeting type).
pub async fn load_user_windows(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<UserWindows>, sqlx::Error> {
    let sql = format!(
        "SELECT {CACHE_COLUMNS} FROM bookable_windows WHERE user_id = $1 ORDER BY meeting_type_id"
    );
    let rows = sqlx::query(&sql).bind(user_id).fetch_all(db).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut windows = user_from_row(user_id, first)?;
    for row in &rows {
        windows.meeting_types.push(meeting_type_from_row(row)?);
    }
    Ok(Some(windows))
}

/// The columns the query side keeps in memory.
const CACHE_COLUMNS: &str = "user_id, meeting_type_id, company_id, is_default, user_timezone, \
     minimum_notice_minutes, horizon_days, run_starts, run_steps, run_counts";

/// A user's windows without meeting types yet, from any of its rows.
fn user_from_row(user_id: Uuid, row: &sqlx::postgres::PgRow) -> Result<UserWindows, sqlx::Error> {
    let zone: String = row.try_get("user_timezone")?;
    Ok(UserWindows {
        user_id,
        company_id: row.try_get("company_id")?,
        user_timezone: Tz::from_str(&zone)
            .map_err(|_| sqlx::Error::Decode(format!("unknown zone {zone}").into()))?,
        meeting_types: Vec::new(),
    })
}

fn meeting_type_from_row(row: &sqlx::postgres::PgRow) -> Result<MeetingTypeWindows, sqlx::Error> {
    let runs = runs_from_row(row)?;
    Ok(MeetingTypeWindows {
        meeting_type_id: row.try_get("meeting_type_id")?,
        is_default: row.try_get("is_default")?,
        minimum_notice_minutes: u32::try_from(row.try_get::<i32, _>("minimum_notice_minutes")?)
            .unwrap_or(0),
        horizon_days: u32::try_from(row.try_get::<i32, _>("horizon_days")?).unwrap_or(0),
        runs,
    })
}

/// A row's runs, read straight from the three arrays' binary form into one `Vec` of exactly
/// their length. Decoding them first (a `Vec<DateTime<Utc>>` and two `Vec<i32>`, 88 KiB for
/// the heaviest schedule) more than doubled what every cache miss allocates and copies; a
/// load that misses on most heavy users answered ~35% more requests without them.
fn runs_from_row(row: &sqlx::postgres::PgRow) -> Result<Vec<Run>, sqlx::Error> {
    let column = |name: &str| -> Result<Option<&[u8]>, sqlx::Error> {
        let value = row.try_get_raw(name)?;
        if value.format() != sqlx::postgres::PgValueFormat::Binary {
            return Ok(None);
        }
        value.as_bytes().map(Some).map_err(sqlx::Error::Decode)
    };
    let (Some(starts), Some(steps), Some(counts)) = (
        column("run_starts")?,
        column("run_steps")?,
        column("run_counts")?,
    ) else {
        return runs_decoded(row);
    };
    let (starts, steps, counts) = (
        binary_array(starts, 8)?,
        binary_array(steps, 4)?,
        binary_array(counts, 4)?,
    );
    let mut runs = Vec::with_capacity(starts.len().min(steps.len()).min(counts.len()));
    for ((start, step), count) in starts.zip(steps).zip(counts) {
        runs.push(Run {
            start: timestamptz_seconds(start),
            step: u32::try_from(be_i32(&step[4..])).unwrap_or(0),
            count: u32::try_from(be_i32(&count[4..])).unwrap_or(0),
        });
    }
    Ok(runs)
}

/// The same through sqlx's decoders (a row in text format; not what queries here receive).
fn runs_decoded(row: &sqlx::postgres::PgRow) -> Result<Vec<Run>, sqlx::Error> {
    let starts: Vec<DateTime<Utc>> = row.try_get("run_starts")?;
    let steps: Vec<i32> = row.try_get("run_steps")?;
    let counts: Vec<i32> = row.try_get("run_counts")?;
    Ok(starts
        .iter()
        .zip(steps)
        .zip(counts)
        .map(|((start, step), count)| Run {
            start: start.timestamp(),
            step: u32::try_from(step).unwrap_or(0),
            count: u32::try_from(count).unwrap_or(0),
        })
        .collect())
}

/// The elements of a one-dimensional array without nulls in PostgreSQL's binary format
/// (`array_send`: dimensions, a null flag, the element type, each dimension's length and
/// lower bound, then each element as its length and bytes), each `width` bytes long.
fn binary_array(
    bytes: &[u8],
    width: usize,
) -> Result<std::slice::ChunksExact<'_, u8>, sqlx::Error> {
    let bad = |what: &str| sqlx::Error::Decode(format!("run array: {what}").into());
    let header = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(be_i32)
            .ok_or_else(|| bad("truncated"))
    };
    let elements = match header(0)? {
        0 => return Ok([].chunks_exact(width + 4)),
        1 => usize::try_from(header(12)?).map_err(|_| bad("negative length"))?,
        _ => return Err(bad("not one-dimensional")),
    };
    let data = bytes.get(20..).ok_or_else(|| bad("truncated"))?;
    let length = i32::try_from(width).map_err(|_| bad("width"))?;
    if data.len() != elements * (width + 4)
        || data
            .chunks_exact(width + 4)
            .any(|element| be_i32(element) != length)
    {
        return Err(bad("unexpected element length or null"));
    }
    Ok(data.chunks_exact(width + 4))
}

/// A big-endian `int4` (an element's length prefix, or an `int4` element after it).
fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// A `timestamptz` element (microseconds since 2000-01-01 UTC after its length prefix) as
/// whole seconds since the Unix epoch, rounded down like `DateTime::timestamp`.
fn timestamptz_seconds(element: &[u8]) -> i64 {
    const UNIX_TO_POSTGRES_EPOCH: i64 = 946_684_800;
    let micros = i64::from_be_bytes(std::array::from_fn(|i| element[4 + i]));
    micros.div_euclid(1_000_000) + UNIX_TO_POSTGRES_EPOCH
}

/// Users' windows in memory, filled on first use and dropped when they change (see
/// [`crate::cache`] for why that is safe), within a budget in bytes: a user with twelve
/// intervals a day and a year's horizon costs a hundred times one with office hours, so a
/// count of users bounds nothing. Beyond the budget the users read least lately make room.
pub struct WindowsCache {
    users: Arc<InvalidatingCache<Uuid, Arc<UserWindows>, ByBytes>>,
}

/// Weighs a cached user by [`UserWindows::bytes_in_memory`].
#[derive(Clone)]
pub struct ByBytes;

impl crate::cache::Weighter<Uuid, Arc<UserWindows>> for ByBytes {
    fn weight(&self, _user: &Uuid, windows: &Arc<UserWindows>) -> u64 {
        windows.bytes_in_memory()
    }
}

impl WindowsCache {
    /// A cache of at most `budget_bytes` of windows.
    pub fn new(budget_bytes: u64) -> Self {
        // Sized for users of office hours over a few months (about 1 KiB each); the heaviest
        // user the API allows (twelve intervals a day for a year, a few meeting types) takes
        // a few hundred KiB.
        let estimated_users = usize::try_from(budget_bytes / 1024).unwrap_or(usize::MAX);
        Self {
            users: Arc::new(InvalidatingCache::with_weighter(
                budget_bytes,
                estimated_users,
                256 * 1024,
                ByBytes,
            )),
        }
    }

    /// The user's windows, from memory or else from the table.
    pub async fn get(
        &self,
        db: impl PgExecutor<'_>,
        user_id: Uuid,
    ) -> Result<Option<Arc<UserWindows>>, sqlx::Error> {
        self.users
            .get_or_load(user_id, async {
                Ok(load_user_windows(db, user_id).await?.map(Arc::new))
            })
            .await
    }

    /// The payload telling other processes to drop these users.
    pub fn notice(&self, user_ids: &[Uuid]) -> String {
        self.users.notice(user_ids)
    }

    /// Stores what the projector just wrote for a user.
    pub fn put(&self, user_id: Uuid, windows: Arc<UserWindows>) {
        self.users.put(user_id, windows);
    }

    pub fn invalidate(&self, user_ids: impl IntoIterator<Item = Uuid>) {
        self.users.invalidate(user_ids);
    }

    /// Loads users' windows until the budget is full, so that no query after a restart pays
    /// a database round trip (all of them, if they fit). It stops at the budget rather than
    /// evict what queries loaded meanwhile; users beyond it load on use. Rows changed while
    /// this runs are left to be loaded on use too. Returns how many users it stored.
    pub async fn warm(&self, pool: &sqlx::PgPool) -> Result<usize, sqlx::Error> {
        let generations = self.users.generations();
        let sql = format!(
            "SELECT {CACHE_COLUMNS} FROM bookable_windows ORDER BY user_id, meeting_type_id"
        );
        let mut rows = sqlx::query(&sql).fetch(pool);
        let mut current: Option<UserWindows> = None;
        let mut users = 0;
        while let Some(row) = futures::TryStreamExt::try_next(&mut rows).await? {
            let user_id: Uuid = row.try_get("user_id")?;
            if current.as_ref().is_none_or(|user| user.user_id != user_id) {
                if let Some(done) = current.take() {
                    match self.users.fill(done.user_id, Arc::new(done), &generations) {
                        Filled::Stored => users += 1,
                        Filled::Skipped => {}
                        // Dropping the stream ends the query: nothing more is read.
                        Filled::Full => return Ok(users),
                    }
                }
                current = Some(user_from_row(user_id, &row)?);
            }
            if let Some(user) = current.as_mut() {
                user.meeting_types.push(meeting_type_from_row(&row)?);
            }
        }
        if let Some(done) = current
            && self.users.fill(done.user_id, Arc::new(done), &generations) == Filled::Stored
        {
            users += 1;
        }
        Ok(users)
    }

    pub fn clear(&self) {
        self.users.clear();
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// What the cached users weigh together, in bytes; never more than [`Self::budget`].
    pub fn bytes(&self) -> u64 {
        self.users.weight()
    }

    pub fn budget(&self) -> u64 {
        self.users.budget()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Follows `kairos_windows`, for [`crate::runtime::Runtime::subscribe`].
    pub fn subscription(&self) -> Subscription {
        self.users
            .subscription(CHANNEL, |id| Uuid::parse_str(id).ok())
    }
}

pub struct BookableWindowsProjector {
    clock: SharedClock,
    cache: Arc<WindowsCache>,
    /// What the transaction in progress wrote, put into this process's cache once it
    /// commits (write-through: a reader here never has to load what was just computed).
    written: Mutex<Vec<(Uuid, Option<Arc<UserWindows>>)>>,
}

impl BookableWindowsProjector {
    pub fn new(clock: SharedClock, cache: Arc<WindowsCache>) -> Self {
        Self {
            clock,
            cache,
            written: Mutex::new(Vec::new()),
        }
    }

    /// Adds to what the transaction in progress wrote, once `apply` succeeded (a failed
    /// `apply` in a savepoint is rolled back alone and stages nothing). A transaction may
    /// call `apply` more than once (a batch applied event by event to set a poison event
    /// aside), and ends in `committed` or `abandoned`, which take the whole list.
    fn remember(&self, written: Vec<(Uuid, Option<Arc<UserWindows>>)>) {
        self.written.lock().expect("written lock").extend(written);
    }

    /// The staged windows may or may not be in the table: forget them and their users.
    fn discard(&self) {
        let written = std::mem::take(&mut *self.written.lock().expect("written lock"));
        self.cache
            .invalidate(written.into_iter().map(|(user_id, _)| user_id));
    }

    fn publish(&self) {
        let written = std::mem::take(&mut *self.written.lock().expect("written lock"));
        for (user_id, windows) in written {
            match windows {
                Some(windows) => self.cache.put(user_id, windows),
                None => self.cache.invalidate([user_id]),
            }
        }
    }
}

#[async_trait]
impl Projector for BookableWindowsProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["bookable_windows"]
    }

    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError> {
        // A stream that starts in this batch (a user created) is folded from the batch; the
        // others are read back from the log up to the batch's last sequence.
        let mut from_batch: BTreeMap<&str, User> = BTreeMap::new();
        let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == User::TYPE) {
            let id = event.aggregate_id.as_str();
            if let Some(user) = from_batch.get_mut(id) {
                user.apply(event.decode()?);
            } else if event.sequence == 1 {
                let mut user = User::default();
                user.apply(event.decode()?);
                from_batch.insert(id, user);
            } else {
                let sequence = latest.entry(id).or_default();
                *sequence = (*sequence).max(event.sequence);
            }
        }
        if from_batch.is_empty() && latest.is_empty() {
            return Ok(());
        }
        let mut users = if latest.is_empty() {
            Vec::new()
        } else {
            // In a batch, a stream that does not fold fails the batch: the runtime then
            // finds the event to blame and quarantines its aggregate alone.
            let loaded = load_users(&mut *tx, &latest, None).await?;
            if let Some((user_id, reason)) = loaded.broken.into_iter().next() {
                return Err(ProjectionError::Invalid(format!(
                    "user {user_id}: {reason}"
                )));
            }
            loaded.users
        };
        let mut fresh = HashSet::new();
        for (id, user) in from_batch {
            let user_id = crate::user_profiles::parse_id(id)?;
            fresh.insert(user_id);
            users.push((user_id, user));
        }
        let written = recompute(&mut *tx, &self.cache, &users, &fresh, self.clock.now()).await?;
        self.remember(written);
        Ok(())
    }

    /// Personal fields play no part in windows (the streams it folds keep them sealed).
    fn needs_personal_data(&self) -> bool {
        false
    }

    fn committed(&self, _events: &[LogEvent]) {
        self.publish();
    }

    fn abandoned(&self, _events: &[LogEvent]) {
        self.discard();
    }

    async fn maintain(
        &self,
        tx: &mut PgConnection,
        applied: LogPosition,
    ) -> Result<Vec<String>, ProjectionError> {
        // A user this projector set aside is left alone: its stream may not fold, and one
        // such user must not fail the upkeep of all the others (crate::quarantine).
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM bookable_windows w WHERE refresh_at <= $1 \
               AND NOT EXISTS (SELECT 1 FROM projector_quarantine q \
                               WHERE q.projector = $3 AND q.aggregate_type = 'User' \
                                 AND q.aggregate_id = w.user_id::text) \
             ORDER BY refresh_at LIMIT $2",
        )
        .bind(self.clock.now())
        .bind(MAINTENANCE_CHUNK)
        .bind(NAME)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut due = due;
        due.sort_unstable();
        due.dedup();
        let ids: Vec<String> = due.iter().map(Uuid::to_string).collect();
        let latest: BTreeMap<&str, i64> = ids.iter().map(|id| (id.as_str(), i64::MAX)).collect();
        let loaded = load_users(&mut *tx, &latest, Some(applied)).await?;
        let now = self.clock.now();
        if !loaded.broken.is_empty() {
            // Its windows stay as they were until its stream folds again; the others due
            // behind it move on now.
            let broken: Vec<Uuid> = loaded.broken.iter().map(|(id, _)| *id).collect();
            for (user_id, reason) in &loaded.broken {
                tracing::error!(projector = NAME, %user_id, %reason, "cannot move this user's windows forward; retrying later");
            }
            sqlx::query("UPDATE bookable_windows SET refresh_at = $2 WHERE user_id = ANY($1)")
                .bind(&broken)
                .bind(now + BROKEN_USER_RETRY)
                .execute(&mut *tx)
                .await?;
        }
        let written = recompute(&mut *tx, &self.cache, &loaded.users, &HashSet::new(), now).await?;
        self.remember(written);
        Ok(ids)
    }

    fn maintained(&self, _keys: &[String]) {
        self.publish();
    }
}

/// Users folded from their streams, and those whose stream did not fold (with the reason).
struct LoadedUsers {
    users: Vec<(Uuid, User)>,
    broken: Vec<(Uuid, String)>,
}

/// Folds each user's stream, up to the given sequence and (for maintenance) no further than
/// what the projector has applied, into the User aggregate. A stream with an event that
/// does not decode is reported in `broken`, not folded, so the caller decides whether one
/// user's bad stream fails the others.
async fn load_users(
    tx: &mut PgConnection,
    latest: &BTreeMap<&str, i64>,
    applied: Option<LogPosition>,
) -> Result<LoadedUsers, ProjectionError> {
    let ids: Vec<&str> = latest.keys().copied().collect();
    // The position filter is applied here, not in SQL: a row comparison in the WHERE clause
    // tempts the generic plan of this prepared statement onto the commit-order index, a scan
    // of the whole log, instead of the primary key.
    let rows = sqlx::query(
        "SELECT aggregate_id, sequence, event_type, payload, tx_id::text AS tx_id_text, global_position \
         FROM events WHERE aggregate_type = $1 AND aggregate_id = ANY($2) ORDER BY aggregate_id, sequence",
    )
    .bind(User::TYPE)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut users: Vec<(Uuid, User)> = Vec::with_capacity(ids.len());
    let mut broken: Vec<(Uuid, String)> = Vec::new();
    for row in rows {
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let sequence: i64 = row.try_get("sequence")?;
        let Ok(user_id) = Uuid::parse_str(&aggregate_id) else {
            continue;
        };
        if broken.last().is_some_and(|(id, _)| *id == user_id) {
            continue;
        }
        if latest
            .get(aggregate_id.as_str())
            .is_some_and(|last| sequence > *last)
        {
            continue;
        }
        if let Some(applied) = applied {
            let at = LogPosition {
                tx_id: crate::log::parse_xid(&row.try_get::<String, _>("tx_id_text")?),
                position: row.try_get("global_position")?,
            };
            if at > applied {
                continue;
            }
        }
        let event_type: String = row.try_get("event_type")?;
        let event: UserEvent =
            match aggregates::effects::event_from_payload(&event_type, row.try_get("payload")?) {
                Ok(event) => event,
                Err(error) => {
                    if users.last().is_some_and(|(id, _)| *id == user_id) {
                        users.pop();
                    }
                    // The category only: serde's message can quote the stored value, and
                    // this text becomes a quarantine reason, kept and logged.
                    broken.push((
                        user_id,
                        format!(
                            "event {sequence} ({event_type}) does not decode ({:?} error)",
                            error.classify()
                        ),
                    ));
                    continue;
                }
            };
        match users.last_mut() {
            Some((id, user)) if *id == user_id => user.apply(event),
            _ => {
                let mut user = User::default();
                user.apply(event);
                users.push((user_id, user));
            }
        }
    }
    // Users without events in range (deleted and gone, or unknown) are cleared too.
    for id in ids {
        if let Ok(user_id) = Uuid::parse_str(id)
            && !users.iter().any(|(known, _)| *known == user_id)
            && !broken.iter().any(|(known, _)| *known == user_id)
        {
            users.push((user_id, User::default()));
        }
    }
    Ok(LoadedUsers { users, broken })
}

/// One row of the table.
struct WindowRow {
    meeting_type_id: Uuid,
    user_id: Uuid,
    company_id: Uuid,
    is_default: bool,
    user_tz: Tz,
    user_timezone: &'static str,
    availability_timezone: &'static str,
    minimum_notice_minutes: i32,
    horizon_days: i32,
    covers_from: DateTime<Utc>,
    covers_until: DateTime<Utc>,
    refresh_at: DateTime<Utc>,
    run_starts: Vec<DateTime<Utc>>,
    run_steps: Vec<i32>,
    run_counts: Vec<i32>,
}

/// The rows of one live user at `now`: one per enabled meeting type.
fn rows_for(state: &UserState, now: DateTime<Utc>) -> Vec<WindowRow> {
    let mut rows = Vec::new();
    for meeting_type in state.meeting_types.iter().filter(|m| m.enabled) {
        let Some(availability) = state
            .availabilities
            .iter()
            .find(|a| a.id == meeting_type.availability_id)
        else {
            continue;
        };
        let zone = availability.effective_timezone(state.timezone);
        let tz = zone.tz();
        let today = now.with_timezone(&tz).date_naive();
        let horizon = i64::from(meeting_type.settings.horizon_days);
        let midnight =
            |date: NaiveDate| slots::resolve_local(tz, date.and_time(chrono::NaiveTime::MIN));
        let covers_from = midnight(today - Duration::days(1));
        let covers_until = midnight(today + Duration::days(horizon + 2));
        let rule = Availability {
            schedule: &availability.schedule,
            tz,
            available_exceptions: &[],
            blocking_exceptions: &[],
        };
        let starts = slots::candidate_starts(
            &rule,
            &[],
            &meeting_type.settings.slot_settings(),
            covers_from,
            covers_until,
        );
        let runs = encode_runs(&starts);
        rows.push(WindowRow {
            meeting_type_id: meeting_type.id,
            user_id: state.id,
            company_id: state.company_id,
            is_default: state.default_meeting_type_id == Some(meeting_type.id),
            user_tz: state.timezone.tz(),
            user_timezone: state.timezone.name(),
            availability_timezone: zone.name(),
            minimum_notice_minutes: i32::try_from(meeting_type.settings.minimum_notice_minutes)
                .unwrap_or(i32::MAX),
            horizon_days: i32::try_from(meeting_type.settings.horizon_days).unwrap_or(i32::MAX),
            covers_from,
            covers_until,
            refresh_at: midnight(today + Duration::days(1)),
            run_starts: runs
                .iter()
                .filter_map(|r| DateTime::from_timestamp(r.start, 0))
                .collect(),
            run_steps: runs
                .iter()
                .map(|r| i32::try_from(r.step).unwrap_or(i32::MAX))
                .collect(),
            run_counts: runs
                .iter()
                .map(|r| i32::try_from(r.count).unwrap_or(i32::MAX))
                .collect(),
        });
    }
    rows
}

/// Replaces the rows of `users` with what their state gives at `now`, and tells other
/// processes which users changed. Returns each user's new windows (`None`: it has none), for
/// this process's cache once the transaction commits.
async fn recompute(
    tx: &mut PgConnection,
    cache: &WindowsCache,
    users: &[(Uuid, User)],
    fresh: &HashSet<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<(Uuid, Option<Arc<UserWindows>>)>, ProjectionError> {
    // A user whose first event is in this batch has no rows yet: nothing to delete. (Most
    // batches are creations, and the delete's plan is at the mercy of table statistics.)
    let ids: Vec<Uuid> = users.iter().map(|(id, _)| *id).collect();
    let existing: Vec<Uuid> = users
        .iter()
        .filter(|(id, _)| !fresh.contains(id))
        .map(|(id, _)| *id)
        .collect();
    if !existing.is_empty() {
        sqlx::query("DELETE FROM bookable_windows WHERE user_id = ANY($1)")
            .bind(&existing)
            .execute(&mut *tx)
            .await?;
    }
    let rows: Vec<WindowRow> = users
        .iter()
        .filter_map(|(_, user)| user.state().filter(|state| !state.deleted))
        .flat_map(|state| rows_for(state, now))
        .collect();
    for chunk in rows.chunks(1000) {
        let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
            "INSERT INTO bookable_windows (meeting_type_id, user_id, company_id, is_default, user_timezone, \
             availability_timezone, minimum_notice_minutes, horizon_days, covers_from, covers_until, refresh_at, \
             run_starts, run_steps, run_counts) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.meeting_type_id)
                .push_bind(row.user_id)
                .push_bind(row.company_id)
                .push_bind(row.is_default)
                .push_bind(row.user_timezone)
                .push_bind(row.availability_timezone)
                .push_bind(row.minimum_notice_minutes)
                .push_bind(row.horizon_days)
                .push_bind(row.covers_from)
                .push_bind(row.covers_until)
                .push_bind(row.refresh_at)
                .push_bind(&row.run_starts)
                .push_bind(&row.run_steps)
                .push_bind(&row.run_counts);
        });
        // Rows of a user created in this batch are inserted without a delete first; in a
        // replay (a checkpoint moved back by hand) they exist and are overwritten. A user's
        // later events then recompute it whole, so the table converges on the log.
        insert.push(
            " ON CONFLICT (meeting_type_id) DO UPDATE SET user_id = EXCLUDED.user_id, \
             company_id = EXCLUDED.company_id, is_default = EXCLUDED.is_default, \
             user_timezone = EXCLUDED.user_timezone, availability_timezone = EXCLUDED.availability_timezone, \
             minimum_notice_minutes = EXCLUDED.minimum_notice_minutes, horizon_days = EXCLUDED.horizon_days, \
             covers_from = EXCLUDED.covers_from, covers_until = EXCLUDED.covers_until, \
             refresh_at = EXCLUDED.refresh_at, run_starts = EXCLUDED.run_starts, \
             run_steps = EXCLUDED.run_steps, run_counts = EXCLUDED.run_counts",
        );
        insert.build().execute(&mut *tx).await?;
    }
    for chunk in ids.chunks(IDS_PER_NOTICE) {
        let payload = cache.notice(chunk);
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&mut *tx)
            .await?;
    }
    let written = users
        .iter()
        .map(|(user_id, _)| {
            let mine: Vec<&WindowRow> = rows.iter().filter(|row| row.user_id == *user_id).collect();
            (
                *user_id,
                UserWindows::from_written(*user_id, &mine).map(Arc::new),
            )
        })
        .collect();
    Ok(written)
}

#[cfg(test)]
mod binary_array_tests {
    use super::*;

    /// `array_send` of a one-dimensional array of `int4` without nulls.
    fn int4_array(values: &[i32]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [1, 0, 23, values.len() as i32, 1] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for value in values {
            bytes.extend_from_slice(&4i32.to_be_bytes());
            bytes.extend_from_slice(&value.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn an_array_in_binary_form_yields_its_elements_and_a_malformed_one_is_an_error() {
        let bytes = int4_array(&[300, -1, 7]);
        let values: Vec<i32> = binary_array(&bytes, 4)
            .unwrap()
            .map(|element| be_i32(&element[4..]))
            .collect();
        assert_eq!(values, [300, -1, 7]);
        let empty = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 23];
        assert_eq!(binary_array(&empty, 4).unwrap().count(), 0);
        assert!(
            binary_array(&bytes[..bytes.len() - 1], 4).is_err(),
            "truncated"
        );
        assert!(binary_array(&bytes, 8).is_err(), "wrong element width");
        let mut null = int4_array(&[1, 2]);
        null[20..24].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(binary_array(&null, 4).is_err(), "a null element");
    }

    #[test]
    fn a_timestamptz_element_is_whole_seconds_since_the_unix_epoch_rounded_down() {
        let element = |micros: i64| [&8i32.to_be_bytes()[..], &micros.to_be_bytes()].concat();
        assert_eq!(timestamptz_seconds(&element(0)), 946_684_800);
        assert_eq!(timestamptz_seconds(&element(1_500_000)), 946_684_801);
        assert_eq!(timestamptz_seconds(&element(-1)), 946_684_799);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user_with_runs(runs_per_meeting_type: &[usize]) -> UserWindows {
        UserWindows {
            user_id: Uuid::nil(),
            company_id: Uuid::nil(),
            user_timezone: Tz::UTC,
            meeting_types: runs_per_meeting_type
                .iter()
                .map(|runs| MeetingTypeWindows {
                    meeting_type_id: Uuid::nil(),
                    is_default: true,
                    minimum_notice_minutes: 0,
                    horizon_days: 60,
                    runs: (0..*runs)
                        .map(|k| Run {
                            start: k as i64 * 86_400,
                            step: 300,
                            count: 12,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_user_weighs_its_runs_so_the_heaviest_schedules_cost_what_they_take() {
        // Office hours over the default 60 days: one run a weekday. Twelve intervals a day
        // over a year, for the default and a custom meeting type: twelve runs a day, twice.
        let default = user_with_runs(&[45]).bytes_in_memory();
        let heaviest = user_with_runs(&[12 * 367, 12 * 367]).bytes_in_memory();
        assert!(heaviest >= 2 * 12 * 367 * 16, "{heaviest}");
        assert!(heaviest >= 80 * default, "{heaviest} vs {default}");
        assert!((45 * 16..2048).contains(&default), "{default}");
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn runs_round_trip_any_ascending_starts() {
        let starts: Vec<DateTime<Utc>> =
            [0, 1800, 3600, 5400, 9000, 10800, 20000, 20001, 20002, 50000]
                .into_iter()
                .map(at)
                .collect();
        let runs = encode_runs(&starts);
        assert_eq!(
            runs,
            vec![
                Run {
                    start: 0,
                    step: 1800,
                    count: 4
                },
                Run {
                    start: 9000,
                    step: 1800,
                    count: 2
                },
                Run {
                    start: 20000,
                    step: 1,
                    count: 3
                },
                Run {
                    start: 50000,
                    step: 0,
                    count: 1
                },
            ]
        );
        let back: Vec<i64> = starts_in(&runs, i64::MIN, i64::MAX).collect();
        assert_eq!(
            back,
            starts.iter().map(DateTime::timestamp).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_start_is_offered_only_from_the_instant_notice_allows_to_the_instant_before_the_horizon() {
        let windows = MeetingTypeWindows {
            meeting_type_id: Uuid::nil(),
            is_default: true,
            minimum_notice_minutes: 0,
            horizon_days: 1,
            runs: vec![Run {
                start: 1_000,
                step: 1_800,
                count: 60,
            }],
        };
        let at = |seconds: i64, millis: u32| {
            DateTime::from_timestamp(seconds, millis * 1_000_000).expect("in range")
        };
        let range = (at(0, 0), at(1_000_000, 0));
        let offered = |now| {
            windows
                .starts_seconds(range.0, range.1, now)
                .collect::<Vec<_>>()
        };
        // Exactly at a start it is offered; 0.7 s later it has begun and is not.
        assert_eq!(offered(at(1_000, 0)).first(), Some(&1_000));
        assert_eq!(offered(at(1_000, 700)).first(), Some(&2_800));
        // The horizon is exclusive: a start 0.3 s before it is offered, one exactly at it not.
        let last = 1_000 + 1_800 * 48; // now 1_000 + 86_400 s
        assert_eq!(offered(at(1_000, 0)).last(), Some(&(last - 1_800)));
        assert_eq!(offered(at(1_000, 300)).last(), Some(&last));
    }

    #[test]
    fn starts_in_a_range_are_cut_exactly_at_both_ends() {
        let runs = [Run {
            start: 100,
            step: 10,
            count: 10,
        }]; // 100 … 190
        let cut: Vec<i64> = starts_in(&runs, 125, 160).collect();
        assert_eq!(cut, vec![130, 140, 150]);
        assert_eq!(starts_in(&runs, 100, 101).collect::<Vec<_>>(), vec![100]);
        assert_eq!(starts_in(&runs, 190, 1000).collect::<Vec<_>>(), vec![190]);
        assert_eq!(starts_in(&runs, 191, 1000).count(), 0);
        assert_eq!(starts_in(&runs, 0, 100).count(), 0);
    }

    #[test]
    fn notice_and_horizon_filter_the_precomputed_starts() {
        let windows = MeetingTypeWindows {
            meeting_type_id: Uuid::nil(),
            is_default: true,
            minimum_notice_minutes: 60,
            horizon_days: 1,
            runs: vec![Run {
                start: 0,
                step: 1800,
                count: 100,
            }],
        };
        let now = at(3600);
        let starts = windows.starts(at(0), at(1_000_000), now);
        assert_eq!(starts.first(), Some(&at(7200)), "an hour's notice");
        assert_eq!(
            starts.last(),
            Some(&at(3600 + 86400 - 1800)),
            "a day's horizon, exclusive"
        );
    }
}
