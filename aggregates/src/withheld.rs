//! Payload fields the log keeps but never shows: secrets and verifiers of secrets.
//!
//! An API key's `secretHash` is what authentication compares a presented secret with. Shown to
//! an auditor, it would let anyone who reads the history test guesses offline, or present it
//! wherever a hash is accepted as proof. Such a field is stored and covered by the hash chain
//! like any other (`kairos audit verify` reads the stored event), but the audit endpoints
//! leave it out of their answers.
//!
//! The list is declared here, beside the events, so a new token or verifier field is added
//! to it with the event that introduces it; `tests/withheld_fields.rs` fails for any released
//! event shape with a field named like a secret (`…hash`, `…secret`, `…token`, `…password`)
//! that is not listed, and for a listed field that no longer exists.

use cqrs_es::Aggregate;

use crate::company::Company;

/// A payload field of one event type that readers of the log are not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WithheldField {
    pub aggregate_type: &'static str,
    pub event_type: &'static str,
    /// As serialized (camelCase), at the top level of the payload.
    pub field: &'static str,
}

/// Every withheld field of every event type.
pub const WITHHELD_FIELDS: &[WithheldField] = &[WithheldField {
    aggregate_type: Company::TYPE,
    event_type: "ApiKeyIssued",
    field: "secretHash",
}];

/// The withheld fields of one event type.
pub fn withheld_fields(
    aggregate_type: &str,
    event_type: &str,
) -> impl Iterator<Item = &'static str> {
    WITHHELD_FIELDS
        .iter()
        .filter(move |w| w.aggregate_type == aggregate_type && w.event_type == event_type)
        .map(|w| w.field)
}

/// Removes the withheld fields from a payload about to be shown.
pub fn withhold(aggregate_type: &str, event_type: &str, payload: &mut serde_json::Value) {
    if let serde_json::Value::Object(fields) = payload {
        for field in withheld_fields(aggregate_type, event_type) {
            fields.remove(field);
        }
    }
}
