//! Poison events stall one aggregate, not the world.
//!
//! A projector applies the log in commit order and never skips an event, so one event it can
//! never apply would stop it for every company. When applying fails in a way a retry cannot
//! fix ([`is_permanent`]: the event does not decode, a sealed field does not open, the
//! projector's code rejects it, the database rejects the data with a SQLSTATE of class 22 or
//! 23), the runtime instead *quarantines* the event's aggregate: it records it in
//! `projector_quarantine` (migration `…20261202000001`) in the batch's transaction, skips the
//! aggregate's later events, and goes on with every other aggregate. Reads of a quarantined
//! aggregate answer 503 ([`QuarantineSet`]), never stale or missing data. Anything else (a
//! lost connection, a timeout, a serialization failure or deadlock, any database error not
//! clearly caused by the data) still fails the whole batch, which is retried and never
//! skipped.
//!
//! Finding the failing aggregate costs nothing while nothing fails: a batch is applied whole,
//! as before. Only when it fails permanently is its transaction rolled back and the batch
//! applied again, event by event, each in a savepoint ([`apply_isolating`]), so exactly the
//! aggregates whose events fail are quarantined. (A savepoint per batch in the normal path
//! would cost a round trip on every batch, and user creation is benchmarked.)
//!
//! A quarantined aggregate is applied again from its failing event up to the checkpoint
//! when its row asks for a retry: `kairos projections retry` sets that, and so does every
//! process taking a projector's leadership (a restart, usually after a fix). An erasure event
//! (a user deleted) is still applied to a quarantined aggregate, alone: if that succeeds its
//! rows are gone and so is its quarantine, so erasure never waits for a fix. An API key's
//! revocation is applied to a quarantined company the same way (its quarantine stays), so a
//! revoked key never keeps working while its company waits for a fix.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use sqlx::{PgConnection, PgPool, Row};

use crate::log::{self, LogError, LogEvent, LogPosition};
use crate::runtime::{ProjectionError, Projector, Subscription};

/// Postgres channel a batch transaction notifies (with the projector's name) when it
/// quarantined or released an aggregate; every process reloads its [`QuarantineSet`].
pub const CHANNEL: &str = "kairos_quarantine";

/// Whether a failure of applying an event is one a retry of the same batch cannot fix.
pub fn is_permanent(error: &ProjectionError) -> bool {
    match error {
        ProjectionError::Log(LogError::Decode { .. } | LogError::Keyring { .. }) => true,
        ProjectionError::Invalid(_) => true,
        ProjectionError::Log(LogError::Database(error)) | ProjectionError::Database(error) => {
            is_data_error(error)
        }
    }
}

/// SQLSTATE classes 22 (data exception) and 23 (integrity constraint violation): the data
/// is wrong, and applying it again will fail again. Every other database error is transient.
fn is_data_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// Why an event is quarantined, as stored and shown: it names the event's position and type
/// and the kind of failure, never a value (a serde or database message can quote the data,
/// which may be personal and would outlive an erasure in this table and in the logs).
pub fn reason(error: &ProjectionError) -> String {
    match error {
        ProjectionError::Log(LogError::Decode {
            position,
            event_type,
            ..
        }) => format!("event at position {position} does not decode as {event_type}"),
        ProjectionError::Log(LogError::Keyring { position, source }) => {
            format!("event at position {position}: {source}")
        }
        ProjectionError::Invalid(message) => message.clone(),
        ProjectionError::Log(LogError::Database(error)) | ProjectionError::Database(error) => {
            match error {
                sqlx::Error::Database(db) => format!(
                    "the database rejected it: SQLSTATE {}{}",
                    db.code().unwrap_or_default(),
                    db.constraint()
                        .map(|c| format!(" (constraint {c})"))
                        .unwrap_or_default()
                ),
                _ => "the database rejected it".to_string(),
            }
        }
    }
}

