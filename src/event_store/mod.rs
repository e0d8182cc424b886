//! The event store: appends events with their claims, idempotency key, sealed personal fields
//! and hashes atomically (one statement, see `append`), and loads aggregates back.
//!
//! Reading a stream goes through postgres-es's `PostgresEventRepository`; the append is ours,
//! because postgres-es cannot put claims, idempotency keys or hashes into its transaction,
//! inserts one row per round trip and reports every unique violation as a concurrency
//! conflict. Here a violated claim is a typed [`AppendError::ClaimTaken`], and a concurrency
//! conflict is [`AppendError::Conflict`], which the command bus retries.

mod append;
pub mod hash;
mod repository;

pub use repository::EffectsRegistry;

use aggregates::effects::{ClaimKind, StoreEffect, personal_fields};
use aggregates::slug::{self, TakenCandidates};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::persist::PersistedEventRepository;
use postgres_es::PostgresEventRepository;
use projections::keyring::{self, DataKey, Keyring};
use projections::log::{LogPosition, parse_xid};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use append::{EventRow, LogWrite};
use hash::{GENESIS, Hash, HashedFields};

/// Who caused an append; stored as each event's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventMetadata {
    pub request_id: Option<String>,
    pub api_key_id: Option<Uuid>,
    pub acting_user_id: Option<Uuid>,
    pub company_id: Option<Uuid>,
    /// `http` or `cli`.
    pub origin: &'static str,
}

impl EventMetadata {
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("origin".into(), Value::from(self.origin));
        if let Some(id) = &self.request_id {
            map.insert("requestId".into(), Value::from(id.clone()));
        }
        if let Some(id) = self.api_key_id {
            map.insert("apiKeyId".into(), Value::from(id.to_string()));
        }
        if let Some(id) = self.acting_user_id {
            map.insert("actingUserId".into(), Value::from(id.to_string()));
        }
        if let Some(id) = self.company_id {
            map.insert("companyId".into(), Value::from(id.to_string()));
        }
        Value::Object(map)
    }
}

/// One event ready to append: its clean payload (no enum wrapper, personal fields in clear)
/// and what it asks of the store. Which fields are personal is not the caller's to say: the
/// store seals what the event type declares ([`aggregates::effects::personal_fields`]), the
/// same declaration every reader opens by.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub effects: Vec<StoreEffect>,
}

/// The new events of one aggregate, appended after `expected_sequence` existing ones.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub expected_sequence: i64,
    pub events: Vec<PendingEvent>,
}

/// A request's first result, stored with its `Idempotency-Key` in the append transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentResponse {
    pub company_id: Uuid,
    pub key: String,
    /// A digest of the request, so a key reused for a different request is refused.
    pub fingerprint: String,
    pub status: u16,
    pub body: Value,
}

/// Everything one command appends, in one transaction.
#[derive(Debug, Clone)]
pub struct AppendBatch {
    pub streams: Vec<StreamAppend>,
    /// The metadata of every event of the batch ([`EventMetadata::to_json`]).
    pub metadata: Value,
    pub company_id: Option<Uuid>,
    pub idempotency: Option<IdempotentResponse>,
    pub recorded_at: DateTime<Utc>,
}

/// Where the appended events landed in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The last appended event, in commit order: wait for projectors to pass this.
    pub position: LogPosition,
    pub events: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to one of the streams first; reload and decide again.
    #[error("concurrent change: another command appended to the same aggregate first")]
    Conflict,
    /// A uniqueness claim is held by someone else. Nothing was appended.
    #[error("{} {value:?} is already taken", kind.as_str())]
    ClaimTaken {
        kind: ClaimKind,
        scope: String,
        value: String,
    },
    /// This idempotency key was stored meanwhile (a concurrent replay); nothing was appended.
    #[error("the idempotency key was used by a concurrent request")]
    IdempotencyKeyTaken,
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event cannot be serialized: {0}")]
    Serialization(#[from] serde_json::Error),
    #[error("data key: {0}")]
    Keyring(#[from] keyring::KeyringError),
    #[error("loading the aggregate failed: {0}")]
    Load(#[from] cqrs_es::persist::PersistenceError),
}

/// A stored idempotency record, found when a request is replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub fingerprint: String,
    pub status: u16,
    /// `None` once the aggregate's data subject was erased: the record stays as a tombstone
    /// (fingerprint and status), so the request is still known as done.
    pub body: Option<Value>,
    /// The aggregate the first request appended to.
    pub aggregate_id: String,
}

/// An aggregate as loaded: its state, how many events it has, and the last hash.
pub struct Loaded<A> {
    pub aggregate: A,
    pub sequence: i64,
}

#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    keyring: Keyring,
    registry: EffectsRegistry,
}

