//! The listing machine: pages through one Halo listing with `pageinate=true` (Halo's
//! spelling), `page_size` and `page_no`, hands each page to the host with the checkpoint that
//! covers it, and proves the listing whole before it calls a page the last.
//!
//! Halo serves at most 100 rows a page whatever `page_size` asks (case C01), so the machine
//! never infers the number of pages from the size it asked for: it reads until a page comes
//! back empty or it holds `record_count` distinct rows, and then checks that it holds exactly
//! `record_count` of them. A listing that cannot show that fails with `incomplete` and sends
//! no last page, so the host takes no mapping or quantity decision from it. Rows are
//! de-duplicated by id (a row can move to the next page while a listing runs). A page is all
//! or nothing: a body that does not parse is an error, never a partial page.
//!
//! Paging by page number is only sound while the rows stand still: a record added or removed
//! mid-listing shifts the rest, and a shifted row can be missed while the sum still adds up.
//! So a listing must see one `record_count` on every page; when it changes, the listing reads
//! again from page 1, once, and fails `incomplete` if it changes again. A stopped listing
//! resumes from its `page_token`, which carries the next page, the rows counted so far and the
//! count they were counted against; a resumed listing that cannot be proven whole also reads
//! again from page 1 before it gives up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::value::RawValue;
use tally_plugin_sdk::{
    Checkpoint, ErrorKind, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Record, Step,
    StepInput,
};

use crate::errors;
use crate::records::read_row;
use crate::session::Session;
use crate::streams::Stream;

/// Pages in a row holding only rows already seen before the listing is refused as a server
/// that ignores `page_no`.
const REPEATED_PAGES_LIMIT: u32 = 3;

/// What a listing was asked for, checked before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub stream: Stream,
    /// Where the listing starts: page 1, or where a stopped one left off.
    pub resume: Resume,
}

/// A position in a listing: the next page to read, the distinct rows stored before it, and
/// the `record_count` those pages reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub page: u64,
    pub rows: u64,
    /// `None` before the first page.
    pub count: Option<u64>,
}

impl Resume {
    pub const START: Resume = Resume { page: 1, rows: 0, count: None };

    /// `page=4;rows=300;count=717`
    pub fn token(self) -> String {
        let count = self.count.map_or_else(String::new, |count| count.to_string());
        format!("page={};rows={};count={count}", self.page, self.rows)
    }

    /// Reads a `page_token` written by [`Resume::token`].
    pub fn parse(token: &str) -> Option<Resume> {
        let (mut page, mut rows, mut count) = (None, None, None);
        for part in token.split(';') {
            match part.split_once('=') {
                Some(("page", value)) => page = value.parse::<u64>().ok().filter(|p| *p >= 1),
                Some(("rows", value)) => rows = value.parse::<u64>().ok(),
                Some(("count", "")) => count = Some(None),
                Some(("count", value)) => count = Some(Some(value.parse::<u64>().ok()?)),
                _ => return None,
            }
        }
        Some(Resume { page: page?, rows: rows?, count: count? })
    }
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

pub struct ListMachine {
    session: Arc<Session>,
    listing: Listing,
    /// `GET /api/client`, for messages.
    endpoint: String,
    page: u64,
    /// Ids seen by this run of the listing.
    seen: HashSet<i64>,
    repeated_pages: u32,
    /// `record_count` as the listing's pages so far reported it.
    count: Option<u64>,
    /// Whether the listing already went back to page 1 once.
    restarted: bool,
    state: State,
}

impl ListMachine {
    pub fn new(session: Arc<Session>, listing: Listing) -> ListMachine {
        let endpoint = listing.stream.endpoint();
        let page = listing.resume.page;
        let count = listing.resume.count;
        ListMachine {
            session,
            listing,
            endpoint,
            page,
            seen: HashSet::new(),
            repeated_pages: 0,
            count,
            restarted: false,
            state: State::NotStarted,
        }
    }

    fn request(&self) -> HttpRequest {
        let stream = self.listing.stream;
        let mut query: Vec<(&str, String)> = vec![
            ("pageinate", "true".to_string()),
            ("page_size", self.session.settings().page_size.to_string()),
            ("page_no", self.page.to_string()),
        ];
        query.extend(stream.fixed_query().iter().map(|(name, value)| (*name, value.to_string())));
        self.session.api_request("GET", stream.path(), &query, &self.endpoint)
    }

