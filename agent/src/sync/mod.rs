//! The sync engine: keeps the journal in step with the PSA, stream by stream, and writes
//! decided changes back through the outbox.
//!
//! `store` owns the journal side (pages with checkpoints, retiring), `engine` the order of
//! streams and their concurrency, `outbox` the exactly-once writes, `psa` the trait the plugin
//! host implements, `progress` what a user watching sees.

pub mod engine;
pub mod outbox;
pub mod progress;
pub mod psa;
pub mod store;
