//! The per-aggregate hash chain that makes the log tamper-evident (api.md section 7).
//!
//! `hash(n) = SHA-256("kairos-event-v1" ‖ hash(n-1) ‖ fields of n)`, with `hash(0)` all zeros.
//! Every field is length-prefixed, and JSON is hashed in a canonical form (object keys
//! sorted, no whitespace) so the chain verifies from what jsonb gives back, whatever order
//! the keys were written in.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// The hash before the first event of every aggregate.
pub const GENESIS: Hash = [0; 32];

/// The stored content of one event that its hash covers: everything but its position and
/// transaction, which the database assigns.
pub struct HashedFields<'a> {
    pub event_id: Uuid,
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub company_id: Option<Uuid>,
    pub recorded_at: DateTime<Utc>,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

pub fn chain(previous: &Hash, fields: &HashedFields<'_>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(b"kairos-event-v1");
    hasher.update(previous);
    let mut put = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    put(fields.event_id.as_bytes());
    put(fields.aggregate_type.as_bytes());
    put(fields.aggregate_id.as_bytes());
    put(&fields.sequence.to_be_bytes());
    put(fields.event_type.as_bytes());
    put(fields.event_version.as_bytes());
    put(fields
        .company_id
        .map(|id| *id.as_bytes())
        .unwrap_or_default()
        .as_slice());
    put(&fields.recorded_at.timestamp_micros().to_be_bytes());
    put(canonical_json(fields.payload).as_bytes());
    put(canonical_json(fields.metadata).as_bytes());
    hasher.finalize().into()
}

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A timestamp as Postgres stores it (microseconds), so the hash of what was written equals
/// the hash of what is read back.
pub fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields<'a>(payload: &'a Value, metadata: &'a Value) -> HashedFields<'a> {
        HashedFields {
            event_id: Uuid::from_u128(1),
            aggregate_type: "User",
            aggregate_id: "u1",
            sequence: 1,
            event_type: "UserCreated",
            event_version: "1",
            company_id: Some(Uuid::from_u128(2)),
            recorded_at: "2026-01-01T00:00:00.123456Z".parse().unwrap(),
            payload,
            metadata,
        }
    }

    #[test]
    fn key_order_does_not_change_the_hash_but_any_value_does() {
        let metadata = json!({});
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "é"}});
        let b: Value = serde_json::from_str(r#"{"a":{"x":"é","y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(
            chain(&GENESIS, &fields(&a, &metadata)),
            chain(&GENESIS, &fields(&b, &metadata))
        );
        let c = json!({"b": 2, "a": {"y": [1, 2], "x": "é"}});
        assert_ne!(
            chain(&GENESIS, &fields(&a, &metadata)),
            chain(&GENESIS, &fields(&c, &metadata))
        );
    }

    #[test]
    fn the_chain_depends_on_the_previous_hash() {
        let payload = json!({});
        let first = chain(&GENESIS, &fields(&payload, &payload));
        assert_ne!(chain(&first, &fields(&payload, &payload)), first);
    }
}
