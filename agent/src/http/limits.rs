//! How many requests a session may have in flight, per session and per endpoint, and how many
//! it may start per minute and per hour.
//!
//! A request holds its permits from before it is sent until its body is fully read (case C09:
//! a server releases its own slot only after the response is out, so freeing ours at the
//! headers overruns its limit). Permits are never held while waiting to retry. The rate limit
//! is a sliding window: a request that would exceed it waits for the oldest request to leave
//! the window, so the agent slows down before a PSA's threshold rather than after.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::clock::Clock;

/// Concurrency limits of one session.
#[derive(Debug)]
pub struct Concurrency {
    session: Arc<Semaphore>,
    per_endpoint: Option<usize>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// The permits one request holds while in flight.
#[derive(Debug)]
pub struct Permits {
    _endpoint: Option<OwnedSemaphorePermit>,
    _session: OwnedSemaphorePermit,
}

impl Concurrency {
    /// `max` requests in flight in the session, `per_endpoint` against one endpoint. Zero counts
    /// as one: a limit of zero would stop every request forever.
    pub fn new(max: u32, per_endpoint: Option<u32>) -> Concurrency {
        Concurrency {
            session: Arc::new(Semaphore::new(max.max(1) as usize)),
            per_endpoint: per_endpoint.map(|n| n.max(1) as usize),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot on `endpoint`, then for one in the session (in that order, so a request
    /// queued behind a busy endpoint does not hold a session slot others could use).
    pub async fn acquire(&self, endpoint: &str) -> Permits {
        let endpoint = match self.per_endpoint {
            Some(limit) => {
                let semaphore = {
                    let mut endpoints =
                        self.endpoints.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    endpoints
                        .entry(endpoint.to_string())
                        .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                        .clone()
                };
                Some(semaphore.acquire_owned().await.expect("the semaphore is never closed"))
            }
            None => None,
        };
        let session =
            self.session.clone().acquire_owned().await.expect("the semaphore is never closed");
        Permits { _endpoint: endpoint, _session: session }
    }
}

/// Requests allowed per window, as a sliding log of send times.
#[derive(Debug)]
pub struct RateLimit {
    windows: Mutex<Vec<Window>>,
}

#[derive(Debug)]
struct Window {
    span: Duration,
    limit: usize,
    sent: VecDeque<Duration>,
}

impl RateLimit {
    pub fn new(per_minute: Option<u32>, per_hour: Option<u32>) -> RateLimit {
        let windows =
            [(Duration::from_secs(60), per_minute), (Duration::from_secs(3600), per_hour)]
                .into_iter()
                .filter_map(|(span, limit)| {
                    limit.map(|limit| Window {
                        span,
                        limit: limit.max(1) as usize,
                        sent: VecDeque::new(),
                    })
                })
                .collect();
        RateLimit { windows: Mutex::new(windows) }
    }

    /// Waits until one more request fits in every window, and counts it as sent.
    pub async fn acquire(&self, clock: &dyn Clock) {
        loop {
            let wait = {
                let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                let now = clock.monotonic();
                let mut wait = Duration::ZERO;
                for window in windows.iter_mut() {
                    while window.sent.front().is_some_and(|&at| at + window.span <= now) {
                        window.sent.pop_front();
                    }
                    if window.sent.len() >= window.limit {
                        let oldest = window.sent[window.sent.len() - window.limit];
                        wait = wait.max(oldest + window.span - now);
                    }
                }
                if wait.is_zero() {
                    for window in windows.iter_mut() {
                        window.sent.push_back(now);
                    }
                    return;
                }
                wait
            };
            tracing::debug!(wait_ms = wait.as_millis() as u64, "rate limit: waiting");
            clock.sleep(wait).await;
        }
    }

    /// Requests counted in the last hour (or minute, when only a per-minute limit is set).
    pub fn recent(&self) -> usize {
        let windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows.iter().map(|w| w.sent.len()).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::clock::ManualClock;

    #[tokio::test]
    async fn rate_limit_waits_for_the_oldest_request_to_leave_the_window() {
        let clock = ManualClock::new(std::time::SystemTime::UNIX_EPOCH);
        let limit = RateLimit::new(Some(2), None);
        for _ in 0..5 {
            limit.acquire(&clock).await;
        }
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(60), Duration::from_secs(60)]);
    }

    #[tokio::test]
    async fn hourly_limit_applies_with_the_minute_limit() {
        let clock = ManualClock::new(std::time::SystemTime::UNIX_EPOCH);
        let limit = RateLimit::new(Some(10), Some(3));
        for _ in 0..4 {
            limit.acquire(&clock).await;
        }
        assert_eq!(clock.sleeps(), vec![Duration::from_secs(3600)]);
        assert_eq!(limit.recent(), 1);
    }
}
