//! The listing machine: reads one stream page by page, following Autotask's `nextPageUrl` with
//! a POST of the identical body (case C02), and hands each page to the host with the
//! checkpoint that covers it. A page of billing lines is completed before it goes out: the
//! unit rows in force today for its contract services (one `in` query) and the companies of
//! their contracts (one more), so a page of 500 lines costs three requests.
//!
//! It owns three promises. A page is all or nothing: a body that does not parse or any non-2xx
//! on any request of the page fails it, never a partial page. A checkpoint never moves past
//! data the host has not stored: pages before the last keep the cursor the listing started
//! from, with the greatest id seen as `page_token` (a resumed listing asks for `id >` it); only
//! the last page carries the greatest cursor value seen, exactly as received, with its row's id
//! as `tie_id` (for id-paged streams, the greatest id). And it never follows a next link off
//! the zone's host.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::value::RawValue;
use tally_plugin_sdk::{
    Checkpoint, HttpRequest, HttpResponse, ListMode, Machine, OpResult, PluginError, Record, Step,
    StepInput,
};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::errors;
use crate::query::{Condition, Lookup, Query, read_page};
use crate::records::{self, ContractService, Row, UnitRow};
use crate::session::Session;
use crate::streams::{Stream, UNIT_FIELDS};

/// What a listing was asked for, checked before it starts.
#[derive(Debug, Clone)]
pub struct Listing {
    pub stream: Stream,
    pub mode: ListMode,
    /// The checkpoint the listing started from: its cursor stays until the last page.
    pub start: Checkpoint,
    pub lookback_seconds: u64,
    /// The date whose unit rows are in force, for billing lines.
    pub today: Date,
}

impl Listing {
    /// The query of every page: the stream's fixed conditions, the cursor condition of an
    /// incremental listing, and `id >` a resumed or id-paged position.
    pub fn query(&self, page_size: u32) -> Result<Query, PluginError> {
        let mut conditions = self.stream.fixed_conditions();
        let incremental = self.mode == ListMode::Incremental;
        if let (true, Some(field), Some(cursor)) =
            (incremental, self.stream.cursor_field(), self.start.cursor.as_deref())
        {
            conditions.push(Condition::gte(field, since(cursor, self.lookback_seconds)?));
        }
        if let Some(after) = self.after_id()? {
            conditions.push(Condition::gt("id", after));
        }
        Ok(Query::new(self.stream.entity(), page_size, self.stream.fields(), &conditions))
    }

    /// The id the listing reads past: a stopped listing's `page_token`, and for an incremental
    /// listing of an id-paged stream the checkpoint's `tie_id` too.
    fn after_id(&self) -> Result<Option<u64>, PluginError> {
        let token = match self.start.page_token.as_deref() {
            Some(token) => Some(token.parse::<u64>().map_err(|_| {
                errors::invalid(
                    "page_token",
                    format!("the checkpoint's page_token `{token}` is not an Autotask id"),
                )
            })?),
            None => None,
        };
        let tie = match (self.mode, self.stream.cursor_field()) {
            (ListMode::Incremental, None) => self.start_tie(),
            _ => None,
        };
        Ok(token.max(tie))
    }

    fn start_tie(&self) -> Option<u64> {
        self.start.tie_id.as_deref().and_then(|id| id.parse::<u64>().ok())
    }

    /// Rows at or before this `(cursor, tie_id)` were stored by the listing that set the
    /// checkpoint: an incremental listing without lookback drops them.
    fn stored_through(&self) -> Option<(OffsetDateTime, u64)> {
        if self.mode != ListMode::Incremental || self.lookback_seconds > 0 {
            return None;
        }
        let at = self.start.cursor.as_deref().and_then(parse_instant)?;
        Some((at, self.start_tie()?))
    }
}

/// The cursor condition's value: the cursor exactly as received, or moved back by the
/// lookback (case C17).
fn since(cursor: &str, lookback_seconds: u64) -> Result<String, PluginError> {
    if lookback_seconds == 0 {
        return Ok(cursor.to_string());
    }
    let at = parse_instant(cursor).ok_or_else(|| {
        errors::invalid("cursor", format!("the checkpoint's cursor `{cursor}` is not a date-time"))
    })?;
    let seconds = i64::try_from(lookback_seconds).unwrap_or(i64::MAX);
    let back = at.checked_sub(Duration::seconds(seconds)).unwrap_or(at);
    back.format(&Rfc3339).map_err(|error| errors::internal(format!("a cursor broke: {error}")))
}

/// An Autotask date-time; one written without an offset is UTC, as Autotask's API is.
pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at.to_offset(UtcOffset::UTC));
    }
    let without_offset = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(text, &without_offset).ok().map(PrimitiveDateTime::assume_utc)
}

/// The greatest cursor value seen: the instant to compare, the text to keep.
struct Greatest {
    at: OffsetDateTime,
    id: u64,
    text: String,
}

