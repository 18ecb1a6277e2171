//! What every emulator writes down about the requests it receives: the request read once into
//! its parts (path, raw and decoded query, headers, body), and the log that keeps each
//! emulator's entries in arrival order with a count per key (a path, an entity), counted even
//! while entries are switched off for the benchmark. Each emulator defines its own entry; the
//! log never changes what an emulator answers.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::fault_rules::path_matches;
use crate::lock;

/// The largest request body an emulator reads; a longer one reads as empty.
const MAX_BODY: usize = 1024 * 1024;

/// A request as an emulator reads it before deciding anything.
pub(crate) struct Received {
    pub(crate) parts: Parts,
    pub(crate) body: Bytes,
    /// The path as sent.
    pub(crate) path: String,
    /// The query string exactly as sent, without the `?`.
    pub(crate) raw_query: String,
    /// The query decoded once (`+` as space, then percent-decoding), in order.
    pub(crate) query: Vec<(String, String)>,
}

impl Received {
    pub(crate) async fn read(request: Request) -> Received {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY).await.unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let raw_query = parts.uri.query().unwrap_or_default().to_owned();
        let query = url::form_urlencoded::parse(raw_query.as_bytes()).into_owned().collect();
        Received { parts, body, path, raw_query, query }
    }

    pub(crate) fn method(&self) -> &str {
        self.parts.method.as_str()
    }

    /// The body as text, for the log.
    pub(crate) fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Header names in lower case with their values, in the order received, for the log.
pub(crate) fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect()
}

/// The value of the first pair named `name`, ignoring case: a query parameter or a header.
pub(crate) fn first_named<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// An emulator's log entry.
pub trait Entry: Clone {
    /// The key the entry is counted under.
    fn counted_as(&self) -> &str;
}

/// The entries, and a count per key.
pub struct RequestLog<E> {
    entries: Mutex<Vec<E>>,
    counts: Mutex<BTreeMap<String, usize>>,
    /// Keep entries (counters are always kept); the benchmark turns this off.
    disabled: AtomicBool,
}

impl<E> Default for RequestLog<E> {
    fn default() -> Self {
        RequestLog {
            entries: Mutex::new(Vec::new()),
            counts: Mutex::new(BTreeMap::new()),
            disabled: AtomicBool::new(false),
        }
    }
}

impl<E: Entry> RequestLog<E> {
    pub(crate) fn record(&self, entry: E) {
        *lock(&self.counts).entry(entry.counted_as().to_owned()).or_default() += 1;
        if !self.disabled.load(Ordering::Relaxed) {
            lock(&self.entries).push(entry);
        }
    }

    pub(crate) fn entries(&self) -> Vec<E> {
        lock(&self.entries).clone()
    }

    /// Forgets the entries and the counts.
    pub(crate) fn clear(&self) {
        lock(&self.entries).clear();
        lock(&self.counts).clear();
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.disabled.store(!enabled, Ordering::Relaxed);
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        lock(&self.counts).clone()
    }

    /// Requests counted under a key whose `relative` form matches `pattern` (see
    /// [`path_matches`]).
    pub(crate) fn count_matching(&self, pattern: &str, relative: impl Fn(&str) -> &str) -> usize {
        lock(&self.counts)
            .iter()
            .filter(|(key, _)| path_matches(pattern, relative(key)))
            .map(|(_, n)| n)
            .sum()
    }
}
