//! The event log as the read side sees it: events in commit order, personal fields opened.
//!
//! Positions are taken when a row is inserted but become visible when its transaction
//! commits, so reading "after position p" would skip an event of a slow writer that took a
//! lower position and committed later. The log is therefore read in `(tx_id, global_position)`
//! order and only below `pg_snapshot_xmin(pg_current_snapshot())`: every transaction older
//! than that horizon has finished, so nothing can still appear behind a reader's checkpoint.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::keyring::{self, DataKey, Keyring, KeyringError};

/// A point in the log's commit order. Checkpoints and read-your-writes targets are these.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    pub tx_id: u64,
    pub position: i64,
}

impl LogPosition {
    pub const START: LogPosition = LogPosition {
        tx_id: 0,
        position: 0,
    };
}

impl fmt::Display for LogPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.position, self.tx_id)
    }
}

/// One event as read from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub position: i64,
    pub tx_id: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
    pub company_id: Option<Uuid>,
    pub event_id: Uuid,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("reading the event log failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event at position {position} ({event_type}) cannot be decoded: {source}")]
    Decode {
        position: i64,
        event_type: String,
        source: serde_json::Error,
    },
    #[error("event at position {position}: {source}")]
    Keyring { position: i64, source: KeyringError },
}

impl LogEvent {
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            tx_id: self.tx_id,
            position: self.position,
        }
    }

    /// The event as its aggregate's event type.
    pub fn decode<E: DeserializeOwned>(&self) -> Result<E, LogError> {
        aggregates::effects::event_from_payload_ref(&self.event_type, &self.payload).map_err(
            |source| LogError::Decode {
                position: self.position,
                event_type: self.event_type.clone(),
                source,
            },
        )
    }

    /// A metadata entry (`requestId`, `apiKeyId`, `actingUserId`, …).
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
}

/// The text form of `tx_id` gets its own name: aliased as `tx_id`, it would shadow the column
/// in `ORDER BY tx_id` and sort 1111 before 742.
const SELECT_COLUMNS: &str = "global_position, tx_id::text AS tx_id_text, aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata, recorded_at, company_id, event_id";

/// Up to `limit` events after `after` in commit order, below the xmin horizon. Personal
/// fields are still sealed; see [`open_personal_fields`].
pub async fn read_after(
    conn: &mut PgConnection,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<LogEvent>, LogError> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id, global_position \
         LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(after.tx_id.to_string())
        .bind(after.position)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(row_to_event).collect()
}

/// Every event of one aggregate in sequence order, personal fields still sealed.
pub async fn read_stream(
    conn: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<LogEvent>, LogError> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(row_to_event).collect()
}

/// The newest position in commit order that readers can see now (for lag and catch-up).
pub async fn head(conn: &mut PgConnection) -> Result<LogPosition, LogError> {
    let row = sqlx::query(
        "SELECT tx_id::text AS tx_id_text, global_position FROM events \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY tx_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => LogPosition {
            tx_id: parse_xid(&row.try_get::<String, _>("tx_id_text")?),
            position: row.try_get("global_position")?,
        },
        None => LogPosition::START,
    })
}

/// Parses an `xid8` as Postgres prints it (decimal text of an unsigned 64-bit counter).
pub fn parse_xid(text: &str) -> u64 {
    text.parse().unwrap_or(0)
}

fn row_to_event(row: &sqlx::postgres::PgRow) -> Result<LogEvent, LogError> {
    Ok(LogEvent {
        position: row.try_get("global_position")?,
        tx_id: parse_xid(&row.try_get::<String, _>("tx_id_text")?),
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
        company_id: row.try_get("company_id")?,
        event_id: row.try_get("event_id")?,
    })
}

/// The data keys of `subjects` that still exist (an erased subject has none).
pub async fn load_data_keys(
    conn: &mut PgConnection,
    keyring: &Keyring,
    subjects: &[String],
) -> Result<HashMap<String, DataKey>, LogError> {
    load_data_keys_each(conn, keyring, subjects)
        .await?
        .into_iter()
        .map(|(subject, key)| {
            key.map(|key| (subject, key))
                .map_err(|source| LogError::Keyring {
                    position: 0,
                    source,
                })
        })
        .collect()
}

/// [`load_data_keys`] with a result per subject: a stored key that does not unwrap fails
/// the events of its subject only.
async fn load_data_keys_each(
    conn: &mut PgConnection,
    keyring: &Keyring,
    subjects: &[String],
) -> Result<HashMap<String, Result<DataKey, KeyringError>>, LogError> {
    if subjects.is_empty() {
        return Ok(HashMap::new());
    }
    let rows =
        sqlx::query("SELECT subject_id, wrapped_key FROM data_keys WHERE subject_id = ANY($1)")
            .bind(subjects)
            .fetch_all(&mut *conn)
            .await?;
    let mut keys = HashMap::with_capacity(rows.len());
    for row in rows {
        let subject: String = row.try_get("subject_id")?;
        let wrapped: Vec<u8> = row.try_get("wrapped_key")?;
        let key = keyring.unwrap_data_key(&subject, &wrapped);
        keys.insert(subject, key);
    }
    Ok(keys)
}

impl LogEvent {
    /// The fields its event type declares personal ([`aggregates::effects::personal_fields`]):
    /// the only ones ever opened.
    pub fn personal_fields(&self) -> &'static [&'static str] {
        aggregates::effects::personal_fields(&self.aggregate_type, &self.event_type)
    }
}

