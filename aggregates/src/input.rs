//! Raw input as it arrives in a command, and the list of field errors that parsing it yields.
//!
//! A command carries what the client sent (`Raw<T>`), not yet-validated domain values, so that
//! the aggregate can report *every* bad field in one answer: a missing field, a field of the
//! wrong JSON type and a field whose value breaks a domain rule all end up in one
//! [`FieldErrors`] list, in the order of the request.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// One field of a request: absent, `null`, present with the wrong type, or present.
///
/// Its `Deserialize` never fails: a value of the wrong type becomes `Invalid` with serde's
/// explanation, so one bad field cannot hide the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Raw<T> {
    #[default]
    Missing,
    Null,
    Invalid(String),
    Given(T),
}

impl<T> Raw<T> {
    /// A required field: reports `is required` when it is missing or null.
    pub fn required(self, field: &str, errors: &mut FieldErrors) -> Option<T> {
        match self {
            Raw::Given(value) => Some(value),
            Raw::Missing | Raw::Null => {
                errors.push(field, format!("{} is required", leaf(field)));
                None
            }
            Raw::Invalid(reason) => {
                errors.push(field, format!("{} {reason}", leaf(field)));
                None
            }
        }
    }

    /// An optional field: `null` counts as absent.
    pub fn optional(self, field: &str, errors: &mut FieldErrors) -> Option<T> {
        match self {
            Raw::Given(value) => Some(value),
            Raw::Missing | Raw::Null => None,
            Raw::Invalid(reason) => {
                errors.push(field, format!("{} {reason}", leaf(field)));
                None
            }
        }
    }

    /// Whether the client sent an explicit `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Raw::Null)
    }

    /// Whether the client sent this field at all (even as `null` or with a bad type).
    pub fn is_sent(&self) -> bool {
        !matches!(self, Raw::Missing)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Raw<U> {
        match self {
            Raw::Given(value) => Raw::Given(f(value)),
            Raw::Missing => Raw::Missing,
            Raw::Null => Raw::Null,
            Raw::Invalid(reason) => Raw::Invalid(reason),
        }
    }
}

/// The name a message uses for a field at a path: `dayOfWeek` for `[0].dayOfWeek`.
fn leaf(field: &str) -> &str {
    field.rsplit('.').next().unwrap_or(field)
}

impl<T> From<T> for Raw<T> {
    fn from(value: T) -> Self {
        Raw::Given(value)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Raw<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Raw::Null);
        }
        let found = describe_json_type(&value);
        Ok(match serde_json::from_value::<T>(value) {
            Ok(parsed) => Raw::Given(parsed),
            Err(error) => Raw::Invalid(explain_type_error(&error.to_string(), found)),
        })
    }
}

/// Turns serde's messages into the client's terms: "invalid type: integer `5`, expected a
/// string" becomes "must be a string, not a number". Every result starts with "must", so
/// the caller can put the field's name in front; no Rust type name reaches the client.
fn explain_type_error(serde_message: &str, found: &str) -> String {
    if let Some(rest) = serde_message.strip_prefix("unknown variant ")
        && let Some((_, expected)) = rest.split_once("expected ")
    {
        let choices = expected
            .trim_start_matches("one of ")
            .replace('`', "")
            .replace(" or ", ", ");
        return format!("must be one of {}", choices.trim_end_matches('.'));
    }
    match serde_message.split_once(", expected ") {
        Some((head, expected)) if head.starts_with("invalid type") => {
            format!("must be {}, not {found}", describe_expected(expected))
        }
        Some((head, expected)) if head.starts_with("invalid value") => {
            format!("must be {}", describe_expected(expected))
        }
        _ => "must be a valid value".to_string(),
    }
}

/// What serde expected, said in JSON's words.
fn describe_expected(expected: &str) -> &str {
    match expected.trim_end_matches('.') {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "a borrowed string" | "a string" => "a string",
        "a sequence" => "an array",
        "a map" => "an object",
        other if other.starts_with("struct ") || other.starts_with("a map") => "an object",
        other if other.starts_with("enum ") || other.starts_with("tuple") => "a valid value",
        // Our own `expecting` sentences (`a time HH:MM`) are already for people.
        other => other,
    }
}