impl EventStore {
    pub fn new(pool: PgPool, keyring: Keyring) -> Self {
        Self {
            pool,
            keyring,
            registry: EffectsRegistry::kairos(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// postgres-es's reader over our `events` table (its columns are a subset of ours).
    fn reader(&self) -> PostgresEventRepository {
        PostgresEventRepository::new(self.pool.clone())
    }

    /// Rebuilds aggregate `A` with id `aggregate_id` from its events.
    pub async fn load<A: Aggregate>(&self, aggregate_id: &str) -> Result<Loaded<A>, AppendError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        let mut aggregate = A::default();
        let mut sequence = 0;
        for serialized in events {
            sequence = serialized.sequence as i64;
            aggregate.apply(cqrs_es::EventEnvelope::<A>::try_from(serialized)?.payload);
        }
        Ok(Loaded {
            aggregate,
            sequence,
        })
    }

    /// Appends `batch` atomically, committed on return. Waking projectors is the caller's
    /// part (`AppendSignal`), after the append.
    pub async fn append(&self, batch: &AppendBatch) -> Result<Appended, AppendError> {
        let mut connection = self.pool.acquire().await?;
        self.append_in(&mut connection, batch).await
    }

    /// Appends `batch` on `connection`: the reads an existing stream needs (its last hash, its
    /// data key), then one statement writing everything ([`append::LogWrite`]). Outside a
    /// transaction that statement commits on its own; inside the caller's (tests hold a
    /// writer open this way) it commits with it.
    pub async fn append_in(
        &self,
        connection: &mut PgConnection,
        batch: &AppendBatch,
    ) -> Result<Appended, AppendError> {
        if batch.streams.iter().all(|s| s.events.is_empty()) {
            // Nothing to record (callers do not ask for this; the function refuses it).
            return Ok(Appended {
                position: LogPosition::default(),
                events: 0,
            });
        }
        let mut write = LogWrite::default();
        let recorded_at = hash::to_micros(batch.recorded_at);
        for stream in &batch.streams {
            write.effects_of(stream);
            let key = self.data_key_for(connection, stream, &mut write).await?;
            let mut previous = previous_hash(connection, stream).await?;
            for (offset, event) in stream.events.iter().enumerate() {
                let mut payload = event.payload.clone();
                if let Some(key) = &key {
                    keyring::seal_fields(
                        &mut payload,
                        personal_fields(&stream.aggregate_type, &event.event_type),
                        key,
                        &stream.aggregate_id,
                    );
                }
                let sequence = stream.expected_sequence + 1 + offset as i64;
                let event_id = Uuid::now_v7();
                previous = hash::chain(
                    &previous,
                    &HashedFields {
                        event_id,
                        aggregate_type: &stream.aggregate_type,
                        aggregate_id: &stream.aggregate_id,
                        sequence,
                        event_type: &event.event_type,
                        event_version: &event.event_version,
                        company_id: batch.company_id,
                        recorded_at,
                        payload: &payload,
                        metadata: &batch.metadata,
                    },
                );
                write.event(
                    EventRow {
                        stream,
                        event,
                        sequence,
                        payload,
                        event_id,
                        hash: previous,
                    },
                    batch,
                );
            }
        }
        write.run(connection, batch).await
    }

    /// The data key sealing this stream's personal fields: the stored one, or a new one the
    /// append will store. `None` when no event of the append has personal fields.
    async fn data_key_for<'a>(
        &self,
        connection: &mut PgConnection,
        stream: &'a StreamAppend,
        write: &mut LogWrite<'a>,
    ) -> Result<Option<DataKey>, AppendError> {
        if stream
            .events
            .iter()
            .all(|e| personal_fields(&stream.aggregate_type, &e.event_type).is_empty())
        {
            return Ok(None);
        }
        let subject = &stream.aggregate_id;
        // A stream's first append cannot have a key yet: skip the lookup (one round trip of
        // every user creation). If the key exists anyway (an id reused), the insert fails
        // rather than overwrite it.
        if stream.expected_sequence > 0 {
            let existing: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT wrapped_key FROM data_keys WHERE subject_id = $1")
                    .bind(subject)
                    .fetch_optional(&mut *connection)
                    .await?;
            if let Some(wrapped) = existing {
                return Ok(Some(self.keyring.unwrap_data_key(subject, &wrapped)?));
            }
        }
        let (key, wrapped) = self.keyring.new_data_key(subject);
        write.data_key(subject, wrapped);
        Ok(Some(key))
    }

    /// A stored idempotency record of `company_id`, if the key was used before.
    pub async fn find_idempotent_response(
        &self,
        company_id: Uuid,
        key: &str,
    ) -> Result<Option<StoredResponse>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT request_fingerprint, response_status, response_body, aggregate_id FROM idempotency_keys \
             WHERE company_id = $1 AND key = $2",
        )
        .bind(company_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let status: i16 = row.try_get("response_status")?;
            Ok(StoredResponse {
                fingerprint: row.try_get("request_fingerprint")?,
                status: status as u16,
                body: row.try_get::<Option<Value>, _>("response_body")?,
                aggregate_id: row.try_get("aggregate_id")?,
            })
        })
        .transpose()
    }

    /// Where the last event of an aggregate stands in the log (`None` for no events).
    pub async fn last_position_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Option<LogPosition>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT tx_id::text AS tx_id_text, global_position FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(LogPosition {
                tx_id: parse_xid(&row.try_get::<String, _>("tx_id_text")?),
                position: row.try_get("global_position")?,
            })
        })
        .transpose()
    }
    /// Which candidates of a derived user slug `base` are claimed: the base itself, the lowest
    /// claimed suffixes from `first_suffix` on and the highest one. One query reading at most
    /// `1 + LOWEST_TAKEN + 1` index entries (`migrations/…_slug_suffix.sql`), however many
    /// users share the base.
    pub async fn taken_user_slug_candidates(
        &self,
        base: &str,
        first_suffix: u64,
    ) -> Result<TakenCandidates, sqlx::Error> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(TAKEN_USER_SLUG_CANDIDATES)
            .bind(base)
            .bind(i64::try_from(first_suffix).unwrap_or(i64::MAX))
            .bind(slug::LOWEST_TAKEN as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut taken = TakenCandidates {
            base: base.to_string(),
            ..TakenCandidates::none()
        };
        for (part, suffix) in rows {
            let suffix = suffix.and_then(|n| u64::try_from(n).ok());
            match (part.as_str(), suffix) {
                ("plain", _) => taken.plain = true,
                ("lowest", Some(n)) => taken.lowest.push(n),
                ("highest", Some(n)) => taken.highest = Some(n),
                _ => {}
            }
        }
        taken.lowest.sort_unstable();
        Ok(taken)
    }
}

