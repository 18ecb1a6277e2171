//! The Autotask emulator handle: it serves the Autotask router on a loopback port (see
//! `crate::serve`) and stops when dropped. Through the handle a test reads the log, arms faults,
//! holds requests in flight (to meet the thread threshold deterministically), moves the tenant
//! to another zone, and reads or changes the data while a sync runs; every such call takes the
//! same lock the handlers take.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::{Date, OffsetDateTime};
use tokio::sync::watch;

use super::api;
use super::faults::{EntityScope, Fault, FaultBook};
use super::fixtures::AtData;
use super::lock;
use super::model::{Adjustment, Company, Contract, Service, UnitRow};
use super::request_log::{LoggedRequest, RequestLog};
use super::state::{State, WriteCounts};
use crate::delay::Delay;
use crate::handle::{Emulator, SharedState};
use crate::origin::Origin;
use crate::serve::Listener;

/// The zone's REST root path the emulator starts with, as Autotask's zones write it.
pub const ZONE_PATH: &str = "/ATServicesRest/";

/// Requests Autotask lets one integration have in flight against one endpoint.
pub const THREAD_LIMIT: usize = 3;

/// What a client must present in the `UserName`, `Secret` and `ApiIntegrationCode` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
    pub integration_code: String,
}

impl Default for Credentials {
    fn default() -> Credentials {
        Credentials {
            username: "api-tally@tallydemo.example".to_owned(),
            secret: "n4Qe$7vLw2Kp@9Zs".to_owned(),
            integration_code: "TALLYDEMO7Q3KX9M2PL4HRVB8N".to_owned(),
        }
    }
}

/// What the server and the handle share.
pub struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) log: RequestLog,
    pub(crate) faults: FaultBook,
    pub(crate) credentials: Credentials,
    /// The tenant's zone path, e.g. `/ATServicesRest/`.
    zone_path: Mutex<String>,
    /// The scheme and host of `nextPageUrl` and the zone URL.
    pub(crate) origin: Origin,
    pub(crate) latency: Delay,
    release_delay: Delay,
    /// Requests in flight per (integration code, entity).
    in_flight: Mutex<HashMap<(String, String), usize>>,
    /// `true` while requests are held before they are processed.
    paused: watch::Sender<bool>,
    /// Requests counted against the hourly threshold, and the threshold if one is set.
    hourly: Mutex<(u64, Option<u64>)>,
}

impl Shared {
    pub(crate) fn zone_path(&self) -> String {
        lock(&self.zone_path).clone()
    }

    /// Takes a slot for `entity`, or `None` when `THREAD_LIMIT` requests are in flight.
    pub(crate) fn acquire(self: &Arc<Self>, code: &str, entity: &str) -> Option<Slot> {
        let key = (code.to_owned(), entity.to_owned());
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.entry(key.clone()).or_default();
        if *count >= THREAD_LIMIT {
            return None;
        }
        *count += 1;
        Some(Slot { shared: Arc::clone(self), key: Some(key) })
    }

    fn release(&self, key: &(String, String)) {
        if let Some(count) = lock(&self.in_flight).get_mut(key) {
            *count = count.saturating_sub(1);
        }
    }

    /// Waits while requests are held (see [`AutotaskEmulator::pause`]).
    pub(crate) async fn wait_if_paused(&self) {
        let mut paused = self.paused.subscribe();
        let _ = paused.wait_for(|held| !*held).await;
    }

    /// Requests counted against the hourly threshold so far.
    pub(crate) fn requests_this_hour(&self) -> u64 {
        lock(&self.hourly).0
    }

    /// Counts one request against the hourly threshold; the threshold when it is exceeded.
    pub(crate) fn count_request(&self) -> Result<(), u64> {
        let mut hourly = lock(&self.hourly);
        hourly.0 += 1;
        match hourly.1 {
            Some(limit) if hourly.0 > limit => Err(limit),
            _ => Ok(()),
        }
    }
}

/// A request's place among the ones in flight on its endpoint; released on drop, after the
/// configured release delay (Autotask frees its counter a little after it answers, case C09).
pub struct Slot {
    shared: Arc<Shared>,
    key: Option<(String, String)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let delay = self.shared.release_delay.get();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !delay.is_zero() => {
                let shared = Arc::clone(&self.shared);
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    shared.release(&key);
                });
            }
            _ => self.shared.release(&key),
        }
    }
}

impl SharedState for Shared {
    type Entry = LoggedRequest;
    type Scope = EntityScope;
    type Fault = Fault;

    fn log(&self) -> &RequestLog {
        &self.log
    }

