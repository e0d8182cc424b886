//! The projector runtime: follows the log and keeps every read model current.
//!
//! Each projector runs in one loop per process, but only one process at a time leads it: the
//! leader holds a session advisory lock on a dedicated connection, the others stand by and
//! take over when it goes away. The leader repeatedly
//!
//! 1. begins a transaction and locks its checkpoint row,
//! 2. reads the next batch after the checkpoint in commit order below the xmin horizon
//!    ([`crate::log`]),
//! 3. applies the batch and advances the checkpoint in that same transaction, and commits.
//!
//! A crash at any point therefore loses nothing and applies nothing twice. A batch failing
//! transiently (the database: a lost connection, a timeout, a deadlock) is rolled back,
//! recorded in the checkpoint row (`last_error`, `failing_since`) and the log, and retried
//! with backoff; it is never skipped. One failing in a way no retry can fix (an event that
//! does not decode, a sealed field that does not open, data the projector or a constraint
//! rejects) sets aside only the aggregate of the failing event, which is recorded in
//! `projector_quarantine` with the checkpoint, and the rest goes on ([`crate::quarantine`]). Appends wake the loops through LISTEN/NOTIFY;
//! a poll interval is the fallback. [`Progress`] lets a command wait until the projectors its
//! caller reads next have passed the command's position (read-your-writes).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgConnection, PgPool, Postgres, Row};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::keyring::Keyring;
use crate::listener::{self, ListenerConfig};
use crate::log::{self, LogError, LogEvent, LogPosition};
use crate::quarantine::{self, QuarantineSet};

/// Postgres channel an append notifies after commit.
pub const EVENTS_CHANNEL: &str = "kairos_events";
/// Postgres channel a projector notifies with `name tx position` after each batch.
pub const CHECKPOINTS_CHANNEL: &str = "kairos_checkpoints";
/// A process's markers to itself: when its listener receives one, every notice committed
/// before the marker was sent has been handled (Postgres delivers in commit order).
pub(crate) const SYNC_CHANNEL: &str = "kairos_sync";
/// First half of the two-part advisory lock key of every projector (the second half is a
/// hash of its name), so `pg_locks` shows which projectors are led and by which backend.
pub const ADVISORY_LOCK_CLASS: i32 = 0x4b41_4952; // "KAIR"

/// A read model's writer. It applies whole batches so it can write with few statements.
#[async_trait]
pub trait Projector: Send + Sync + 'static {
    /// Stable name: the checkpoint key, the CLI argument, the metrics label.
    fn name(&self) -> &'static str;

    /// The read tables this projector owns and alone writes (rebuilds copy and swap them).
    fn tables(&self) -> &'static [&'static str];

    /// Applies `events` (in commit order, personal fields opened) inside the transaction
    /// `tx`. Events of aggregates it does not care about must be ignored, not rejected.
    /// Whatever it keeps in memory for [`Self::committed`] it must stage only when it
    /// succeeds: a call that fails in a savepoint (a poison event set aside) is rolled back
    /// alone, without [`Self::abandoned`], and the transaction goes on to commit.
    async fn apply(
        &self,
        tx: &mut PgConnection,
        events: &[LogEvent],
    ) -> Result<(), ProjectionError>;

    /// Whether `apply` reads personal fields. If not, the runtime spares the data-key lookup
    /// and the decryption, and the fields stay sealed in the events it gets.
    fn needs_personal_data(&self) -> bool {
        true
    }

    /// Called after a batch committed, before its progress is published: the place to drop
    /// in-memory caches of what the batch changed, so a reader that waited for the progress
    /// never sees the old value.
    fn committed(&self, _events: &[LogEvent]) {}

    /// Called when a batch or maintenance transaction did not commit, or may not have (a
    /// connection lost while the database committed): drop what `apply` staged for
    /// [`Self::committed`], and any in-memory copy of what it touched.
    fn abandoned(&self, _events: &[LogEvent]) {}

    /// Time-driven upkeep (the bookable windows move their horizon as days pass), run by the
    /// leader when idle, inside a transaction holding the checkpoint row, with the log
    /// applied up to `applied`. Returns the keys it changed, for [`Projector::maintained`].
    async fn maintain(
        &self,
        _tx: &mut PgConnection,
        _applied: LogPosition,
    ) -> Result<Vec<String>, ProjectionError> {
        Ok(Vec::new())
    }

    /// Called after a maintenance transaction committed, with the keys it changed.
    fn maintained(&self, _keys: &[String]) {}
}

