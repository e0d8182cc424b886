//! Liveness, readiness and metrics endpoints (api.md section 10). No API key needed.
//!
//! Anyone can call these as often as they like, so the database work behind them is
//! throttled: each probe runs at most once a second, concurrent callers share one run, and
//! callers within the second get its result (a failure too, so a struggling database is not
//! probed harder).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use projections::runtime::ProjectorStatus;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::AppState;
use super::error::ApiError;

/// How long a probe's result answers for.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe that takes longer than this counts as failed (the database is not ready).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(super::metrics::scrape))
}

/// The database probes the operations endpoints share.
#[derive(Default)]
pub struct Probes {
    /// `/health/ready`: does the database answer?
    pub ready: Throttled<()>,
    /// `/metrics`: each projector's status.
    pub projectors: Throttled<Vec<ProjectorStatus>>,
}

/// The last result of a probe, reused for [`PROBE_INTERVAL`].
pub struct Throttled<T> {
    last: tokio::sync::Mutex<Option<(Instant, Result<T, String>)>>,
    runs: AtomicU64,
}

impl<T> Default for Throttled<T> {
    fn default() -> Self {
        Self {
            last: tokio::sync::Mutex::new(None),
            runs: AtomicU64::new(0),
        }
    }
}

impl<T: Clone> Throttled<T> {
    /// The result of `probe`, run now unless it ran less than [`PROBE_INTERVAL`] ago. Callers
    /// arriving while it runs wait for that run (the lock is held across it) and share it.
    pub async fn get<F>(&self, probe: F) -> Result<T, String>
    where
        F: Future<Output = Result<T, String>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = &*last
            && at.elapsed() < PROBE_INTERVAL
        {
            return result.clone();
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let result = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }

    /// How many times the probe ran.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "The process is up")))]
pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({"status": "ok"}))
}

/// The database answers (checked at most once a second).
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses(
    (status = 200, description = "Ready to serve"),
    (status = 503, description = "The database cannot be reached", body = super::error::ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    state
        .probes
        .ready
        .get(async {
            sqlx::query("SELECT 1")
                .execute(&state.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(axum::Json(json!({"status": "ready"})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_callers_share_one_probe_and_a_second_later_it_runs_again() {
        let probe = Arc::new(Throttled::<u32>::default());
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    probe
                        .get(async {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            Ok(7)
                        })
                        .await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Ok(7));
        }
        assert_eq!(probe.runs(), 1);
        let failing = async { Err::<u32, _>("down".to_string()) };
        assert_eq!(probe.get(failing).await, Ok(7), "within the second");
        tokio::time::sleep(PROBE_INTERVAL).await;
        let failing = async { Err::<u32, _>("down".to_string()) };
        assert_eq!(probe.get(failing).await, Err("down".to_string()));
        assert_eq!(probe.runs(), 2);
    }
}
