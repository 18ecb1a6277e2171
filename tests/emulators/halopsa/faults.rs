//! Faults a test arms on the HaloPSA emulator: throttling (429 with `Retry-After`), server
//! errors, a token refused as expired, a body cut in half, a listing whose `record_count`
//! disagrees with its rows (case C01's failure mode), or any answer verbatim. A rule matches a
//! request by path pattern and optionally by method and `page_no`, and fires a set number of
//! times or always. This module only decides which fault applies; `api` carries it out.

pub use crate::fault_rules::Times;
use crate::fault_rules::{self, Scope, path_matches};

/// What happens to a matching request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: <seconds>` when given; nothing is processed.
    RateLimited { retry_after_seconds: Option<u64> },
    /// This status (500, 502, 503…) with a short text body; nothing is processed.
    ServerError(u16),
    /// 401 as for an expired token; nothing is processed.
    Unauthorized,
    /// The normal answer, cut to its first half (status 200, a matching `Content-Length`).
    TruncatedBody,
    /// The normal answer of a listing, with `record_count` moved by this much.
    CountMismatch(i64),
    /// Exactly this status and body; nothing is processed.
    Respond { status: u16, body: String },
}

impl Fault {
    pub fn rate_limited(retry_after_seconds: u64) -> Fault {
        Fault::RateLimited { retry_after_seconds: Some(retry_after_seconds) }
    }

    /// A short name for the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::RateLimited { .. } => "rate_limited",
            Fault::ServerError(_) => "server_error",
            Fault::Unauthorized => "unauthorized",
            Fault::TruncatedBody => "truncated_body",
            Fault::CountMismatch(_) => "count_mismatch",
            Fault::Respond { .. } => "respond",
        }
    }
}

/// A fault and the requests it applies to.
pub type FaultRule = fault_rules::FaultRule<PathScope, Fault>;

impl FaultRule {
    /// Fires `fault` once on the next request whose path matches `pattern`: the path without
    /// its leading `/` (`api/client`, `api/RecurringInvoice/*`, `auth/token`), compared without
    /// regard to case; `*` matches one segment, `**` any number of trailing segments.
    pub fn new(pattern: &str, fault: Fault) -> FaultRule {
        FaultRule::once(
            PathScope { pattern: pattern.trim_matches('/').to_owned(), page: None },
            fault,
        )
    }

    /// Only for this `page_no` (a request without one is page 1).
    pub fn on_page(mut self, page: u64) -> FaultRule {
        self.scope.page = Some(page);
        self
    }
}

/// The requests a HaloPSA rule applies to: a path pattern, and optionally a `page_no`.
#[derive(Clone, Debug)]
pub struct PathScope {
    pattern: String,
    page: Option<u64>,
}

/// A request's path without its leading `/`, and its `page_no`.
impl Scope<(&str, u64)> for PathScope {
    fn covers(&self, &(path, page): &(&str, u64)) -> bool {
        self.page.is_none_or(|p| p == page) && path_matches(&self.pattern, path)
    }
}

/// The armed rules, in the order they were added; the first match fires.
pub type FaultBook = fault_rules::FaultBook<PathScope, Fault>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_ignore_case_and_match_segments() {
        assert!(path_matches("api/RecurringInvoice", "api/recurringinvoice"));
        assert!(path_matches("api/RecurringInvoice/*", "api/RecurringInvoice/-94"));
        assert!(!path_matches("api/RecurringInvoice", "api/RecurringInvoice/-94"));
        assert!(path_matches("api/**", "api/client"));
    }

    #[test]
    fn counted_rules_run_out() {
        let book = FaultBook::default();
        book.add(FaultRule::new("api/client", Fault::ServerError(500)).on_page(2).times(2));
        assert!(book.take("GET", &("api/client", 1)).is_none());
        assert!(book.take("GET", &("api/client", 2)).is_some());
        assert!(book.take("GET", &("api/client", 2)).is_some());
        assert!(book.take("GET", &("api/client", 2)).is_none());
        assert_eq!(book.armed(), 0);
    }
}