/// A notification channel some in-memory cache follows, and what the listener tells it.
#[derive(Clone)]
pub struct Subscription {
    pub channel: &'static str,
    /// A notice on the channel.
    pub on_notice: Arc<dyn Fn(&str) + Send + Sync>,
    /// The listener does not follow the channel (not yet, or its connection was lost):
    /// notices may be missed from now on, so the cache must neither serve nor keep anything.
    pub on_unfollowed: Arc<dyn Fn() + Send + Sync>,
    /// The listener follows the channel again: the cache may start over, empty.
    pub on_followed: Arc<dyn Fn() + Send + Sync>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How an append tells projectors there is something new. Leaders in this process wake at
/// once; other processes hear it through a NOTIFY sent *after* the commit, coalesced by a
/// relay task. (A NOTIFY inside the append transaction would make every append's commit,
/// disk flush included, queue for Postgres's notification lock: measured, it halved the
/// rate of user creation.)
#[derive(Clone)]
pub struct AppendSignal {
    local: Arc<Notify>,
    relay: Option<Arc<Notify>>,
    pool: PgPool,
}

impl AppendSignal {
    /// For a process without a runtime (CLI commands): every append notifies directly.
    pub fn direct(pool: PgPool) -> Self {
        Self {
            local: Arc::new(Notify::new()),
            relay: None,
            pool,
        }
    }

    /// Call after an append committed.
    pub async fn appended(&self) {
        self.local.notify_waiters();
        match &self.relay {
            Some(relay) => relay.notify_one(),
            None => notify_appended(&self.pool).await,
        }
    }
}

async fn notify_appended(pool: &PgPool) {
    if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(pool)
        .await
    {
        tracing::warn!(%error, "could not notify other processes of an append; they will poll");
    }
}

/// Sends one NOTIFY per burst of appends (at most one a millisecond).
async fn relay_appends(pool: PgPool, relay: Arc<Notify>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = relay.notified() => {}
            _ = shutdown.wait() => return,
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        notify_appended(&pool).await;
    }
}

/// Tunables of the runtime; the defaults suit a server, tests shorten the intervals.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub batch_size: i64,
    /// How often an idle leader looks at the log without being woken.
    pub idle_poll: Duration,
    /// How often a standby tries to take over leadership.
    pub standby_poll: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How often an idle leader runs [`Projector::maintain`].
    pub maintenance_interval: Duration,
    /// The `LISTEN` connection and its liveness checks.
    pub listener: ListenerConfig,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            idle_poll: Duration::from_millis(500),
            standby_poll: Duration::from_secs(1),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(60),
            listener: ListenerConfig::default(),
        }
    }
}

/// A cooperative stop signal shared by the runtime's tasks.
#[derive(Clone)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger {
    sender: watch::Sender<bool>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (ShutdownTrigger { sender }, Shutdown { receiver })
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(&mut self) {
        let _ = self.receiver.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.sender.send(true);
    }
}

/// Where each projector is, as this process knows it: updated by local leaders after each
/// batch and by the checkpoint notifications of leaders in other processes.
#[derive(Clone)]
pub struct Progress {
    channels: Arc<HashMap<&'static str, watch::Sender<LogPosition>>>,
    listener: Arc<ListenerState>,
}

/// What the listener tells the rest of the process.
struct ListenerState {
    /// Whether it follows every channel now.
    following: watch::Sender<bool>,
    /// Names this process in its sync markers.
    origin: String,
    /// The last sync marker sent, and the last one the listener received.
    sent: std::sync::atomic::AtomicU64,
    received: watch::Sender<u64>,
}