fn describe_json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// One bad field: its path in the request (`availability.schedule[0].intervals[1]`) and a
/// sentence the client can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every bad field of one request, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Adds the errors of a nested parse under `prefix` (`availability` + `timezone` →
    /// `availability.timezone`).
    pub fn extend_nested(&mut self, prefix: &str, nested: FieldErrors) {
        for error in nested.0 {
            let field = if error.field.starts_with('[') {
                format!("{prefix}{}", error.field)
            } else {
                format!("{prefix}.{}", error.field)
            };
            self.0.push(FieldError { field, ..error });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[FieldError] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok(value)` when nothing was reported, else the errors.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, FieldErrors> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }

    /// The first message, for a one-line summary.
    pub fn summary(&self) -> String {
        match self.0.as_slice() {
            [] => "Validation failed".to_string(),
            [only] => only.message.clone(),
            [first, rest @ ..] => format!("{} (and {} more)", first.message, rest.len()),
        }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        name: Raw<String>,
        #[serde(default)]
        count: Raw<u32>,
    }

    #[test]
    fn a_field_of_the_wrong_type_does_not_hide_the_others() {
        let body: Body = serde_json::from_str(r#"{"name": 5, "count": "x"}"#).unwrap();
        let mut errors = FieldErrors::new();
        assert_eq!(body.name.required("name", &mut errors), None);
        assert_eq!(body.count.required("count", &mut errors), None);
        let fields: Vec<_> = errors.as_slice().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "count"]);
        let messages: Vec<_> = errors
            .as_slice()
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(
            messages,
            [
                "name must be a string, not a number",
                "count must be a non-negative integer, not a string"
            ]
        );
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        a: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Color {
        Red,
        Green,
    }

    fn message_for<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> String {
        let mut errors = FieldErrors::new();
        let raw: Raw<T> = serde_json::from_value(json).unwrap();
        raw.required("field", &mut errors);
        errors.as_slice()[0].message.clone()
    }

    #[test]
    fn type_errors_speak_json_and_never_name_a_rust_type() {
        assert_eq!(
            message_for::<Inner>(serde_json::json!("x")),
            "field must be an object, not a string"
        );
        assert_eq!(
            message_for::<Vec<u8>>(serde_json::json!({})),
            "field must be an array, not an object"
        );
        assert_eq!(
            message_for::<u32>(serde_json::json!(-5)),
            "field must be a non-negative integer"
        );
        assert_eq!(
            message_for::<Color>(serde_json::json!("blue")),
            "field must be one of red, green"
        );
        assert_eq!(
            message_for::<bool>(serde_json::json!(1.5)),
            "field must be a boolean, not a number"
        );
    }

    #[test]
    fn a_message_names_the_field_not_its_path() {
        let mut errors = FieldErrors::new();
        Raw::<String>::Missing.required("[0].dayOfWeek", &mut errors);
        Raw::<String>::Invalid("must be a string, not a number".into())
            .optional("[1].intervals", &mut errors);
        assert_eq!(
            errors.to_string(),
            "[0].dayOfWeek: dayOfWeek is required; [1].intervals: intervals must be a string, not a number"
        );
    }

    #[test]
    fn missing_and_null_are_told_apart_from_given() {
        let body: Body = serde_json::from_str(r#"{"name": null}"#).unwrap();
        assert_eq!(body.name, Raw::Null);
        assert_eq!(body.count, Raw::Missing);
        let mut errors = FieldErrors::new();
        assert_eq!(body.count.optional("count", &mut errors), None);
        assert!(errors.is_empty());
    }

    #[test]
    fn nested_errors_are_prefixed_with_their_parent() {
        let mut inner = FieldErrors::new();
        inner.push("[0].from", "bad");
        inner.push("timezone", "Invalid timezone");
        let mut outer = FieldErrors::new();
        outer.extend_nested("availability", inner);
        let fields: Vec<_> = outer.as_slice().iter().map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["availability[0].from", "availability.timezone"]);
    }
}
