//! Listing semantics shared by every collection endpoint: `conditions`, `orderBy`, `fields`,
//! numbered paging (`page`, `pageSize`: default 25, capped at 1000) and forward-only paging
//! (`pagination-type: forward-only` with `pageId`), and the `Link` header that points at the
//! next page. A next-page URL is the request's own query string, byte for byte, with only the
//! paging parameter changed, so a client that follows it keeps its filter.

use std::cmp::Ordering;

use super::conditions::{self, Condition, ConditionError};
use super::errors::ApiError;
use super::fields::{Field, Record, scalar_cmp};
use super::state::State;

pub const DEFAULT_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 1000;

/// The decoded query parameters of a request, looked up without regard to case as ConnectWise
/// (ASP.NET) does; the first occurrence of a repeated name wins.
pub struct QueryParams<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> QueryParams<'a> {
    pub fn new(pairs: &'a [(String, String)]) -> QueryParams<'a> {
        QueryParams { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    Asc,
    Desc,
}

/// How a listing request asked for its rows.
pub struct ListRequest<T: 'static> {
    condition: Option<Condition<T>>,
    order: Vec<(&'static Field<T>, Direction)>,
    page: usize,
    page_size: usize,
    /// `Some` in forward-only mode: rows with an id above this (0 for the first page).
    after_id: Option<i64>,
    pub fields: Option<Vec<String>>,
}

/// One page of a listing and where the next one is.
pub struct Page<'a, T> {
    pub rows: Vec<&'a T>,
    /// Relations for the `Link` header, as (rel, parameter, value) to set in the query string.
    pub links: Vec<(&'static str, &'static str, String)>,
}

impl<T: Record> ListRequest<T> {
    /// Reads the listing parameters; anything unusable is a 400.
    pub fn parse(params: &QueryParams<'_>, forward_only: bool) -> Result<ListRequest<T>, ApiError> {
        let condition = match params.get("conditions").filter(|c| !c.trim().is_empty()) {
            Some(text) => Some(
                conditions::parse::<T>(text).map_err(|e| ApiError::bad_query("conditions", e))?,
            ),
            None => None,
        };
        let order = match params.get("orderBy").filter(|o| !o.trim().is_empty()) {
            Some(text) => parse_order::<T>(text).map_err(|e| ApiError::bad_query("orderBy", e))?,
            None => Vec::new(),
        };
        let page = match params.get("page") {
            Some(text) => parse_count("page", text)?.max(1),
            None => 1,
        };
        let page_size = match params.get("pageSize") {
            Some(text) => match parse_count("pageSize", text)? {
                0 => DEFAULT_PAGE_SIZE,
                n => n.min(MAX_PAGE_SIZE),
            },
            None => DEFAULT_PAGE_SIZE,
        };
        let after_id = if forward_only {
            let by_id_asc = order.iter().all(|(f, d)| f.path == "id" && *d == Direction::Asc);
            if !by_id_asc {
                return Err(ApiError::bad_query(
                    "orderBy",
                    ConditionError {
                        message: "Forward-only pagination only supports orderBy=id asc".to_owned(),
                        field: None,
                    },
                ));
            }
            let page_id = match params.get("pageId") {
                Some(text) => text.trim().parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("pageId '{text}' is not a valid integer"))
                })?,
                None => 0,
            };
            Some(page_id)
        } else {
            None
        };
        let fields = params
            .get("fields")
            .filter(|f| !f.trim().is_empty() && f.trim() != "*")
            .map(|f| f.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
        Ok(ListRequest { condition, order, page, page_size, after_id, fields })
    }

    fn keeps(&self, record: &T, state: &State) -> bool {
        self.condition.as_ref().is_none_or(|c| c.matches(record, state))
    }

    /// Counts the rows matching `conditions` (the `/count` endpoints).
    pub fn count<'a>(&self, rows: impl Iterator<Item = &'a T>, state: &State) -> usize {
        rows.filter(|r| self.keeps(r, state)).count()
    }

    /// Selects one page from `rows`, which must come in id order.
    pub fn page<'a>(&self, rows: impl Iterator<Item = &'a T>, state: &State) -> Page<'a, T> {
        if let Some(after) = self.after_id {
            return self.forward_only_page(rows, state, after);
        }

        let mut matching: Vec<&T> = rows.filter(|r| self.keeps(r, state)).collect();
        if !self.order.is_empty() {
            matching.sort_by(|a, b| self.compare(a, b, state));
        }
        let total = matching.len();
        let last_page = total.div_ceil(self.page_size).max(1);
        let start = (self.page - 1).saturating_mul(self.page_size).min(total);
        let end = start.saturating_add(self.page_size).min(total);
        let rows: Vec<&T> = matching.drain(start..end).collect();

        let mut links = Vec::new();
        if self.page > 1 {
            links.push(("first", "page", "1".to_owned()));
            links.push(("prev", "page", (self.page - 1).min(last_page).to_string()));
        }
        if self.page < last_page {
            links.push(("next", "page", (self.page + 1).to_string()));
            links.push(("last", "page", last_page.to_string()));
        }
        Page { rows, links }
    }

    fn forward_only_page<'a>(
        &self,
        rows: impl Iterator<Item = &'a T>,
        state: &State,
        after: i64,
    ) -> Page<'a, T> {
        let mut rows: Vec<&T> = rows
            .filter(|r| r.id() > after && self.keeps(r, state))
            .take(self.page_size + 1)
            .collect();
        let more = rows.len() > self.page_size;
        rows.truncate(self.page_size);
        let mut links = Vec::new();
        if let (true, Some(last)) = (more, rows.last()) {
            links.push(("next", "pageId", last.id().to_string()));
        }
        Page { rows, links }
    }

    fn compare(&self, a: &T, b: &T, state: &State) -> Ordering {
        for (field, direction) in &self.order {
            let ordering = scalar_cmp(&(field.get)(a, state), &(field.get)(b, state));
            let ordering =
                if *direction == Direction::Desc { ordering.reverse() } else { ordering };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.id().cmp(&b.id())
    }
}

