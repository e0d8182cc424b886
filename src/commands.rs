//! The command side: load an aggregate, let it decide, append what it decided with the
//! command's claims and idempotency key, retry when another writer got there first, and let
//! the caller wait (bounded) until the read models it reads next have applied the result.

use std::time::Duration;

use aggregates::effects::{ClaimKind, StoredEvent, payload_of};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use projections::clock::SharedClock;
use projections::log::LogPosition;
use projections::runtime::{AppendSignal, Progress};
use rand::Rng;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_store::{
    AppendBatch, AppendError, Appended, EventMetadata, EventStore, IdempotentResponse, Loaded,
    PendingEvent, StoredResponse, StreamAppend,
};

/// How often a command is re-decided after losing a race for its aggregate.
const MAX_ATTEMPTS: u32 = 10;

/// Who is asking, for the events' metadata and the company column.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub metadata: EventMetadata,
    pub company_id: Option<Uuid>,
    /// The command creates its aggregate under an id just generated: the first attempt
    /// decides on the empty state without reading the (empty) stream. Should the id exist
    /// after all, the append conflicts and the retry loads it as usual.
    pub new_aggregate: bool,
}

/// An `Idempotency-Key` and the digest of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub company_id: Uuid,
    pub key: String,
    pub fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused the command.
    #[error(transparent)]
    Rejected(E),
    /// A uniqueness claim of the decided events is held by someone else.
    #[error("{} {value:?} is already taken", kind.as_str())]
    ClaimTaken { kind: ClaimKind, value: String },
    /// The aggregate kept changing under us for every attempt.
    #[error("the resource was changed concurrently; retry")]
    Conflict,
    /// The idempotency key was used before with a different request.
    #[error("the idempotency key was used with a different request")]
    IdempotencyMismatch,
    /// The same request was processed before, and what it created was erased since (the
    /// idempotency record is a tombstone): acting again would undo the erasure.
    #[error("the request was processed before and its result has since been erased")]
    ResultErased,
    #[error(transparent)]
    Store(AppendError),
}

/// What a command appended.
pub struct Committed<A: Aggregate> {
    pub events: Vec<A::Event>,
    /// Where the last event landed; `None` when the command decided nothing.
    pub position: Option<LogPosition>,
}

/// The result of a command that may carry an idempotency key.
pub enum Outcome<A: Aggregate> {
    Committed(Committed<A>),
    /// The key was seen before: this is the first request's stored response, and where the
    /// aggregate it changed stands now (to wait for, as after a commit).
    Replayed {
        status: u16,
        body: Value,
        position: Option<LogPosition>,
    },
}

#[derive(Clone)]
pub struct CommandBus {
    store: EventStore,
    clock: SharedClock,
    progress: Progress,
    /// Wakes the projector leaders (here at once, elsewhere by NOTIFY) after a commit.
    signal: AppendSignal,
    read_your_writes_timeout: Duration,
}

impl CommandBus {
    pub fn new(
        store: EventStore,
        clock: SharedClock,
        progress: Progress,
        signal: AppendSignal,
        read_your_writes_timeout: Duration,
    ) -> Self {
        Self {
            store,
            clock,
            progress,
            signal,
            read_your_writes_timeout,
        }
    }

    pub fn store(&self) -> &EventStore {
        &self.store
    }