impl Progress {
    pub fn new(names: &[&'static str]) -> Self {
        let channels = names
            .iter()
            .map(|name| (*name, watch::channel(LogPosition::START).0))
            .collect();
        Self {
            channels: Arc::new(channels),
            listener: Arc::new(ListenerState {
                following: watch::channel(false).0,
                origin: format!("{:016x}", rand::random::<u64>()),
                sent: std::sync::atomic::AtomicU64::new(0),
                received: watch::channel(0).0,
            }),
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.channels.keys().copied()
    }

    /// Records that `name` has applied everything up to `position` (never moves back).
    pub fn publish(&self, name: &str, position: LogPosition) {
        if let Some(sender) = self.channels.get(name) {
            sender.send_if_modified(|current| {
                if position > *current {
                    *current = position;
                    true
                } else {
                    false
                }
            });
        }
    }

    pub fn current(&self, name: &str) -> Option<LogPosition> {
        self.channels.get(name).map(|sender| *sender.borrow())
    }

    /// Waits until every projector in `names` has applied `target`, or `timeout` passed.
    /// Returns whether they all did. Checkpoints are re-read from the database every 100 ms
    /// in case a notification from another process was missed. It never waits past the
    /// timeout: the re-reads themselves (a pool that is exhausted or a database that hangs)
    /// are cut off at the deadline too.
    pub async fn wait_past(
        &self,
        pool: &PgPool,
        names: &[&'static str],
        target: LogPosition,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        tokio::time::timeout_at(
            deadline,
            self.wait_past_until(pool, names, target, deadline),
        )
        .await
        .unwrap_or(false)
    }

    async fn wait_past_until(
        &self,
        pool: &PgPool,
        names: &[&'static str],
        target: LogPosition,
        deadline: tokio::time::Instant,
    ) -> bool {
        for name in names {
            let Some(sender) = self.channels.get(name) else {
                continue;
            };
            let mut receiver = sender.subscribe();
            loop {
                if *receiver.borrow_and_update() >= target {
                    break;
                }
                let refresh = tokio::time::Instant::now() + Duration::from_millis(100);
                tokio::select! {
                    _ = receiver.changed() => {}
                    _ = tokio::time::sleep_until(refresh.min(deadline)) => {
                        if tokio::time::Instant::now() >= deadline {
                            return false;
                        }
                        // A checkpoint read here may be ahead of the cache notices this
                        // process has handled; publish it only once they caught up.
                        if let Ok(stored) = read_checkpoints(pool).await
                            && self.notices_handled(pool, deadline).await
                        {
                            for (stored_name, position) in stored {
                                self.publish(&stored_name, position);
                            }
                        }
                    }
                }
            }
        }
        true
    }
}

impl Progress {
    /// Whether every cache notice committed before this call has been handled in this
    /// process: a marker sent now comes back through the listener after all of them. While the
    /// listener is down the caches neither serve nor keep anything, so there is nothing to
    /// wait for.
    async fn notices_handled(&self, pool: &PgPool, deadline: tokio::time::Instant) -> bool {
        let listener = &self.listener;
        let mut following = listener.following.subscribe();
        if !*following.borrow_and_update() {
            return true;
        }
        let marker = listener
            .sent
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let mut received = listener.received.subscribe();
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(SYNC_CHANNEL)
            .bind(format!("{} {marker}", listener.origin))
            .execute(pool)
            .await;
        if sent.is_err() {
            return false;
        }
        tokio::select! {
            came_back = received.wait_for(|last| *last >= marker) => came_back.is_ok(),
            _ = following.wait_for(|up| !*up) => true,
            _ = tokio::time::sleep_until(deadline) => false,
        }
    }

    /// The listener received a sync marker.
    pub(crate) fn marker_received(&self, payload: &str) {
        let Some((origin, marker)) = payload.split_once(' ') else {
            return;
        };
        if origin != self.listener.origin {
            return;
        }
        if let Ok(marker) = marker.parse::<u64>() {
            self.listener.received.send_if_modified(|last| {
                let newer = marker > *last;
                if newer {
                    *last = marker;
                }
                newer
            });
        }
    }

    pub(crate) fn set_following(&self, following: bool) {
        self.listener.following.send_replace(following);
    }

    /// Whether the listener follows every channel now, as the rest of the process sees it.
    pub(crate) fn following(&self) -> watch::Receiver<bool> {
        self.listener.following.subscribe()
    }
}

async fn read_checkpoints(pool: &PgPool) -> Result<Vec<(String, LogPosition)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT projector, tx_id::text AS tx_id_text, position FROM projector_checkpoints",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get("projector")?,
                LogPosition {
                    tx_id: log::parse_xid(&row.try_get::<String, _>("tx_id_text")?),
                    position: row.try_get("position")?,
                },
            ))
        })
        .collect()
}

/// The running projectors of this process.
pub struct Runtime {
    pool: PgPool,
    keyring: Keyring,
    projectors: Vec<Arc<dyn Projector>>,
    progress: Progress,
    wake: Arc<Notify>,
    relay: Arc<Notify>,
    config: RuntimeConfig,
    subscriptions: Vec<Subscription>,
    quarantine: Option<Arc<QuarantineSet>>,
}

/// Handle to a started runtime: its tasks stop when the shutdown given to `start` fires.
pub struct RuntimeHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl RuntimeHandle {
    /// Waits for every task to finish its current batch and stop.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

impl Runtime {
    /// `pool` must have at least `projectors.len() + 2` connections: each leader keeps one.
    pub fn new(
        pool: PgPool,
        keyring: Keyring,
        projectors: Vec<Arc<dyn Projector>>,
        config: RuntimeConfig,
    ) -> Self {
        let names: Vec<&'static str> = projectors.iter().map(|p| p.name()).collect();
        Self {
            pool,
            keyring,
            progress: Progress::new(&names),
            projectors,
            wake: Arc::new(Notify::new()),
            relay: Arc::new(Notify::new()),
            config,
            subscriptions: Vec::new(),
            quarantine: None,
        }
    }

    /// Keeps `set` current: the local leaders reload it after a batch that changed it
    /// commits (before publishing that batch's progress), and the listener reloads it on
    /// every other process's notice and whenever it (re)connects.
    pub fn track_quarantine(&mut self, set: Arc<QuarantineSet>) {
        set.attach(self.pool.clone());
        self.subscriptions.push(set.subscription());
        self.quarantine = Some(set);
    }

