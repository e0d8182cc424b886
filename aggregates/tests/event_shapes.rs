//! Every event shape ever written must still read.
//!
//! The log is append-only and never migrated, so an event stored today is read by every
//! future version of Kairos. `tests/event_shapes/<Aggregate>/<EventType>.v<version>.json`
//! holds one payload per shape ever released. This test decodes each with both decoders the
//! system uses and requires it to serialize back unchanged: renaming a field, changing a
//! type or a format fails here rather than on an operator's rebuild. A new variant fails to
//! compile until it is listed below, and the listing fails until it has a fixture.
//!
//! A breaking change gets a new version and an upcaster; the old fixture stays.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use aggregates::company::CompanyEvent;
use aggregates::effects::{event_from_payload, event_from_payload_ref, payload_of};
use aggregates::user::UserEvent;
use cqrs_es::DomainEvent;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The event types a user stream can hold. Exhaustive on purpose: a new variant must be
/// added here, and then needs a fixture.
fn user_event_type(event: &UserEvent) -> &'static str {
    match event {
        UserEvent::UserCreated { .. } => "UserCreated",
        UserEvent::AvailabilityProvisioned { .. } => "AvailabilityProvisioned",
        UserEvent::MeetingTypeProvisioned { .. } => "MeetingTypeProvisioned",
        UserEvent::UserRenamed { .. } => "UserRenamed",
        UserEvent::UserSlugChanged { .. } => "UserSlugChanged",
        UserEvent::UserTimezoneChanged { .. } => "UserTimezoneChanged",
        UserEvent::UserDeleted { .. } => "UserDeleted",
    }
}
const USER_EVENT_TYPES: usize = 7;

fn company_event_type(event: &CompanyEvent) -> &'static str {
    match event {
        CompanyEvent::CompanyCreated { .. } => "CompanyCreated",
        CompanyEvent::ApiKeyIssued { .. } => "ApiKeyIssued",
        CompanyEvent::ApiKeyRevoked { .. } => "ApiKeyRevoked",
    }
}
const COMPANY_EVENT_TYPES: usize = 3;

struct Fixture {
    path: PathBuf,
    event_type: String,
    version: String,
    payload: serde_json::Value,
}

fn fixtures(aggregate: &str) -> Vec<Fixture> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/event_shapes")
        .join(aggregate);
    let mut found: Vec<Fixture> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let (event_type, version) = name
                .strip_suffix(".json")
                .and_then(|stem| stem.split_once(".v"))
                .unwrap_or_else(|| panic!("{name}: expected <EventType>.v<version>.json"));
            let text = fs::read_to_string(&path).unwrap();
            let payload = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            Fixture {
                event_type: event_type.to_string(),
                version: version.to_string(),
                payload,
                path,
            }
        })
        .collect();
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Decodes every fixture both ways, checks they agree and that the event writes back the same
/// payload under the same type and version; returns the event types covered.
fn check_all<E>(aggregate: &str, type_of: fn(&E) -> &'static str) -> BTreeSet<&'static str>
where
    E: DomainEvent + DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let mut covered = BTreeSet::new();
    for fixture in fixtures(aggregate) {
        let shown = fixture.path.display();
        let owned: E = event_from_payload(&fixture.event_type, fixture.payload.clone())
            .unwrap_or_else(|e| panic!("{shown} no longer decodes: {e}"));
        let by_ref: E = event_from_payload_ref(&fixture.event_type, &fixture.payload)
            .unwrap_or_else(|e| panic!("{shown} no longer decodes in place: {e}"));
        assert_eq!(owned, by_ref, "{shown}: the two decoders disagree");
        assert_eq!(owned.event_type(), fixture.event_type, "{shown}");
        assert_eq!(owned.event_version(), fixture.version, "{shown}: version");
        assert_eq!(
            payload_of(&owned).unwrap(),
            fixture.payload,
            "{shown}: the event no longer writes this shape; add a version and an upcaster"
        );
        covered.insert(type_of(&owned));
    }
    covered
}

#[test]
fn every_user_event_shape_reads_and_writes_back_unchanged() {
    let covered = check_all::<UserEvent>("User", user_event_type);
    assert_eq!(
        covered.len(),
        USER_EVENT_TYPES,
        "a user event type has no fixture; covered: {covered:?}"
    );
}

#[test]
fn every_company_event_shape_reads_and_writes_back_unchanged() {
    let covered = check_all::<CompanyEvent>("Company", company_event_type);
    assert_eq!(
        covered.len(),
        COMPANY_EVENT_TYPES,
        "a company event type has no fixture; covered: {covered:?}"
    );
}

#[test]
fn a_changed_shape_is_caught() {
    // The check above must be able to fail: a payload missing a field does not decode.
    let mut payload: serde_json::Value =
        serde_json::from_str(r#"{"slug": "ada", "at": "2026-11-29T09:00:00Z"}"#).unwrap();
    payload.as_object_mut().unwrap().remove("slug");
    assert!(event_from_payload_ref::<UserEvent>("UserSlugChanged", &payload).is_err());
    assert!(event_from_payload::<UserEvent>("UserSlugChanged", payload).is_err());
}
