//! The sync engine: keeps the journal in step with the PSA, stream by stream.

pub mod store;
