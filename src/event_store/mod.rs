//! The event store: appends events with their claims, idempotency key, sealed personal fields
//! and hashes in one transaction, and loads aggregates back.
//!
//! Reading a stream goes through postgres-es's `PostgresEventRepository`; the append is ours,
//! because postgres-es cannot put claims, idempotency keys or hashes into its transaction,
//! inserts one row per round trip and reports every unique violation as a concurrency
//! conflict. Here a violated claim is a typed [`AppendError::ClaimTaken`], and a concurrency
//! conflict is [`AppendError::Conflict`], which the command bus retries.

pub mod hash;
mod repository;

pub use repository::EffectsRegistry;

use aggregates::effects::{ClaimKind, StoreEffect};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::persist::PersistedEventRepository;
use postgres_es::PostgresEventRepository;
use projections::keyring::{self, DataKey, Keyring};
use projections::log::{LogPosition, parse_xid};
use serde_json::Value;
use sqlx::{Acquire, PgConnection, PgPool, Row};
use uuid::Uuid;

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
/// and what it asks of the store.
#[derive(Debug, Clone)]
pub struct PendingEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub effects: Vec<StoreEffect>,
    pub personal_fields: &'static [&'static str],
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
    pub body: Value,
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

    /// Appends `batch` in its own transaction. Waking projectors is the caller's part
    /// (`AppendSignal`), after the commit.
    pub async fn append(&self, batch: &AppendBatch) -> Result<Appended, AppendError> {
        let mut connection = self.pool.acquire().await?;
        let mut tx = connection.begin().await?;
        let appended = self
            .append_in(&mut tx, batch)
            .await
            .map_err(racing_is_conflict)?;
        tx.commit()
            .await
            .map_err(AppendError::from)
            .map_err(racing_is_conflict)?;
        Ok(appended)
    }

    /// Appends `batch` inside the caller's transaction (tests use this to hold a writer open).
    /// On any error the caller must roll back: partial work may have been done.
    pub async fn append_in(
        &self,
        tx: &mut PgConnection,
        batch: &AppendBatch,
    ) -> Result<Appended, AppendError> {
        if let Some(record) = &batch.idempotency {
            let aggregate_id = batch
                .streams
                .first()
                .map(|s| s.aggregate_id.as_str())
                .unwrap_or("");
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (company_id, key, aggregate_id, request_fingerprint, response_status, \
                 response_body) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1",
            )
            .bind(record.company_id)
            .bind(&record.key)
            .bind(aggregate_id)
            .bind(&record.fingerprint)
            .bind(record.status as i16)
            .bind(&record.body)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                return Err(AppendError::IdempotencyKeyTaken);
            }
        }

        for stream in &batch.streams {
            apply_claims(tx, stream).await?;
        }

        let metadata = &batch.metadata;
        let recorded_at = hash::to_micros(batch.recorded_at);
        let mut rows = EventRows::default();
        let mut erase = Vec::new();
        for stream in &batch.streams {
            let key = self.data_key_for(tx, stream).await?;
            let mut previous = previous_hash(tx, stream).await?;
            for (offset, event) in stream.events.iter().enumerate() {
                let mut payload = event.payload.clone();
                if let Some(key) = &key {
                    keyring::seal_fields(
                        &mut payload,
                        event.personal_fields,
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
                        metadata,
                    },
                );
                rows.push(
                    stream,
                    event,
                    sequence,
                    payload,
                    metadata,
                    event_id,
                    recorded_at,
                    batch.company_id,
                    previous,
                );
                if event.effects.contains(&StoreEffect::EraseDataSubject) {
                    erase.push(stream.aggregate_id.clone());
                }
            }
        }

        let inserted = rows.insert(tx).await?;
        if inserted.len() != rows.len() {
            return Err(AppendError::Conflict);
        }
        if !erase.is_empty() {
            sqlx::query("DELETE FROM data_keys WHERE subject_id = ANY($1)")
                .bind(&erase)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE aggregate_id = ANY($1)")
                .bind(&erase)
                .execute(&mut *tx)
                .await?;
        }
        let position = inserted.into_iter().max().unwrap_or_default();
        Ok(Appended {
            position,
            events: rows.len(),
        })
    }

    /// The data key sealing this stream's personal fields, created on first need. `None`
    /// when no event of the append has personal fields.
    async fn data_key_for(
        &self,
        tx: &mut PgConnection,
        stream: &StreamAppend,
    ) -> Result<Option<DataKey>, AppendError> {
        if stream.events.iter().all(|e| e.personal_fields.is_empty()) {
            return Ok(None);
        }
        let subject = &stream.aggregate_id;
        // A stream's first append cannot have a key yet: skip the lookup (one round trip of
        // every user creation). If the key exists anyway (an id reused), the insert below
        // fails rather than overwrite it.
        if stream.expected_sequence > 0 {
            let existing: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT wrapped_key FROM data_keys WHERE subject_id = $1")
                    .bind(subject)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(wrapped) = existing {
                return Ok(Some(self.keyring.unwrap_data_key(subject, &wrapped)?));
            }
        }
        let (key, wrapped) = self.keyring.new_data_key(subject);
        sqlx::query("INSERT INTO data_keys (subject_id, wrapped_key) VALUES ($1, $2)")
            .bind(subject)
            .bind(wrapped)
            .execute(&mut *tx)
            .await?;
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
                body: row.try_get("response_body")?,
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

    /// The values of `kind` within `scope` that are claimed and equal `prefix` or start with
    /// `prefix-` (the candidates a derived slug must avoid).
    pub async fn claimed_with_prefix(
        &self,
        kind: ClaimKind,
        scope: &str,
        prefix: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        // `value = base OR value LIKE 'base-%'` as one range of the C-collated key: slugs
        // hold only [a-z0-9-], and '-' is the one such character below '.', so
        // [base, base + '.') is exactly the base and its suffixed forms. A prepared
        // statement's generic plan uses the index for a range, not for LIKE or OR, and a scan
        // of every claim grows with the installation.
        sqlx::query_scalar(
            "SELECT value FROM claims WHERE kind = $1 AND scope = $2 AND value >= $3 AND value < $4",
        )
        .bind(kind.as_str())
        .bind(scope)
        .bind(prefix)
        .bind(format!("{prefix}."))
        .fetch_all(&self.pool)
        .await
    }
}

