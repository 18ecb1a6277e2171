//! What the Autotask emulator was asked and what it answered, for tests to assert on: every
//! request with its method, path, query, headers, body, the entity it addressed, whether it was
//! a continuation page, the status, the fault applied and when it arrived; plus a count per
//! entity. The log never changes what the emulator answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use time::OffsetDateTime;

use super::lock;

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent, e.g. `/ATServicesRest/V1.0/Companies/query`.
    pub path: String,
    /// The query decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `Companies`, `ContractServiceAdjustments`, `zoneInformation`, … or the path when none.
    pub entity: String,
    /// A `…/query/next` page.
    pub continuation: bool,
    pub status: Option<u16>,
    pub fault: Option<&'static str>,
    pub received_at: OffsetDateTime,
}

impl LoggedRequest {
    /// The first header named `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first query value named `name`, ignoring case.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
    by_entity: Mutex<BTreeMap<String, usize>>,
    /// Keep entries (counters are always kept); the benchmark turns this off.
    disabled: AtomicBool,
}

impl RequestLog {
    pub fn record(&self, entry: LoggedRequest) {
        *lock(&self.by_entity).entry(entry.entity.clone()).or_default() += 1;
        if !self.disabled.load(Ordering::Relaxed) {
            lock(&self.entries).push(entry);
        }
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).clone()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
        lock(&self.by_entity).clear();
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.disabled.store(!enabled, Ordering::Relaxed);
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.by_entity).clone()
    }
}
