//! The intake API's request limit per integration: at most `limit` requests in any `window`
//! (Gradient publishes 100 a second, and vendor scripts are written to stay under it).
//!
//! A sliding log of the accepted requests' times per integration: exact, and small (at most
//! `limit` instants each). Refused requests do not count. This module only decides; it never
//! sleeps and never touches the journal.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    limit: usize,
    window: Duration,
    seen: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    /// Gradient's published limit: 100 requests a second.
    pub fn gradient() -> RateLimiter {
        RateLimiter::new(100, Duration::from_secs(1))
    }

    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter { limit: limit.max(1) as usize, window, seen: Mutex::new(HashMap::new()) }
    }

    /// Counts a request by `integration` at `now`, or says how long until one would be
    /// accepted.
    pub fn check(&self, integration: &str, now: Instant) -> Result<(), Duration> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let log = seen.entry(integration.to_string()).or_default();
        while log.front().is_some_and(|&at| now.saturating_duration_since(at) >= self.window) {
            log.pop_front();
        }
        if log.len() >= self.limit {
            let oldest = log[0];
            return Err(self.window.saturating_sub(now.saturating_duration_since(oldest)));
        }
        log.push_back(now);
        Ok(())
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn window(&self) -> Duration {
        self.window
    }
}

/// A Retry-After value in whole seconds: rounded up, and at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_over_the_limit_waits_for_the_oldest_to_leave_the_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(limiter.check("safedns", t0 + Duration::from_millis(i * 100)), Ok(()));
        }
        let wait = limiter.check("safedns", t0 + Duration::from_millis(250)).unwrap_err();
        assert_eq!(wait, Duration::from_millis(750));
        assert_eq!(retry_after_secs(wait), 1);
        // Another integration has its own budget.
        assert_eq!(limiter.check("acronis", t0 + Duration::from_millis(250)), Ok(()));
        // Once the first request is a full window old, one more fits.
        assert_eq!(limiter.check("safedns", t0 + Duration::from_millis(1000)), Ok(()));
        assert!(limiter.check("safedns", t0 + Duration::from_millis(1001)).is_err());
    }

    #[test]
    fn refused_requests_do_not_count() {
        let limiter = RateLimiter::new(1, Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(limiter.check("v", t0).is_ok());
        for s in 1..5 {
            assert!(limiter.check("v", t0 + Duration::from_secs(s)).is_err());
        }
        assert!(limiter.check("v", t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3600)), 3600);
    }
}
