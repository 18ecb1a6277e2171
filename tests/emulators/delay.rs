//! A delay that handlers read on every request while a test changes it (added latency, a
//! counter released late), kept in an atomic so that neither side waits on a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A duration to the microsecond, zero until set; longer than `u64::MAX` µs reads as that.
#[derive(Default)]
pub(crate) struct Delay(AtomicU64);

impl Delay {
    pub(crate) fn get(&self) -> Duration {
        Duration::from_micros(self.0.load(Ordering::Relaxed))
    }

    pub(crate) fn set(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.0.store(micros, Ordering::Relaxed);
    }
}