/// One quarantined aggregate of one projector, as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Quarantined {
    pub projector: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The first event of the aggregate the projector could not apply.
    pub position: i64,
    pub tx_id: String,
    pub event_type: String,
    pub event_id: uuid::Uuid,
    pub reason: String,
    pub quarantined_at: chrono::DateTime<chrono::Utc>,
    pub retry_requested: bool,
}

/// `(aggregate type, aggregate id)`.
pub type AggregateKey = (String, String);

fn key_of(event: &LogEvent) -> AggregateKey {
    (event.aggregate_type.clone(), event.aggregate_id.clone())
}

/// A new quarantine, decided while applying a batch, written with its checkpoint.
#[derive(Debug, Clone)]
pub struct NewQuarantine {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub position: LogPosition,
    pub event_type: String,
    pub event_id: uuid::Uuid,
    pub reason: String,
}

impl NewQuarantine {
    fn of(event: &LogEvent, reason: String) -> Self {
        Self {
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            position: event.log_position(),
            event_type: event.event_type.clone(),
            event_id: event.event_id,
            reason,
        }
    }
}

/// What guarded applying changed besides the read tables.
#[derive(Debug, Default)]
pub struct Changes {
    pub quarantined: Vec<NewQuarantine>,
    /// Aggregates whose quarantine ends (an erasure applied, a retry succeeded).
    pub released: Vec<AggregateKey>,
    /// Quarantines whose retry failed again: the new reason.
    pub still_failing: Vec<(AggregateKey, String)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.quarantined.is_empty() && self.released.is_empty() && self.still_failing.is_empty()
    }
}

/// The quarantine a rebuild builds for one projector as it replays the log: what its
/// shadow tables leave out. The swap puts it in place of the projector's rows, so a rebuild
/// carries a poisoned aggregate over (and releases one whose cause was fixed).
#[derive(Debug, Default, Clone)]
pub struct Accumulated {
    pub blocked: HashSet<AggregateKey>,
    pub rows: Vec<NewQuarantine>,
}

impl Accumulated {
    /// Releases before quarantines, as in [`record`]: a release comes first in a batch.
    pub fn merge(&mut self, changes: Changes) {
        for key in changes.released {
            self.blocked.remove(&key);
            self.rows.retain(|q| {
                (q.aggregate_type.as_str(), q.aggregate_id.as_str())
                    != (key.0.as_str(), key.1.as_str())
            });
        }
        for q in changes.quarantined {
            if self
                .blocked
                .insert((q.aggregate_type.clone(), q.aggregate_id.clone()))
            {
                self.rows.push(q);
            }
        }
    }

    /// Replaces every quarantine row of `projector` with these (in the swap transaction).
    pub async fn replace(&self, tx: &mut PgConnection, projector: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM public.projector_quarantine WHERE projector = $1")
            .bind(projector)
            .execute(&mut *tx)
            .await?;
        record(
            &mut *tx,
            projector,
            &Changes {
                quarantined: self.rows.clone(),
                ..Changes::default()
            },
        )
        .await?;
        // Tell every process even when nothing is left (rows may have gone).
        notify_changed(&mut *tx, projector).await
    }
}

/// Whether an event of this type ends its aggregate's personal data (a user deleted): it is
/// applied even to a quarantined aggregate, so erasure never waits for a fix.
fn erases(event: &LogEvent) -> bool {
    aggregates::effects::erases_subject(&event.aggregate_type, &event.event_type)
}

/// Whether an event is applied even to a quarantined aggregate, alone: erasures, and API
/// key revocations (a quarantined company must not keep serving a key its owner revoked;
/// setting `revoked_at` on a key row needs nothing else of the company's state). Only an
/// erasure releases the quarantine.
fn always_applied(event: &LogEvent) -> bool {
    use cqrs_es::Aggregate;
    erases(event)
        || (event.aggregate_type == aggregates::company::Company::TYPE
            && event.event_type == "ApiKeyRevoked")
}

