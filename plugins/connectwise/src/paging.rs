//! The listing machine: pages through one ConnectWise listing with `page=N`, `pageSize` and
//! `orderBy=id asc`, hands each page to the host with the checkpoint that covers it, and ends
//! on a short page or on a `Link` header without `rel="next"`.
//!
//! It owns three promises. Every page request of a listing carries byte-identical
//! `conditions`, `orderBy` and `pageSize` (case C03), including after a resume from a
//! `page_token`. A page is all or nothing: a body that does not parse is an error, never a
//! partial page. And a checkpoint never moves past data the host has not stored: the pages
//! before the last keep the cursor the listing started from (the rows are ordered by id, not
//! by time, so a later page can hold older rows) with the next page number as `page_token`;
//! only the last page carries the greatest `_info/lastUpdated` seen, exactly as received, and
//! the id of its row as `tie_id`. It must never follow a next link to another host.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::value::RawValue;
use tally_plugin_sdk::{
    Checkpoint, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Record, Step, StepInput,
};
use time::OffsetDateTime;
use url::Url;

use crate::conditions::{Query, parse_instant};
use crate::errors;
use crate::records::{RowContext, read_row};
use crate::session::Session;
use crate::streams::Stream;

/// Full pages holding only rows already seen, in a row, before the listing is refused as a
/// server that ignores `page`.
const REPEATED_PAGES_LIMIT: u32 = 3;

/// What a listing was asked for, checked before it starts.
pub struct Listing {
    pub stream: Stream,
    /// The agreement, for billing lines.
    pub parent: Option<u64>,
    /// The `conditions` value, the same on every page; `None` for none.
    pub conditions: Option<String>,
    /// The checkpoint the listing started from: its cursor stays until the last page.
    pub start: Checkpoint,
    /// The first page to read: 1, or the `page_token` of a stopped listing.
    pub first_page: u64,
}

enum State {
    NotStarted,
    /// Waiting for the answer to `page`; a retryable failure stays here.
    Awaiting,
    /// A page went out; `continue` asks for the next one, or ends the listing.
    PageOut {
        next: Option<u64>,
    },
    Finished,
    Failed(PluginError),
}

/// The greatest `_info/lastUpdated` seen: the instant to compare, the text to keep.
struct Greatest {
    at: OffsetDateTime,
    id: u64,
    text: String,
}

pub struct ListMachine {
    session: Arc<Session>,
    listing: Listing,
    /// `GET finance/agreements/additions`, for messages.
    endpoint: String,
    page: u64,
    seen: HashSet<u64>,
    greatest: Option<Greatest>,
    repeated_pages: u32,
    state: State,
}

impl ListMachine {
    pub fn new(session: Arc<Session>, listing: Listing) -> ListMachine {
        let endpoint = format!("GET {}", listing.stream.endpoint());
        let page = listing.first_page;
        ListMachine {
            session,
            listing,
            endpoint,
            page,
            seen: HashSet::new(),
            greatest: None,
            repeated_pages: 0,
            state: State::NotStarted,
        }
    }

    fn request(&self) -> Result<HttpRequest, PluginError> {
        let mut query = Query::new();
        if let Some(conditions) = &self.listing.conditions {
            query = query.pair("conditions", conditions.clone());
        }
        let query = query
            .pair("orderBy", "id asc")
            .pair("pageSize", self.page_size().to_string())
            .pair("page", self.page.to_string());
        let path = self.listing.stream.path(self.listing.parent);
        self.session.request("GET", &path, &query, self.listing.stream.endpoint())
    }

    fn page_size(&self) -> u32 {
        self.session.settings().page_size
    }

