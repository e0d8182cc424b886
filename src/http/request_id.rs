//! `x-request-id`: echoed when the client sent a sane one, generated otherwise, set on every
//! response (by [`super::edge`]), and carried by the request's tracing span so every log line
//! names it.

use axum::http::HeaderValue;

pub const HEADER: &str = "x-request-id";

/// The request's id, for handlers (event metadata) and logs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Client ids are echoed only if short and made of safe characters; a header that would
/// bloat logs or smuggle control characters is replaced.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(&b));
    ok.then(|| text.to_string())
}

/// The id of a request: the client's if acceptable, else a fresh v4 UUID (from the thread's
/// CSPRNG, so no system call per request).
pub fn choose(headers: &axum::http::HeaderMap) -> String {
    headers.get(HEADER).and_then(acceptable).unwrap_or_else(|| {
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string()
    })
}
