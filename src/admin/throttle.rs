//! Admin login throttling that slows attackers down without letting them lock
//! the owner out (OWASP ASVS 2.2.1).
//!
//! Only *failed* logins are counted, in three budgets on the app's clock:
//!
//! | key | budget | what it stops |
//! |---|---|---|
//! | username and client address | 5, then one per 12 s | guessing one account from one place |
//! | client address | 30, then one per 2 s | trying many accounts from one place |
//! | username | 100, then one per 36 s (100 an hour) | a distributed guess at one account |
//!
//! The per-username ceiling is what an attacker could use to keep a known
//! user out, so it does not apply to a *trusted device*: a browser that signed
//! in as that user before carries a random `eye_device` cookie, and its
//! attempts are held only to the first two budgets. A success never spends a
//! budget, and it clears the failures of its username and address.
//!
//! The client address is the peer's, or behind a trusted proxy the one the
//! proxy reports, never the proxy's own (which would pool every client).
//! Budgets and devices live in memory, per node: a restart forgets them.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::domain::Clock;

/// Keys kept before fully recovered ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;
/// Devices remembered per username; the oldest is forgotten past this.
const DEVICES_PER_USER: usize = 20;

/// A budget of failures that refills at a steady rate (GCRA), spent only by
/// [`Failures::record`] so that checking is free.
#[derive(Debug)]
struct Failures<K> {
    /// Time between two refills.
    period: Duration,
    /// Failures allowed in a burst.
    burst: u32,
    /// Per key, the theoretical time (ns since the epoch) when its budget is full again.
    full_at: Mutex<HashMap<K, i64>>,
}

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(burst: u32, period: Duration) -> Self {
        Self { period, burst, full_at: Mutex::new(HashMap::new()) }
    }

    /// How long `key` must wait before it may try again, if it must.
    fn wait(&self, key: &K, now: i64) -> Option<Duration> {
        let map = self.full_at.lock().ok()?;
        let full_at = *map.get(key)?;
        // Room for one more failure while fewer than `burst` periods are owed.
        let tolerance = self.period.as_nanos() as i64 * i64::from(self.burst.saturating_sub(1));
        let allowed_at = full_at - tolerance;
        (allowed_at > now).then(|| Duration::from_nanos((allowed_at - now) as u64))
    }

    /// Spends one failure of `key`'s budget.
    fn record(&self, key: &K, now: i64) {
        let Ok(mut map) = self.full_at.lock() else { return };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, full_at| *full_at > now);
        }
        let full_at = map.entry(key.clone()).or_insert(now);
        *full_at = (*full_at).max(now) + self.period.as_nanos() as i64;
    }

    fn forget(&self, key: &K) {
        if let Ok(mut map) = self.full_at.lock() {
            map.remove(key);
        }
    }
}

/// The three budgets and the trusted devices.
#[derive(Debug)]
pub struct LoginThrottle {
    clock: Arc<dyn Clock>,
    pair: Failures<(String, IpAddr)>,
    address: Failures<IpAddr>,
    user: Failures<String>,
    /// Per username, SHA-256 of the device tokens that signed in as it.
    devices: Mutex<HashMap<String, Vec<[u8; 32]>>>,
}

fn device_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl LoginThrottle {
    /// The budgets of the table above, on the app's clock.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            pair: Failures::new(5, Duration::from_secs(12)),
            address: Failures::new(30, Duration::from_secs(2)),
            user: Failures::new(100, Duration::from_secs(36)),
            devices: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_nanos_opt().unwrap_or_default()
    }

    /// True when `device` (the `eye_device` cookie) signed in as `username` before.
    pub fn trusted(&self, username: &str, device: Option<&str>) -> bool {
        let Some(device) = device else { return false };
        let hash = device_hash(device);
        self.devices.lock().is_ok_and(|d| d.get(username).is_some_and(|list| list.contains(&hash)))
    }

    /// How long this attempt must wait, if it must, before it is even checked.
    pub fn wait(&self, username: &str, address: Option<IpAddr>, trusted: bool) -> Option<Duration> {
        let now = self.now();
        let by_address =
            address.and_then(|ip| self.pair.wait(&(username.to_string(), ip), now).max(self.address.wait(&ip, now)));
        let by_user = if trusted { None } else { self.user.wait(&username.to_string(), now) };
        by_address.max(by_user)
    }

    /// Counts a failed attempt against every budget it belongs to.
    pub fn failed(&self, username: &str, address: Option<IpAddr>, trusted: bool) {
        let now = self.now();
        if let Some(ip) = address {
            self.pair.record(&(username.to_string(), ip), now);
            self.address.record(&ip, now);
        }
        if !trusted {
            self.user.record(&username.to_string(), now);
        }
    }

    /// A success: its pair starts afresh, and the device is trusted for the user from now on.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>, device: &str) {
        if let Some(ip) = address {
            self.pair.forget(&(username.to_string(), ip));
        }
        if let Ok(mut devices) = self.devices.lock() {
            let list = devices.entry(username.to_string()).or_default();
            let hash = device_hash(device);
            if !list.contains(&hash) {
                if list.len() >= DEVICES_PER_USER {
                    list.remove(0);
                }
                list.push(hash);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_spend_and_the_budget_refills() {
        let f = Failures::<u8>::new(2, Duration::from_secs(10));
        let s = 1_000_000_000i64;
        assert_eq!(f.wait(&1, 0), None);
        f.record(&1, 0);
        assert_eq!(f.wait(&1, 0), None, "one of two spent");
        f.record(&1, 0);
        assert_eq!(f.wait(&1, 0), Some(Duration::from_secs(10)));
        assert_eq!(f.wait(&1, 10 * s), None, "one refilled after a period");
        assert_eq!(f.wait(&2, 0), None, "other keys are untouched");
        f.forget(&1);
        assert_eq!(f.wait(&1, 0), None);
    }
}