/// A page of billing lines waiting for its unit rows and companies.
struct LinesPage {
    services: Vec<ContractService>,
    next: Option<String>,
    units: Vec<UnitRow>,
}

enum State {
    NotStarted,
    /// The page request is out; a retryable failure stays here.
    Awaiting,
    /// Billing lines: the unit rows of the page are being read.
    Units {
        page: LinesPage,
        lookup: Lookup,
    },
    /// Billing lines: the companies of the page's contracts are being read.
    Companies {
        page: LinesPage,
        lookup: Lookup,
    },
    /// A page went out; `continue` asks for the next one, or ends the listing.
    PageOut {
        next: Option<String>,
    },
    Finished,
    Failed(PluginError),
}

pub struct ListMachine {
    session: Arc<Session>,
    listing: Listing,
    query: Query,
    endpoint: String,
    stored_through: Option<(OffsetDateTime, u64)>,
    /// The greatest id of any row received.
    max_id: Option<u64>,
    greatest: Option<Greatest>,
    state: State,
}

impl ListMachine {
    pub fn new(session: Arc<Session>, listing: Listing) -> Result<ListMachine, PluginError> {
        let query = listing.query(session.settings().page_size)?;
        let endpoint = query.endpoint();
        let stored_through = listing.stored_through();
        Ok(ListMachine {
            session,
            listing,
            query,
            endpoint,
            stored_through,
            max_id: None,
            greatest: None,
            state: State::NotStarted,
        })
    }

