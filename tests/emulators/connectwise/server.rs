//! The emulator handle: it serves the ConnectWise router on a loopback port (see `crate::serve`)
//! and stops when dropped. Through the handle a test reads the log, arms faults and reads or
//! changes the data while a sync runs; every such call takes the same lock the handlers take.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use time::OffsetDateTime;

use super::api;
use super::faults::{Fault, FaultBook, PathScope};
use super::fixtures::CwData;
use super::lock;
use super::model::{Addition, Agreement, CatalogItem, Company};
use super::request_log::{LoggedRequest, RequestLog};
use super::state::{RecordRef, State, WriteCounts};
use crate::delay::Delay;
use crate::handle::{Emulator, SharedState};
use crate::origin::Origin;
use crate::serve::Listener;

/// The codebase `/login/companyinfo` reports and the API is served under.
pub const CODEBASE: &str = "v4_6_release/";

/// What a client must present: `Authorization: Basic base64("{company_id}+{public_key}:
/// {private_key}")` and a `clientId` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub company_id: String,
    pub public_key: String,
    pub private_key: String,
    pub client_id: String,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            company_id: "tallydemo".to_owned(),
            public_key: "Xq3pK7uVd2LmN9rT".to_owned(),
            private_key: "b8Fh2JwQ6sYz4CkE".to_owned(),
            client_id: "5f1c9e2a-7b3d-4e8f-9a60-2c4d8b1e7f35".to_owned(),
        }
    }
}

impl Credentials {
    /// The `Authorization` header value these credentials make.
    pub fn authorization(&self) -> String {
        let user = format!("{}+{}:{}", self.company_id, self.public_key, self.private_key);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user))
    }
}

/// What the server and the handle share.
pub struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) log: RequestLog,
    pub(crate) faults: FaultBook,
    pub(crate) credentials: Credentials,
    pub(crate) codebase: String,
    pub(crate) latency: Delay,
    /// The scheme and host of `Link` and `_href` URLs.
    pub(crate) origin: Origin,
}

impl SharedState for Shared {
    type Entry = LoggedRequest;
    type Scope = PathScope;
    type Fault = Fault;

    fn log(&self) -> &RequestLog {
        &self.log
    }

    fn faults(&self) -> &FaultBook {
        &self.faults
    }
}

/// A running ConnectWise PSA emulator; dropping it stops the server.
pub type ConnectWiseEmulator = Emulator<Shared>;

impl ConnectWiseEmulator {
    /// Starts an emulator serving `fixture` with the default credentials.
    ///
    /// # Panics
    ///
    /// When no loopback port or runtime can be had; use `try_start` to handle that.
    pub fn start(fixture: CwData) -> ConnectWiseEmulator {
        match ConnectWiseEmulator::try_start(fixture, Credentials::default()) {
            Ok(emulator) => emulator,
            Err(e) => panic!("cannot start the ConnectWise emulator: {e}"),
        }
    }

