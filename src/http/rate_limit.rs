//! Per-key rate limiting (api.md section 1): 100 requests a minute with bursts to 200 by
//! default (`KAIROS_RATE_LIMIT_PER_MINUTE`; 0 turns it off). Every authenticated response
//! carries `x-ratelimit-limit` and `x-ratelimit-remaining`; a refused one is 429 with
//! `Retry-After`.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use super::error::ApiError;

type KeyedLimiter =
    RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock, StateInformationMiddleware>;

pub struct RateLimits {
    limiter: Option<KeyedLimiter>,
    clock: DefaultClock,
}

/// What the last check allowed, for the response headers.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    pub limit: u32,
    pub remaining: u32,
}

/// A slot the edge middleware puts into the request for the `Caller` extractor to fill.
#[derive(Clone, Default)]
pub struct RateInfoSlot(Arc<Mutex<Option<RateInfo>>>);

impl RateInfoSlot {
    pub fn get(&self) -> Option<RateInfo> {
        *self.0.lock().expect("rate info lock")
    }
}

impl RateLimits {
    /// `per_minute` requests a minute per key, bursts up to twice that; 0 disables.
    pub fn new(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
                .with_middleware::<StateInformationMiddleware>()
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request of `key`; 429 when it is over its quota.
    pub fn check(&self, key: Uuid, slot: Option<&RateInfoSlot>) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&key) {
            Ok(snapshot) => {
                if let Some(slot) = slot {
                    *slot.0.lock().expect("rate info lock") = Some(RateInfo {
                        limit: snapshot.quota().burst_size().get(),
                        remaining: snapshot.remaining_burst_capacity(),
                    });
                }
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                if let Some(slot) = slot {
                    *slot.0.lock().expect("rate info lock") = Some(RateInfo {
                        limit: not_until.quota().burst_size().get(),
                        remaining: 0,
                    });
                }
                Err(ApiError::TooManyRequests {
                    retry_after_seconds: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }
}