    /// Follows `subscription`'s channel with the same listener that relays checkpoints, so a
    /// cache invalidation sent in a batch's transaction is handled before that batch's
    /// progress is published here.
    pub fn subscribe(&mut self, subscription: Subscription) {
        self.subscriptions.push(subscription);
    }

    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Becomes `true` once the listener follows every subscribed channel (after it dropped
    /// whatever the caches held): filling a cache in bulk must wait for it, or a change made
    /// elsewhere before the listener was up could linger.
    pub fn listening(&self) -> watch::Receiver<bool> {
        self.progress.following()
    }

    /// What this process's appends call: wakes local leaders at once and relays a NOTIFY to
    /// other processes.
    pub fn signal(&self) -> AppendSignal {
        AppendSignal {
            local: self.wake.clone(),
            relay: Some(self.relay.clone()),
            pool: self.pool.clone(),
        }
    }

    /// Starts the listener and one loop per projector.
    pub async fn start(self, shutdown: Shutdown) -> Result<RuntimeHandle, sqlx::Error> {
        for projector in &self.projectors {
            ensure_checkpoint(&self.pool, projector.name()).await?;
        }
        // Known before the first request is served (the listener reloads it again once it
        // follows, for whatever changed in between).
        if let Some(set) = &self.quarantine {
            set.reload(&self.pool).await?;
        }
        let mut tasks = vec![tokio::spawn(listener::listen(
            (*self.pool.connect_options()).clone(),
            self.config.listener.clone(),
            self.wake.clone(),
            self.progress.clone(),
            self.subscriptions.clone(),
            shutdown.clone(),
        ))];
        tasks.push(tokio::spawn(relay_appends(
            self.pool.clone(),
            self.relay.clone(),
            shutdown.clone(),
        )));
        for projector in &self.projectors {
            let runner = Runner {
                pool: self.pool.clone(),
                keyring: self.keyring.clone(),
                projector: projector.clone(),
                progress: self.progress.clone(),
                wake: self.wake.clone(),
                config: self.config.clone(),
                quarantine: self.quarantine.clone(),
            };
            tasks.push(tokio::spawn(runner.run(shutdown.clone())));
        }
        Ok(RuntimeHandle { tasks })
    }
}

pub async fn ensure_checkpoint(pool: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO projector_checkpoints (projector) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// One projector's loop in this process.
struct Runner {
    pool: PgPool,
    keyring: Keyring,
    projector: Arc<dyn Projector>,
    progress: Progress,
    wake: Arc<Notify>,
    config: RuntimeConfig,
    quarantine: Option<Arc<QuarantineSet>>,
}

impl Runner {
    async fn run(self, mut shutdown: Shutdown) {
        let name = self.projector.name();
        while !shutdown.is_triggered() {
            let mut connection = match self.lead().await {
                Ok(Some(connection)) => connection,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.standby_poll) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
                Err(error) => {
                    tracing::warn!(projector = name, %error, "cannot reach the database to lead");
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.standby_poll) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
            };
            tracing::info!(projector = name, "leading");
            // A new leader (a restart, often after a fix) tries its quarantined aggregates
            // again; its first batch does it.
            if let Err(error) = quarantine::request_retry(&mut connection, &[name]).await {
                tracing::warn!(projector = name, %error, "could not ask to retry the quarantined aggregates");
            }
            self.follow(&mut connection, &mut shutdown).await;
            // Give the lock back explicitly; a broken connection releases it by closing.
            let _ = unlock(&mut connection, name).await;
        }
    }

    /// Takes leadership if nobody else has it: a connection holding the advisory lock.
    async fn lead(&self) -> Result<Option<PoolConnection<Postgres>>, sqlx::Error> {
        let mut connection = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(ADVISORY_LOCK_CLASS)
            .bind(self.projector.name())
            .fetch_one(&mut *connection)
            .await?;
        Ok(locked.then_some(connection))
    }

    /// Applies batches until shutdown or until the connection breaks.
    async fn follow(&self, connection: &mut PoolConnection<Postgres>, shutdown: &mut Shutdown) {
        let name = self.projector.name();
        let mut backoff = self.config.first_backoff;
        let mut last_maintenance: Option<tokio::time::Instant> = None;
        // The checkpoint as this leader last saw it: only a leader or a rebuild's swap moves
        // it, and a swap only moves it forward, so it is a safe lower bound for the cheap
        // "anything new?" check. (Forgotten at every idle poll, for hand-made resets.)
        let mut known: Option<LogPosition> = None;
        loop {
            // Register interest before looking, so an append between the look and the wait
            // still wakes us.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if shutdown.is_triggered() {
                return;
            }
            let batch = match known {
                Some(checkpoint) => match has_events_after(connection, checkpoint).await {
                    Ok(false) => Ok(None),
                    Ok(true) => self.apply_batch(connection, &mut known).await,
                    Err(error) => Err(error),
                },
                None => self.apply_batch(connection, &mut known).await,
            };
            match batch {
                Ok(Some(position)) => {
                    backoff = self.config.first_backoff;
                    self.progress.publish(name, position);
                    // Under sustained writes the log never runs dry: upkeep that is due
                    // (horizons moving at midnight) takes its turn between batches.
                    self.maintain_if_due(connection, &mut last_maintenance)
                        .await;
                }
                Ok(None) => {
                    backoff = self.config.first_backoff;
                    if self
                        .maintain_if_due(connection, &mut last_maintenance)
                        .await
                    {
                        // More may be due: look at the log, then maintain again.
                        continue;
                    }
                    tokio::select! {
                        _ = &mut woken => {}
                        // The poll also re-reads the stored checkpoint, in case an operator
                        // moved it by hand.
                        _ = tokio::time::sleep(self.config.idle_poll) => known = None,
                        _ = shutdown.wait() => return,
                    }
                }
                Err(error) => {
                    tracing::error!(projector = name, error = %error, retry_in_ms = backoff.as_millis() as u64, "projection batch failed; it will be retried, never skipped");
                    record_failure(&self.pool, name, &error.to_string()).await;
                    let connection_lost = matches!(
                        &error,
                        ProjectionError::Database(e) | ProjectionError::Log(LogError::Database(e))
                            if is_connection_error(e)
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait() => return,
                    }
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    if connection_lost {
                        return;
                    }
                }
            }
        }
    }
}

impl Runner {
    /// Runs one maintenance transaction if the interval since the last complete run has
    /// passed. Returns whether it changed something, so more may be due: then the interval
    /// does not restart, and upkeep alternates with batches until it is done.
    async fn maintain_if_due(
        &self,
        connection: &mut PgConnection,
        last_maintenance: &mut Option<tokio::time::Instant>,
    ) -> bool {
        let due =
            last_maintenance.is_none_or(|at| at.elapsed() >= self.config.maintenance_interval);
        if !due {
            return false;
        }
        let name = self.projector.name();
        match maintain_once(connection, self.projector.as_ref()).await {
            Ok(changed) if changed > 0 => true,
            Ok(_) => {
                *last_maintenance = Some(tokio::time::Instant::now());
                false
            }
            Err(error) => {
                *last_maintenance = Some(tokio::time::Instant::now());
                tracing::error!(projector = name, %error, "maintenance failed; it will run again");
                record_failure(&self.pool, name, &error.to_string()).await;
                false
            }
        }
    }

