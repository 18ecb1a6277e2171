//! Helpers shared by the adapter's tests: settings, canned responses, fixtures, a driver that
//! runs a machine against a closure standing in for ConnectWise, and a small in-memory
//! ConnectWise listing that honours `page`, `pageSize` and a `_info/lastUpdated>=` condition.
//! Nothing here touches a network.

#![allow(dead_code)]

use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tally_connectwise::ConnectWise;
use tally_plugin_sdk::{
    Checkpoint, Header, HttpRequest, HttpResponse, ListMode, Machine, OpResult, Operation, Plugin,
    PluginError, Record, Step, StepInput,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const SITE: &str = "https://api-na.myconnectwise.net";
pub const API: &str = "https://api-na.myconnectwise.net/v4_6_release/apis/3.0/";

/// Settings with a configured codebase, so no companyinfo step.
pub fn settings() -> Value {
    json!({
        "site": SITE,
        "company_id": "acme",
        "public_key": "pubkey",
        "private_key": "privkey",
        "client_id": "client-1",
        "codebase": "v4_6_release/"
    })
}

/// [`settings`] with some keys replaced or added.
pub fn settings_with(changes: Value) -> Value {
    let mut settings = settings();
    if let (Some(base), Some(changes)) = (settings.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            base.insert(key.clone(), value.clone());
        }
    }
    settings
}

pub fn open(settings: Value) -> ConnectWise {
    match ConnectWise::open(&settings) {
        Ok(plugin) => plugin,
        Err(error) => panic!("settings refused: {error}"),
    }
}

pub fn open_error(settings: Value) -> PluginError {
    match ConnectWise::open(&settings) {
        Ok(_) => panic!("settings accepted: {settings}"),
        Err(error) => error,
    }
}

pub fn start(plugin: &ConnectWise, operation: Operation) -> Box<dyn Machine> {
    match plugin.start(operation) {
        Ok(machine) => machine,
        Err(error) => panic!("operation refused: {error}"),
    }
}

pub fn start_error(plugin: &ConnectWise, operation: Operation) -> PluginError {
    match plugin.start(operation) {
        Ok(_) => panic!("operation accepted"),
        Err(error) => error,
    }
}

pub fn list(stream: &str, mode: ListMode, checkpoint: Option<Checkpoint>) -> Operation {
    Operation::List {
        stream: stream.to_string(),
        mode,
        checkpoint,
        parent_id: None,
        lookback_seconds: 0,
    }
}

/// A full listing of one agreement's billing lines (its additions).
pub fn lines_of(agreement: &str) -> Operation {
    Operation::List {
        stream: "billing_lines".to_string(),
        mode: ListMode::Full,
        checkpoint: None,
        parent_id: Some(agreement.to_string()),
        lookback_seconds: 0,
    }
}

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => panic!("{path}: {error}"),
    }
}

pub fn fixture_json(name: &str) -> Value {
    match serde_json::from_str(&fixture(name)) {
        Ok(value) => value,
        Err(error) => panic!("{name}: {error}"),
    }
}

pub fn response(status: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse { status, headers: Vec::new(), body: body.into() }
}

pub fn ok(body: impl Into<String>) -> HttpResponse {
    response(200, body)
}

pub fn with_header(mut response: HttpResponse, name: &str, value: &str) -> HttpResponse {
    response.headers.push(Header { name: name.to_string(), value: value.to_string() });
    response
}

pub fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// The request of a `Send` step.
pub fn sent(step: Step) -> HttpRequest {
    match step {
        Step::Send { request } => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The error of a `Failed` step.
pub fn failed(step: Step) -> PluginError {
    match step {
        Step::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

pub fn done(step: Step) -> OpResult {
    match step {
        Step::Done { result } => result,
        other => panic!("expected a result, got {other:?}"),
    }
}

pub fn respond(machine: &mut dyn Machine, response: HttpResponse) -> Step {
    machine.step(StepInput::Response { response })
}

/// The raw (still encoded) query string of a URL.
pub fn raw_query(url: &str) -> &str {
    url.split_once('?').map_or("", |(_, query)| query)
}

/// The raw (still encoded) value of one query key.
pub fn raw_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    raw_query(url).split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then_some(v)
    })
}

/// The decoded value of one query key.
pub fn param(url: &str, key: &str) -> Option<String> {
    raw_param(url, key).map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
}

/// What a listing did: every request, every page, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub requests: Vec<HttpRequest>,
    pub pages: Vec<(Vec<Record>, Checkpoint, bool)>,
    /// The final step: `Done` after a last page, or `Failed`.
    pub end: Step,
}

