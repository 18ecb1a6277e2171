//! A HaloPSA REST API emulator: `/api/authinfo`, client-credentials tokens that expire after
//! a set number of requests or seconds, the client, item, recurring invoice and client
//! contract listings with Halo's shapes and paging (never more than 100 rows a page, whatever
//! `page_size` asks: case C01), one recurring invoice, the invoice upsert that deletes every
//! line it is not sent and refuses `95.0` as an id, a request log, and armed faults (429,
//! 5xx, expired tokens, truncated bodies, a `record_count` that disagrees with the rows).
//!
//! ```no_run
//! use tally_tests::halopsa::{Fault, FaultRule, HaloData, HaloEmulator, TokenPolicy};
//!
//! let halo = HaloEmulator::start(HaloData::generate(7, 250));
//! halo.set_token_policy(TokenPolicy::requests(2));
//! halo.inject(FaultRule::new("api/client", Fault::CountMismatch(10)).on_page(3));
//! // point the client at halo.base_url() with halo.client_id() and halo.client_secret(),
//! // run it, then:
//! for request in halo.requests() {
//!     println!("{} {} {:?} -> {}", request.method, request.path, request.query, request.status);
//! }
//! ```

mod api;
mod faults;
mod model;
mod render;
mod request_log;
mod server;
mod tokens;
mod upsert;

use crate::lock;

pub use api::{DEFAULT_PAGE_SIZE, PAGE_CAP};
pub use faults::{Fault, FaultRule, Times};
pub use model::{Client, Contract, HaloData, InvoiceLine, Item, RecurringInvoice};
pub use request_log::LoggedRequest;
pub use server::HaloEmulator;
pub use tokens::{Credentials, TokenPolicy};