    /// One batch transaction; keeps `known` current.
    async fn apply_batch(
        &self,
        connection: &mut PgConnection,
        known: &mut Option<LogPosition>,
    ) -> Result<Option<LogPosition>, ProjectionError> {
        let outcome = apply_next_batch_guarded(
            connection,
            &self.keyring,
            self.projector.as_ref(),
            self.config.batch_size,
        )
        .await?;
        if let (Some(outcome), Some(set)) = (&outcome, &self.quarantine)
            && outcome.quarantine_changed
            && let Err(error) = set.reload(&self.pool).await
        {
            tracing::warn!(%error, "could not reload the quarantined aggregates");
        }
        let applied = outcome.map(|o| o.position);
        *known = match applied {
            Some(position) => Some(position),
            None => Some(read_checkpoint(connection, self.projector.name()).await?),
        };
        Ok(applied)
    }
}

fn is_connection_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Protocol(_)
    )
}

async fn unlock(connection: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
        .bind(ADVISORY_LOCK_CLASS)
        .bind(name)
        .execute(connection)
        .await?;
    Ok(())
}

/// One transaction: lock the checkpoint, read the next batch, apply it, advance the
/// checkpoint, commit. Returns the new checkpoint, or `None` when there was nothing to do.
///
/// Used by the leaders and by one-shot catch-up and rebuilds. The checkpoint row lock makes
/// it safe even if two callers raced past the advisory lock: the second waits, then sees the
/// advanced checkpoint.
pub async fn apply_next_batch(
    connection: &mut PgConnection,
    keyring: &Keyring,
    projector: &dyn Projector,
    batch_size: i64,
) -> Result<Option<LogPosition>, ProjectionError> {
    Ok(
        apply_next_batch_guarded(connection, keyring, projector, batch_size)
            .await?
            .map(|outcome| outcome.position),
    )
}

/// What one batch transaction did.
#[derive(Debug, Clone, Copy)]
pub struct BatchOutcome {
    /// The checkpoint now.
    pub position: LogPosition,
    /// Whether it quarantined or released an aggregate (the read-side set must reload).
    pub quarantine_changed: bool,
}

