//! The HTTP side: the router, its middleware, and one module per group of endpoints.
//!
//! Handlers turn requests into commands (through [`crate::commands::CommandBus`]) or into
//! read-model queries (through the query functions of `projections`); they never read the
//! `events` table for a user-facing answer.

mod audit;
pub mod auth;
pub mod auth_limit;
mod edge;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod request_id;
pub mod serve;
mod users;
pub mod views;
mod windows;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use sqlx::PgPool;

use crate::commands::CommandBus;
use error::ApiError;
use rate_limit::RateLimits;
pub use serve::{ConnectionLimits, run};

/// What handlers share. Extractors clone it on every request, so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// The service-role pool for queries (read models).
    pub pool: PgPool,
    pub bus: CommandBus,
    /// Base of booking URLs (`KAIROS_PUBLIC_URL`).
    pub public_url: Arc<str>,
    /// Read models held in memory (bookable windows, API keys).
    pub caches: projections::Caches,
    pub metrics: Arc<metrics::Metrics>,
    pub rate_limiter: Arc<RateLimits>,
    /// Per-source budget of failed authentications.
    pub auth_guard: auth_limit::AuthGuard,
    /// The database probes of `/health/ready` and `/metrics`, each at most once a second.
    pub probes: health::Probes,
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
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(metrics, edge::edge))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("Route not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
