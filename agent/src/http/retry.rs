//! When to try a request again and how long to wait first: exponential back-off with full
//! jitter, and `Retry-After` in both of its forms (case C07).
//!
//! `Retry-After` is either a number of seconds or an HTTP-date. A value made only of digits is
//! read as seconds and never reaches the date parser; a date in the past counts as zero; every
//! wait is capped; a header that is neither form falls back to back-off. This module decides
//! waits only: it never sleeps and never sends.

use std::time::{Duration, SystemTime};

/// How many times a request is sent and how long the waits between tries may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends of one request, the first included.
    pub max_attempts: u32,
    /// The ceiling of the first back-off.
    pub base_delay: Duration,
    /// The largest back-off.
    pub max_delay: Duration,
    /// The largest wait a `Retry-After` (or a plugin's `retry_after_seconds`) can ask for.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The longest back-off before retry number `retry` (1 for the first retry).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Full jitter: a uniformly random wait between zero and the ceiling, so that clients
    /// throttled together do not come back together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling))
    }

    /// The wait before retry number `retry` after a response carrying `retry_after`.
    pub fn wait(&self, retry: u32, retry_after: Option<&str>, now: SystemTime) -> Wait {
        match retry_after.map(|value| parse_retry_after(value, now)) {
            Some(RetryAfter::Wait(wait)) => Wait::RetryAfter(wait.min(self.max_retry_after)),
            Some(RetryAfter::Malformed) => Wait::Malformed(self.backoff(retry)),
            None => Wait::Backoff(self.backoff(retry)),
        }
    }

    /// A server-requested wait in whole seconds, capped.
    pub fn capped_seconds(&self, seconds: u64) -> Duration {
        Duration::from_secs(seconds).min(self.max_retry_after)
    }
}

/// A decided wait and why it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// What the server asked for (capped).
    RetryAfter(Duration),
    /// No `Retry-After`: back-off with jitter.
    Backoff(Duration),
    /// A `Retry-After` that is neither seconds nor an HTTP-date: back-off with jitter.
    Malformed(Duration),
}

impl Wait {
    pub fn duration(self) -> Duration {
        match self {
            Wait::RetryAfter(d) | Wait::Backoff(d) | Wait::Malformed(d) => d,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Wait::RetryAfter(_) => "retry-after",
            Wait::Backoff(_) => "backoff",
            Wait::Malformed(_) => "malformed retry-after, backoff",
        }
    }
}

/// A `Retry-After` value, read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Wait(Duration),
    Malformed,
}

/// Reads a `Retry-After` value as of `now`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> RetryAfter {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Seconds. A number too large for u64 is still a (huge) number of seconds.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return RetryAfter::Wait(Duration::from_secs(seconds));
    }
    if value.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        // "1.5", "-1", "10s": numbers an HTTP-date can never start with.
        return RetryAfter::Malformed;
    }
    match httpdate::parse_http_date(value) {
        Ok(at) => RetryAfter::Wait(at.duration_since(now).unwrap_or(Duration::ZERO)),
        Err(_) => RetryAfter::Malformed,
    }
}

/// Whether a status means "the server did not take the request; later may work".
///
/// 429 and 503 are refusals; 502 and 504 come from a gateway that may have forwarded the
/// request, so they are retried only for requests that are safe to replay. A 500 is left to the
/// plugin, which knows whether its API uses 500 for transient faults.
pub fn retryable_status(status: u16, server_errors: bool, replay_safe: bool) -> bool {
    match status {
        429 => true,
        503 => server_errors,
        502 | 504 => server_errors && replay_safe,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        httpdate::parse_http_date(text).unwrap()
    }

    #[test]
    fn c07_seconds_are_read_as_seconds_not_as_a_date() {
        let now = at("Wed, 21 Oct 2026 07:27:55 GMT");
        assert_eq!(parse_retry_after("120", now), RetryAfter::Wait(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 2 ", now), RetryAfter::Wait(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0", now), RetryAfter::Wait(Duration::ZERO));
    }

    #[test]
    fn c07_http_date_is_the_time_until_that_date() {
        let now = at("Wed, 21 Oct 2026 07:27:55 GMT");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now),
            RetryAfter::Wait(Duration::from_secs(5))
        );
    }

    #[test]
    fn c07_past_date_counts_as_zero() {
        let now = at("Wed, 21 Oct 2026 07:27:55 GMT");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now),
            RetryAfter::Wait(Duration::ZERO)
        );
    }

    #[test]
    fn c07_malformed_values_fall_back() {
        let now = SystemTime::UNIX_EPOCH;
        for value in ["", "soon", "1.5", "-1", "10s", "Wed, 32 Oct 2026 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(value, now), RetryAfter::Malformed, "{value:?}");
        }
        let policy = RetryPolicy::default();
        let wait = policy.wait(3, Some("soon"), now);
        assert!(matches!(wait, Wait::Malformed(d) if d <= policy.backoff_ceiling(3)), "{wait:?}");
    }

    #[test]
    fn c07_waits_are_capped() {
        let policy = RetryPolicy::default();
        let now = at("Wed, 21 Oct 2026 07:27:55 GMT");
        assert_eq!(policy.wait(1, Some("86400"), now), Wait::RetryAfter(Duration::from_secs(300)));
        let far = policy.wait(1, Some("99999999999999999999999"), now);
        assert_eq!(far, Wait::RetryAfter(Duration::from_secs(300)));
        let date = policy.wait(1, Some("Thu, 22 Oct 2026 07:28:00 GMT"), now);
        assert_eq!(date, Wait::RetryAfter(Duration::from_secs(300)));
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_ceiling() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(500));
        assert_eq!(policy.backoff_ceiling(2), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(4), Duration::from_secs(4));
        assert_eq!(policy.backoff_ceiling(40), Duration::from_secs(30));
        for retry in 1..8 {
            assert!(policy.backoff(retry) <= policy.backoff_ceiling(retry));
        }
    }

    #[test]
    fn statuses_that_may_be_retried() {
        assert!(retryable_status(429, false, false));
        assert!(retryable_status(503, true, false));
        assert!(!retryable_status(503, false, true));
        assert!(retryable_status(502, true, true));
        assert!(!retryable_status(504, true, false));
        assert!(!retryable_status(500, true, true));
        assert!(!retryable_status(401, true, true));
    }
}
