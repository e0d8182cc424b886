//! `GET /metrics` (Prometheus text format): request counts and latency histograms by route
//! and status, and each projector's lag, failing state and quarantined aggregates, read when
//! scraped.

use std::sync::RwLock;
use std::time::Duration;

use axum::extract::{MatchedPath, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::AppState;
use super::error::ApiError;

/// Label values are interned `&'static str`s: building them costs no allocation per request
/// (routes and methods are few; anything unknown is `other` / `unmatched`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route templates the router knows, leaked once each: a bounded set.
fn route_label(path: Option<&MatchedPath>) -> &'static str {
    static ROUTES: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    let Some(path) = path.map(MatchedPath::as_str) else {
        return "unmatched";
    };
    if let Some(known) = ROUTES
        .read()
        .expect("routes lock")
        .iter()
        .find(|r| **r == path)
    {
        return known;
    }
    let mut routes = ROUTES.write().expect("routes lock");
    if let Some(known) = routes.iter().find(|r| **r == path) {
        return known;
    }
    let leaked: &'static str = Box::leak(path.to_string().into_boxed_str());
    routes.push(leaked);
    leaked
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
    projector_quarantined: Family<ProjectorLabels, Gauge>,
    windows_cached: Gauge,
    windows_cached_bytes: Gauge,
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
        let windows_cached = Gauge::default();
        let projector_quarantined = Family::<ProjectorLabels, Gauge>::default();
        registry.register(
            "projector_quarantined_aggregates",
            "Aggregates a projector has set aside because an event of theirs cannot be applied (their reads answer 503)",
            projector_quarantined.clone(),
        );
        let windows_cached_bytes = Gauge::default();
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
            "windows_cached_users",
            "Users whose bookable windows this process holds in memory",
            windows_cached.clone(),
        );
        registry.register(
            "windows_cached_bytes",
            "Memory those users' windows take, within KAIROS_WINDOWS_CACHE_MB",
            windows_cached_bytes.clone(),
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
            projector_quarantined,
            windows_cached,
            windows_cached_bytes,
        }
    }
}

impl Metrics {
    /// Counts and times one answered request.
    pub fn record(
        &self,
        method: &axum::http::Method,
        route: Option<&MatchedPath>,
        status: u16,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route_label(route),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

pub async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    // At most one status query a second, however often this is scraped (`health::Probes`).
    let projectors = state
        .probes
        .projectors
        .get(async {
            projections::runtime::status(&state.pool)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(ApiError::Unavailable)?;
    for projector in projectors {
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
        state
            .metrics
            .projector_quarantined
            .get_or_create(&labels)
            .set(i64::try_from(projector.quarantined.len()).unwrap_or(i64::MAX));
    }
    state
        .metrics
        .windows_cached
        .set(i64::try_from(state.caches.windows.len()).unwrap_or(i64::MAX));
    state
        .metrics
        .windows_cached_bytes
        .set(i64::try_from(state.caches.windows.bytes()).unwrap_or(i64::MAX));
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
