//! Time as the executor sees it: the wall clock (for `Retry-After` dates), a monotonic clock
//! (for rate windows) and sleeping.
//!
//! Everything in `http` that waits or reads the time goes through [`Clock`], so tests and the
//! benchmark run retries and rate limits on a [`ManualClock`] without real multi-second
//! sleeps. Nothing here may call `std::thread::sleep`: sleeping must never block a runtime
//! worker.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// A sleep in progress.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The executor's source of time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The wall clock, in UTC.
    fn now(&self) -> SystemTime;

    /// Time since a fixed origin; never goes backwards.
    fn monotonic(&self) -> Duration;

    /// Waits `duration`.
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// The real clock: `SystemTime`, `Instant` and `tokio::time::sleep`.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock { origin: Instant::now() }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when slept on or advanced, and records every sleep.
///
/// A sleep returns at once after moving both clocks forward by its duration, so a test can
/// assert exactly how long the executor chose to wait.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<ManualState>,
}

#[derive(Debug)]
struct ManualState {
    now: SystemTime,
    monotonic: Duration,
    sleeps: Vec<Duration>,
}

impl ManualClock {
    /// A clock whose wall time starts at `now`.
    pub fn new(now: SystemTime) -> ManualClock {
        ManualClock {
            state: Mutex::new(ManualState { now, monotonic: Duration::ZERO, sleeps: Vec::new() }),
        }
    }

    /// Moves both clocks forward without recording a sleep.
    pub fn advance(&self, duration: Duration) {
        let mut state = self.lock();
        state.now += duration;
        state.monotonic += duration;
    }

    /// Every sleep so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.lock().sleeps.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.lock().now
    }

    fn monotonic(&self) -> Duration {
        self.lock().monotonic
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.lock();
        state.now += duration;
        state.monotonic += duration;
        state.sleeps.push(duration);
        Box::pin(std::future::ready(()))
    }
}