    fn faults(&self) -> &FaultBook {
        &self.faults
    }

    /// Lets held requests go, so that the server stops without waiting on them.
    fn stopping(&self) {
        self.paused.send_replace(false);
    }
}

/// A running Autotask REST API emulator; dropping it stops the server.
pub type AutotaskEmulator = Emulator<Shared>;

impl AutotaskEmulator {
    /// Starts an emulator serving `data` with the default credentials.
    ///
    /// # Panics
    ///
    /// When no loopback port or runtime can be had; use `try_start` to handle that.
    pub fn start(data: AtData) -> AutotaskEmulator {
        match AutotaskEmulator::try_start(data, Credentials::default()) {
            Ok(emulator) => emulator,
            Err(e) => panic!("cannot start the Autotask emulator: {e}"),
        }
    }

    /// Starts an emulator serving `data` that accepts `credentials`.
    pub fn try_start(data: AtData, credentials: Credentials) -> io::Result<AutotaskEmulator> {
        let listener = Listener::bind()?;
        let addr = listener.addr();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(data)),
            log: RequestLog::default(),
            faults: FaultBook::default(),
            credentials,
            zone_path: Mutex::new(ZONE_PATH.to_owned()),
            origin: Origin::new(addr),
            latency: Delay::default(),
            release_delay: Delay::default(),
            in_flight: Mutex::new(HashMap::new()),
            paused: watch::channel(false).0,
            hourly: Mutex::new((0, None)),
        });
        let router = api::router(shared.clone());
        Emulator::serve(listener, "at-emulator", shared, router)
    }

    /// The adapter's `zone_discovery_url`: `http://127.0.0.1:PORT/atservicesrest`.
    pub fn zone_discovery_url(&self) -> String {
        format!("{}/atservicesrest", self.base_url())
    }

    /// The zone `zoneInformation` reports: `http://127.0.0.1:PORT/ATServicesRest/`.
    pub fn zone_url(&self) -> String {
        format!("{}{}", self.base_url(), self.shared.zone_path())
    }

    /// `http://127.0.0.1:PORT/ATServicesRest/V1.0`
    pub fn api_url(&self) -> String {
        format!("{}V1.0", self.zone_url())
    }

    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    pub fn username(&self) -> &str {
        &self.shared.credentials.username
    }

    pub fn secret(&self) -> &str {
        &self.shared.credentials.secret
    }

    pub fn integration_code(&self) -> &str {
        &self.shared.credentials.integration_code
    }

    // Request log.

    /// Requests received per entity (`Companies`, `zoneInformation`, …).
    pub fn request_counts(&self) -> BTreeMap<String, usize> {
        self.shared.log.counts()
    }

    /// Requests received for `entity`, ignoring case.
    pub fn request_count(&self, entity: &str) -> usize {
        self.request_counts()
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(entity))
            .map(|(_, n)| n)
            .sum()
    }

    /// Keeps (the default) or stops keeping log entries; counters are always kept.
    pub fn set_logging(&self, enabled: bool) {
        self.shared.log.set_enabled(enabled);
    }

    // Limits and timing.

    /// A delay added to every request before it is handled (default none).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.latency.set(latency);
    }

    /// How long after answering a request still counts against the thread threshold (default
    /// none).
    pub fn set_release_delay(&self, delay: Duration) {
        self.shared.release_delay.set(delay);
    }

    /// Holds every API request that got past authentication and the thread threshold, still
    /// counting as in flight, until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// Requests in flight now against `entity`, for every integration code.
    pub fn in_flight(&self, entity: &str) -> usize {
        lock(&self.shared.in_flight)
            .iter()
            .filter(|((_, name), _)| name.eq_ignore_ascii_case(entity))
            .map(|(_, n)| n)
            .sum()
    }

    /// Refuses API requests beyond `limit` (counted from now) as the hourly threshold does;
    /// `None` lifts the threshold.
    pub fn set_request_threshold(&self, limit: Option<u64>) {
        *lock(&self.shared.hourly) = (0, limit);
    }

    /// Moves the tenant to the zone path `path` (e.g. `/zone2/ATServicesRest/`): the old path
    /// answers 401 from now on and `zoneInformation` names the new one.
    pub fn move_zone(&self, path: &str) {
        let path = format!("/{}/", path.trim_matches('/'));
        *lock(&self.shared.zone_path) = path;
    }

    /// Makes `nextPageUrl` and the zone URL start with `origin` (e.g. `http://other.example`)
    /// instead of the host the client addressed; `None` restores the default.
    pub fn set_link_origin(&self, origin: Option<&str>) {
        self.shared.origin.force(origin);
    }

    // Data.

    /// Runs `f` on the data under the lock, for changes that must happen at once.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.shared.state))
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> AtData {
        lock(&self.shared.state).snapshot()
    }

    /// The writes applied through the API.
    pub fn writes(&self) -> WriteCounts {
        lock(&self.shared.state).writes
    }

    /// The adjustments applied, fixtures' included, in order.
    pub fn adjustments(&self) -> Vec<Adjustment> {
        lock(&self.shared.state).adjustments.clone()
    }

    /// The unit rows of one contract service, by start date.
    pub fn unit_rows(&self, contract_service_id: i64) -> Vec<UnitRow> {
        lock(&self.shared.state).unit_rows_of(contract_service_id)
    }

    /// The units of a contract service on `date`.
    pub fn units_on(&self, contract_service_id: i64, date: Date) -> Option<i64> {
        lock(&self.shared.state).units_on(contract_service_id, date)
    }

    pub fn company(&self, id: i64) -> Option<Company> {
        lock(&self.shared.state).companies.get(&id).cloned()
    }

    pub fn service(&self, id: i64) -> Option<Service> {
        lock(&self.shared.state).services.get(&id).cloned()
    }

    pub fn contract(&self, id: i64) -> Option<Contract> {
        lock(&self.shared.state).contracts.get(&id).cloned()
    }

    /// Adds or replaces a company exactly as given.
    pub fn add_company(&self, company: Company) {
        lock(&self.shared.state).companies.insert(company.id, company);
    }

    /// Changes a company as a user would: `lastActivityDate` moves forward. False when there
    /// is no such company.
    pub fn update_company(&self, id: i64, change: impl FnOnce(&mut Company)) -> bool {
        let mut state = lock(&self.shared.state);
        let Some(company) = state.companies.get_mut(&id) else { return false };
        change(company);
        company.last_activity = next_stamp(company.last_activity);
        true
    }

    pub fn remove_company(&self, id: i64) -> Option<Company> {
        lock(&self.shared.state).companies.remove(&id)
    }

    /// Adds or replaces a service exactly as given.
    pub fn add_service(&self, service: Service) {
        lock(&self.shared.state).services.insert(service.id, service);
    }

    /// Changes a service: `lastModifiedDate` moves forward.
    pub fn update_service(&self, id: i64, change: impl FnOnce(&mut Service)) -> bool {
        let mut state = lock(&self.shared.state);
        let Some(service) = state.services.get_mut(&id) else { return false };
        change(service);
        service.last_modified = next_stamp(service.last_modified);
        true
    }

    pub fn add_contract(&self, contract: Contract) {
        lock(&self.shared.state).contracts.insert(contract.id, contract);
    }

    pub fn update_contract(&self, id: i64, change: impl FnOnce(&mut Contract)) -> bool {
        let mut state = lock(&self.shared.state);
        let Some(contract) = state.contracts.get_mut(&id) else { return false };
        change(contract);
        contract.id = id;
        true
    }

    /// Adds a contract service with `units` in every monthly period of its contract.
    pub fn add_line(&self, id: i64, contract_id: i64, service_id: i64, units: i64) {
        let mut state = lock(&self.shared.state);
        let mut data = AtData {
            services: state.services.values().cloned().collect(),
            contracts: state.contracts.values().cloned().collect(),
            units: state.units.values().next_back().cloned().into_iter().collect(),
            ..AtData::default()
        };
        data.add_line(id, contract_id, service_id, units);
        for service in data.contract_services {
            state.contract_services.insert(service.id, service);
        }
        for row in data.units.into_iter().filter(|row| row.contract_service_id == id) {
            state.put_unit_row(row);
        }
    }

    /// Applies an adjustment as the API would (the emulator's own clock as its time).
    pub fn adjust(
        &self,
        contract_id: i64,
        service_id: i64,
        unit_change: i64,
        effective: Date,
    ) -> Result<i64, String> {
        lock(&self.shared.state)
            .adjust(
                contract_id,
                service_id,
                None,
                unit_change,
                effective,
                OffsetDateTime::now_utc(),
            )
            .map_err(|refusal| refusal.message)
    }
}

/// The stamp a change gives a record last stamped `previous`: now, but always at least a
/// millisecond later than before.
fn next_stamp(previous: OffsetDateTime) -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let now = now - time::Duration::nanoseconds(i64::from(now.nanosecond() % 1_000_000));
    now.max(previous + time::Duration::milliseconds(1))
}
