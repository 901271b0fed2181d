//! Rate limits per application and per client address (governor, GCRA).
//!
//! Limits are kept per process: with N ingest nodes behind a load balancer an
//! application may send up to N times its limit in all. The limiter's clock is
//! the app's [`Clock`], so tests move time instead of waiting for it.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as GovernorClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::domain::Clock;

/// A rate like `100/s`, `6000/min`, `50000/h`, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate(Option<(NonZeroU32, Duration)>);

impl Rate {
    /// Parses `N/s`, `N/min` or `N/h` (also `sec`, `second`, `minute`, `hour`), or `off`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        let bad = || format!("{text:?} is not a rate; write it like 100/s, 6000/min, 50000/h or off");
        let (n, unit) = text.split_once('/').ok_or_else(bad)?;
        let n: NonZeroU32 = n.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim().to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self(Some((n, per))))
    }

    fn quota(self) -> Option<Quota> {
        // n per period, with a burst of n: a client may spend a period's allowance at once.
        self.0.and_then(|(n, per)| Quota::with_period(per / n.get()).map(|q| q.allow_burst(n)))
    }
}

/// Governor's view of the app's clock: nanoseconds since the Unix epoch.
#[derive(Clone, Debug)]
struct AppClock(Arc<dyn Clock>);

impl GovernorClock for AppClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.0.now().timestamp_nanos_opt().unwrap_or_default().max(0) as u64)
    }
}

type Limiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, AppClock, NoOpMiddleware<Nanos>>;

/// One keyed limiter, or none when the rate is `off`.
#[derive(Debug)]
pub struct Limits<K: Hash + Eq + Clone> {
    limiter: Option<Limiter<K>>,
    clock: AppClock,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Limits<K> {
    /// A limiter for `rate` on the app's clock.
    pub fn new(rate: Rate, clock: Arc<dyn Clock>) -> Self {
        let clock = AppClock(clock);
        let limiter = rate.quota().map(|q| RateLimiter::new(q, DefaultKeyedStateStore::default(), clock.clone()));
        Self { limiter, clock, checks: AtomicU64::new(0) }
    }

    /// `Ok` when `key` may send now; else how long until it may.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        // Forget idle keys now and then, so memory follows the active clients only.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        limiter.check_key(key).map_err(|not_until| {
            let now = self.clock.now();
            Duration::from(not_until.earliest_possible().duration_since(now))
        })
    }
}

/// Seconds to put in `Retry-After` for a wait: rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!(Rate::parse("off"), Ok(Rate(None)));
        assert_eq!(Rate::parse("500/s").unwrap().0.unwrap().0.get(), 500);
        assert_eq!(Rate::parse("6000/min").unwrap().0.unwrap().1, Duration::from_secs(60));
        assert_eq!(Rate::parse(" 10 / hour ").unwrap().0.unwrap().1, Duration::from_secs(3600));
        for bad in ["", "500", "0/s", "-1/s", "5/fortnight", "x/s"] {
            assert!(Rate::parse(bad).unwrap_err().contains("like 100/s"), "{bad}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
        assert_eq!(retry_after_secs(Duration::from_millis(30_001)), 31);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
