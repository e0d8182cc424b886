//! The list of withheld fields (`aggregates::withheld`) keeps up with the events: every
//! released event shape (the fixtures of `tests/event_shapes/`) with a field named like a
//! secret or a verifier has it listed, and every listed field exists in its event's shape.

use std::fs;
use std::path::Path;

use aggregates::withheld::{WITHHELD_FIELDS, withheld_fields, withhold};

/// `(aggregate type, event type, payload)` of every fixture.
fn released_shapes() -> Vec<(String, String, serde_json::Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/event_shapes");
    let mut shapes = Vec::new();
    for aggregate in fs::read_dir(&root).unwrap() {
        let aggregate = aggregate.unwrap().path();
        let aggregate_type = aggregate.file_name().unwrap().to_str().unwrap().to_string();
        for fixture in fs::read_dir(&aggregate).unwrap() {
            let path = fixture.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let (event_type, _) = name.split_once(".v").unwrap();
            let payload = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
            shapes.push((aggregate_type.clone(), event_type.to_string(), payload));
        }
    }
    assert!(!shapes.is_empty(), "no fixtures under {}", root.display());
    shapes
}

/// Field names that suggest a secret or something that verifies one.
fn looks_secret(field: &str) -> bool {
    let field = field.to_ascii_lowercase();
    ["hash", "secret", "token", "password", "verifier"]
        .iter()
        .any(|word| field.contains(word))
}

#[test]
fn every_released_field_named_like_a_secret_is_withheld_from_readers() {
    for (aggregate_type, event_type, payload) in released_shapes() {
        for field in payload.as_object().unwrap().keys() {
            if looks_secret(field) {
                assert!(
                    withheld_fields(&aggregate_type, &event_type).any(|w| w == field),
                    "{aggregate_type}/{event_type}.{field} looks like a secret or its verifier: \
                     list it in aggregates::withheld::WITHHELD_FIELDS"
                );
            }
        }
    }
}

#[test]
fn every_withheld_field_exists_in_its_events_shape() {
    let shapes = released_shapes();
    for withheld in WITHHELD_FIELDS {
        let present = shapes.iter().any(|(aggregate, event, payload)| {
            aggregate == withheld.aggregate_type
                && event == withheld.event_type
                && payload.get(withheld.field).is_some()
        });
        assert!(present, "{withheld:?} names no field of a released shape");
    }
}

#[test]
fn withholding_removes_only_the_listed_fields_of_that_event_type() {
    let mut issued = serde_json::json!({"keyId": "k", "secretHash": "ab", "expiresAt": "x"});
    withhold("Company", "ApiKeyIssued", &mut issued);
    assert_eq!(issued, serde_json::json!({"keyId": "k", "expiresAt": "x"}));
    let mut other = serde_json::json!({"secretHash": "ab"});
    withhold("Company", "ApiKeyRevoked", &mut other);
    assert_eq!(other, serde_json::json!({"secretHash": "ab"}));
}
