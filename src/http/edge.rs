//! The one middleware every request passes through, outermost: it names the request
//! (`x-request-id`), opens its tracing span, bounds its time, turns a panic into a generic 500,
//! adds the rate-limit headers, logs one line and records the metrics.
//!
//! One middleware rather than five: each `from_fn` layer boxes a future and clones a service
//! per request, and this is the path every bookable-windows query takes.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use tracing::Instrument;

use super::error::ApiError;
use super::metrics::Metrics;
use super::rate_limit::RateInfoSlot;
use super::request_id::{self, RequestId};

/// Every request gets at most this long; a stuck database becomes a 503, not a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn edge(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id::choose(request.headers());
    let rate = RateInfoSlot::default();
    request.extensions_mut().insert(RequestId(id.clone()));
    request.extensions_mut().insert(rate.clone());
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, path = %request.uri().path());

    let handled = tokio::time::timeout(
        REQUEST_TIMEOUT,
        AssertUnwindSafe(next.run(request)).catch_unwind(),
    )
    .instrument(span.clone())
    .await;
    let mut response = span.in_scope(|| match handled {
        Ok(Ok(response)) => response,
        Ok(Err(panic)) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            ApiError::Internal(format!("handler panicked: {detail}")).into_response()
        }
        Err(_) => ApiError::Unavailable("request timed out".to_string()).into_response(),
    });

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(request_id::HEADER, value);
    }
    if let Some(info) = rate.get() {
        headers.insert("x-ratelimit-limit", HeaderValue::from(info.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(info.remaining));
    }
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request answered"
        );
    });
    metrics.record(&method, route.as_ref(), status, elapsed);
    response
}