    fn send(&mut self) -> Step {
        match self.request() {
            Ok(request) => {
                self.state = State::Awaiting;
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    fn answer(&mut self, response: &HttpResponse) -> Step {
        if !errors::is_success(response) {
            return self.fail(errors::from_response(response, &self.endpoint));
        }
        let rows: Vec<&RawValue> = match serde_json::from_str(&response.body) {
            Ok(rows) => rows,
            Err(error) => {
                let detail = format!("page {}: {error}", self.page);
                return self.fail(errors::malformed(&self.endpoint, detail));
            }
        };
        let link_next = match next_page_from_link(&self.session, response, self.page) {
            Ok(next) => next,
            Err(error) => return self.fail(error),
        };

        let context = RowContext {
            settings: self.session.settings(),
            endpoint: &self.endpoint,
            agreement_id: self.listing.parent,
            company_id: None,
            body: Some(&response.body),
        };
        let mut read = Vec::with_capacity(rows.len());
        for raw in &rows {
            match read_row(self.listing.stream, raw, &context) {
                Ok(row) => read.push(row),
                Err(error) => return self.fail(error),
            }
        }

        // The page is whole: only now does the listing's state move.
        let full = rows.len() >= self.page_size() as usize;
        let mut records: Vec<Record> = Vec::with_capacity(read.len());
        for row in read {
            if !self.seen.insert(row.id) {
                continue;
            }
            self.note_updated(row.id, row.updated_at.as_deref());
            records.push(row.record);
        }
        if full && records.is_empty() {
            self.repeated_pages += 1;
            if self.repeated_pages >= REPEATED_PAGES_LIMIT {
                return self.fail(
                    PluginError::new(
                        tally_plugin_sdk::ErrorKind::Incomplete,
                        format!(
                            "ConnectWise answered {} full pages of {} holding only rows already \
                             seen (up to page {}); it may be ignoring the `page` parameter",
                            self.repeated_pages, self.endpoint, self.page
                        ),
                    )
                    .retryable(false),
                );
            }
        } else {
            self.repeated_pages = 0;
        }

        let next = match link_next {
            _ if !full => None,
            Link::Next(page) => Some(page),
            Link::NoNext => None,
            Link::Absent => Some(self.page + 1),
        };
        let checkpoint = match next {
            Some(page) => Checkpoint {
                cursor: self.listing.start.cursor.clone(),
                tie_id: self.listing.start.tie_id.clone(),
                page_token: Some(page.to_string()),
            },
            None => self.final_checkpoint(),
        };
        self.state = State::PageOut { next };
        Step::Page { records, checkpoint, last: next.is_none() }
    }

    /// Keeps the greatest `(lastUpdated, id)` seen; a timestamp that does not parse cannot be
    /// compared and is left out of the cursor (the row itself still goes to the host).
    fn note_updated(&mut self, id: u64, updated_at: Option<&str>) {
        let Some(text) = updated_at else { return };
        let Some(at) = parse_instant(text) else { return };
        let later = self.greatest.as_ref().is_none_or(|g| (at, id) > (g.at, g.id));
        if later {
            self.greatest = Some(Greatest { at, id, text: text.to_string() });
        }
    }

    /// The checkpoint of the last page: the greatest of the starting cursor and every
    /// `lastUpdated` seen, exactly as received, and no page token.
    fn final_checkpoint(&self) -> Checkpoint {
        let start = &self.listing.start;
        let start_at = start.cursor.as_deref().and_then(parse_instant);
        let start_id = start.tie_id.as_deref().and_then(|id| id.parse::<u64>().ok()).unwrap_or(0);
        match &self.greatest {
            Some(g) if start_at.is_none_or(|at| (g.at, g.id) > (at, start_id)) => Checkpoint {
                cursor: Some(g.text.clone()),
                tie_id: Some(g.id.to_string()),
                page_token: None,
            },
            _ => Checkpoint {
                cursor: start.cursor.clone(),
                tie_id: start.tie_id.clone(),
                page_token: None,
            },
        }
    }
}

impl Machine for ListMachine {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::NotStarted, StepInput::Start) => self.send(),
            (State::Awaiting, StepInput::Response { response }) => self.answer(&response),
            (State::PageOut { next: Some(page) }, StepInput::Continue) => {
                self.page = *page;
                self.send()
            }
            (State::PageOut { next: None }, StepInput::Continue) | (State::Finished, _) => {
                self.state = State::Finished;
                Step::Done { result: OpResult::Listed }
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the listing of {} did not expect {}",
                    self.listing.stream.name(),
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// What a `Link` header says about the next page.
#[derive(Debug, PartialEq, Eq)]
enum Link {
    Absent,
    NoNext,
    Next(u64),
}

/// Reads `rel="next"` from the `Link` header. A next link to another host than the site is
/// refused: the host would not send there anyway, and it means something between tally and
/// ConnectWise is rewriting answers. The next page is the link's `page` parameter.
fn next_page_from_link(
    session: &Session,
    response: &HttpResponse,
    page: u64,
) -> Result<Link, PluginError> {
    let links = response.header("Link").map(links).unwrap_or_default();
    if links.is_empty() {
        // No header, or none that can be read: the page count decides.
        return Ok(Link::Absent);
    }
    let next = links.iter().find(|(_, rels)| rels.iter().any(|r| r.eq_ignore_ascii_case("next")));
    let Some(&(target, _)) = next else { return Ok(Link::NoNext) };

    let site = Url::parse(&session.settings().site)
        .map_err(|error| errors::internal(format!("the site no longer parses: {error}")))?;
    let refuse = |detail: String| {
        PluginError::new(
            tally_plugin_sdk::ErrorKind::MalformedResponse,
            format!("ConnectWise's next-page link {detail}; tally only talks to {}", site),
        )
        .retryable(false)
    };
    let next =
        site.join(target).map_err(|error| refuse(format!("`{target}` is not a URL: {error}")))?;
    if next.host_str() != site.host_str()
        || next.port_or_known_default() != site.port_or_known_default()
    {
        let host = next.host_str().unwrap_or("(none)");
        return Err(refuse(format!("points at another host ({host}), refused")));
    }
    let number = next.query_pairs().find(|(key, _)| key == "page").map(|(_, value)| value);
    match number.as_deref().map(str::parse::<u64>) {
        Some(Ok(next_page)) if next_page > page => Ok(Link::Next(next_page)),
        None => Ok(Link::Next(page + 1)),
        Some(_) => Err(refuse(format!("`{target}` does not lead past page {page}"))),
    }
}

/// The links of a `Link` header value that carry a `rel`, as (target, relations).
fn links(header: &str) -> Vec<(&str, Vec<&str>)> {
    let mut found = Vec::new();
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let target = &after[..close];
        let params_end = after[close + 1..].find('<').map_or(after.len(), |i| close + 1 + i);
        let params = &after[close + 1..params_end];
        let relations: Vec<&str> = params
            .split(';')
            .filter_map(|param| param.split_once('='))
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case("rel"))
            .flat_map(|(_, value)| {
                value.trim().trim_end_matches(',').trim().trim_matches('"').split_whitespace()
            })
            .collect();
        if !relations.is_empty() {
            found.push((target, relations));
        }
        rest = &after[params_end..];
    }
    found
}