    fn send(&mut self) -> Step {
        self.state = State::Awaiting;
        Step::Send { request: self.request() }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    /// Distinct rows of the whole listing so far, earlier runs included.
    fn collected(&self) -> u64 {
        self.listing.resume.rows + self.seen.len() as u64
    }

    fn answer(&mut self, response: &HttpResponse) -> Step {
        if !errors::is_success(response) {
            return self.fail(errors::from_response(response, &self.endpoint));
        }
        let (record_count, rows) = match self.read_page(&response.body) {
            Ok(page) => page,
            Err(error) => return self.fail(error),
        };
        let mut read = Vec::with_capacity(rows.len());
        for raw in &rows {
            match read_row(self.listing.stream, raw, &self.endpoint) {
                Ok(row) => read.push(row),
                Err(error) => return self.fail(error),
            }
        }

        // Rows move between pages when records are added or removed while a listing runs, and
        // a moved row can be missed while the count still adds up: a listing must see one
        // `record_count` from its first page to its last.
        if let Some(before) = self.count
            && before != record_count
        {
            let why = format!(
                "Halo's record_count went from {before} to {record_count} at page {}: records \
                 were added or removed while the listing ran, so rows may have moved between \
                 pages",
                self.page
            );
            return self.restart_or_fail(self.incomplete(record_count, why), true);
        }
        self.count = Some(record_count);

        // The page is whole: only now does the listing's state move.
        let mut records: Vec<Record> = Vec::new();
        let mut fresh = 0usize;
        for row in read {
            if self.seen.insert(row.id) {
                fresh += 1;
                records.extend(row.records);
            }
        }
        let ended = rows.is_empty() || self.collected() >= record_count;
        if !ended && fresh == 0 {
            self.repeated_pages += 1;
            if self.repeated_pages >= REPEATED_PAGES_LIMIT {
                let why = format!(
                    "{} pages in a row held only rows already seen (up to page {}); Halo may be \
                     ignoring `page_no`",
                    self.repeated_pages, self.page
                );
                return self.restart_or_fail(self.incomplete(record_count, why), false);
            }
        } else {
            self.repeated_pages = 0;
        }

        if ended {
            if self.collected() != record_count {
                let why = if rows.is_empty() {
                    format!("page {} came back empty", self.page)
                } else {
                    format!("page {} went past it", self.page)
                };
                return self.restart_or_fail(self.incomplete(record_count, why), false);
            }
            self.state = State::PageOut { next: None };
            return Step::Page { records, checkpoint: Checkpoint::default(), last: true };
        }

        let next = Resume { page: self.page + 1, rows: self.collected(), count: self.count };
        self.state = State::PageOut { next: Some(next.page) };
        let checkpoint = Checkpoint { cursor: None, tie_id: None, page_token: Some(next.token()) };
        Step::Page { records, checkpoint, last: false }
    }

    /// `record_count` and the rows of one page.
    fn read_page(&self, body: &str) -> Result<(u64, Vec<Box<RawValue>>), PluginError> {
        let stream = self.listing.stream;
        let detail = |what: String| format!("page {}: {what}", self.page);
        let mut object: HashMap<String, Box<RawValue>> = serde_json::from_str(body)
            .map_err(|error| errors::malformed(&self.endpoint, detail(error.to_string())))?;
        let shape = |what: String| {
            PluginError::new(
                ErrorKind::MalformedResponse,
                format!(
                    "Halo's answer to {} is not a paginated listing: {}",
                    self.endpoint,
                    detail(what)
                ),
            )
            .retryable(false)
        };
        let record_count = object
            .get("record_count")
            .ok_or_else(|| shape("no `record_count`".to_string()))?
            .get()
            .trim()
            .parse::<u64>()
            .map_err(|_| shape("`record_count` is not a whole number".to_string()))?;
        let rows = object
            .remove(stream.wrapper())
            .ok_or_else(|| shape(format!("no `{}` list", stream.wrapper())))?;
        let rows: Vec<Box<RawValue>> = serde_json::from_str(rows.get())
            .map_err(|error| shape(format!("`{}` is not a list: {error}", stream.wrapper())))?;
        Ok((record_count, rows))
    }

    /// A listing that cannot be proven whole reads again from page 1, once, with a fresh
    /// count, when that can help: when the records changed under it (`changed`), or when it
    /// was resumed (the rows counted before the resume may be what is off, and resuming again
    /// would meet the same sum forever). Otherwise, or the second time, it fails. Pages read
    /// again are stored again, which is harmless.
    fn restart_or_fail(&mut self, error: PluginError, changed: bool) -> Step {
        let resumed = self.listing.resume != Resume::START;
        if self.restarted || !(changed || resumed) {
            return self.fail(error);
        }
        self.restarted = true;
        self.listing.resume = Resume::START;
        self.count = None;
        self.seen.clear();
        self.repeated_pages = 0;
        self.page = 1;
        self.send()
    }

    fn incomplete(&self, record_count: u64, why: String) -> PluginError {
        PluginError::new(
            ErrorKind::Incomplete,
            format!(
                "the listing of {} cannot be proven whole: Halo counts {record_count} rows \
                 (record_count) but tally collected {} distinct ones when {why}; nothing is \
                 decided from this listing, and the next sync reads it again from page 1",
                self.endpoint,
                self.collected()
            ),
        )
        .retryable(false)
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
