//! The Kairos read side: the projector runtime and every read model with its queries.
//!
//! Read in this order:
//!
//! - [`log`]: the event log in commit order, as projectors and audits read it;
//! - [`keyring`]: sealing and opening personal fields (crypto-shredding);
//! - [`runtime`]: following the log, checkpoints, leadership, read-your-writes progress;
//! - [`quarantine`]: an event that can never be applied sets aside its aggregate only;
//! - [`listener`]: the `LISTEN` connection that relays notifications, and its liveness;
//! - [`rebuild`]: replaying the log into shadow tables and swapping them in live;
//! - one module per read model, each the only writer of its tables and the owner of the
//!   queries that read them: [`companies`], [`user_profiles`], [`availabilities`],
//!   [`meeting_types`] (the last three applied together by the [`users`] projector),
//!   [`bookable_windows`];
//! - [`cache`]: in-memory copies of read models that their projectors keep honest;
//! - [`clock`]: time as a replaceable value.
//!
//! [`all_projectors`] lists every projector the server runs.

pub mod availabilities;
pub mod bookable_windows;
pub mod cache;
pub mod clock;
pub mod companies;
pub mod keyring;
pub mod listener;
pub mod log;
pub mod meeting_types;
pub mod quarantine;
pub mod rebuild;
pub mod runtime;
pub mod user_profiles;
pub mod users;

use std::sync::Arc;

use bookable_windows::{BookableWindowsProjector, WindowsCache};
use clock::SharedClock;
use companies::ApiKeyCache;
use runtime::{Projector, Subscription};

/// The read models a serving process keeps in memory, each kept current by its projector.
#[derive(Clone)]
pub struct Caches {
    pub windows: Arc<WindowsCache>,
    pub api_keys: Arc<ApiKeyCache>,
    /// The aggregates projectors have set aside; reads of them answer 503. Kept current by
    /// the runtime ([`runtime::Runtime::track_quarantine`]), not by [`Self::subscriptions`].
    pub quarantine: Arc<quarantine::QuarantineSet>,
}

impl Caches {
    /// `windows_bytes` bounds the windows cache (see [`WindowsCache`]).
    pub fn new(windows_bytes: u64) -> Self {
        Self {
            windows: Arc::new(WindowsCache::new(windows_bytes)),
            api_keys: Arc::new(ApiKeyCache::new(100_000)),
            quarantine: Arc::new(quarantine::QuarantineSet::new()),
        }
    }

    /// Caches for a process that serves nothing (CLI commands): tiny and never read.
    pub fn unused() -> Self {
        Self::new(1)
    }

    /// What the runtime's listener must follow to keep them honest across processes.
    pub fn subscriptions(&self) -> Vec<Subscription> {
        let (windows, keys) = (self.windows.clone(), self.api_keys.clone());
        vec![
            self.windows.subscription(),
            self.api_keys.subscription(),
            Subscription {
                channel: rebuild::REBUILT_CHANNEL,
                on_notice: Arc::new(move |_| {
                    windows.clear();
                    keys.clear();
                }),
                // The caches' own subscriptions stand aside and resume them.
                on_unfollowed: Arc::new(|| {}),
                on_followed: Arc::new(|| {}),
            },
        ]
    }
}

/// Every projector. The windows projector reads the clock (its horizon moves with the
/// days); projectors with a cache drop what their batches change.
pub fn all_projectors(clock: SharedClock, caches: &Caches) -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(companies::CompaniesProjector::new(caches.api_keys.clone())),
        Arc::new(users::UsersProjector),
        Arc::new(BookableWindowsProjector::new(clock, caches.windows.clone())),
    ]
}
