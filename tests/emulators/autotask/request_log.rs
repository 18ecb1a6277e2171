//! What the Autotask emulator was asked and what it answered, for tests to assert on: every
//! request with its method, path, query, headers, body, the entity it addressed, whether it was
//! a continuation page, the status, the fault applied and when it arrived; plus a count per
//! entity. The log never changes what the emulator answers.

use time::OffsetDateTime;

use crate::request_log::{self, Entry, first_named};

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
        first_named(&self.headers, name)
    }

    /// The first query value named `name`, ignoring case.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        first_named(&self.query, name)
    }
}

/// Counted per entity.
impl Entry for LoggedRequest {
    fn counted_as(&self) -> &str {
        &self.entity
    }
}

pub(crate) type RequestLog = request_log::RequestLog<LoggedRequest>;