/// Opens the declared personal fields of `events` in place, with one query for all the data
/// keys they need; fields of erased subjects read `[erased]`. The first event whose fields do
/// not open fails the call; see [`open_personal_fields_each`] to go on past it.
pub async fn open_personal_fields(
    conn: &mut PgConnection,
    keyring: &Keyring,
    events: &mut [LogEvent],
) -> Result<(), LogError> {
    match open_personal_fields_each(conn, keyring, events)
        .await?
        .into_iter()
        .next()
    {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// Opens what it can: returns, by index into `events`, the events whose declared fields did
/// not open (they stay as stored). Only a database error fails the whole call. Projectors go
/// on with the other events and quarantine the aggregates of these.
pub async fn open_personal_fields_each(
    conn: &mut PgConnection,
    keyring: &Keyring,
    events: &mut [LogEvent],
) -> Result<Vec<(usize, LogError)>, LogError> {
    let mut subjects: Vec<String> = events
        .iter()
        .filter(|e| !e.personal_fields().is_empty())
        .map(|e| e.aggregate_id.clone())
        .collect();
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    subjects.sort();
    subjects.dedup();
    let keys = load_data_keys_each(conn, keyring, &subjects).await?;
    let mut failed = Vec::new();
    for (index, event) in events.iter_mut().enumerate() {
        let fields = event.personal_fields();
        if fields.is_empty() {
            continue;
        }
        let key = match keys.get(&event.aggregate_id) {
            Some(Ok(key)) => Some(key),
            Some(Err(_)) => {
                failed.push((
                    index,
                    LogError::Keyring {
                        position: event.position,
                        source: KeyringError::Unwrap,
                    },
                ));
                continue;
            }
            None => None,
        };
        // A failing event may be left half opened: it is never applied, only quarantined.
        if let Err(source) =
            keyring::open_fields(&mut event.payload, fields, key, &event.aggregate_id)
        {
            failed.push((
                index,
                LogError::Keyring {
                    position: event.position,
                    source,
                },
            ));
        }
    }
    Ok(failed)
}

/// Which of a company's events an audit page holds.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub company_id: Uuid,
    /// The position of the last event already received; the page continues after it in
    /// commit order. `None` starts at the beginning.
    pub after: Option<i64>,
    pub limit: i64,
    pub aggregate_id: Option<String>,
    pub event_type: Option<String>,
}

/// One page of a company's events in commit order (the log's one total order), only below
/// the xmin horizon, so a follower paging with `after` never skips a late committer.
/// `Ok(None)` when `after` names no event of the company.
pub async fn audit_page(
    conn: &mut PgConnection,
    query: &AuditQuery,
) -> Result<Option<Vec<LogEvent>>, LogError> {
    let cursor = match query.after {
        None | Some(0) => LogPosition::START,
        Some(position) => {
            let tx_id: Option<String> =
                // Only the company's own events are cursors: another's position must not be
                // told apart from one that does not exist.
                sqlx::query_scalar(
                    "SELECT tx_id::text FROM events WHERE global_position = $1 AND company_id = $2",
                )
                .bind(position)
                .bind(query.company_id)
                .fetch_optional(&mut *conn)
                .await?;
            match tx_id {
                Some(tx_id) => LogPosition {
                    tx_id: parse_xid(&tx_id),
                    position,
                },
                None => return Ok(None),
            }
        }
    };
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE company_id = $1 \
           AND (tx_id, global_position) > ($2::text::xid8, $3) \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
           AND ($4::text IS NULL OR aggregate_id = $4) \
           AND ($5::text IS NULL OR event_type = $5) \
         ORDER BY tx_id, global_position \
         LIMIT $6"
    );
    let rows = sqlx::query(&sql)
        .bind(query.company_id)
        .bind(cursor.tx_id.to_string())
        .bind(cursor.position)
        .bind(&query.aggregate_id)
        .bind(&query.event_type)
        .bind(query.limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(row_to_event)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A page of one aggregate's events of one company, in sequence order: at most `limit`
/// events after position `after` (`None` or 0: from its first). An aggregate's positions grow
/// with its sequence (an event is appended only once its predecessor committed), so paging by
/// position skips none, and any position is a valid cursor (unlike the audit log's, which
/// must name an event to know its transaction). `Ok(None)` when the company has no such
/// aggregate.
pub async fn stream_page(
    conn: &mut PgConnection,
    company_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
    after: Option<i64>,
    limit: i64,
) -> Result<Option<Vec<LogEvent>>, LogError> {
    let after = after.unwrap_or(0);
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND company_id = $3 \
           AND global_position > $4 \
         ORDER BY sequence LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(company_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let events = rows
        .iter()
        .map(row_to_event)
        .collect::<Result<Vec<_>, _>>()?;
    if !events.is_empty() {
        return Ok(Some(events));
    }
    // An empty page past the end of an aggregate, or no aggregate at all.
    let exists: bool = after > 0
        && sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND company_id = $3)",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(company_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(exists.then_some(events))
}

/// One aggregate's events of one company, in sequence order (a user's history).
pub async fn company_stream(
    conn: &mut PgConnection,
    company_id: Uuid,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<LogEvent>, LogError> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND company_id = $3 ORDER BY sequence"
    );
    let rows = sqlx::query(&sql)
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(company_id)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(row_to_event).collect()
}
