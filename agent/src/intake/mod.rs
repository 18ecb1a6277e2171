//! Vendor intake: how vendor usage gets into the journal without a plugin. A Gradient-compatible
//! HTTP API that vendors push to (`api`), with partner keys (`keys`) checked from the
//! `GRADIENT-TOKEN` header (`auth`) and a per-integration request limit (`rate`); CSV import for
//! vendors without an API (`csv_import`); and the integration commands (`integrations`).
//!
//! Both routes store through `records`, under the same rules: accounts by the vendor's id,
//! services by name, usage as exact decimals with a short history. Intake never deletes vendor
//! data, never reads the PSA, and never writes the mapping file; it only asks reconciliation to
//! refresh once data is committed.

pub mod api;
pub mod auth;
pub mod csv_import;
pub mod fields;
pub mod integrations;
pub mod keys;
pub mod rate;
pub mod records;

pub use api::{IntakeState, router};
pub use integrations::{IntegrationRow, integration_rows};
