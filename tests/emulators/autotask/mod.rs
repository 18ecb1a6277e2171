//! An Autotask REST API emulator: companies, services, recurring service contracts, contract
//! services and their unit rows with Autotask's JSON shapes, the zone lookup, POST queries with
//! Autotask's filter language, pages of at most 500 continued by POSTing the same body to
//! `nextPageUrl` (a GET gets 405), Autotask's credential quirks, the thread threshold of three
//! requests per endpoint, an hourly threshold, contract service adjustments that split unit
//! rows by effective date, a request log, and armed faults (429, 500 once or always, truncated
//! bodies, a 500 after the write landed).
//!
//! ```no_run
//! use tally_tests::autotask::{AtData, AutotaskEmulator, Fault, FaultRule};
//!
//! let at = AutotaskEmulator::start(AtData::sample());
//! at.inject(FaultRule::new("Companies", Fault::server_error()).on_continuation());
//! // point the adapter at at.zone_discovery_url() with at.username(), at.secret() and
//! // at.integration_code(), run it, then:
//! for request in at.requests() {
//!     println!("{} {} -> {:?}", request.method, request.path, request.status);
//! }
//! ```

mod api;
mod faults;
mod filter;
mod fixtures;
mod model;
mod render;
mod request_log;
mod server;
mod state;

use crate::lock;

pub use api::THREAD_THRESHOLD_TEXT;
pub use faults::{Fault, FaultRule, Times};
pub use filter::{Filter, Op, parse as parse_filter};
pub use fixtures::{AtData, sample_ids};
pub use model::{
    Adjustment, Company, Contract, ContractService, Service, UnitRow, company_type,
    contract_status, contract_type,
};
pub use render::{format_date, format_instant};
pub use request_log::LoggedRequest;
pub use server::{AutotaskEmulator, Credentials, THREAD_LIMIT, ZONE_PATH};
pub use state::{Entity, MAX_RECORDS, Refusal, State, WriteCounts};
