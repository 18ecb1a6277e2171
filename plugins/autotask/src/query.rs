//! Autotask's query language and its pages: the `{"MaxRecords", "IncludeFields", "filter"}`
//! body, its conditions, the `{items, pageDetails}` answer, and [`Lookup`], which reads every
//! page of one query by POSTing the identical body to each `nextPageUrl` (case C02). A page is
//! all or nothing: a body that does not parse, or any non-2xx on any page, fails the whole
//! query; nothing here hands out part of a result as if it were all of it.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tally_plugin_sdk::{HttpRequest, HttpResponse, PluginError};

use crate::errors;
use crate::session::Session;

/// One condition of a query's `filter`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"op", "field", "value"}`.
    Compare { op: &'static str, field: &'static str, value: Value },
    /// `{"op":"in", "field", "value":[…]}`.
    In { field: &'static str, values: Vec<u64> },
}

impl Condition {
    pub fn eq(field: &'static str, value: impl Into<Value>) -> Condition {
        Condition::Compare { op: "eq", field, value: value.into() }
    }

    pub fn gt(field: &'static str, value: impl Into<Value>) -> Condition {
        Condition::Compare { op: "gt", field, value: value.into() }
    }

    pub fn gte(field: &'static str, value: impl Into<Value>) -> Condition {
        Condition::Compare { op: "gte", field, value: value.into() }
    }

    pub fn lte(field: &'static str, value: impl Into<Value>) -> Condition {
        Condition::Compare { op: "lte", field, value: value.into() }
    }

    fn to_json(&self) -> Value {
        match self {
            Condition::Compare { op, field, value } => {
                json!({ "op": op, "field": field, "value": value })
            }
            Condition::In { field, values } => {
                json!({ "op": "in", "field": field, "value": values })
            }
        }
    }
}

/// One query: the entity it reads and its body, fixed for every page.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub entity: &'static str,
    pub body: String,
}

impl Query {
    /// A query of `entity` for `fields`, at most `max_records` rows a page. Autotask refuses
    /// an empty filter, so a query without conditions asks for `id >= 0`.
    pub fn new(
        entity: &'static str,
        max_records: u32,
        fields: &[&str],
        conditions: &[Condition],
    ) -> Query {
        let mut filter: Vec<Value> = conditions.iter().map(Condition::to_json).collect();
        if filter.is_empty() {
            filter.push(Condition::gte("id", 0).to_json());
        }
        let body = json!({ "MaxRecords": max_records, "IncludeFields": fields, "filter": filter });
        Query { entity, body: body.to_string() }
    }

    /// `POST Companies/query`, for messages.
    pub fn endpoint(&self) -> String {
        format!("POST {}/query", self.entity)
    }

    pub fn first_request(&self, session: &Session) -> Result<HttpRequest, PluginError> {
        session.query_request(self.entity, &self.body)
    }

    pub fn next_request(&self, session: &Session, url: &str) -> Result<HttpRequest, PluginError> {
        session.continuation_request(self.entity, url, &self.body)
    }
}

#[derive(Deserialize)]
struct Answer {
    items: Vec<Box<RawValue>>,
    #[serde(rename = "pageDetails")]
    page_details: Option<PageDetails>,
}

#[derive(Deserialize)]
struct PageDetails {
    #[serde(rename = "nextPageUrl")]
    next_page_url: Option<String>,
}

/// One page of a query's answer.
pub struct Page {
    pub items: Vec<Box<RawValue>>,
    /// Where the next page is, if there is one.
    pub next: Option<String>,
}

/// Reads one page; any failure status is an error, never an empty page.
pub fn read_page(response: &HttpResponse, endpoint: &str) -> Result<Page, PluginError> {
    if !errors::is_success(response) {
        return Err(errors::from_response(response, endpoint));
    }
    let answer: Answer =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(endpoint, error))?;
    let next = answer
        .page_details
        .and_then(|details| details.next_page_url)
        .filter(|url| !url.trim().is_empty());
    Ok(Page { items: answer.items, next })
}

/// Reads every page of one query and keeps every row, for the small look-ups of an operation
/// (one contract service, the unit rows of one page of lines).
pub struct Lookup {
    session: Arc<Session>,
    query: Query,
    items: Vec<Box<RawValue>>,
}

impl Lookup {
    /// The look-up and its first request.
    pub fn start(
        session: Arc<Session>,
        query: Query,
    ) -> Result<(Lookup, HttpRequest), PluginError> {
        let request = query.first_request(&session)?;
        Ok((Lookup { session, query, items: Vec::new() }, request))
    }

    /// Takes the answer to the last request: the next request, or `None` when every page is
    /// in. On an error nothing changes, so the same request can be answered again.
    pub fn answer(&mut self, response: &HttpResponse) -> Result<Option<HttpRequest>, PluginError> {
        let page = read_page(response, &self.query.endpoint())?;
        let next = match &page.next {
            Some(url) => Some(self.query.next_request(&self.session, url)?),
            None => None,
        };
        self.items.extend(page.items);
        Ok(next)
    }

    pub fn endpoint(&self) -> String {
        self.query.endpoint()
    }

    pub fn into_items(self) -> Vec<Box<RawValue>> {
        self.items
    }
}