/// The events of `events` a projector should be given when `blocked` aggregates are
/// quarantined: not theirs, except erasures and key revocations ([`always_applied`]). `None` when nothing is left out (no copy).
pub fn without_blocked(
    events: &[LogEvent],
    blocked: &HashSet<AggregateKey>,
    unopened: &HashMap<usize, ProjectionError>,
) -> Option<Vec<LogEvent>> {
    if blocked.is_empty() && unopened.is_empty() {
        return None;
    }
    let mut failed: HashSet<AggregateKey> = HashSet::new();
    let mut kept = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        let key = key_of(event);
        if unopened.contains_key(&index) {
            failed.insert(key);
            continue;
        }
        if failed.contains(&key) || (blocked.contains(&key) && !always_applied(event)) {
            continue;
        }
        kept.push(event.clone());
    }
    Some(kept)
}

/// The quarantines and releases a whole batch applied without failure implies: the events
/// whose fields did not open quarantine their aggregates; erasures of blocked aggregates
/// release them.
pub fn changes_of_clean_batch(
    events: &[LogEvent],
    blocked: &HashSet<AggregateKey>,
    unopened: HashMap<usize, ProjectionError>,
) -> Changes {
    let mut changes = Changes::default();
    let mut failed: HashSet<AggregateKey> = HashSet::new();
    let mut unopened: Vec<(usize, ProjectionError)> = unopened.into_iter().collect();
    unopened.sort_by_key(|(index, _)| *index);
    for (index, error) in unopened {
        let event = &events[index];
        if !blocked.contains(&key_of(event)) && failed.insert(key_of(event)) {
            changes
                .quarantined
                .push(NewQuarantine::of(event, reason(&error)));
        }
    }
    for event in events {
        let key = key_of(event);
        if blocked.contains(&key) && erases(event) && !failed.contains(&key) {
            changes.released.push(key);
        }
    }
    changes
}

