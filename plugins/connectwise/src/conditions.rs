//! How a question is written into a ConnectWise URL: the `conditions` grammar (quoted and
//! escaped strings, instants as `[YYYY-MM-DDTHH:MM:SSZ]` in UTC), and the percent-encoding of
//! query values. Each value is escaped for the grammar first and percent-encoded exactly once,
//! here and nowhere else, so `&`, `+`, `#`, quotes and non-ASCII letters arrive as written.
//! This module must never format an instant in local time or with a 12-hour clock (case C06),
//! and never read a clock: every instant it writes comes from its caller.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tally_plugin_sdk::{ErrorKind, PluginError};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Duration, OffsetDateTime, UtcOffset};

/// Everything but RFC 3986's unreserved characters is encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The field every incremental listing filters on.
pub const LAST_UPDATED: &str = "_info/lastUpdated";

/// A string value for the grammar: `\` and `"` escaped, wrapped in double quotes.
pub fn text(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `field="value"`, the value escaped by [`text`].
pub fn equals_text(field: &str, value: &str) -> String {
    format!("{field}={}", text(value))
}

/// An instant for the grammar: converted to UTC, cut to the whole second (the grammar has no
/// fractions), 24-hour clock, in brackets: `[2024-05-01T19:04:05Z]`.
pub fn instant(at: OffsetDateTime) -> Result<String, PluginError> {
    let utc = at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| out_of_range(&format!("{at}")))?
        .truncate_to_second();
    let written = utc
        .format(format_description!("[year]-[month]-[day]T[hour repr:24]:[minute]:[second]Z"))
        .map_err(|error| out_of_range(&error.to_string()))?;
    Ok(format!("[{written}]"))
}

/// The condition of an incremental listing: rows updated at or after `cursor` less
/// `lookback_seconds` (case C17), cut down to the whole second because the grammar takes no
/// fractions (case C16). `>=` and the cut both err towards reading a row again: the host drops
/// rows it already holds (by id and `updated_at`).
pub fn updated_since(cursor: &str, lookback_seconds: u64) -> Result<String, PluginError> {
    let at = parse_instant(cursor).ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("the checkpoint cursor `{cursor}` is not an ISO-8601 timestamp with an offset"),
        )
        .retryable(false)
    })?;
    let lookback = Duration::seconds(i64::try_from(lookback_seconds).unwrap_or(i64::MAX));
    let since = at.checked_sub(lookback).ok_or_else(|| out_of_range(cursor))?;
    Ok(format!("{LAST_UPDATED}>={}", instant(since)?))
}

/// Reads an ISO-8601 (RFC 3339) timestamp such as `2024-05-01T15:04:05.263-04:00`.
pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

fn out_of_range(what: &str) -> PluginError {
    PluginError::new(
        ErrorKind::InvalidRequest,
        format!("the instant {what} cannot be written as a ConnectWise condition"),
    )
    .retryable(false)
}

/// Percent-encodes one query key or value, or one path segment: everything but unreserved
/// characters.
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, ENCODED).to_string()
}

/// An ordered query string. The same pairs always encode to the same bytes, which is what
/// keeps every page of one listing byte-identical but for `page` (case C03).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    /// Adds one pair, unencoded; [`Query::encoded`] encodes it.
    pub fn pair(mut self, key: &str, value: impl Into<String>) -> Query {
        self.pairs.push((key.to_string(), value.into()));
        self
    }

    /// `key=value&…`, each key and value percent-encoded once; empty when there are no pairs.
    pub fn encoded(&self) -> String {
        let pairs: Vec<String> = self
            .pairs
            .iter()
            .map(|(key, value)| format!("{}={}", encode(key), encode(value)))
            .collect();
        pairs.join("&")
    }
}
