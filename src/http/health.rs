//! Liveness, readiness and metrics endpoints (api.md section 10). No API key needed.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(super::metrics::scrape))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// The database answers.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready to serve"),
    (status = 503, description = "The database cannot be reached", body = super::error::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok(axum::Json(json!({"status": "ready"})))
}
