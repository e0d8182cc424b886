//! Bounding the work of requests that fail authentication (issue 15, item 4), so that a flood
//! of unknown or malformed keys cannot take database connections from real tenants.
//!
//! A request whose key this process cannot verify from memory costs its source (the peer's
//! address; an IPv6 peer's /64, which one host usually holds whole) one token of a budget,
//! `KAIROS_AUTH_FAILURES_PER_MINUTE` a minute with bursts of as many: a missing, malformed,
//! unknown, revoked or expired key, a wrong secret, or a key id the process has not verified
//! yet (which needs a database read). A source over its budget gets `429` with `Retry-After`
//! instead, and no database read.
//!
//! A real key costs nothing, from any source: the ids of live keys are read at start, and a
//! key issued later joins them at its first successful use. Their requests are served from
//! memory or, when the cache has to read the table again (after a reconnect, say), they skip
//! the budget, so a real client sharing an address with an attacker (a NAT, a proxy) is held
//! to its own per-key limit only. (Knowing a real key's id gains an attacker nothing: a wrong
//! secret is a failure, found from memory.) Reads of other key ids also share a few permits
//! (a quarter of the request pool), so many sources together cannot take the whole pool.
//!
//! Behind a reverse proxy every request has the proxy's address: the budget then bounds the
//! failures of all clients together (raise it, or set 0 to turn it off).

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use super::error::ApiError;

type SourceLimiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

/// Sources tracked before the limiter forgets those whose budget is full again.
const TRACKED_SOURCES: usize = 100_000;
/// Key ids remembered as real (16 bytes each); past it the set starts over.
pub const KNOWN_KEYS: usize = 100_000;

pub struct AuthGuard {
    failures: Option<SourceLimiter>,
    clock: DefaultClock,
    lookups: Semaphore,
    /// Ids of keys that exist: reading them is never charged.
    known: Mutex<HashSet<Uuid>>,
}

impl AuthGuard {
    /// `per_minute` failures per source (0: no limit); `lookup_permits` database reads of
    /// unverified key ids at once.
    pub fn new(per_minute: u32, lookup_permits: usize) -> Self {
        Self {
            failures: NonZeroU32::new(per_minute)
                .map(|rate| RateLimiter::keyed(Quota::per_minute(rate).allow_burst(rate))),
            clock: DefaultClock::default(),
            lookups: Semaphore::new(lookup_permits.max(1)),
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Charges one failed authentication to `source` and answers `refusal`, or `429` when
    /// the source is over its budget. A request without a peer address (a router driven
    /// in-process) is not limited.
    pub fn failed(&self, source: Option<IpAddr>, refusal: ApiError) -> ApiError {
        match self.charge(source) {
            Ok(()) => refusal,
            Err(too_many) => too_many,
        }
    }

    /// Lets a database read of `key_id` go ahead: free for a known key, otherwise charged to
    /// `source` (`Ok(true)`) and holding one of the lookup permits.
    pub async fn admit_lookup(
        &self,
        source: Option<IpAddr>,
        key_id: Uuid,
    ) -> Result<(bool, Option<SemaphorePermit<'_>>), ApiError> {
        if self
            .known
            .lock()
            .expect("known keys lock")
            .contains(&key_id)
        {
            return Ok((false, None));
        }
        self.charge(source)?;
        let permit = self
            .lookups
            .acquire()
            .await
            .expect("the semaphore is never closed");
        Ok((true, Some(permit)))
    }

    /// Remembers real key ids (live keys at start, a key verified from the table), so that
    /// reading them is never charged.
    pub fn remember(&self, key_ids: impl IntoIterator<Item = Uuid>) {
        let mut known = self.known.lock().expect("known keys lock");
        for key_id in key_ids {
            if known.len() >= KNOWN_KEYS {
                known.clear();
            }
            known.insert(key_id);
        }
    }

    fn charge(&self, source: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(source)) = (&self.failures, source) else {
            return Ok(());
        };
        if limiter.len() > TRACKED_SOURCES {
            limiter.retain_recent();
        }
        limiter.check_key(&bucket(source)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::TooManyRequests {
                retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            }
        })
    }
}

/// The address a budget belongs to: an IPv4 address (also when mapped into IPv6), or an
/// IPv6 address's /64 network.
fn bucket(source: IpAddr) -> IpAddr {
    match source.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(address: &str) -> Option<IpAddr> {
        Some(address.parse().unwrap())
    }

    #[test]
    fn a_source_over_its_budget_is_told_when_to_retry_and_others_are_not() {
        let guard = AuthGuard::new(3, 1);
        for _ in 0..3 {
            assert!(matches!(
                guard.failed(source("10.0.0.1"), ApiError::Unauthorized("no")),
                ApiError::Unauthorized(_)
            ));
        }
        match guard.failed(source("10.0.0.1"), ApiError::Unauthorized("no")) {
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => assert!((1..=20).contains(&retry_after_seconds)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            guard.failed(source("10.0.0.2"), ApiError::Unauthorized("no")),
            ApiError::Unauthorized(_)
        ));
        assert!(matches!(
            guard.failed(None, ApiError::Unauthorized("no")),
            ApiError::Unauthorized(_)
        ));
    }

    #[test]
    fn an_ipv6_host_shares_one_budget_across_its_network() {
        assert_eq!(
            bucket("2001:db8:1:2:aaaa::1".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            bucket("::ffff:10.0.0.1".parse().unwrap()),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test]
    async fn a_known_key_is_looked_up_without_charging_its_source() {
        let guard = AuthGuard::new(1, 1);
        let key = Uuid::new_v4();
        assert!(guard.admit_lookup(source("10.0.0.1"), key).await.unwrap().0);
        assert!(guard.admit_lookup(source("10.0.0.1"), key).await.is_err());
        guard.remember([key]);
        let (charged, permit) = guard.admit_lookup(source("10.0.0.1"), key).await.unwrap();
        assert!(!charged && permit.is_none());
    }
}
