//! Extractors whose every rejection is an [`ApiError`] in the spec's body shape.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;

/// Request bodies are limited to 64 KiB (section 0).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Wrong content type is 415, too large 413, malformed JSON or invalid UTF-8
/// 400 naming where it broke, a body that is not an object 400. Field types are checked by
/// the request structs themselves (their fields are `Raw<T>`), so that every bad field is
/// reported, not just the first.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(request, state).await?;
        parse_json_body(&bytes).map(AppJson)
    }
}

/// A JSON body (as [`AppJson`]) and the SHA-256 of its bytes, hex: the fingerprint an
/// `Idempotency-Key` is bound to.
pub struct HashedJson<T>(pub T, pub String);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for HashedJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(request, state).await?;
        let digest = hex::encode(Sha256::digest(&bytes));
        parse_json_body(&bytes).map(|body| HashedJson(body, digest))
    }
}

async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    let json = is_json(request.headers().get(CONTENT_TYPE));
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(_)
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge
            }
            _ => ApiError::BadRequest("The request body could not be read".to_string()),
        })?;
    // No body at all is the more useful answer than its missing content type (section 2:
    // "Empty body is 400"), whatever the headers say.
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field("body", "Request body is required"));
    }
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    Ok(bytes)
}

/// Parses a JSON object body; public so tests and other extractors share the rules.
pub fn parse_json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field("body", "Request body is required"));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|error| {
        ApiError::field(
            "body",
            format!(
                "Malformed JSON at line {}, column {}: {}",
                error.line(),
                error.column(),
                short(&error)
            ),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::field(
            "body",
            "Request body must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        ApiError::field(&field, error.inner().to_string())
    })
}

fn short(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(index) => text[..index].to_string(),
        None => text,
    }
}

fn is_json(content_type: Option<&axum::http::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The query string as name → value (the last occurrence wins). A malformed query string
/// is 400.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::BadRequest("The query string is malformed".to_string()))?;
        Ok(QueryMap(pairs.into_iter().collect()))
    }
}

/// A route's one path parameter, as text. axum's `Path` answers a parameter that is not
/// UTF-8 once percent-decoded (`/v4/user/%FF`) with a plain-text 400 of its own; such a
/// parameter cannot be an id either, so it comes through as U+FFFD and the handler's own
/// check answers in the error envelope.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathParam(value)),
            Err(PathRejection::FailedToDeserializePathParams(error))
                if matches!(error.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
            {
                Ok(PathParam("\u{FFFD}".to_string()))
            }
            // A route without exactly one parameter: the code's mistake, not the client's.
            Err(other) => Err(ApiError::Internal(other.body_text())),
        }
    }
}

/// A UUID from a path segment; anything else is 400 naming the parameter.
pub fn parse_path_id(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::field(field, format!("{field} must be a UUID")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::input::Raw;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default)]
        #[allow(dead_code)]
        name: Raw<String>,
    }

    fn error_fields(error: ApiError) -> Vec<(String, String)> {
        match error {
            ApiError::Validation(errors) => {
                errors.into_iter().map(|e| (e.field, e.message)).collect()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_json_names_the_body_and_where_it_broke() {
        let errors = error_fields(parse_json_body::<Body>(b"{\"name\": ").unwrap_err());
        assert_eq!(errors[0].0, "body");
        assert!(
            errors[0]
                .1
                .starts_with("Malformed JSON at line 1, column 9"),
            "{}",
            errors[0].1
        );
    }

    #[test]
    fn invalid_utf8_and_non_objects_are_refused() {
        let errors = error_fields(parse_json_body::<Body>(b"{\"name\": \"\xff\"}").unwrap_err());
        assert_eq!(errors[0].0, "body");
        let errors = error_fields(parse_json_body::<Body>(b"[1, 2]").unwrap_err());
        assert_eq!(
            errors,
            [(
                "body".to_string(),
                "Request body must be a JSON object".to_string()
            )]
        );
        let errors = error_fields(parse_json_body::<Body>(b"  ").unwrap_err());
        assert_eq!(
            errors,
            [("body".to_string(), "Request body is required".to_string())]
        );
    }

    #[test]
    fn json_content_types_are_recognised() {
        let value = |s: &'static str| axum::http::HeaderValue::from_static(s);
        assert!(is_json(Some(&value("application/json"))));
        assert!(is_json(Some(&value("Application/JSON; charset=utf-8"))));
        assert!(is_json(Some(&value("application/merge-patch+json"))));
        assert!(!is_json(Some(&value("text/plain"))));
        assert!(!is_json(None));
    }
}
