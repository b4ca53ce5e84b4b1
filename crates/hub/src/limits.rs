//! Request rate limits: a token bucket per authenticated client, and shared allowances for
//! requests that fail to authenticate, so that a flood from one client never starves another.
//!
//! Every local process can reach the hub, so identities come from credentials, never from the
//! peer address (it is 127.0.0.1 for everyone). A request is charged to a client only once its
//! token or secret has been checked, which costs a hash and a constant-time comparison; a
//! request whose credentials fail draws on an allowance that honest clients never touch.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Failed secrets tolerated in a row for one registered client before its token requests are
/// refused unchecked, and how fast that allowance comes back: guessing a client's secret gets
/// one try a second at best.
const FAILURE_BURST: f64 = 10.0;
const FAILURES_PER_SECOND: f64 = 1.0;

/// A request refused because its client (or the unauthenticated allowance) is over its rate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many requests {who}: the limit is {rate} per second; retry after {} s", .retry_after.as_secs())]
pub struct RateLimited {
    who: String,
    rate: String,
    /// Whole seconds, at least one: what `Retry-After` says.
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is there.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }
}

/// The hub's rate limits. Maps are keyed by registered client ids only, so nothing an attacker
/// names can grow them.
pub struct Limits {
    rate: f64,
    burst: f64,
    clients: Mutex<HashMap<String, Bucket>>,
    failures: Mutex<HashMap<String, Bucket>>,
    anonymous: Mutex<Bucket>,
}

impl Limits {
    pub fn new(requests_per_second: u32, burst: u32) -> Self {
        let rate = f64::from(requests_per_second.max(1));
        let burst = f64::from(burst.max(1));
        Limits {
            rate,
            burst,
            clients: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            anonymous: Mutex::new(Bucket::full(burst, Instant::now())),
        }
    }

    /// Charges one request to an authenticated client.
    pub fn client(&self, client_id: &str) -> Result<(), RateLimited> {
        let now = Instant::now();
        let mut clients = self.clients.lock();
        let bucket = match clients.get_mut(client_id) {
            Some(bucket) => bucket,
            None => clients
                .entry(client_id.to_owned())
                .or_insert(Bucket::full(self.burst, now)),
        };
        bucket
            .take(self.rate, self.burst, now)
            .map_err(|wait| self.refusal(format!("from client `{client_id}`"), self.rate, wait))
    }

    /// Charges one request that presented a wrong or expired token, or an unknown channel
    /// endpoint: all of them share one allowance, so guessing is slow and never costs an
    /// honest client its own.
    pub fn unauthenticated(&self) -> Result<(), RateLimited> {
        self.anonymous
            .lock()
            .take(self.rate, self.burst, Instant::now())
            .map_err(|wait| self.refusal("with invalid credentials".to_owned(), self.rate, wait))
    }

    /// Whether a registered client's secret may be checked now: false once too many wrong
    /// secrets were tried for it recently. Checking does not charge.
    pub fn may_try_secret(&self, client_id: &str) -> Result<(), RateLimited> {
        let now = Instant::now();
        let failures = self.failures.lock();
        let Some(bucket) = failures.get(client_id) else {
            return Ok(());
        };
        let mut probe = *bucket;
        probe
            .take(FAILURES_PER_SECOND, FAILURE_BURST, now)
            .map_err(|wait| self.secret_refusal(client_id, wait))
    }

    /// Records a wrong secret for a registered client.
    pub fn secret_failed(&self, client_id: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        let bucket = match failures.get_mut(client_id) {
            Some(bucket) => bucket,
            None => failures
                .entry(client_id.to_owned())
                .or_insert(Bucket::full(FAILURE_BURST, now)),
        };
        // Already empty: the request was refused unchecked by `may_try_secret`.
        let _ = bucket.take(FAILURES_PER_SECOND, FAILURE_BURST, now);
    }

    fn secret_refusal(&self, client_id: &str, wait: Duration) -> RateLimited {
        self.refusal(
            format!("with a wrong secret for client `{client_id}`"),
            FAILURES_PER_SECOND,
            wait,
        )
    }

    fn refusal(&self, who: String, rate: f64, wait: Duration) -> RateLimited {
        // Retry-After is whole seconds; rounding up means a client that obeys it succeeds.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        RateLimited {
            who,
            rate: format!("{rate}"),
            retry_after: Duration::from_secs(seconds.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let limits = Limits::new(10, 5);
        for _ in 0..5 {
            limits.client("ris").unwrap();
        }
        let refused = limits.client("ris").unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(1));
        assert!(refused.to_string().contains("client `ris`"), "{refused}");
        // Another client is untouched by the first one's flood.
        limits.client("pacs").unwrap();
        std::thread::sleep(Duration::from_millis(150));
        limits.client("ris").unwrap();
    }

    #[test]
    fn failed_authentication_never_draws_on_a_client_allowance() {
        let limits = Limits::new(1, 2);
        limits.unauthenticated().unwrap();
        limits.unauthenticated().unwrap();
        assert!(limits.unauthenticated().is_err());
        limits.client("ris").unwrap();
    }

    #[test]
    fn wrong_secrets_lock_that_client_alone_for_a_while() {
        let limits = Limits::new(100, 100);
        for _ in 0..FAILURE_BURST as usize {
            limits.may_try_secret("ris").unwrap();
            limits.secret_failed("ris");
        }
        let refused = limits.may_try_secret("ris").unwrap_err();
        assert!(refused.retry_after >= Duration::from_secs(1));
        limits.may_try_secret("pacs").unwrap();
        limits.client("ris").unwrap();
    }
}