/// Applies `events` one at a time, each in a savepoint, after a batch failed permanently:
/// an event that fails permanently is rolled back and quarantines its aggregate, whose later
/// events are then skipped. A transient failure fails the whole call (and batch).
///
/// This is the rare path. Its savepoints each take a subtransaction id, which is why the
/// normal path does not use them. A failing event staged nothing for `committed` (a
/// projector stages only when `apply` succeeds), so what the others staged is published
/// after the commit as usual.
pub async fn apply_isolating(
    tx: &mut PgConnection,
    projector: &dyn Projector,
    events: &[LogEvent],
    blocked: &HashSet<AggregateKey>,
    mut unopened: HashMap<usize, ProjectionError>,
) -> Result<Changes, ProjectionError> {
    let mut changes = Changes::default();
    let mut failed: HashSet<AggregateKey> = HashSet::new();
    for (index, event) in events.iter().enumerate() {
        let key = key_of(event);
        if let Some(error) = unopened.remove(&index) {
            if !blocked.contains(&key) && failed.insert(key.clone()) {
                changes
                    .quarantined
                    .push(NewQuarantine::of(event, reason(&error)));
            }
            continue;
        }
        let was_blocked = blocked.contains(&key) || failed.contains(&key);
        if was_blocked && !always_applied(event) {
            continue;
        }
        sqlx::query("SAVEPOINT kairos_event")
            .execute(&mut *tx)
            .await?;
        match projector.apply(&mut *tx, std::slice::from_ref(event)).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT kairos_event")
                    .execute(&mut *tx)
                    .await?;
                if was_blocked && erases(event) {
                    // An erasure went through: nothing of the aggregate is left to serve.
                    if failed.remove(&key) {
                        changes.quarantined.retain(|q| {
                            (q.aggregate_type.as_str(), q.aggregate_id.as_str())
                                != (key.0.as_str(), key.1.as_str())
                        });
                    } else {
                        changes.released.push(key);
                    }
                }
            }
            Err(error) if is_permanent(&error) => {
                // Not `abandoned`: that drops what the whole transaction staged, including
                // what this batch's earlier events staged and will still commit; a failed
                // `apply` staged nothing (see `Projector::apply`).
                sqlx::query("ROLLBACK TO SAVEPOINT kairos_event")
                    .execute(&mut *tx)
                    .await?;
                if !was_blocked {
                    tracing::warn!(
                        projector = projector.name(),
                        aggregate_type = %event.aggregate_type,
                        aggregate_id = %event.aggregate_id,
                        position = event.position,
                        reason = %reason(&error),
                        "an event cannot be applied: its aggregate is quarantined, the others go on"
                    );
                    failed.insert(key);
                    changes
                        .quarantined
                        .push(NewQuarantine::of(event, reason(&error)));
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(changes)
}

/// Re-applies the stream of each quarantined aggregate whose retry was requested, from its
/// failing event up to `checkpoint` in commit order, each in a savepoint: success releases
/// it, failure keeps it with the new reason. Returns the events applied.
pub async fn retry(
    tx: &mut PgConnection,
    keyring: &crate::keyring::Keyring,
    projector: &dyn Projector,
    rows: &[Quarantined],
    checkpoint: LogPosition,
    changes: &mut Changes,
) -> Result<Vec<LogEvent>, ProjectionError> {
    let mut applied = Vec::new();
    for row in rows.iter().filter(|row| row.retry_requested) {
        let key = (row.aggregate_type.clone(), row.aggregate_id.clone());
        let from = LogPosition {
            tx_id: log::parse_xid(&row.tx_id),
            position: row.position,
        };
        let mut events: Vec<LogEvent> =
            log::read_stream(&mut *tx, &row.aggregate_type, &row.aggregate_id)
                .await?
                .into_iter()
                .filter(|e| e.log_position() >= from && e.log_position() <= checkpoint)
                .collect();
        events.sort_by_key(LogEvent::log_position);
        if projector.needs_personal_data()
            && let Some((_, error)) = log::open_personal_fields_each(&mut *tx, keyring, &mut events)
                .await?
                .into_iter()
                .next()
        {
            changes
                .still_failing
                .push((key, reason(&ProjectionError::Log(error))));
            continue;
        }
        sqlx::query("SAVEPOINT kairos_retry")
            .execute(&mut *tx)
            .await?;
        match projector.apply(&mut *tx, &events).await {
            Ok(()) => {
                sqlx::query("RELEASE SAVEPOINT kairos_retry")
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(projector = projector.name(), aggregate_id = %row.aggregate_id, "a quarantined aggregate applied on retry");
                changes.released.push(key);
                applied.extend(events);
            }
            Err(error) if is_permanent(&error) => {
                // Not `abandoned`, as in `apply_isolating`: the failed `apply` staged nothing.
                sqlx::query("ROLLBACK TO SAVEPOINT kairos_retry")
                    .execute(&mut *tx)
                    .await?;
                changes.still_failing.push((key, reason(&error)));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(applied)
}

/// Every quarantined aggregate of `projector`.
pub async fn load(
    conn: &mut PgConnection,
    projector: &str,
) -> Result<Vec<Quarantined>, sqlx::Error> {
    let rows = sqlx::query(&format!("{SELECT} WHERE projector = $1 ORDER BY position"))
        .bind(projector)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(row_to_quarantined).collect()
}

/// Every quarantined aggregate of every projector (status, metrics, the read-side set).
pub async fn list(pool: &PgPool) -> Result<Vec<Quarantined>, sqlx::Error> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY projector, position"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(row_to_quarantined).collect()
}

const SELECT: &str = "SELECT projector, aggregate_type, aggregate_id, position, tx_id::text AS tx_id_text, \
     event_type, event_id, reason, quarantined_at, retry_requested FROM projector_quarantine";

fn row_to_quarantined(row: &sqlx::postgres::PgRow) -> Result<Quarantined, sqlx::Error> {
    Ok(Quarantined {
        projector: row.try_get("projector")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        position: row.try_get("position")?,
        tx_id: row.try_get("tx_id_text")?,
        event_type: row.try_get("event_type")?,
        event_id: row.try_get("event_id")?,
        reason: row.try_get("reason")?,
        quarantined_at: row.try_get("quarantined_at")?,
        retry_requested: row.try_get("retry_requested")?,
    })
}

/// Writes `changes` in the batch's transaction and tells every process.
pub async fn record(
    tx: &mut PgConnection,
    projector: &str,
    changes: &Changes,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    // Releases first: a release always happened before any quarantine of the same batch (a
    // retry runs before the batch's events), so an aggregate released by its retry whose
    // next event then fails ends quarantined at that event. Inserting first would leave the
    // old row for the insert to skip and the delete to remove: the failing event passed,
    // the aggregate served as healthy but stale.
    for (aggregate_type, aggregate_id) in &changes.released {
        sqlx::query(
            "DELETE FROM projector_quarantine \
             WHERE projector = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projector)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .execute(&mut *tx)
        .await?;
    }
    for q in &changes.quarantined {
        sqlx::query(
            "INSERT INTO public.projector_quarantine \
               (projector, aggregate_type, aggregate_id, tx_id, position, event_type, event_id, reason) \
             VALUES ($1, $2, $3, $4::text::xid8, $5, $6, $7, $8) \
             ON CONFLICT (projector, aggregate_type, aggregate_id) DO NOTHING",
        )
        .bind(projector)
        .bind(&q.aggregate_type)
        .bind(&q.aggregate_id)
        .bind(q.position.tx_id.to_string())
        .bind(q.position.position)
        .bind(&q.event_type)
        .bind(q.event_id)
        .bind(&q.reason)
        .execute(&mut *tx)
        .await?;
    }
    for ((aggregate_type, aggregate_id), reason) in &changes.still_failing {
        sqlx::query(
            "UPDATE projector_quarantine SET reason = $4, retry_requested = false \
             WHERE projector = $1 AND aggregate_type = $2 AND aggregate_id = $3",
        )
        .bind(projector)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    notify_changed(&mut *tx, projector).await
}

/// Tells every process, when `tx` commits, that `projector`'s quarantined aggregates changed.
async fn notify_changed(tx: &mut PgConnection, projector: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(projector)
        .execute(tx)
        .await?;
    Ok(())
}

/// Asks for the quarantined aggregates of `projectors` (all when empty) to be applied again
/// by their leaders. Returns how many rows now ask for it.
pub async fn request_retry(
    conn: &mut PgConnection,
    projectors: &[&str],
) -> Result<u64, sqlx::Error> {
    let names: Vec<String> = projectors.iter().map(|p| p.to_string()).collect();
    let done = sqlx::query(
        "UPDATE projector_quarantine SET retry_requested = true \
         WHERE cardinality($1::text[]) = 0 OR projector = ANY($1)",
    )
    .bind(&names)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// A projector holding an aggregate in quarantine, and the company of the aggregate.
type Holder = (String, Option<uuid::Uuid>);

/// The quarantined aggregates as a serving process knows them, so reads of one answer 503.
///
/// Reads ask on every request, so the common case (nothing quarantined) is one atomic load.
/// The set is reloaded from the table by the local leader after a batch that changed it
/// commits (before it publishes the batch's progress, so a command waiting for it reads the
/// new state), and in every process on a [`CHANNEL`] notice and whenever the listener
/// (re)connects. While the listener is down it keeps what it knew.
#[derive(Default)]
pub struct QuarantineSet {
    any: AtomicBool,
    /// Aggregate id → the projectors that quarantine it, with the company of its event (so
    /// another company asking for the id learns nothing: it gets its usual 404).
    entries: RwLock<HashMap<String, Vec<Holder>>>,
    pool: OnceLock<PgPool>,
    /// Reloads run one at a time, so the last to finish read the newest state.
    reloading: tokio::sync::Mutex<()>,
}

impl QuarantineSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether any of `projectors` quarantines the aggregate `aggregate_id` of `company_id`.
    pub fn blocks(
        &self,
        company_id: uuid::Uuid,
        aggregate_id: impl std::fmt::Display,
        projectors: &[&str],
    ) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let aggregate_id = aggregate_id.to_string();
        let entries = self.entries.read().expect("quarantine set lock");
        entries.get(&aggregate_id).is_some_and(|holders| {
            holders.iter().any(|(name, company)| {
                projectors.contains(&name.as_str()) && company.is_none_or(|c| c == company_id)
            })
        })
    }

    /// Reads the table again.
    pub async fn reload(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let _one_at_a_time = self.reloading.lock().await;
        let rows: Vec<(String, String, Option<uuid::Uuid>)> = sqlx::query_as(
            "SELECT q.aggregate_id, q.projector, e.company_id FROM projector_quarantine q \
             LEFT JOIN events e ON e.global_position = q.position",
        )
        .fetch_all(pool)
        .await?;
        let mut entries: HashMap<String, Vec<Holder>> = HashMap::new();
        for (aggregate_id, projector, company_id) in rows {
            entries
                .entry(aggregate_id)
                .or_default()
                .push((projector, company_id));
        }
        let any = !entries.is_empty();
        *self.entries.write().expect("quarantine set lock") = entries;
        self.any.store(any, Ordering::Release);
        Ok(())
    }

    /// The pool notices reload with (set once, by the runtime that follows the channel).
    pub fn attach(&self, pool: PgPool) {
        let _ = self.pool.set(pool);
    }

    fn reload_in_background(self: &Arc<Self>) {
        let Some(pool) = self.pool.get().cloned() else {
            return;
        };
        let set = self.clone();
        tokio::spawn(async move {
            if let Err(error) = set.reload(&pool).await {
                tracing::warn!(%error, "could not reload the quarantined aggregates");
            }
        });
    }

    /// Follows [`CHANNEL`], for [`crate::runtime::Runtime::subscribe`].
    pub fn subscription(self: &Arc<Self>) -> Subscription {
        let (on_notice, on_followed) = (self.clone(), self.clone());
        Subscription {
            channel: CHANNEL,
            on_notice: Arc::new(move |_| on_notice.reload_in_background()),
            on_unfollowed: Arc::new(|| {}),
            on_followed: Arc::new(move || on_followed.reload_in_background()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_error() -> ProjectionError {
        let source = serde_json::from_str::<u8>("\"Ada\"").unwrap_err();
        ProjectionError::Log(LogError::Decode {
            position: 7,
            event_type: "UserRenamed".into(),
            source,
        })
    }

    #[test]
    fn what_no_retry_can_fix_is_permanent_and_everything_else_is_transient() {
        assert!(is_permanent(&decode_error()));
        assert!(is_permanent(&ProjectionError::Log(LogError::Keyring {
            position: 7,
            source: crate::keyring::KeyringError::Open,
        })));
        assert!(is_permanent(&ProjectionError::Invalid("bad id".into())));
        for transient in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::RowNotFound,
        ] {
            assert!(!is_permanent(&ProjectionError::Database(transient)));
        }
        assert!(!is_permanent(&ProjectionError::Log(LogError::Database(
            sqlx::Error::PoolTimedOut
        ))));
    }

    #[test]
    fn a_reason_names_the_event_but_never_quotes_its_data() {
        let reason = reason(&decode_error());
        assert_eq!(reason, "event at position 7 does not decode as UserRenamed");
        assert!(!reason.contains("Ada"));
    }
}