fn parse_count(name: &str, text: &str) -> Result<usize, ApiError> {
    let text = text.trim();
    match text.parse::<i64>() {
        Ok(n) => Ok(usize::try_from(n).unwrap_or(0)),
        Err(_) => Err(ApiError::bad_request(format!("{name} '{text}' is not a valid integer"))),
    }
}

/// Parses `orderBy`: `field [asc|desc]`, comma-separated.
fn parse_order<T: Record>(
    text: &str,
) -> Result<Vec<(&'static Field<T>, Direction)>, ConditionError> {
    let mut order = Vec::new();
    for part in text.split(',') {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (path, direction) = match words.as_slice() {
            [path] => (*path, Direction::Asc),
            [path, dir] if dir.eq_ignore_ascii_case("asc") => (*path, Direction::Asc),
            [path, dir] if dir.eq_ignore_ascii_case("desc") => (*path, Direction::Desc),
            _ => {
                return Err(ConditionError {
                    message: format!("Cannot read orderBy clause '{}'", part.trim()),
                    field: None,
                });
            }
        };
        let field = T::field(path).ok_or_else(|| ConditionError {
            message: format!("Unknown field '{path}' for {}", T::RESOURCE),
            field: Some(path.to_owned()),
        })?;
        order.push((field, direction));
    }
    Ok(order)
}

/// The request's raw query string with `name` set to `value`, every other byte unchanged. A
/// parameter already present keeps its place and spelling; a missing one is appended.
pub fn with_param(raw_query: &str, name: &str, value: &str) -> String {
    let mut replaced = false;
    let mut parts: Vec<String> = Vec::new();
    for part in raw_query.split('&').filter(|p| !p.is_empty()) {
        let key = part.split('=').next().unwrap_or_default();
        let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
        if decoded.eq_ignore_ascii_case(name) {
            if !replaced {
                parts.push(format!("{key}={value}"));
                replaced = true;
            }
            continue;
        }
        parts.push(part.to_owned());
    }
    if !replaced {
        parts.push(format!("{name}={value}"));
    }
    parts.join("&")
}

/// The `Link` header value for `links`, e.g. `<URL>; rel="next", <URL>; rel="last"`.
pub fn link_header(
    base: &str,
    path: &str,
    raw_query: &str,
    links: &[(&'static str, &'static str, String)],
) -> Option<String> {
    if links.is_empty() {
        return None;
    }
    let parts: Vec<String> = links
        .iter()
        .map(|(rel, name, value)| {
            format!("<{base}{path}?{}>; rel=\"{rel}\"", with_param(raw_query, name, value))
        })
        .collect();
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_param_changes_only_the_page() {
        let raw = "conditions=name%3D%22a%2Bb%22&orderBy=id%20asc&pageSize=2&page=1";
        assert_eq!(
            with_param(raw, "page", "2"),
            "conditions=name%3D%22a%2Bb%22&orderBy=id%20asc&pageSize=2&page=2"
        );
        assert_eq!(with_param("pageSize=5", "page", "2"), "pageSize=5&page=2");
        assert_eq!(with_param("", "pageId", "9"), "pageId=9");
        assert_eq!(with_param("Page=1&x=1", "page", "3"), "Page=3&x=1");
    }
}
