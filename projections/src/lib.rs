//! The Kairos read side: the projector runtime and every read model with its queries.
//!
//! Read in this order:
//!
//! - [`log`]: the event log in commit order, as projectors and audits read it;
//! - [`keyring`]: sealing and opening personal fields (crypto-shredding);
//! - [`runtime`]: following the log, checkpoints, leadership, read-your-writes progress;
//! - [`rebuild`]: replaying the log into shadow tables and swapping them in live;
//! - one module per read model, each the only writer of its tables and the owner of the
//!   queries that read them: [`companies`], [`user_profiles`], [`availabilities`],
//!   [`meeting_types`], [`bookable_windows`];
//! - [`clock`]: time as a replaceable value.
//!
//! [`all_projectors`] lists every projector the server runs.

pub mod availabilities;
pub mod bookable_windows;
pub mod clock;
pub mod companies;
pub mod keyring;
pub mod log;
pub mod meeting_types;
pub mod rebuild;
pub mod runtime;
pub mod user_profiles;

use std::sync::Arc;

use bookable_windows::{BookableWindowsProjector, WindowsCache};
use clock::SharedClock;
use runtime::Projector;

/// Every projector. The windows projector reads the clock (its horizon moves with the days)
/// and drops changed users from `windows`, the cache the query side serves from.
pub fn all_projectors(clock: SharedClock, windows: Arc<WindowsCache>) -> Vec<Arc<dyn Projector>> {
    vec![
        Arc::new(companies::CompaniesProjector),
        Arc::new(user_profiles::UserProfilesProjector),
        Arc::new(availabilities::AvailabilitiesProjector),
        Arc::new(meeting_types::MeetingTypesProjector),
        Arc::new(BookableWindowsProjector::new(clock, windows)),
    ]
}