/// [`apply_next_batch`], telling whether the quarantine changed. A batch that fails in a
/// way a retry cannot fix ([`quarantine::is_permanent`]) is rolled back and applied again
/// event by event, quarantining exactly the aggregates whose events fail; the normal path
/// pays nothing for this.
pub async fn apply_next_batch_guarded(
    connection: &mut PgConnection,
    keyring: &Keyring,
    projector: &dyn Projector,
    batch_size: i64,
) -> Result<Option<BatchOutcome>, ProjectionError> {
    match batch_transaction(connection, keyring, projector, batch_size, false).await {
        Err(error) if quarantine::is_permanent(&error) => {
            tracing::warn!(projector = projector.name(), reason = %quarantine::reason(&error), "a batch cannot be applied whole; applying it event by event to set aside only the failing aggregates");
            batch_transaction(connection, keyring, projector, batch_size, true).await
        }
        other => other,
    }
}

async fn batch_transaction(
    connection: &mut PgConnection,
    keyring: &Keyring,
    projector: &dyn Projector,
    batch_size: i64,
    isolate: bool,
) -> Result<Option<BatchOutcome>, ProjectionError> {
    let mut tx = connection.begin().await?;
    match apply_in(&mut tx, keyring, projector, batch_size, isolate).await {
        Ok(Some(applied)) => {
            if let Err(error) = tx.commit().await {
                projector.abandoned(&applied.events);
                return Err(error.into());
            }
            projector.committed(&applied.events);
            Ok(Some(BatchOutcome {
                position: applied.position,
                quarantine_changed: applied.quarantine_changed,
            }))
        }
        Ok(None) => {
            tx.rollback().await?;
            Ok(None)
        }
        Err(error) => {
            // Roll back now, not when the connection is next used: the checkpoint row stays
            // locked until then, and recording the failure needs it.
            let _ = tx.rollback().await;
            projector.abandoned(&[]);
            Err(error)
        }
    }
}

/// Whether anything is readable after `checkpoint`: one cheap statement, so an idle leader
/// woken by every append does not open a transaction each time.
pub async fn has_events_after(
    connection: &mut PgConnection,
    checkpoint: LogPosition,
) -> Result<bool, ProjectionError> {
    // ORDER BY … LIMIT 1 rather than EXISTS: a prepared statement's generic plan for EXISTS
    // scans the whole log when nothing qualifies, which is the usual case here.
    let next: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
         AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY tx_id, global_position LIMIT 1",
    )
    .bind(checkpoint.tx_id.to_string())
    .bind(checkpoint.position)
    .fetch_optional(&mut *connection)
    .await?;
    Ok(next.is_some())
}

/// A projector's checkpoint as stored (without locking it).
pub async fn read_checkpoint(
    connection: &mut PgConnection,
    name: &str,
) -> Result<LogPosition, ProjectionError> {
    let row = sqlx::query("SELECT tx_id::text AS tx_id_text, position FROM projector_checkpoints WHERE projector = $1")
        .bind(name)
        .fetch_optional(&mut *connection)
        .await?
        .ok_or_else(|| ProjectionError::Invalid(format!("no checkpoint row for projector {name}")))?;
    Ok(LogPosition {
        tx_id: log::parse_xid(&row.try_get::<String, _>("tx_id_text")?),
        position: row.try_get("position")?,
    })
}

