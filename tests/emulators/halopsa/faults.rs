//! Faults a test arms on the HaloPSA emulator: throttling (429 with `Retry-After`), server
//! errors, a token refused as expired, a body cut in half, a listing whose `record_count`
//! disagrees with its rows (case C01's failure mode), or any answer verbatim. A rule matches a
//! request by path pattern and optionally by method and `page_no`, and fires a set number of
//! times or always. This module only decides which fault applies; `api` carries it out.

use std::sync::Mutex;

use super::lock;

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

/// How many times a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    Count(u32),
    Always,
}

/// A fault and the requests it applies to.
#[derive(Clone, Debug)]
pub struct FaultRule {
    pattern: String,
    method: Option<String>,
    page: Option<u64>,
    times: Times,
    fault: Fault,
}

impl FaultRule {
    /// Fires `fault` once on the next request whose path matches `pattern`: the path without
    /// its leading `/` (`api/client`, `api/RecurringInvoice/*`, `auth/token`), compared without
    /// regard to case; `*` matches one segment, `**` any number of trailing segments.
    pub fn new(pattern: &str, fault: Fault) -> FaultRule {
        FaultRule {
            pattern: pattern.trim_matches('/').to_owned(),
            method: None,
            page: None,
            times: Times::Count(1),
            fault,
        }
    }

    /// Only for requests with this method.
    pub fn method(mut self, method: &str) -> FaultRule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only for this `page_no` (a request without one is page 1).
    pub fn on_page(mut self, page: u64) -> FaultRule {
        self.page = Some(page);
        self
    }

    pub fn times(mut self, count: u32) -> FaultRule {
        self.times = Times::Count(count);
        self
    }

    pub fn always(mut self) -> FaultRule {
        self.times = Times::Always;
        self
    }

    fn matches(&self, method: &str, path: &str, page: u64) -> bool {
        self.times != Times::Count(0)
            && self.method.as_deref().is_none_or(|m| m == method)
            && self.page.is_none_or(|p| p == page)
            && path_matches(&self.pattern, path)
    }
}

/// Whether `path` matches `pattern` (`*` one segment, `**` the rest), ignoring case.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/').filter(|s| !s.is_empty());
    let mut have = path.split('/').filter(|s| !s.is_empty());
    loop {
        match (want.next(), have.next()) {
            (Some("**"), _) => return true,
            (Some("*"), Some(_)) => continue,
            (Some(w), Some(h)) if w.eq_ignore_ascii_case(h) => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The armed rules, in the order they were added; the first match fires.
#[derive(Default)]
pub struct FaultBook {
    rules: Mutex<Vec<FaultRule>>,
}

impl FaultBook {
    pub fn add(&self, rule: FaultRule) {
        lock(&self.rules).push(rule);
    }

    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// Rules that could still fire.
    pub fn armed(&self) -> usize {
        lock(&self.rules).iter().filter(|r| r.times != Times::Count(0)).count()
    }

    /// The fault for this request, if any, counting it against its rule.
    pub fn take(&self, method: &str, path: &str, page: u64) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let rule = rules.iter_mut().find(|r| r.matches(method, path, page))?;
        if let Times::Count(n) = &mut rule.times {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }
}

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
        assert!(book.take("GET", "api/client", 1).is_none());
        assert!(book.take("GET", "api/client", 2).is_some());
        assert!(book.take("GET", "api/client", 2).is_some());
        assert!(book.take("GET", "api/client", 2).is_none());
        assert_eq!(book.armed(), 0);
    }
}
