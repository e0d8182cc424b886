//! Assembling a running Kairos: pools, the projector runtime, the command bus and the HTTP
//! state. `kairos serve` and the integration tests build it the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use projections::Caches;
use projections::clock::SharedClock;
use projections::keyring::Keyring;
use projections::runtime::{Runtime, RuntimeConfig, RuntimeHandle, Shutdown, ShutdownTrigger};
use sqlx::PgPool;

use crate::commands::CommandBus;
use crate::db;
use crate::event_store::EventStore;
use crate::http::auth_limit::{AuthGuard, KNOWN_KEYS};
use crate::http::health::Probes;
use crate::http::metrics::Metrics;
use crate::http::rate_limit::RateLimits;
use crate::http::{self, AppState, Shared};

/// Statements on the request path give up after this long (the client gets 503).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(20);

pub struct Options {
    pub database_url: String,
    pub keyring: Keyring,
    pub clock: SharedClock,
    pub public_url: String,
    pub pool_size: u32,
    pub rate_limit_per_minute: u32,
    pub read_your_writes_timeout: Duration,
    pub runtime: RuntimeConfig,
    /// Memory for bookable windows, in bytes (`KAIROS_WINDOWS_CACHE_MB`).
    pub windows_cache_bytes: u64,
    /// Failed authentications per source address a minute (0: no limit).
    pub auth_failures_per_minute: u32,
}

/// A started Kairos: serve [`Kairos::router`], then [`Kairos::stop`].
pub struct Kairos {
    pub state: AppState,
    projections: RuntimeHandle,
    shutdown: ShutdownTrigger,
    projector_pool: PgPool,
}

impl Kairos {
    pub async fn start(options: Options) -> Result<Self, sqlx::Error> {
        let pool = db::service_pool(
            &options.database_url,
            options.pool_size,
            Some(STATEMENT_TIMEOUT),
        )
        .await?;
        let caches = Caches::new(options.windows_cache_bytes);
        let projectors = projections::all_projectors(options.clock.clone(), &caches);
        // Each projector leader keeps a connection; the rest serve listeners and catch-ups.
        let projector_pool =
            db::projector_pool(&options.database_url, projectors.len() as u32 + 3).await?;
        let mut runtime = Runtime::new(
            projector_pool.clone(),
            options.keyring.clone(),
            projectors,
            options.runtime,
        );
        for subscription in caches.subscriptions() {
            runtime.subscribe(subscription);
        }
        runtime.track_quarantine(caches.quarantine.clone());
        let progress = runtime.progress();
        let mut listening = runtime.listening();
        let signal = runtime.signal();
        let (shutdown, stop) = Shutdown::new();
        let handle = runtime.start(stop).await?;
        // Every user's windows into memory, in the background: queries meanwhile load on use.
        let (windows, warm_pool) = (caches.windows.clone(), pool.clone());
        tokio::spawn(async move {
            let _ = listening.wait_for(|up| *up).await;
            match windows.warm(&warm_pool).await {
                Ok(users) => tracing::info!(users, "bookable windows loaded into memory"),
                Err(error) => {
                    tracing::warn!(%error, "could not preload bookable windows; they load on use")
                }
            }
        });
        let store = EventStore::new(pool.clone(), options.keyring);
        let bus = CommandBus::new(
            store,
            options.clock,
            progress,
            signal,
            options.read_your_writes_timeout,
        );
        let state = AppState::new(Shared {
            pool,
            bus,
            public_url: options.public_url.into(),
            caches,
            metrics: Arc::new(Metrics::default()),
            rate_limiter: Arc::new(RateLimits::new(options.rate_limit_per_minute)),
            // Reads of unknown key ids may take a quarter of the request pool at most.
            auth_guard: AuthGuard::new(
                options.auth_failures_per_minute,
                (options.pool_size as usize / 4).max(1),
            ),
            probes: Probes::default(),
        });
        // The live keys are real: failed attempts from their clients' addresses must not
        // lock them out (`auth_limit`). One read of the keys table; keys
        // issued later join at their first use.
        match projections::companies::live_key_ids(&state.pool, KNOWN_KEYS as i64).await {
            Ok(ids) => state.auth_guard.remember(ids),
            Err(error) => tracing::warn!(%error, "could not read the live API keys"),
        }
        Ok(Self {
            state,
            projections: handle,
            shutdown,
            projector_pool,
        })
    }

    pub fn router(&self) -> Router {
        http::app(self.state.clone())
    }

    /// Stops the projectors after their current batch and closes the pools.
    pub async fn stop(self) {
        self.shutdown.trigger();
        self.projections.join().await;
        self.state.pool.close().await;
        self.projector_pool.close().await;
    }
}