    fn send(&mut self, request: Result<HttpRequest, PluginError>, state: State) -> Step {
        match request {
            Ok(request) => {
                self.state = state;
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    /// A failure: a retryable one leaves the state as it was, so the same request can be
    /// answered again.
    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }

    fn answer_page(&mut self, response: &HttpResponse) -> Step {
        let page = match read_page(response, &self.endpoint) {
            Ok(page) => page,
            Err(error) => return self.fail(error),
        };
        // Check the next link before anything moves, so a refused link fails the page whole.
        if let Some(Err(error)) =
            page.next.as_ref().map(|url| self.query.next_request(&self.session, url))
        {
            return self.fail(error);
        }
        if self.listing.stream == Stream::BillingLines {
            return self.start_lines(page.items, page.next);
        }

        let mut rows = Vec::with_capacity(page.items.len());
        for raw in &page.items {
            match self.read_row(raw) {
                Ok(row) => rows.push(row),
                Err(error) => return self.fail(error),
            }
        }
        let records = self.keep(rows);
        self.page_out(records, page.next)
    }

    fn read_row(&self, raw: &RawValue) -> Result<Row, PluginError> {
        match self.listing.stream {
            Stream::Companies => records::company(raw, &self.endpoint),
            Stream::Products => records::product(raw, &self.endpoint),
            Stream::Agreements => records::agreement(raw, &self.endpoint),
            Stream::BillingLines => Err(errors::internal("billing lines are read in three steps")),
        }
    }

    /// Notes each row's id and cursor value, and drops rows the checkpoint already covers.
    fn keep(&mut self, rows: Vec<Row>) -> Vec<Record> {
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            self.max_id = self.max_id.max(Some(row.id));
            let at = row.updated_at.as_deref().and_then(parse_instant);
            if let (Some(at), Some(text)) = (at, row.updated_at.as_deref()) {
                let later = self.greatest.as_ref().is_none_or(|g| (at, row.id) > (g.at, g.id));
                if later {
                    self.greatest = Some(Greatest { at, id: row.id, text: text.to_string() });
                }
            }
            let stored = match (at, self.stored_through) {
                (Some(at), Some(through)) => (at, row.id) <= through,
                _ => false,
            };
            if !stored {
                records.push(row.record);
            }
        }
        records
    }

    fn start_lines(&mut self, items: Vec<Box<RawValue>>, next: Option<String>) -> Step {
        let services = match records::read_all(&items, &self.endpoint, records::contract_service) {
            Ok(services) => services,
            Err(error) => return self.fail(error),
        };
        let page = LinesPage { services, next, units: Vec::new() };
        if page.services.is_empty() {
            return self.page_out(Vec::new(), page.next);
        }
        let ids: Vec<u64> = page.services.iter().map(|s| s.id).collect();
        let query = unit_query(ids, self.listing.today);
        match Lookup::start(Arc::clone(&self.session), query) {
            Ok((lookup, request)) => {
                self.state = State::Units { page, lookup };
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    fn answer_units(&mut self, response: &HttpResponse) -> Step {
        let State::Units { lookup, .. } = &mut self.state else {
            return self.fail(errors::internal("unit rows arrived out of turn"));
        };
        match lookup.answer(response) {
            Ok(Some(request)) => return Step::Send { request },
            Ok(None) => {}
            Err(error) => return self.fail(error),
        }
        let State::Units { mut page, lookup } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return self.fail(errors::internal("unit rows arrived out of turn"));
        };
        let endpoint = lookup.endpoint();
        page.units = match records::read_all(&lookup.into_items(), &endpoint, records::unit_row) {
            Ok(units) => units,
            Err(error) => return self.fail(error),
        };
        let contracts: BTreeSet<u64> = page.services.iter().map(|s| s.contract_id).collect();
        let query = Query::new(
            "Contracts",
            crate::settings::MAX_PAGE_SIZE,
            &["id", "companyID"],
            &[Condition::In { field: "id", values: contracts.into_iter().collect() }],
        );
        match Lookup::start(Arc::clone(&self.session), query) {
            Ok((lookup, request)) => {
                self.state = State::Companies { page, lookup };
                Step::Send { request }
            }
            Err(error) => self.fail(error),
        }
    }

    fn answer_companies(&mut self, response: &HttpResponse) -> Step {
        let State::Companies { lookup, .. } = &mut self.state else {
            return self.fail(errors::internal("contracts arrived out of turn"));
        };
        match lookup.answer(response) {
            Ok(Some(request)) => return Step::Send { request },
            Ok(None) => {}
            Err(error) => return self.fail(error),
        }
        let State::Companies { page, lookup } = std::mem::replace(&mut self.state, State::Finished)
        else {
            return self.fail(errors::internal("contracts arrived out of turn"));
        };
        let endpoint = lookup.endpoint();
        let companies =
            match records::read_all(&lookup.into_items(), &endpoint, records::contract_company) {
                Ok(companies) => companies,
                Err(error) => return self.fail(error),
            };
        let today = self.listing.today;
        let mut records = Vec::with_capacity(page.services.len());
        for service in &page.services {
            self.max_id = self.max_id.max(Some(service.id));
            let unit = records::in_force(&page.units, service.id, today);
            let company = companies
                .iter()
                .find(|(contract, _)| *contract == service.contract_id)
                .and_then(|(_, company)| *company);
            records.push(Record::BillingLine(records::billing_line(service, unit, company)));
        }
        self.page_out(records, page.next)
    }

    fn page_out(&mut self, records: Vec<Record>, next: Option<String>) -> Step {
        let checkpoint = match &next {
            Some(_) => Checkpoint {
                cursor: self.listing.start.cursor.clone(),
                tie_id: self.listing.start.tie_id.clone(),
                page_token: self.max_id.map(|id| id.to_string()).or(self
                    .listing
                    .start
                    .page_token
                    .clone()),
            },
            None => self.final_checkpoint(),
        };
        let last = next.is_none();
        self.state = State::PageOut { next };
        Step::Page { records, checkpoint, last }
    }

    /// The checkpoint of the last page: for cursor streams the greatest of the starting cursor
    /// and every value seen, exactly as received; for id-paged streams the greatest id.
    fn final_checkpoint(&self) -> Checkpoint {
        let start = &self.listing.start;
        if self.listing.stream.cursor_field().is_none() {
            let tie = self.max_id.max(self.listing.start_tie());
            return Checkpoint {
                cursor: None,
                tie_id: tie.map(|id| id.to_string()),
                page_token: None,
            };
        }
        let start_at = start.cursor.as_deref().and_then(parse_instant);
        let start_id = self.listing.start_tie().unwrap_or(0);
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

/// The unit rows of `ids` that can cover `today`. Autotask writes period bounds as date-times
/// that a tenant's time zone can shift by hours, so the window is a day wider on each side and
/// [`records::in_force`] picks the row by calendar date.
pub fn unit_query(ids: Vec<u64>, today: Date) -> Query {
    let before = today.previous_day().unwrap_or(today);
    let after = today.next_day().unwrap_or(today);
    Query::new(
        "ContractServiceUnits",
        crate::settings::MAX_PAGE_SIZE,
        &UNIT_FIELDS,
        &[
            Condition::In { field: "contractServiceID", values: ids },
            Condition::lte("startDate", format!("{}T23:59:59", records::format_date(after))),
            Condition::gte("endDate", format!("{}T00:00:00", records::format_date(before))),
        ],
    )
}

impl Machine for ListMachine {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::NotStarted, StepInput::Start) => {
                let request = self.query.first_request(&self.session);
                self.send(request, State::Awaiting)
            }
            (State::Awaiting, StepInput::Response { response }) => self.answer_page(&response),
            (State::Units { .. }, StepInput::Response { response }) => self.answer_units(&response),
            (State::Companies { .. }, StepInput::Response { response }) => {
                self.answer_companies(&response)
            }
            (State::PageOut { next: Some(url) }, StepInput::Continue) => {
                let request = self.query.next_request(&self.session, &url.clone());
                self.send(request, State::Awaiting)
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
