//! Verifying the log's hash chains (`kairos audit verify`, api.md section 7).
//!
//! Each aggregate's events are read in sequence order and their hashes recomputed from what
//! is stored; the first event whose stored hash differs from the recomputed one (or whose
//! sequence skips a number, i.e. a row was removed) is reported. A payload altered behind
//! the triggers' back changes its recomputed hash; re-hashing it to hide that breaks the
//! chain at the next event.

use futures::TryStreamExt;
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::event_store::hash::{self, GENESIS, Hash, HashedFields};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub events_checked: u64,
    pub aggregates_checked: u64,
    pub first_broken: Option<BrokenEvent>,
}

/// Walks every hash chain (of one company's aggregates, if given) and stops at the first
/// break. Rows are streamed, so the log can be larger than memory.
pub async fn verify_chains(
    pool: &PgPool,
    company: Option<Uuid>,
) -> Result<VerifyReport, sqlx::Error> {
    let mut rows = sqlx::query(
        "SELECT global_position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                company_id, recorded_at, payload, metadata, hash \
         FROM events \
         WHERE $1::uuid IS NULL OR (aggregate_type, aggregate_id) IN \
               (SELECT DISTINCT aggregate_type, aggregate_id FROM events WHERE company_id = $1) \
         ORDER BY aggregate_type, aggregate_id, sequence",
    )
    .bind(company)
    .fetch(pool);

    let mut report = VerifyReport::default();
    let mut current: Option<(String, String)> = None;
    let mut previous: Hash = GENESIS;
    let mut expected_sequence = 1;
    while let Some(row) = rows.try_next().await? {
        let aggregate_type: String = row.try_get("aggregate_type")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        let key = (aggregate_type.clone(), aggregate_id.clone());
        if current.as_ref() != Some(&key) {
            current = Some(key);
            previous = GENESIS;
            expected_sequence = 1;
            report.aggregates_checked += 1;
        }
        let sequence: i64 = row.try_get("sequence")?;
        let event_type: String = row.try_get("event_type")?;
        let event_version: String = row.try_get("event_version")?;
        let payload: serde_json::Value = row.try_get("payload")?;
        let metadata: serde_json::Value = row.try_get("metadata")?;
        let stored: Vec<u8> = row.try_get("hash")?;
        let event_id: Uuid = row.try_get("event_id")?;
        let recomputed = hash::chain(
            &previous,
            &HashedFields {
                event_id,
                aggregate_type: &aggregate_type,
                aggregate_id: &aggregate_id,
                sequence,
                event_type: &event_type,
                event_version: &event_version,
                company_id: row.try_get("company_id")?,
                recorded_at: row.try_get("recorded_at")?,
                payload: &payload,
                metadata: &metadata,
            },
        );
        report.events_checked += 1;
        let reason = if sequence != expected_sequence {
            Some(format!(
                "sequence {sequence} follows {}: an event is missing",
                expected_sequence - 1
            ))
        } else if stored.as_slice() != recomputed.as_slice() {
            Some("stored hash does not match the event's content and its predecessor".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            report.first_broken = Some(BrokenEvent {
                position: row.try_get("global_position")?,
                event_id,
                aggregate_type,
                aggregate_id,
                sequence,
                event_type,
                reason,
            });
            return Ok(report);
        }
        previous = recomputed;
        expected_sequence = sequence + 1;
    }
    Ok(report)
}
