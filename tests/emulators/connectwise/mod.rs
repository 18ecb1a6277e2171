//! A ConnectWise PSA (Manage) REST API emulator: companies, catalog items, agreements and
//! agreement additions with ConnectWise's JSON shapes, authentication, `conditions`, `orderBy`,
//! numbered and forward-only paging with `Link` headers, JSON Patch and POST writes that move
//! `_info.lastUpdated`, a request log, and armed faults (429, 5xx, slow, truncated, malformed,
//! dropped connections).
//!
//! ```no_run
//! use tally_tests::connectwise::{ConnectWiseEmulator, CwData, Fault, FaultRule};
//!
//! let cw = ConnectWiseEmulator::start(CwData::sample());
//! cw.inject(FaultRule::new("company/companies", Fault::rate_limited_secs(2)).on_page(2));
//! // point the client at cw.base_url() with cw.company_id(), cw.public_key(),
//! // cw.private_key() and cw.client_id(), run it, then:
//! for request in cw.requests() {
//!     println!("{} {}?{} -> {:?}", request.method, request.path, request.raw_query, request.status);
//! }
//! ```

mod api;
mod conditions;
mod errors;
mod faults;
mod fields;
mod fixtures;
mod model;
mod query;
mod render;
mod request_log;
mod server;
mod state;
mod timestamps;
mod writes;

use crate::lock;

pub use conditions::{ConditionError, parse as parse_conditions};
pub use faults::{Fault, FaultRule, RetryAfter, Times};
pub use fields::Record;
pub use fixtures::{CwData, sample_ids};
pub use model::{Addition, Agreement, BillCustomer, CatalogItem, Company, Reference};
pub use query::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use request_log::LoggedRequest;
pub use server::{CODEBASE, ConnectWiseEmulator, Credentials};
pub use state::{RecordRef, State, WriteCounts};
pub use timestamps::{format_instant, parse_instant};
pub use writes::API_MEMBER;
