//! What the emulator was asked and what it answered, for tests to assert on: every request with
//! its method, path, raw and decoded query, headers, body, status (none when the connection was
//! closed without an answer), the fault applied and when it arrived; plus a count per path, kept
//! even while entries are switched off for the benchmark. The log never changes what the
//! emulator answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use time::OffsetDateTime;

use crate::fault_rules::path_matches;
use crate::lock;

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent, e.g. `/v4_6_release/apis/3.0/company/companies`.
    pub path: String,
    /// The path relative to the API root, e.g. `company/companies` (see `FaultRule::new`).
    pub api_path: String,
    /// The query string exactly as sent, without the `?`.
    pub raw_query: String,
    /// The query decoded once (`+` as space, then percent-decoding), in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// `None` when the connection was closed without an answer.
    pub status: Option<u16>,
    /// The name of the fault applied, if any (see `Fault::name`).
    pub fault: Option<&'static str>,
    /// When the request arrived, in UTC.
    pub received_at: OffsetDateTime,
}

impl LoggedRequest {
    /// The first decoded query value named `name`, ignoring case.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first header named `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
    by_path: Mutex<BTreeMap<String, usize>>,
    /// Keep entries (counters are always kept); the benchmark turns this off.
    disabled: AtomicBool,
}

impl RequestLog {
    pub fn record(&self, entry: LoggedRequest) {
        *lock(&self.by_path).entry(entry.path.clone()).or_default() += 1;
        if !self.disabled.load(Ordering::Relaxed) {
            lock(&self.entries).push(entry);
        }
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).clone()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
        lock(&self.by_path).clear();
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.disabled.store(!enabled, Ordering::Relaxed);
    }

    pub fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.by_path).clone()
    }

    /// Requests whose API path matches `pattern` (as in `FaultRule::new`), among the logged
    /// entries' paths counted so far.
    pub fn count_matching(&self, pattern: &str, api_path_of: impl Fn(&str) -> String) -> usize {
        lock(&self.by_path)
            .iter()
            .filter(|(path, _)| path_matches(pattern, &api_path_of(path)))
            .map(|(_, n)| n)
            .sum()
    }
}
