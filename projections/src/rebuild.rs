//! Rebuilding read models from position 0 while the live ones keep serving (api.md
//! section 8, `kairos projections rebuild`).
//!
//! 1. Shadow tables are made in schema `kairos_rebuild` as copies of the live tables' shape
//!    (`LIKE … INCLUDING ALL`: the migrations stay the only definition of a table).
//! 2. The projectors replay the log into them in batches, reading it once for all of them,
//!    with `search_path = kairos_rebuild, public` so their unqualified SQL writes the shadows
//!    while `events` and `data_keys` still resolve to the real ones. Measured on 2 cores, the
//!    work overlaps: the next batch is read while this one is applied, and each projector
//!    applies it on a connection of its own (25k → 36k events/s). Reading the log once per
//!    projector instead was slower (19k).
//! 3. One transaction locks the projectors' checkpoint rows (the live leaders pause after
//!    their current batch), applies what was appended meanwhile, moves the live tables out
//!    to `kairos_retired` and the shadows into `public`, sets the checkpoints to the
//!    rebuild's position and tells every process to drop its caches. Readers wait for the
//!    swap's locks for a moment and continue on the new tables; the swap gives up its locks
//!    after a short `lock_timeout` rather than make a reader wait long, and tries again.
//! 4. The retired tables are dropped.
//!
//! An event a projector cannot apply quarantines its aggregate in the rebuild as it does in
//! the live runtime ([`crate::quarantine`]): the rebuild goes on, and the swap replaces the
//! projectors' quarantine rows with what the replay set aside.
//!
//! Any other error before the swap commits drops the shadows and leaves the live tables, their
//! checkpoints and their leaders exactly as they were: a failed rebuild never looks like an
//! empty success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Acquire, Executor, PgConnection, PgPool, Row};
use tokio::task::JoinSet;

use std::collections::HashMap;

use crate::keyring::Keyring;
use crate::log::{self, LogError, LogEvent, LogPosition};
use crate::quarantine::{self, Accumulated};
use crate::runtime::{ADVISORY_LOCK_CLASS, ProjectionError, Projector, ensure_checkpoint};

const SHADOW_SCHEMA: &str = "kairos_rebuild";
const RETIRED_SCHEMA: &str = "kairos_retired";
/// Processes drop every cache of rebuilt read models when this is notified.
pub const REBUILT_CHANNEL: &str = "kairos_rebuilt";

#[derive(Debug, Clone)]
pub struct RebuildOptions {
    pub batch_size: i64,
    /// How long the swap waits for a table lock before letting readers go and retrying.
    pub swap_lock_timeout: Duration,
    pub swap_attempts: u32,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            swap_lock_timeout: Duration::from_millis(300),
            swap_attempts: 50,
        }
    }
}

/// What a finished rebuild did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RebuildReport {
    pub projectors: Vec<String>,
    pub tables: Vec<String>,
    pub events: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub position: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("another rebuild is running on this database")]
    AlreadyRunning,
    #[error("replaying the log failed at {0}; the live read models are untouched")]
    Replay(#[source] ProjectionError),
    #[error(
        "the swap could not take its locks after {0} attempts; the live read models are untouched"
    )]
    SwapContended(u32),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<LogError> for RebuildError {
    fn from(error: LogError) -> Self {
        RebuildError::Replay(ProjectionError::Log(error))
    }
}

/// Told how a rebuild advances (the CLI draws a progress bar from it).
pub trait RebuildProgress: Send {
    fn started(&mut self, total_events: u64);
    fn advanced(&mut self, events: u64);
    fn swapping(&mut self);
}

/// A progress sink that ignores everything.
pub struct Silent;

impl RebuildProgress for Silent {
    fn started(&mut self, _total_events: u64) {}
    fn advanced(&mut self, _events: u64) {}
    fn swapping(&mut self) {}
}

