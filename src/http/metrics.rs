//! `GET /metrics` (Prometheus text format): request counts and latency histograms by route
//! and status, and each projector's lag, read when scraped.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;
use super::error::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectorLabels {
    projector: String,
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    projector_lag: Family<ProjectorLabels, Gauge>,
    projector_failing: Family<ProjectorLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kairos");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let projector_lag = Family::<ProjectorLabels, Gauge>::default();
        let projector_failing = Family::<ProjectorLabels, Gauge>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests",
            latency.clone(),
        );
        registry.register(
            "projector_lag_events",
            "Committed events a projector has not applied yet",
            projector_lag.clone(),
        );
        registry.register(
            "projector_failing",
            "1 while a projector's batches fail",
            projector_failing.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            projector_lag,
            projector_failing,
        }
    }
}

/// Counts and times every request; logs one line per request inside its span.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    tracing::info!(
        status = labels.status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request answered"
    );
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    response
}

pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    for projector in projections::runtime::status(&state.pool).await? {
        let labels = ProjectorLabels {
            projector: projector.name.clone(),
        };
        state
            .metrics
            .projector_lag
            .get_or_create(&labels)
            .set(projector.lag);
        state
            .metrics
            .projector_failing
            .get_or_create(&labels)
            .set(i64::from(projector.state == "failing"));
    }
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &state.metrics.registry)
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response())
}