/// Locks and reads a projector's checkpoint.
async fn lock_checkpoint(
    tx: &mut PgConnection,
    name: &str,
) -> Result<LogPosition, ProjectionError> {
    let row = sqlx::query(
        "SELECT tx_id::text AS tx_id_text, position FROM projector_checkpoints WHERE projector = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ProjectionError::Invalid(format!("no checkpoint row for projector {name}")))?;
    Ok(LogPosition {
        tx_id: log::parse_xid(&row.try_get::<String, _>("tx_id_text")?),
        position: row.try_get("position")?,
    })
}

/// One maintenance transaction of `projector`, with its checkpoint row held so no batch
/// runs meanwhile.
pub async fn maintain_once(
    connection: &mut PgConnection,
    projector: &dyn Projector,
) -> Result<usize, ProjectionError> {
    let mut tx = connection.begin().await?;
    let result = async {
        let applied = lock_checkpoint(&mut tx, projector.name()).await?;
        let keys = projector.maintain(&mut tx, applied).await?;
        // A run that succeeded ends a failure recorded by an earlier one (a batch that
        // succeeds clears it the same way); otherwise an idle projector would show
        // `failing` until its next event.
        sqlx::query(
            "UPDATE projector_checkpoints SET failing_since = NULL \
             WHERE projector = $1 AND failing_since IS NOT NULL",
        )
        .bind(projector.name())
        .execute(&mut *tx)
        .await?;
        Ok::<_, ProjectionError>(keys)
    }
    .await;
    match result {
        Ok(keys) => {
            if let Err(error) = tx.commit().await {
                projector.abandoned(&[]);
                return Err(error.into());
            }
            if !keys.is_empty() {
                projector.maintained(&keys);
            }
            Ok(keys.len())
        }
        Err(error) => {
            let _ = tx.rollback().await;
            projector.abandoned(&[]);
            Err(error)
        }
    }
}

/// What [`apply_in`] did, for after the commit.
struct Applied {
    position: LogPosition,
    /// Every event the projector was given (the batch's, and those of retried aggregates).
    events: Vec<LogEvent>,
    quarantine_changed: bool,
}

/// The batch after the checkpoint, applied in `tx` with the checkpoint advanced past it.
/// Events of quarantined aggregates are skipped (erasures excepted); aggregates whose retry
/// was requested are applied again first. With `isolate`, each event is applied in a
/// savepoint of its own so a failing one quarantines only its aggregate.
async fn apply_in(
    tx: &mut PgConnection,
    keyring: &Keyring,
    projector: &dyn Projector,
    batch_size: i64,
    isolate: bool,
) -> Result<Option<Applied>, ProjectionError> {
    let name = projector.name();
    let (checkpoint, has_quarantine) = lock_checkpoint_flagged(&mut *tx, name).await?;
    let mut changes = quarantine::Changes::default();
    let mut blocked: HashSet<(String, String)> = HashSet::new();
    let mut retried = Vec::new();
    if has_quarantine {
        let rows = quarantine::load(&mut *tx, name).await?;
        retried = quarantine::retry(
            &mut *tx,
            keyring,
            projector,
            &rows,
            checkpoint,
            &mut changes,
        )
        .await?;
        let released: HashSet<&(String, String)> = changes.released.iter().collect();
        blocked = rows
            .into_iter()
            .map(|row| (row.aggregate_type, row.aggregate_id))
            .filter(|key| !released.contains(key))
            .collect();
    }
    let mut events = log::read_after(&mut *tx, checkpoint, batch_size).await?;
    let Some(last) = events.last().map(LogEvent::log_position) else {
        if changes.is_empty() {
            return Ok(None);
        }
        quarantine::record(&mut *tx, name, &changes).await?;
        return Ok(Some(Applied {
            position: checkpoint,
            events: retried,
            quarantine_changed: true,
        }));
    };
    // Opened one by one: a field that does not open fails its event's aggregate only.
    let unopened: HashMap<usize, ProjectionError> = if projector.needs_personal_data() {
        log::open_personal_fields_each(&mut *tx, keyring, &mut events)
            .await?
            .into_iter()
            .map(|(index, error)| (index, ProjectionError::Log(error)))
            .collect()
    } else {
        HashMap::new()
    };
    let batch_changes = if isolate {
        quarantine::apply_isolating(&mut *tx, projector, &events, &blocked, unopened).await?
    } else {
        match quarantine::without_blocked(&events, &blocked, &unopened) {
            None => projector.apply(&mut *tx, &events).await?,
            Some(kept) => projector.apply(&mut *tx, &kept).await?,
        }
        quarantine::changes_of_clean_batch(&events, &blocked, unopened)
    };
    changes.quarantined.extend(batch_changes.quarantined);
    changes.released.extend(batch_changes.released);
    quarantine::record(&mut *tx, name, &changes).await?;
    // Advancing the checkpoint and telling other processes is one round trip.
    sqlx::query(
        "WITH advanced AS ( \
             UPDATE projector_checkpoints \
             SET tx_id = $2::text::xid8, position = $3, events_applied = events_applied + $4, \
                 updated_at = now(), failing_since = NULL \
             WHERE projector = $1 RETURNING projector) \
         SELECT pg_notify($5, $6) FROM advanced",
    )
    .bind(name)
    .bind(last.tx_id.to_string())
    .bind(last.position)
    .bind(events.len() as i64)
    .bind(CHECKPOINTS_CHANNEL)
    .bind(format!("{name} {} {}", last.tx_id, last.position))
    .execute(&mut *tx)
    .await?;
    events.extend(retried);
    Ok(Some(Applied {
        position: last,
        events,
        quarantine_changed: !changes.is_empty(),
    }))
}

/// Locks and reads a projector's checkpoint, and tells whether it has quarantined
/// aggregates: in the same round trip, since batches run on every append.
async fn lock_checkpoint_flagged(
    tx: &mut PgConnection,
    name: &str,
) -> Result<(LogPosition, bool), ProjectionError> {
    let row = sqlx::query(
        "SELECT c.tx_id::text AS tx_id_text, c.position, \
                EXISTS (SELECT 1 FROM projector_quarantine q WHERE q.projector = c.projector) AS quarantined \
         FROM projector_checkpoints c WHERE c.projector = $1 FOR UPDATE OF c",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ProjectionError::Invalid(format!("no checkpoint row for projector {name}")))?;
    Ok((
        LogPosition {
            tx_id: log::parse_xid(&row.try_get::<String, _>("tx_id_text")?),
            position: row.try_get("position")?,
        },
        row.try_get("quarantined")?,
    ))
}

async fn record_failure(pool: &PgPool, name: &str, error: &str) {
    let result = sqlx::query(
        "UPDATE projector_checkpoints \
         SET last_error = $2, last_error_at = now(), failing_since = coalesce(failing_since, now()) \
         WHERE projector = $1",
    )
    .bind(name)
    .bind(error)
    .execute(pool)
    .await;
    if let Err(error) = result {
        tracing::warn!(projector = name, %error, "could not record the projector failure");
    }
}

/// Brings `projectors` past `target` from this process: where no server leads a projector,
/// applies its batches here (under its advisory lock); where one does, waits for it. Used by
/// CLI commands so that, say, a key printed by `kairos company create` works at once.
pub async fn catch_up(
    pool: &PgPool,
    keyring: &Keyring,
    projectors: &[Arc<dyn Projector>],
    target: LogPosition,
    timeout: Duration,
) -> Result<bool, ProjectionError> {
    let deadline = tokio::time::Instant::now() + timeout;
    for projector in projectors {
        ensure_checkpoint(pool, projector.name()).await?;
        loop {
            let mut connection = pool.acquire().await?;
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
                .bind(ADVISORY_LOCK_CLASS)
                .bind(projector.name())
                .fetch_one(&mut *connection)
                .await?;
            let mut reached = false;
            if locked {
                let result = async {
                    while let Some(position) =
                        apply_next_batch(&mut connection, keyring, projector.as_ref(), 1000).await?
                    {
                        if position >= target {
                            break;
                        }
                    }
                    Ok::<_, ProjectionError>(())
                }
                .await;
                unlock(&mut connection, projector.name()).await?;
                result?;
            }
            let current = read_checkpoints(pool).await?;
            if current
                .iter()
                .any(|(name, position)| name == projector.name() && *position >= target)
            {
                reached = true;
            }
            if reached {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(true)
}

/// What `kairos projections status` shows for one projector.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectorStatus {
    pub name: String,
    pub position: i64,
    pub tx_id: String,
    /// Committed events this projector has not applied yet.
    pub lag: i64,
    pub events_applied: i64,
    /// `running` (led by a process, caught up or catching up), `failing` or `stopped`.
    pub state: String,
    pub leader_pid: Option<i32>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub last_error: Option<String>,
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The aggregates it has set aside ([`crate::quarantine`]): its other aggregates flow,
    /// these answer 503 until retried with success.
    pub quarantined: Vec<quarantine::Quarantined>,
}

pub async fn status(pool: &PgPool) -> Result<Vec<ProjectorStatus>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.projector, c.position, c.tx_id::text AS tx_id_text, c.events_applied, c.updated_at, \
                c.last_error, c.last_error_at, c.failing_since, \
                (SELECT count(*) FROM events e WHERE (e.tx_id, e.global_position) > (c.tx_id, c.position)) AS lag, \
                (SELECT l.pid FROM pg_locks l \
                  WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 \
                    AND l.objid::bigint = (hashtext(c.projector)::bigint & 4294967295) AND l.objsubid = 2 \
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                  LIMIT 1) AS leader_pid \
         FROM projector_checkpoints c ORDER BY c.projector",
    )
    .bind(ADVISORY_LOCK_CLASS as i64)
    .fetch_all(pool)
    .await?;
    let mut quarantined = quarantine::list(pool).await?;
    rows.into_iter()
        .map(|row| {
            let failing: Option<chrono::DateTime<chrono::Utc>> = row.try_get("failing_since")?;
            let leader_pid: Option<i32> = row.try_get("leader_pid")?;
            let state = match (failing, leader_pid) {
                (Some(_), _) => "failing",
                (None, Some(_)) => "running",
                (None, None) => "stopped",
            };
            let name: String = row.try_get("projector")?;
            let (own, others) = quarantined.drain(..).partition(|q| q.projector == name);
            quarantined = others;
            Ok(ProjectorStatus {
                quarantined: own,
                name,
                position: row.try_get("position")?,
                tx_id: row.try_get("tx_id_text")?,
                lag: row.try_get("lag")?,
                events_applied: row.try_get("events_applied")?,
                state: state.to_string(),
                leader_pid,
                updated_at: row.try_get("updated_at")?,
                last_error: row.try_get("last_error")?,
                last_error_at: row.try_get("last_error_at")?,
            })
        })
        .collect()
}