/// How long the swap waits for the live leaders to finish their batch.
const CHECKPOINT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Rebuilds `projectors` from position 0 and swaps them in. `owner` must connect as the
/// tables' owner (DDL).
pub async fn rebuild(
    owner: &PgPool,
    keyring: &Keyring,
    projectors: &[Arc<dyn Projector>],
    options: &RebuildOptions,
    progress: &mut dyn RebuildProgress,
) -> Result<RebuildReport, RebuildError> {
    let started = Instant::now();
    let mut connection = owner.acquire().await?;
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext('kairos-rebuild'))")
            .bind(ADVISORY_LOCK_CLASS)
            .fetch_one(&mut *connection)
            .await?;
    if !locked {
        return Err(RebuildError::AlreadyRunning);
    }
    let tables: Vec<&'static str> = projectors
        .iter()
        .flat_map(|p| p.tables().iter().copied())
        .collect();
    let result = async {
        for projector in projectors {
            ensure_checkpoint(owner, projector.name()).await?;
        }
        create_shadows(&mut connection, &tables).await?;
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut *connection)
            .await?;
        progress.started(u64::try_from(total).unwrap_or(0));
        let mut shadow = LogPosition::START;
        let mut events = 0u64;
        // Replay while the log grows; the swap applies the last few batches under its locks.
        // The next batch is read and decoded on a second connection while this one is
        // applied, so the database's work and ours overlap instead of taking turns.
        let personal = projectors.iter().any(|p| p.needs_personal_data());
        let mut set_aside: HashMap<&'static str, Accumulated> = projectors
            .iter()
            .map(|p| (p.name(), Accumulated::default()))
            .collect();
        let mut prefetch = JoinSet::new();
        prefetch.spawn(fetch_batch(
            owner.clone(),
            keyring.clone(),
            shadow,
            options.batch_size,
            personal,
        ));
        while let Some(fetched) = prefetch.join_next().await {
            let batch = fetched.map_err(|e| {
                RebuildError::Replay(ProjectionError::Invalid(format!("reading the log: {e}")))
            })??;
            let Some(last) = batch.events.last().map(|e| e.log_position()) else {
                break;
            };
            let full = batch.events.len() as i64 >= options.batch_size;
            if full {
                prefetch.spawn(fetch_batch(
                    owner.clone(),
                    keyring.clone(),
                    last,
                    options.batch_size,
                    personal,
                ));
            }
            let batch = Arc::new(batch);
            let mut applying = JoinSet::new();
            for projector in projectors {
                applying.spawn(apply_in_shadow(
                    owner.clone(),
                    projector.clone(),
                    batch.clone(),
                    set_aside[projector.name()].clone(),
                ));
            }
            while let Some(applied) = applying.join_next().await {
                let (name, changes) = applied.map_err(|e| {
                    RebuildError::Replay(ProjectionError::Invalid(format!("replaying: {e}")))
                })??;
                if let Some(accumulated) = set_aside.get_mut(name) {
                    accumulated.merge(changes);
                }
            }
            shadow = last;
            events += batch.events.len() as u64;
            progress.advanced(batch.events.len() as u64);
        }
        progress.swapping();
        let swapped = swap(
            &mut connection,
            keyring,
            projectors,
            &tables,
            options,
            shadow,
            events,
            progress,
            &mut set_aside,
        )
        .await?;
        events = swapped.1;
        let position = swapped.0;
        // The swap committed: the rebuild succeeded whatever happens to the old tables now.
        for table in &tables {
            if let Err(error) = connection
                .execute(format!("DROP TABLE IF EXISTS {RETIRED_SCHEMA}.{table}").as_str())
                .await
            {
                tracing::warn!(%error, table, "could not drop the retired table; the next rebuild will");
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(RebuildReport {
            projectors: projectors.iter().map(|p| p.name().to_string()).collect(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            events,
            seconds,
            events_per_second: if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
            position: position.position,
        })
    }
    .await;
    if result.is_err() {
        // Best effort: the live tables were never touched; only the shadows go.
        for table in &tables {
            let _ = connection
                .execute(format!("DROP TABLE IF EXISTS {SHADOW_SCHEMA}.{table}").as_str())
                .await;
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1, hashtext('kairos-rebuild'))")
        .bind(ADVISORY_LOCK_CLASS)
        .execute(&mut *connection)
        .await;
    result
}

async fn create_shadows(connection: &mut PgConnection, tables: &[&str]) -> Result<(), sqlx::Error> {
    connection
        .execute(format!("CREATE SCHEMA IF NOT EXISTS {SHADOW_SCHEMA}; CREATE SCHEMA IF NOT EXISTS {RETIRED_SCHEMA}").as_str())
        .await?;
    for table in tables {
        connection
            .execute(
                format!(
                    "DROP TABLE IF EXISTS {SHADOW_SCHEMA}.{table}; \
                     CREATE TABLE {SHADOW_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL); \
                     GRANT SELECT, INSERT, UPDATE, DELETE ON {SHADOW_SCHEMA}.{table} TO kairos_service"
                )
                .as_str(),
            )
            .await?;
        // `LIKE … INCLUDING ALL` leaves out storage parameters (the migrations tune
        // autovacuum per table): carry them over too.
        let options: Option<String> = sqlx::query_scalar(
            "SELECT array_to_string(reloptions, ', ') FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(format!("public.{table}"))
        .fetch_one(&mut *connection)
        .await?;
        if let Some(options) = options.filter(|o| !o.is_empty()) {
            connection
                .execute(format!("ALTER TABLE {SHADOW_SCHEMA}.{table} SET ({options})").as_str())
                .await?;
        }
    }
    Ok(())
}

/// A batch of the log, personal fields opened where they would.
struct Fetched {
    events: Vec<LogEvent>,
    /// Events whose declared fields did not open, by index, with why.
    unopened: Vec<(usize, String)>,
}

impl Fetched {
    /// The events `projector` cannot be given, as [`quarantine`] takes them.
    fn unopened_for(&self, projector: &dyn Projector) -> HashMap<usize, ProjectionError> {
        if !projector.needs_personal_data() {
            return HashMap::new();
        }
        self.unopened
            .iter()
            .map(|(index, reason)| (*index, ProjectionError::Invalid(reason.clone())))
            .collect()
    }
}

/// Reads the batch after `after` on a connection of its own, personal fields opened.
async fn fetch_batch(
    owner: PgPool,
    keyring: Keyring,
    after: LogPosition,
    batch_size: i64,
    personal: bool,
) -> Result<Fetched, RebuildError> {
    let mut connection = owner.acquire().await?;
    read_batch(&mut connection, &keyring, after, batch_size, personal).await
}

async fn read_batch(
    connection: &mut PgConnection,
    keyring: &Keyring,
    after: LogPosition,
    batch_size: i64,
    personal: bool,
) -> Result<Fetched, RebuildError> {
    let mut events = log::read_after(&mut *connection, after, batch_size).await?;
    let unopened = if personal {
        log::open_personal_fields_each(&mut *connection, keyring, &mut events)
            .await?
            .into_iter()
            .map(|(index, error)| (index, quarantine::reason(&ProjectionError::Log(error))))
            .collect()
    } else {
        Vec::new()
    };
    Ok(Fetched { events, unopened })
}

/// Applies one batch after `shadow` to every projector, reading it inside `tx`; returns how
/// many events it held.
async fn replay_batch(
    tx: &mut PgConnection,
    keyring: &Keyring,
    projectors: &[Arc<dyn Projector>],
    shadow: &mut LogPosition,
    batch_size: i64,
    set_aside: &mut HashMap<&'static str, Accumulated>,
) -> Result<u64, RebuildError> {
    let personal = projectors.iter().any(|p| p.needs_personal_data());
    let batch = read_batch(&mut *tx, keyring, *shadow, batch_size, personal).await?;
    let Some(last) = batch.events.last().map(|e| e.log_position()) else {
        return Ok(0);
    };
    for projector in projectors {
        let accumulated = set_aside.entry(projector.name()).or_default();
        // The swap's transaction holds every projector: a savepoint lets one projector's
        // failing batch be applied again event by event without undoing the others.
        sqlx::query("SAVEPOINT kairos_rebuild_batch")
            .execute(&mut *tx)
            .await?;
        let changes =
            match apply_guarded_once(&mut *tx, projector.as_ref(), &batch, accumulated).await {
                Err(error) if quarantine::is_permanent(&error) => {
                    sqlx::query("ROLLBACK TO SAVEPOINT kairos_rebuild_batch")
                        .execute(&mut *tx)
                        .await?;
                    projector.abandoned(&[]);
                    quarantine::apply_isolating(
                        &mut *tx,
                        projector.as_ref(),
                        &batch.events,
                        &accumulated.blocked,
                        batch.unopened_for(projector.as_ref()),
                    )
                    .await
                    .map_err(RebuildError::Replay)?
                }
                other => other.map_err(RebuildError::Replay)?,
            };
        // The shadows are not served by this process's caches: drop what was staged.
        projector.abandoned(&[]);
        accumulated.merge(changes);
    }
    *shadow = last;
    Ok(batch.events.len() as u64)
}

/// Applies `batch` whole to `projector`, leaving out the aggregates already set aside.
async fn apply_guarded_once(
    tx: &mut PgConnection,
    projector: &dyn Projector,
    batch: &Fetched,
    accumulated: &Accumulated,
) -> Result<quarantine::Changes, ProjectionError> {
    let unopened = batch.unopened_for(projector);
    match quarantine::without_blocked(&batch.events, &accumulated.blocked, &unopened) {
        None => projector.apply(&mut *tx, &batch.events).await?,
        Some(kept) => projector.apply(&mut *tx, &kept).await?,
    }
    Ok(quarantine::changes_of_clean_batch(
        &batch.events,
        &accumulated.blocked,
        unopened,
    ))
}

/// Applies `batch` to one projector's shadow tables on a connection of its own, so the
/// projectors of a batch run side by side. A batch that fails permanently is applied again
/// event by event; returns what it set aside or released.
async fn apply_in_shadow(
    owner: PgPool,
    projector: Arc<dyn Projector>,
    batch: Arc<Fetched>,
    accumulated: Accumulated,
) -> Result<(&'static str, quarantine::Changes), RebuildError> {
    let mut connection = owner.acquire().await?;
    let mut isolate = false;
    loop {
        let mut tx = connection.begin().await?;
        tx.execute(format!("SET LOCAL search_path = {SHADOW_SCHEMA}, public").as_str())
            .await?;
        let applied = if isolate {
            quarantine::apply_isolating(
                &mut tx,
                projector.as_ref(),
                &batch.events,
                &accumulated.blocked,
                batch.unopened_for(projector.as_ref()),
            )
            .await
        } else {
            apply_guarded_once(&mut tx, projector.as_ref(), &batch, &accumulated).await
        };
        // The shadows are not served by this process's caches: drop what was staged.
        projector.abandoned(&[]);
        match applied {
            Ok(changes) => {
                tx.commit().await?;
                return Ok((projector.name(), changes));
            }
            Err(error) if !isolate && quarantine::is_permanent(&error) => {
                let _ = tx.rollback().await;
                isolate = true;
            }
            Err(error) => return Err(RebuildError::Replay(error)),
        }
    }
}

/// The swap transaction, retried while readers hold the tables.
#[allow(clippy::too_many_arguments)]
async fn swap(
    connection: &mut PgConnection,
    keyring: &Keyring,
    projectors: &[Arc<dyn Projector>],
    tables: &[&str],
    options: &RebuildOptions,
    shadow: LogPosition,
    events: u64,
    progress: &mut dyn RebuildProgress,
    set_aside: &mut HashMap<&'static str, Accumulated>,
) -> Result<(LogPosition, u64), RebuildError> {
    let names: Vec<&str> = projectors.iter().map(|p| p.name()).collect();
    for attempt in 1..=options.swap_attempts {
        let mut position = shadow;
        let mut applied_total = events;
        // An attempt that rolls back must not keep what its replay set aside.
        let mut attempt_set_aside = set_aside.clone();
        let mut tx = connection.begin().await?;
        let result = async {
            // Only readers of the live tables must not wait on the swap for long; the live
            // leaders' checkpoint rows may take a whole batch to free.
            tx.execute(
                format!(
                    "SET LOCAL lock_timeout = '{}ms'; SET LOCAL search_path = {SHADOW_SCHEMA}, public",
                    CHECKPOINT_LOCK_TIMEOUT.as_millis()
                )
                .as_str(),
            )
            .await?;
            // The live leaders pause after their current batch.
            sqlx::query("SELECT projector FROM projector_checkpoints WHERE projector = ANY($1) ORDER BY projector FOR UPDATE")
                .bind(&names)
                .fetch_all(&mut *tx)
                .await?;
            loop {
                let applied = replay_batch(&mut tx, keyring, projectors, &mut position, i64::MAX / 2, &mut attempt_set_aside).await?;
                applied_total += applied;
                progress.advanced(applied);
                if applied == 0 {
                    break;
                }
            }
            tx.execute(
                format!("SET LOCAL lock_timeout = '{}ms'", options.swap_lock_timeout.as_millis())
                    .as_str(),
            )
            .await?;
            for table in tables {
                let old_indexes = index_names(&mut tx, "public", table).await?;
                tx.execute(
                    format!(
                        "DROP TABLE IF EXISTS {RETIRED_SCHEMA}.{table}; \
                         ALTER TABLE public.{table} SET SCHEMA {RETIRED_SCHEMA}; \
                         ALTER TABLE {SHADOW_SCHEMA}.{table} SET SCHEMA public"
                    )
                    .as_str(),
                )
                .await?;
                // Keep the migrations' index names, so later migrations can refer to them.
                for (new_name, definition) in index_names(&mut tx, "public", table).await? {
                    if let Some((old_name, _)) = old_indexes.iter().find(|(_, old)| *old == definition)
                        && *old_name != new_name
                    {
                        tx.execute(format!("ALTER INDEX public.\"{new_name}\" RENAME TO \"{old_name}\"").as_str())
                            .await?;
                    }
                }
            }
            sqlx::query(
                "UPDATE projector_checkpoints SET tx_id = $2::text::xid8, position = $3, events_applied = $4, \
                 updated_at = now(), failing_since = NULL WHERE projector = ANY($1)",
            )
            .bind(&names)
            .bind(position.tx_id.to_string())
            .bind(position.position)
            .bind(i64::try_from(applied_total).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
            for (name, accumulated) in &attempt_set_aside {
                accumulated.replace(&mut tx, name).await?;
            }
            sqlx::query("SELECT pg_notify($1, '*')")
                .bind(REBUILT_CHANNEL)
                .execute(&mut *tx)
                .await?;
            Ok::<_, RebuildError>(())
        }
        .await;
        match result {
            Ok(()) => {
                tx.commit().await?;
                *set_aside = attempt_set_aside;
                return Ok((position, applied_total));
            }
            Err(RebuildError::Database(error)) if is_lock_timeout(&error) => {
                let _ = tx.rollback().await;
                tracing::info!(
                    attempt,
                    "rebuild swap waited too long for a lock; letting readers go, retrying"
                );
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10)))).await;
            }
            Err(RebuildError::Replay(ProjectionError::Database(error)))
            | Err(RebuildError::Replay(ProjectionError::Log(LogError::Database(error))))
                if is_lock_timeout(&error) =>
            {
                let _ = tx.rollback().await;
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10)))).await;
            }
            Err(other) => {
                let _ = tx.rollback().await;
                return Err(other);
            }
        }
    }
    Err(RebuildError::SwapContended(options.swap_attempts))
}

fn is_lock_timeout(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}

/// `(index name, definition without its name and schema)` of a table's indexes.
async fn index_names(
    tx: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|row| {
            let name: String = row.try_get("indexname")?;
            let definition: String = row.try_get("indexdef")?;
            // "CREATE UNIQUE INDEX name ON schema.table USING …": keep what follows the name.
            let shape = definition
                .split_once(&format!(" {name} ON "))
                .map(|(kind, rest)| {
                    format!(
                        "{kind} ON {}",
                        rest.split_once(' ').map_or(rest, |(_, tail)| tail)
                    )
                })
                .unwrap_or(definition.clone());
            Ok((name, shape))
        })
        .collect()
}