/// Releases, then takes, the claims of one stream's events. A claim held by anyone else
/// fails the append with the first such claim's kind.
/// A deadlock or serialization failure between two appends (two users swapping slugs each
/// wait for the other's released claim) is a race like any other: reload and decide again.
fn racing_is_conflict(error: AppendError) -> AppendError {
    match &error {
        AppendError::Database(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
        {
            AppendError::Conflict
        }
        _ => error,
    }
}

async fn apply_claims(tx: &mut PgConnection, stream: &StreamAppend) -> Result<(), AppendError> {
    let mut claims = Vec::new();
    for effect in stream.events.iter().flat_map(|e| &e.effects) {
        match effect {
            StoreEffect::Release { kind, owner } => {
                sqlx::query("DELETE FROM claims WHERE kind = $1 AND owner_id = $2")
                    .bind(kind.as_str())
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
            }
            StoreEffect::ReleaseAll => {
                sqlx::query("DELETE FROM claims WHERE aggregate_type = $1 AND aggregate_id = $2")
                    .bind(&stream.aggregate_type)
                    .bind(&stream.aggregate_id)
                    .execute(&mut *tx)
                    .await?;
            }
            StoreEffect::Claim(claim) => claims.push(claim),
            StoreEffect::EraseDataSubject => {}
        }
    }
    if claims.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = claims.iter().map(|c| c.kind.as_str()).collect();
    let scopes: Vec<&str> = claims.iter().map(|c| c.scope.as_str()).collect();
    let values: Vec<&str> = claims.iter().map(|c| c.value.as_str()).collect();
    let owners: Vec<&str> = claims.iter().map(|c| c.owner.as_str()).collect();
    let taken: Vec<(String, String, String)> = sqlx::query_as(
        "INSERT INTO claims (kind, scope, value, owner_id, aggregate_type, aggregate_id) \
         SELECT k, s, v, o, $5, $6 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(k, s, v, o) \
         ON CONFLICT DO NOTHING RETURNING kind, scope, value",
    )
    .bind(&kinds)
    .bind(&scopes)
    .bind(&values)
    .bind(&owners)
    .bind(&stream.aggregate_type)
    .bind(&stream.aggregate_id)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(refused) = claims.iter().find(|claim| {
        !taken
            .iter()
            .any(|(k, s, v)| k == claim.kind.as_str() && *s == claim.scope && *v == claim.value)
    }) {
        // Held by this very aggregate: a concurrent command on it took the claim first, so
        // this command decided on a stale state. That is a conflict, not someone else's value.
        let holder: Option<(String, String)> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id FROM claims WHERE kind = $1 AND scope = $2 AND value = $3",
        )
        .bind(refused.kind.as_str())
        .bind(&refused.scope)
        .bind(&refused.value)
        .fetch_optional(&mut *tx)
        .await?;
        if holder.is_some_and(|(aggregate_type, aggregate_id)| {
            aggregate_type == stream.aggregate_type && aggregate_id == stream.aggregate_id
        }) {
            return Err(AppendError::Conflict);
        }
        return Err(AppendError::ClaimTaken {
            kind: refused.kind,
            scope: refused.scope.clone(),
            value: refused.value.clone(),
        });
    }
    Ok(())
}