impl Run {
    pub fn records(&self) -> Vec<&Record> {
        self.pages.iter().flat_map(|(records, _, _)| records).collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.records().into_iter().map(record_id).collect()
    }

    pub fn last_checkpoint(&self) -> &Checkpoint {
        match self.pages.last() {
            Some((_, checkpoint, _)) => checkpoint,
            None => panic!("the listing gave no page: {:?}", self.end),
        }
    }
}

pub fn record_id(record: &Record) -> String {
    match record {
        Record::Company(c) => c.id.clone(),
        Record::Product(p) => p.id.clone(),
        Record::Agreement(a) => a.id.clone(),
        Record::BillingLine(l) => l.id.clone(),
        other => panic!("not a PSA record: {other:?}"),
    }
}

/// Runs a machine to its end, answering each request with `server`.
pub fn drive(
    machine: &mut dyn Machine,
    mut server: impl FnMut(&HttpRequest) -> HttpResponse,
) -> Run {
    let mut run = Run {
        requests: Vec::new(),
        pages: Vec::new(),
        end: Step::Done { result: OpResult::Listed },
    };
    let mut step = machine.step(StepInput::Start);
    for _ in 0..10_000 {
        match step {
            Step::Send { request } => {
                let response = server(&request);
                run.requests.push(request);
                step = machine.step(StepInput::Response { response });
            }
            Step::Page { records, checkpoint, last } => {
                run.pages.push((records, checkpoint, last));
                step = machine.step(StepInput::Continue);
            }
            end => {
                run.end = end;
                return run;
            }
        }
    }
    panic!("the machine did not end within 10000 steps");
}

/// A company row as ConnectWise lists it.
pub fn company_row(id: u64, last_updated: &str) -> Value {
    json!({
        "id": id,
        "identifier": format!("C{id}"),
        "name": format!("Company {id}"),
        "status": {"id": 1, "name": "Active"},
        "types": [{"id": 1, "name": "Customer"}],
        "leadFlag": false,
        "deletedFlag": false,
        "_info": {"lastUpdated": last_updated, "updatedBy": "admin1"}
    })
}

pub fn company_rows(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| company_row(id, "2024-05-01T00:00:00Z")).collect()
}

/// An in-memory listing: answers `page`/`pageSize` (defaulting to ConnectWise's 25) over
/// `rows` ordered by id, keeping only rows at or after a `_info/lastUpdated>=[…]` condition.
pub fn listing_server(rows: Vec<Value>) -> impl FnMut(&HttpRequest) -> HttpResponse {
    move |request| {
        let page: usize = param(&request.url, "page").and_then(|p| p.parse().ok()).unwrap_or(1);
        let size: usize =
            param(&request.url, "pageSize").and_then(|p| p.parse().ok()).unwrap_or(25);
        let since = param(&request.url, "conditions").and_then(|c| condition_instant(&c));
        let mut matching: Vec<&Value> = rows
            .iter()
            .filter(|row| match (since, row_updated(row)) {
                (Some(since), Some(at)) => at >= since,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        matching.sort_by_key(|row| row["id"].as_u64());
        let slice: Vec<&Value> = matching.into_iter().skip((page - 1) * size).take(size).collect();
        ok(serde_json::to_string(&slice).unwrap_or_default())
    }
}

fn row_updated(row: &Value) -> Option<OffsetDateTime> {
    row["_info"]["lastUpdated"].as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
}

/// The instant inside `_info/lastUpdated>=[…]`.
pub fn condition_instant(condition: &str) -> Option<OffsetDateTime> {
    let inside = condition.split_once(">=[")?.1.strip_suffix(']')?;
    OffsetDateTime::parse(inside, &Rfc3339).ok()
}
