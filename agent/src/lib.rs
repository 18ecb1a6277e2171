//! tally: a local-first billing reconciliation agent for managed service providers.
//!
//! The binary is thin (`main.rs`); this library holds every concern in its own module. See
//! ARCHITECTURE.md at the repository root for the map and the invariants.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod http;
pub mod intake;
pub mod journal;
pub mod logging;
pub mod mapping;
pub mod model;
pub mod plugin;
pub mod psa;
pub mod reconcile;
pub mod report;
pub mod status;
pub mod sync;