/// The query of [`EventStore::taken_user_slug_candidates`]: `$1` the base, `$2` the first
/// suffix, `$3` how many of the lowest suffixes. The suffix expressions and the predicate
/// repeat the partial index `claims_user_slug_suffix` character for character (the planner
/// matches them textually), with literals so that a generic plan still uses it. Public so a
/// test can EXPLAIN it.
pub const TAKEN_USER_SLUG_CANDIDATES: &str = "\
(SELECT 'plain' AS part, NULL::bigint AS suffix FROM claims \
  WHERE kind = 'user-slug' AND scope = '' AND value = $1) \
UNION ALL \
(SELECT 'lowest', (substring(value FROM '-([1-9][0-9]{0,17})$'))::bigint FROM claims \
  WHERE kind = 'user-slug' AND scope = '' AND value ~ '-[1-9][0-9]{0,17}$' \
    AND substring(value FROM '^(.*)-[1-9][0-9]{0,17}$') = $1 \
    AND (substring(value FROM '-([1-9][0-9]{0,17})$'))::bigint >= $2 \
  ORDER BY 2 LIMIT $3) \
UNION ALL \
(SELECT 'highest', (substring(value FROM '-([1-9][0-9]{0,17})$'))::bigint FROM claims \
  WHERE kind = 'user-slug' AND scope = '' AND value ~ '-[1-9][0-9]{0,17}$' \
    AND substring(value FROM '^(.*)-[1-9][0-9]{0,17}$') = $1 \
  ORDER BY 2 DESC LIMIT 1)";

/// The hash of the event the stream's new events follow; a stream shorter than expected
/// lost a race.
async fn previous_hash(
    connection: &mut PgConnection,
    stream: &StreamAppend,
) -> Result<Hash, AppendError> {
    if stream.expected_sequence == 0 {
        return Ok(GENESIS);
    }
    let stored: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
    )
    .bind(&stream.aggregate_type)
    .bind(&stream.aggregate_id)
    .bind(stream.expected_sequence)
    .fetch_optional(&mut *connection)
    .await?;
    stored
        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
        .ok_or(AppendError::Conflict)
}
