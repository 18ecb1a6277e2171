//! What the emulator was asked and what it answered, for tests to assert on: every request with
//! its method, path, raw and decoded query, headers, body, status (none when the connection was
//! closed without an answer), the fault applied and when it arrived; plus a count per path, kept
//! even while entries are switched off for the benchmark. The log never changes what the
//! emulator answers.

use time::OffsetDateTime;

use crate::request_log::{self, Entry, first_named};

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
        first_named(&self.query, name)
    }

    /// The first header named `name`, ignoring case.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_named(&self.headers, name)
    }
}

/// Counted per path as sent.
impl Entry for LoggedRequest {
    fn counted_as(&self) -> &str {
        &self.path
    }
}

pub(crate) type RequestLog = request_log::RequestLog<LoggedRequest>;