async fn previous_hash(tx: &mut PgConnection, stream: &StreamAppend) -> Result<Hash, AppendError> {
    if stream.expected_sequence == 0 {
        return Ok(GENESIS);
    }
    let stored: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT hash FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3",
    )
    .bind(&stream.aggregate_type)
    .bind(&stream.aggregate_id)
    .bind(stream.expected_sequence)
    .fetch_optional(&mut *tx)
    .await?;
    stored
        .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
        .ok_or(AppendError::Conflict)
}

/// Column arrays for one multi-row insert.
#[derive(Default)]
struct EventRows {
    aggregate_types: Vec<String>,
    aggregate_ids: Vec<String>,
    sequences: Vec<i64>,
    event_types: Vec<String>,
    event_versions: Vec<String>,
    payloads: Vec<Value>,
    metadata: Vec<Value>,
    event_ids: Vec<Uuid>,
    recorded_ats: Vec<DateTime<Utc>>,
    company_ids: Vec<Option<Uuid>>,
    hashes: Vec<Vec<u8>>,
}

impl EventRows {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        stream: &StreamAppend,
        event: &PendingEvent,
        sequence: i64,
        payload: Value,
        metadata: &Value,
        event_id: Uuid,
        recorded_at: DateTime<Utc>,
        company_id: Option<Uuid>,
        hash: Hash,
    ) {
        self.aggregate_types.push(stream.aggregate_type.clone());
        self.aggregate_ids.push(stream.aggregate_id.clone());
        self.sequences.push(sequence);
        self.event_types.push(event.event_type.clone());
        self.event_versions.push(event.event_version.clone());
        self.payloads.push(payload);
        self.metadata.push(metadata.clone());
        self.event_ids.push(event_id);
        self.recorded_ats.push(recorded_at);
        self.company_ids.push(company_id);
        self.hashes.push(hash.to_vec());
    }

    fn len(&self) -> usize {
        self.sequences.len()
    }

    /// Inserts every row in one statement; a row whose (aggregate, sequence) exists is
    /// skipped, so fewer returned positions than rows means a concurrent writer won.
    async fn insert(&self, tx: &mut PgConnection) -> Result<Vec<LogPosition>, AppendError> {
        let rows = sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
             metadata, event_id, recorded_at, company_id, hash) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::jsonb[], \
                                  $7::jsonb[], $8::uuid[], $9::timestamptz[], $10::uuid[], $11::bytea[]) \
             ON CONFLICT ON CONSTRAINT events_pkey DO NOTHING \
             RETURNING global_position, tx_id::text AS tx_id_text",
        )
        .bind(&self.aggregate_types)
        .bind(&self.aggregate_ids)
        .bind(&self.sequences)
        .bind(&self.event_types)
        .bind(&self.event_versions)
        .bind(&self.payloads)
        .bind(&self.metadata)
        .bind(&self.event_ids)
        .bind(&self.recorded_ats)
        .bind(&self.company_ids)
        .bind(&self.hashes)
        .fetch_all(&mut *tx)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LogPosition {
                    tx_id: parse_xid(&row.try_get::<String, _>("tx_id_text")?),
                    position: row.try_get("global_position")?,
                })
            })
            .collect()
    }
}
