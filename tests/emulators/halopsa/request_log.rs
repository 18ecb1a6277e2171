//! What the emulator was asked and what it answered, for tests to assert on: every request
//! with its method, path, decoded query, headers, body, status and the fault applied. The log
//! never changes what the emulator answers.

use std::sync::Mutex;

use crate::fault_rules::path_matches;
use crate::lock;

/// One request as the emulator saw it.
#[derive(Clone, Debug)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent, e.g. `/api/RecurringInvoice/-94`.
    pub path: String,
    /// The query decoded (`+` as space, then percent-decoding), in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub status: u16,
    /// The name of the fault applied, if any (see `Fault::name`).
    pub fault: Option<&'static str>,
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

    /// Whether the path matches `pattern` (as in `FaultRule::new`).
    pub fn matches(&self, pattern: &str) -> bool {
        path_matches(pattern, self.path.trim_start_matches('/'))
    }
}

#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<LoggedRequest>>,
}

impl RequestLog {
    pub fn record(&self, entry: LoggedRequest) {
        lock(&self.entries).push(entry);
    }

    pub fn entries(&self) -> Vec<LoggedRequest> {
        lock(&self.entries).clone()
    }

    pub fn clear(&self) {
        lock(&self.entries).clear();
    }

    /// Requests whose path matches `pattern` (as in `FaultRule::new`).
    pub fn count(&self, pattern: &str) -> usize {
        lock(&self.entries).iter().filter(|entry| entry.matches(pattern)).count()
    }
}
