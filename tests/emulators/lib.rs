//! Emulators of the PSAs tally talks to, with the fixtures they serve. Each emulator is a real
//! HTTP server on 127.0.0.1, started in-process by the workspace tests, by `tally demo` and by
//! the benchmark, so the agent and its plugins run against the same requests and answers they
//! would meet in the field, faults included. Emulators never reach beyond the loopback address.

// serde_json's `json!` recurses once per key; the ConnectWise records are wide.
#![recursion_limit = "256"]

pub mod autotask;
pub mod connectwise;
pub mod halopsa;

mod delay;
mod fault_rules;
mod handle;
mod names;
mod origin;
mod request_log;
mod respond;
mod serve;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, carrying on after a panic elsewhere poisoned it: an emulator's data stays
/// usable for the assertions that follow a failed test step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
