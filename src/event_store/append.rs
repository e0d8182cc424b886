//! One append as one statement: the column arrays of everything a command writes, handed to
//! the `append_to_log` function (`migrations/…0004_append_function.sql`), and its failures
//! turned back into [`AppendError`]s.

use aggregates::effects::{Claim, StoreEffect};
use chrono::{DateTime, Utc};
use projections::log::{LogPosition, parse_xid};
use serde_json::Value;
use sqlx::postgres::PgDatabaseError;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::hash::Hash;
use super::{AppendBatch, AppendError, Appended, PendingEvent, StreamAppend};

/// What one call of `append_to_log` writes, as its array arguments.
#[derive(Default)]
pub(super) struct LogWrite<'a> {
    released: Vec<(&'static str, &'a str)>,
    released_all: Vec<&'a StreamAppend>,
    claims: Vec<(&'a Claim, &'a StreamAppend)>,
    key_subjects: Vec<&'a str>,
    key_wrapped: Vec<Vec<u8>>,
    events: EventRows,
    erased: Vec<&'a str>,
}

/// One event as stored: sealed payload, position in its stream and hash.
pub(super) struct EventRow<'a> {
    pub stream: &'a StreamAppend,
    pub event: &'a PendingEvent,
    pub sequence: i64,
    pub payload: Value,
    pub event_id: Uuid,
    pub hash: Hash,
}

impl<'a> LogWrite<'a> {
    /// Takes in the claims released and taken, and the erasures, of `stream`'s events.
    /// Releases run before claims, so a changed slug can take the place of the old one.
    pub fn effects_of(&mut self, stream: &'a StreamAppend) {
        for effect in stream.events.iter().flat_map(|e| &e.effects) {
            match effect {
                StoreEffect::Release { kind, owner } => self.released.push((kind.as_str(), owner)),
                StoreEffect::ReleaseAll => self.released_all.push(stream),
                // Asked twice by one aggregate, a claim is taken once: the function would
                // count the second as refused.
                StoreEffect::Claim(claim) => {
                    let again = self.claims.iter().any(|(taken, by)| {
                        *taken == claim
                            && by.aggregate_type == stream.aggregate_type
                            && by.aggregate_id == stream.aggregate_id
                    });
                    if !again {
                        self.claims.push((claim, stream));
                    }
                }
                StoreEffect::EraseDataSubject => self.erased.push(&stream.aggregate_id),
            }
        }
    }

    /// A data key created by this append, wrapped by the master key.
    pub fn data_key(&mut self, subject: &'a str, wrapped: Vec<u8>) {
        self.key_subjects.push(subject);
        self.key_wrapped.push(wrapped);
    }

    pub fn event(&mut self, row: EventRow<'a>, batch: &AppendBatch) {
        self.events.push(row, batch);
    }

    /// Writes everything in one statement: atomic without an explicit transaction, so a new
    /// aggregate's append is a single round trip.
    pub async fn run(
        self,
        connection: &mut PgConnection,
        batch: &AppendBatch,
    ) -> Result<Appended, AppendError> {
        let idempotency = batch.idempotency.as_ref();
        let idempotency_aggregate = batch
            .streams
            .first()
            .map(|s| s.aggregate_id.as_str())
            .unwrap_or("");
        let (release_kinds, release_owners): (Vec<&str>, Vec<&str>) =
            self.released.iter().copied().unzip();
        let release_all_types: Vec<&str> = self
            .released_all
            .iter()
            .map(|s| s.aggregate_type.as_str())
            .collect();
        let release_all_ids: Vec<&str> = self
            .released_all
            .iter()
            .map(|s| s.aggregate_id.as_str())
            .collect();
        let claim_column = |field: fn(&'a Claim, &'a StreamAppend) -> &'a str| -> Vec<&'a str> {
            self.claims
                .iter()
                .map(|(claim, stream)| field(claim, stream))
                .collect()
        };
        let events = &self.events;
        let row = sqlx::query(
            "SELECT appended_tx_id, appended_position FROM append_to_log(\
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30)",
        )
        .bind(idempotency.map(|r| r.company_id))
        .bind(idempotency.map(|r| r.key.as_str()))
        .bind(idempotency_aggregate)
        .bind(idempotency.map(|r| r.fingerprint.as_str()))
        .bind(idempotency.map(|r| r.status as i16))
        .bind(idempotency.map(|r| &r.body))
        .bind(&release_kinds)
        .bind(&release_owners)
        .bind(&release_all_types)
        .bind(&release_all_ids)
        .bind(claim_column(|c, _| c.kind.as_str()))
        .bind(claim_column(|c, _| &c.scope))
        .bind(claim_column(|c, _| &c.value))
        .bind(claim_column(|c, _| &c.owner))
        .bind(claim_column(|_, s| &s.aggregate_type))
        .bind(claim_column(|_, s| &s.aggregate_id))
        .bind(&self.key_subjects)
        .bind(&self.key_wrapped)
        .bind(&events.aggregate_types)
        .bind(&events.aggregate_ids)
        .bind(&events.sequences)
        .bind(&events.event_types)
        .bind(&events.event_versions)
        .bind(&events.payloads)
        .bind(&events.metadata)
        .bind(&events.event_ids)
        .bind(&events.recorded_ats)
        .bind(&events.company_ids)
        .bind(&events.hashes)
        .bind(&self.erased)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| self.classify(error))?;
        Ok(Appended {
            position: LogPosition {
                tx_id: parse_xid(&row.try_get::<String, _>("appended_tx_id")?),
                position: row.try_get("appended_position")?,
            },
            events: events.sequences.len(),
        })
    }

    /// The function's raised errors as the store's typed ones (their codes are documented in
    /// its migration). A deadlock between two appends (two users swapping slugs, each waiting
    /// for the other's released claim) is a race like any other: reload and decide again.
    fn classify(&self, error: sqlx::Error) -> AppendError {
        let sqlx::Error::Database(db) = &error else {
            return AppendError::Database(error);
        };
        match db.code().as_deref() {
            Some("40001" | "40P01") => AppendError::Conflict,
            Some("KA002") => AppendError::IdempotencyKeyTaken,
            Some("KA001") => db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .and_then(|detail| self.refused_claim(detail))
                .unwrap_or(AppendError::Database(error)),
            _ => AppendError::Database(error),
        }
    }

    /// The claim a `KA001` error's detail points at: its 1-based index in the claim arrays.
    fn refused_claim(&self, detail: &str) -> Option<AppendError> {
        let index: usize = detail.parse().ok()?;
        let (claim, _) = self.claims.get(index.checked_sub(1)?)?;
        Some(AppendError::ClaimTaken {
            kind: claim.kind,
            scope: claim.scope.clone(),
            value: claim.value.clone(),
        })
    }
}

/// The events' column arrays.
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
    fn push(&mut self, row: EventRow<'_>, batch: &AppendBatch) {
        self.aggregate_types.push(row.stream.aggregate_type.clone());
        self.aggregate_ids.push(row.stream.aggregate_id.clone());
        self.sequences.push(row.sequence);
        self.event_types.push(row.event.event_type.clone());
        self.event_versions.push(row.event.event_version.clone());
        self.payloads.push(row.payload);
        self.metadata.push(batch.metadata.clone());
        self.event_ids.push(row.event_id);
        self.recorded_ats
            .push(super::hash::to_micros(batch.recorded_at));
        self.company_ids.push(batch.company_id);
        self.hashes.push(row.hash.to_vec());
    }
}