    pub fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        context: &CommandContext,
    ) -> Result<Committed<A>, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()>,
        A::Event: StoredEvent,
        A::Command: Clone,
    {
        match self
            .execute_idempotent::<A>(aggregate_id, command, context, None, |_| (0, Value::Null))
            .await?
        {
            Outcome::Committed(committed) => Ok(committed),
            Outcome::Replayed { .. } => unreachable!("no idempotency key was given"),
        }
    }

    /// Runs `command` against aggregate `aggregate_id`. With an idempotency key, a request
    /// seen before returns its first response, and the response of this one (`respond`) is
    /// stored in the same transaction as its events.
    pub async fn execute_idempotent<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        context: &CommandContext,
        idempotency: Option<&IdempotencyKey>,
        respond: impl Fn(&[A::Event]) -> (u16, Value),
    ) -> Result<Outcome<A>, CommandError<A::Error>>
    where
        A: Aggregate<Services = ()>,
        A::Event: StoredEvent,
        A::Command: Clone,
    {
        if let Some(key) = idempotency
            && let Some(outcome) = self.replay::<A>(key).await?
        {
            return Ok(outcome);
        }
        for attempt in 0..MAX_ATTEMPTS {
            let loaded = if attempt == 0 && context.new_aggregate {
                Loaded {
                    aggregate: A::default(),
                    sequence: 0,
                }
            } else {
                self.store
                    .load::<A>(aggregate_id)
                    .await
                    .map_err(CommandError::Store)?
            };
            let events = decide(loaded.aggregate, command.clone())
                .await
                .map_err(CommandError::Rejected)?;
            if events.is_empty() {
                // Nothing to record, but the state decided on may hold events the read
                // models have not applied yet (a concurrent command's): the caller waits for
                // them like for its own, or its answer could show the state before them.
                let position = if loaded.sequence == 0 {
                    None
                } else {
                    self.store
                        .last_position_of(A::TYPE, aggregate_id)
                        .await
                        .map_err(|e| CommandError::Store(e.into()))?
                };
                return Ok(Outcome::Committed(Committed { events, position }));
            }
            let stream = stream_append::<A>(aggregate_id, loaded.sequence, &events)
                .map_err(|e| CommandError::Store(e.into()))?;
            let record = idempotency.map(|key| {
                let (status, body) = respond(&events);
                IdempotentResponse {
                    company_id: key.company_id,
                    key: key.key.clone(),
                    fingerprint: key.fingerprint.clone(),
                    status,
                    body,
                }
            });
            match self.commit(vec![stream], context, record).await {
                Ok(appended) => {
                    return Ok(Outcome::Committed(Committed {
                        events,
                        position: Some(appended.position),
                    }));
                }
                Err(AppendError::Conflict) => {
                    tracing::debug!(aggregate_id, attempt, "concurrent append; deciding again");
                    backoff(attempt).await;
                }
                Err(AppendError::IdempotencyKeyTaken) => {
                    let key = idempotency.expect("only appends with a key can collide on it");
                    if let Some(outcome) = self.replay::<A>(key).await? {
                        return Ok(outcome);
                    }
                    return Err(CommandError::Conflict);
                }
                Err(AppendError::ClaimTaken { kind, value, .. }) => {
                    return Err(CommandError::ClaimTaken { kind, value });
                }
                Err(other) => return Err(CommandError::Store(other)),
            }
        }
        Err(CommandError::Conflict)
    }

    async fn replay<A>(
        &self,
        key: &IdempotencyKey,
    ) -> Result<Option<Outcome<A>>, CommandError<A::Error>>
    where
        A: Aggregate,
    {
        let stored = self
            .store
            .find_idempotent_response(key.company_id, &key.key)
            .await
            .map_err(|e| CommandError::Store(e.into()))?;
        match stored {
            Some(StoredResponse {
                fingerprint,
                body: None,
                ..
            }) if fingerprint == key.fingerprint => Err(CommandError::ResultErased),
            Some(StoredResponse {
                fingerprint,
                status,
                body: Some(body),
                aggregate_id,
            }) if fingerprint == key.fingerprint => {
                // The first request may still be waiting for its read models: a replay must
                // not answer before them, or a read right after it could miss the change.
                let position = self
                    .store
                    .last_position_of(A::TYPE, &aggregate_id)
                    .await
                    .map_err(|e| CommandError::Store(e.into()))?;
                Ok(Some(Outcome::Replayed {
                    status,
                    body,
                    position,
                }))
            }
            Some(_) => Err(CommandError::IdempotencyMismatch),
            None => Ok(None),
        }
    }

    /// Appends already-decided streams in one transaction (commands spanning aggregates,
    /// such as creating a company with its owner) and wakes the local projectors.
    pub async fn commit(
        &self,
        streams: Vec<StreamAppend>,
        context: &CommandContext,
        idempotency: Option<IdempotentResponse>,
    ) -> Result<Appended, AppendError> {
        let batch = AppendBatch {
            streams,
            metadata: context.metadata.to_json(),
            company_id: context.company_id,
            idempotency,
            recorded_at: self.clock.now(),
        };
        let appended = self.store.append(&batch).await?;
        self.signal.appended().await;
        Ok(appended)
    }

    /// Waits until `read_models` have applied `position` (read-your-writes), at most the
    /// configured timeout. Returns whether they did; a late read model is logged, not fatal:
    /// the write itself is durable.
    pub async fn wait_for(
        &self,
        read_models: &[&'static str],
        position: Option<LogPosition>,
    ) -> bool {
        let Some(position) = position else {
            return true;
        };
        let caught_up = self
            .progress
            .wait_past(
                self.store.pool(),
                read_models,
                position,
                self.read_your_writes_timeout,
            )
            .await;
        if !caught_up {
            tracing::warn!(%position, ?read_models, "read models did not catch up in time; answering anyway");
        }
        caught_up
    }
}

/// Runs the aggregate's decision on a loaded state.
pub async fn decide<A>(mut aggregate: A, command: A::Command) -> Result<Vec<A::Event>, A::Error>
where
    A: Aggregate<Services = ()>,
{
    let sink = EventSink::<A>::default();
    aggregate.handle(command, &(), &sink).await?;
    Ok(sink.collect().await)
}

/// The events of one aggregate in the form the store appends.
pub fn stream_append<A>(
    aggregate_id: &str,
    expected_sequence: i64,
    events: &[A::Event],
) -> Result<StreamAppend, serde_json::Error>
where
    A: Aggregate,
    A::Event: StoredEvent,
{
    let pending = events
        .iter()
        .map(|event| {
            Ok(PendingEvent {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: payload_of(event)?,
                effects: event.effects(aggregate_id),
            })
        })
        .collect::<Result<_, serde_json::Error>>()?;
    Ok(StreamAppend {
        aggregate_type: A::TYPE.to_string(),
        aggregate_id: aggregate_id.to_string(),
        expected_sequence,
        events: pending,
    })
}

/// Jittered, growing pause between attempts, so racing writers spread out.
async fn backoff(attempt: u32) {
    let ceiling_ms = (2u64 << attempt.min(5)).min(50);
    let pause = rand::thread_rng().gen_range(1..=ceiling_ms);
    tokio::time::sleep(Duration::from_millis(pause)).await;
}