    /// Starts an emulator serving `fixture` that accepts `credentials`.
    pub fn try_start(fixture: CwData, credentials: Credentials) -> io::Result<ConnectWiseEmulator> {
        let listener = Listener::bind()?;
        let addr = listener.addr();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(fixture)),
            log: RequestLog::default(),
            faults: FaultBook::default(),
            credentials,
            codebase: CODEBASE.to_owned(),
            latency: Delay::default(),
            origin: Origin::new(addr),
        });
        let router = api::router(shared.clone());
        Emulator::serve(listener, "cw-emulator", shared, router)
    }

    /// `127.0.0.1:PORT`, the host part of the site URL.
    pub fn site(&self) -> String {
        self.addr.to_string()
    }

    /// `v4_6_release/`, as `/login/companyinfo` reports it.
    pub fn codebase(&self) -> &str {
        &self.shared.codebase
    }

    /// `http://127.0.0.1:PORT/v4_6_release/apis/3.0`
    pub fn api_url(&self) -> String {
        format!("{}/{}apis/3.0", self.base_url(), self.shared.codebase)
    }

    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    pub fn company_id(&self) -> &str {
        &self.shared.credentials.company_id
    }

    pub fn public_key(&self) -> &str {
        &self.shared.credentials.public_key
    }

    pub fn private_key(&self) -> &str {
        &self.shared.credentials.private_key
    }

    pub fn client_id(&self) -> &str {
        &self.shared.credentials.client_id
    }

    /// The `Authorization` header value the emulator accepts.
    pub fn authorization(&self) -> String {
        self.shared.credentials.authorization()
    }

    // Request log.

    /// Requests received per path as sent (e.g. `/v4_6_release/apis/3.0/company/companies`).
    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        self.shared.log.counts()
    }

    /// Requests received whose API path matches `pattern` (as in `FaultRule::new`).
    pub fn request_count(&self, pattern: &str) -> usize {
        let prefix = format!("/{}apis/3.0/", self.shared.codebase);
        self.shared.log.count_matching(pattern, |path| {
            path.strip_prefix(&prefix).unwrap_or(path.trim_start_matches('/'))
        })
    }

    /// Keeps (the default) or stops keeping log entries; counters are always kept.
    pub fn set_logging(&self, enabled: bool) {
        self.shared.log.set_enabled(enabled);
    }

    // Timing.

    /// A delay added to every request before it is handled (default none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.latency.set(latency);
    }

    /// Makes `Link` and `_href` URLs start with `origin` (e.g. `http://other.example`) instead of
    /// the host the client addressed, to test that a client refuses to follow them; `None`
    /// restores the default.
    pub fn set_link_origin(&self, origin: Option<&str>) {
        self.shared.origin.force(origin);
    }

    // Data.

    /// Runs `f` on the data under the lock, for changes that must happen at once.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.shared.state))
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> CwData {
        lock(&self.shared.state).snapshot()
    }

    /// The PATCH and POST writes applied through the API.
    pub fn writes(&self) -> WriteCounts {
        lock(&self.shared.state).writes
    }

    pub fn company(&self, id: i64) -> Option<Company> {
        lock(&self.shared.state).company(id).cloned()
    }

    pub fn catalog_item(&self, id: i64) -> Option<CatalogItem> {
        lock(&self.shared.state).catalog_item(id).cloned()
    }

    pub fn agreement(&self, id: i64) -> Option<Agreement> {
        lock(&self.shared.state).agreement(id).cloned()
    }

    pub fn addition(&self, agreement_id: i64, id: i64) -> Option<Addition> {
        lock(&self.shared.state).addition(agreement_id, id).cloned()
    }

    /// The additions of one agreement, in id order.
    pub fn additions(&self, agreement_id: i64) -> Vec<Addition> {
        lock(&self.shared.state).additions_of(agreement_id).cloned().collect()
    }

    /// Adds or replaces a company exactly as given, `last_updated` included.
    pub fn add_company(&self, company: Company) {
        lock(&self.shared.state).put_company(company);
    }

    pub fn add_catalog_item(&self, item: CatalogItem) {
        lock(&self.shared.state).put_catalog_item(item);
    }

    pub fn add_agreement(&self, agreement: Agreement) {
        lock(&self.shared.state).put_agreement(agreement);
    }

    pub fn add_addition(&self, addition: Addition) {
        lock(&self.shared.state).put_addition(addition);
    }

    /// Changes a company as a user editing it in ConnectWise would: `lastUpdated` moves forward.
    /// False when there is no such company.
    pub fn update_company(&self, id: i64, change: impl FnOnce(&mut Company)) -> bool {
        lock(&self.shared.state).write_company(id, change)
    }

    pub fn update_catalog_item(&self, id: i64, change: impl FnOnce(&mut CatalogItem)) -> bool {
        lock(&self.shared.state).write_catalog_item(id, change)
    }

    pub fn update_agreement(&self, id: i64, change: impl FnOnce(&mut Agreement)) -> bool {
        lock(&self.shared.state).write_agreement(id, change)
    }

    pub fn update_addition(
        &self,
        agreement_id: i64,
        id: i64,
        change: impl FnOnce(&mut Addition),
    ) -> bool {
        lock(&self.shared.state).write_addition(agreement_id, id, change)
    }

    pub fn remove_company(&self, id: i64) -> Option<Company> {
        lock(&self.shared.state).remove_company(id)
    }

    pub fn remove_catalog_item(&self, id: i64) -> Option<CatalogItem> {
        lock(&self.shared.state).remove_catalog_item(id)
    }

    /// Removes an agreement and its additions.
    pub fn remove_agreement(&self, id: i64) -> Option<Agreement> {
        lock(&self.shared.state).remove_agreement(id)
    }

    pub fn remove_addition(&self, agreement_id: i64, id: i64) -> Option<Addition> {
        lock(&self.shared.state).remove_addition(agreement_id, id)
    }

    /// Sets `deletedFlag` as a ConnectWise merge does, leaving status and `lastUpdated` alone
    /// (case C12).
    pub fn set_company_deleted_flag(&self, id: i64, deleted: bool) -> bool {
        lock(&self.shared.state).set_company_deleted_flag(id, deleted)
    }

    /// Sets a record's `lastUpdated` to `at` (kept to the millisecond), e.g. to make a row
    /// appear behind a client's cursor (cases C16, C17).
    pub fn set_last_updated(&self, record: RecordRef, at: OffsetDateTime) -> bool {
        lock(&self.shared.state).set_last_updated(record, at)
    }
}
