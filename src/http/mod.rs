//! The HTTP side: the router, its middleware, and one module per group of endpoints.
//!
//! Handlers turn requests into commands (through [`crate::commands::CommandBus`]) or into
//! read-model queries (through the query functions of `projections`); they never read the
//! `events` table for a user-facing answer.

mod audit;
pub mod auth;
pub mod error;
pub mod extract;
mod health;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod request_id;
mod users;
pub mod views;
mod windows;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::commands::CommandBus;
use error::ApiError;
use rate_limit::RateLimits;

/// Every request gets at most this long; a stuck database becomes a 503, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The service-role pool for queries (read models).
    pub pool: PgPool,
    pub bus: CommandBus,
    /// Base of booking URLs (`KAIROS_PUBLIC_URL`).
    pub public_url: Arc<str>,
    /// The bookable windows read model, held in memory.
    pub windows: Arc<projections::bookable_windows::WindowsCache>,
    pub metrics: Arc<metrics::Metrics>,
    pub rate_limiter: Arc<RateLimits>,
}

/// The whole API as a router, for `run` and for tests (`oneshot`).
pub fn app(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .merge(users::routes())
        .merge(windows::routes())
        .merge(audit::routes())
        .merge(health::routes())
        .merge(openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(rate_limit::rate_limit_headers))
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn(timeout))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(metrics, metrics::observe))
        .layer(middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn run(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Route not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("request timed out".to_string()).into_response(),
    }
}

/// A panic in a handler is a bug: log it once and answer a generic 500 in the error shape.
async fn catch_panic(request: Request, next: Next) -> Response {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            ApiError::Internal(format!("handler panicked: {detail}")).into_response()
        }
    }
}
