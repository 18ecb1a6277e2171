//! Faults a test arms on the emulator: throttling with `Retry-After` (seconds or HTTP-date),
//! ConnectWise 500s, 503s, slow answers, truncated, malformed or aborted bodies, and connections
//! closed without an answer (before or after the request took effect). A rule matches a request
//! by path pattern, and optionally by method, page number or any query parameter, and fires a set
//! number of times or always. This module only decides which fault applies; `api` carries it out.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

pub use crate::fault_rules::Times;
use crate::fault_rules::{self, Scope, path_matches};

/// The value of a `Retry-After` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// `Retry-After: 2`
    Seconds(u64),
    /// `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`
    Date(SystemTime),
    /// Sent as written, to test malformed values.
    Raw(String),
    /// No header at all.
    Absent,
}

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 Too Many Requests with the given `Retry-After`; nothing is processed.
    RateLimited(RetryAfter),
    /// A ConnectWise error response with this status and `{"code", "message"}` body; nothing is
    /// processed. See [`Fault::server_error`].
    ApiError { status: u16, code: String, message: String },
    /// 503 with the HTML page a load balancer sends; nothing is processed.
    ServiceUnavailable,
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Answer normally but send only the first half of the JSON body (status 200, a
    /// `Content-Length` that matches what is sent).
    TruncatedBody,
    /// Answer normally but replace the body with JSON that does not parse (status 200).
    MalformedBody,
    /// Announce the full body, send the first half, then close the connection.
    AbortMidBody,
    /// Close the connection without any answer; the request is not processed.
    DropConnection,
    /// Process the request (a PATCH or POST takes effect), then close the connection without
    /// any answer: the client cannot know its write landed.
    DropAfterProcessing,
    /// Send exactly this; nothing is processed.
    Respond { status: u16, headers: Vec<(String, String)>, body: String },
}

impl Fault {
    /// `429` with `Retry-After: <seconds>`.
    pub fn rate_limited_secs(seconds: u64) -> Fault {
        Fault::RateLimited(RetryAfter::Seconds(seconds))
    }

    /// `429` with `Retry-After: <HTTP-date>`.
    pub fn rate_limited_until(at: SystemTime) -> Fault {
        Fault::RateLimited(RetryAfter::Date(at))
    }

    /// The 500 ConnectWise sends when a record on the page holds bad data (case C04).
    pub fn server_error() -> Fault {
        Fault::ApiError {
            status: 500,
            code: "ConnectWiseApi".to_owned(),
            message: "String was not recognized as a valid Boolean.".to_owned(),
        }
    }

    /// A short name for the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RateLimited(_) => "rate_limited",
            Fault::ApiError { .. } => "api_error",
            Fault::ServiceUnavailable => "service_unavailable",
            Fault::Delay(_) => "delay",
            Fault::TruncatedBody => "truncated_body",
            Fault::MalformedBody => "malformed_body",
            Fault::AbortMidBody => "abort_mid_body",
            Fault::DropConnection => "drop_connection",
            Fault::DropAfterProcessing => "drop_after_processing",
            Fault::Respond { .. } => "respond",
        }
    }

    pub(crate) fn error_body(code: &str, message: &str) -> Value {
        json!({ "code": code, "message": message })
    }
}

/// A fault and the requests it applies to.
pub type FaultRule = fault_rules::FaultRule<PathScope, Fault>;

impl FaultRule {
    /// Fires `fault` once on the next request whose path matches `pattern`.
    ///
    /// The pattern is matched against the path after `/{codebase}apis/3.0/` (for example
    /// `company/companies` or `finance/agreements/*/additions/*`), or against the whole path
    /// without its leading `/` for other endpoints (`login/companyinfo/*`). `*` matches one
    /// segment, `**` any number of trailing segments; other segments match exactly, ignoring case.
    pub fn new(pattern: &str, fault: Fault) -> FaultRule {
        let scope = PathScope {
            pattern: pattern.trim_matches('/').to_owned(),
            query: Vec::new(),
            page: None,
        };
        FaultRule::once(scope, fault)
    }

    /// Only for this page number (a request without `page` is page 1).
    pub fn on_page(mut self, page: usize) -> FaultRule {
        self.scope.page = Some(page);
        self
    }

    /// Only for requests whose query has `name` (ignoring case) equal to `value` once decoded,
    /// for example `("pageId", "2000")`.
    pub fn with_query(mut self, name: &str, value: &str) -> FaultRule {
        self.scope.query.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// The requests a ConnectWise rule applies to: a path pattern, and optionally a page and query
/// parameters.
#[derive(Clone, Debug)]
pub struct PathScope {
    pattern: String,
    query: Vec<(String, String)>,
    page: Option<usize>,
}

impl Scope<FaultTarget<'_>> for PathScope {
    fn covers(&self, request: &FaultTarget<'_>) -> bool {
        if self.page.is_some_and(|p| p != request.page) {
            return false;
        }
        let query_ok = self.query.iter().all(|(name, value)| {
            request.query.iter().any(|(k, v)| k.eq_ignore_ascii_case(name) && v == value)
        });
        query_ok && path_matches(&self.pattern, request.path)
    }
}

/// What a rule is matched against, besides the method.
pub struct FaultTarget<'a> {
    /// The path relative to the API root (see [`FaultRule::new`]).
    pub path: &'a str,
    pub page: usize,
    pub query: &'a [(String, String)],
}

/// The armed rules, in the order they were added; the first match fires.
pub type FaultBook = fault_rules::FaultBook<PathScope, Fault>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(path_matches("company/companies", "company/companies"));
        assert!(path_matches("Company/Companies", "company/companies/"));
        assert!(!path_matches("company/companies", "company/companies/count"));
        assert!(path_matches("finance/agreements/*/additions", "finance/agreements/7/additions"));
        assert!(path_matches("finance/**", "finance/agreements/7/additions/3"));
        assert!(!path_matches("finance/agreements/*", "finance/agreements"));
    }

    #[test]
    fn counted_rules_run_out() {
        let book = FaultBook::default();
        book.add(
            FaultRule::new("company/companies", Fault::ServiceUnavailable).on_page(2).times(2),
        );
        let page = |page| FaultTarget { path: "company/companies", page, query: &[] };
        assert!(book.take("GET", &page(1)).is_none());
        assert!(book.take("GET", &page(2)).is_some());
        assert!(book.take("GET", &page(2)).is_some());
        assert!(book.take("GET", &page(2)).is_none());
        assert_eq!(book.armed(), 0);
    }
}
