//! [`EventStore`] as cqrs-es's `PersistedEventRepository`, so cqrs-es's own
//! `PersistedEventStore` and `CqrsFramework` can run on it with every guarantee of an append.
//!
//! cqrs-es wraps each payload in its enum variant (`{"UserCreated": {…}}`); the table stores
//! the payload without the wrapper, the type being in `event_type`. This adapter converts at
//! the boundary, opens sealed personal fields on the way out, and on the way in derives each
//! event's claims and personal fields from its typed form through [`EffectsRegistry`].

use std::collections::HashMap;
use std::sync::Arc;

use aggregates::company::Company;
use aggregates::effects::{StoreEffect, StoredEvent, event_from_payload, personal_fields};
use aggregates::user::User;
use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use projections::keyring;
use projections::log;
use projections::runtime::AppendSignal;
use serde_json::Value;

use super::{AppendBatch, AppendError, EventStore, PendingEvent, StreamAppend};

type Extract =
    dyn Fn(&str, &str, Value) -> Result<Vec<StoreEffect>, serde_json::Error> + Send + Sync;

/// For each aggregate type: how to get the store effects of one of its events from the
/// stored form. (Personal fields are declared per event type; the store looks them up.)
#[derive(Clone, Default)]
pub struct EffectsRegistry {
    extractors: HashMap<&'static str, Arc<Extract>>,
}

impl EffectsRegistry {
    /// Every aggregate of Kairos.
    pub fn kairos() -> Self {
        let mut registry = Self::default();
        registry.register::<Company>();
        registry.register::<User>();
        registry
    }

    pub fn register<A>(&mut self)
    where
        A: Aggregate,
        A::Event: StoredEvent,
    {
        self.extractors.insert(
            A::TYPE,
            Arc::new(|aggregate_id: &str, event_type: &str, payload: Value| {
                let event: A::Event = event_from_payload(event_type, payload)?;
                Ok(event.effects(aggregate_id))
            }),
        );
    }

    fn pending(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        event_type: &str,
        version: &str,
        payload: Value,
    ) -> Result<PendingEvent, PersistenceError> {
        let effects = match self.extractors.get(aggregate_type) {
            Some(extract) => extract(aggregate_id, event_type, payload.clone())?,
            // An aggregate Kairos does not know has no claims.
            None => Vec::new(),
        };
        Ok(PendingEvent {
            event_type: event_type.to_string(),
            event_version: version.to_string(),
            payload,
            effects,
        })
    }
}

impl From<AppendError> for PersistenceError {
    fn from(error: AppendError) -> Self {
        match error {
            AppendError::Conflict => PersistenceError::OptimisticLockError,
            AppendError::Database(e) => PersistenceError::ConnectionError(Box::new(e)),
            // A taken claim is not a concurrency conflict: it stays typed, for a downcast.
            other => PersistenceError::UnknownError(Box::new(other)),
        }
    }
}

impl EventStore {
    /// Opens the declared personal fields and puts the cqrs-es wrapper back on.
    async fn to_cqrs_shape(
        &self,
        aggregate_id: &str,
        mut events: Vec<SerializedEvent>,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let needs_key = events
            .iter()
            .any(|e| !personal_fields(&e.aggregate_type, &e.event_type).is_empty());
        let key = if needs_key {
            let mut connection = self
                .pool
                .acquire()
                .await
                .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
            let keys =
                log::load_data_keys(&mut connection, &self.keyring, &[aggregate_id.to_string()])
                    .await
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            keys.get(aggregate_id).cloned()
        } else {
            None
        };
        for event in &mut events {
            let fields = personal_fields(&event.aggregate_type, &event.event_type);
            keyring::open_fields(&mut event.payload, fields, key.as_ref(), aggregate_id)
                .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
            let mut wrapper = serde_json::Map::with_capacity(1);
            wrapper.insert(event.event_type.clone(), event.payload.take());
            event.payload = Value::Object(wrapper);
        }
        Ok(events)
    }
}

fn unwrap_payload(event: &SerializedEvent) -> Value {
    match &event.payload {
        Value::Object(wrapper) if wrapper.len() == 1 && wrapper.contains_key(&event.event_type) => {
            wrapper[&event.event_type].clone()
        }
        Value::String(variant) if *variant == event.event_type => Value::Object(Default::default()),
        other => other.clone(),
    }
}

impl PersistedEventRepository for EventStore {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.reader().get_events::<A>(aggregate_id).await?;
        self.to_cqrs_shape(aggregate_id, events).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self
            .reader()
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await?;
        self.to_cqrs_shape(aggregate_id, events).await
    }

    /// Kairos keeps no snapshots: cqrs-es 0.5's snapshot store applies events twice.
    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut streams: Vec<StreamAppend> = Vec::new();
        for event in events {
            let pending = self.registry.pending(
                &event.aggregate_type,
                &event.aggregate_id,
                &event.event_type,
                &event.event_version,
                unwrap_payload(event),
            )?;
            match streams.last_mut() {
                Some(stream) if stream.aggregate_id == event.aggregate_id => {
                    stream.events.push(pending)
                }
                _ => streams.push(StreamAppend {
                    aggregate_type: event.aggregate_type.clone(),
                    aggregate_id: event.aggregate_id.clone(),
                    expected_sequence: event.sequence as i64 - 1,
                    events: vec![pending],
                }),
            }
        }
        let company_id = first
            .metadata
            .get("companyId")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok());
        let batch = AppendBatch {
            streams,
            metadata: first.metadata.clone(),
            company_id,
            idempotency: None,
            recorded_at: chrono::Utc::now(),
        };
        self.append(&batch).await?;
        // This path has no runtime at hand: tell every process directly.
        AppendSignal::direct(self.pool.clone()).appended().await;
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        let events = self.get_events::<A>(aggregate_id).await?;
        Ok(replay(events))
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 ORDER BY 1",
        )
        .bind(A::TYPE)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        let mut all = Vec::new();
        for id in ids {
            all.extend(self.get_events::<A>(&id).await?);
        }
        Ok(replay(all))
    }
}

fn replay(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    tokio::spawn(async move {
        for event in events {
            if feed.push(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    stream
}
