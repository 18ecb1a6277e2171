//! What the emulator was asked and what it answered, for tests to assert on: every request
//! with its method, path, decoded query, headers, body, status and the fault applied. The log
//! never changes what the emulator answers.

use crate::fault_rules::path_matches;
use crate::request_log::{self, Entry, first_named};

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
        first_named(&self.query, name)
    }

    /// The first header named `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }

    /// Whether the path matches `pattern` (as in `FaultRule::new`).
    pub fn matches(&self, pattern: &str) -> bool {
        path_matches(pattern, self.path.trim_start_matches('/'))
    }
}

/// Counted per path as sent.
impl Entry for LoggedRequest {
    fn counted_as(&self) -> &str {
        &self.path
    }
}

pub(crate) type RequestLog = request_log::RequestLog<LoggedRequest>;
