//! The JSON messages of the plugin contract, as Rust types.
//!
//! `schemas/plugin-messages.schema.json` describes the same messages for authors in other
//! languages; a test keeps the two in step. Quantities and prices travel as decimal strings
//! ("12.5"), never as JSON floats. Timestamps travel exactly as the source wrote them, so that a
//! cursor never loses precision (cursors compare as the source compares them); dates are
//! `YYYY-MM-DD`.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::tagged::tagged_enum;

/// What the host asks of the plugin: the JSON given to `invoke`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Describe yourself.
    Handshake,
    /// Open a session with settings already checked against the handshake's schema.
    Open { settings: Value },
    /// Forget a session and every operation started in it.
    Close { session: u64 },
    /// Start an operation in a session; the reply carries its first step.
    Start { session: u64, operation: Operation },
    /// Feed the next input to a running operation; the reply carries its next step.
    Step { operation: u64, input: StepInput },
    /// Forget an operation, finished or not.
    Finish { operation: u64 },
}

/// What `invoke` returns.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    Handshake {
        handshake: Handshake,
    },
    /// `hosts` are the only hosts (`host` or `host:port`) this session may send requests to;
    /// the host refuses any other, so credentials never leave for another server.
    Opened {
        session: u64,
        hosts: Vec<String>,
    },
    Started {
        operation: u64,
        step: Step,
    },
    Stepped {
        step: Step,
    },
    Done,
    Failed {
        error: PluginError,
    },
}

/// The plugin's description of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Handshake {
    pub abi_version: u32,
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub streams: Vec<StreamInfo>,
    pub capabilities: Vec<Capability>,
    /// How this PSA changes a quantity: by setting it, or by adding a delta.
    pub quantity_writes: QuantityWrites,
    /// JSON Schema of the settings object.
    pub settings_schema: Value,
    /// Names of settings whose values are secrets: the host redacts them from every log line.
    pub secret_settings: Vec<String>,
    pub limits: Limits,
    pub build: BuildInfo,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    Psa,
    Vendor,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum QuantityWrites {
    /// A write sets the quantity: sending it twice is harmless.
    Absolute,
    /// A write adds a delta: the host re-reads the line before any retry.
    Delta,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `read_line` operations.
    ReadLine,
    /// `set_quantity` operations.
    SetQuantity,
    /// `create_line` operations.
    CreateLine,
}

/// One listing the plugin can keep in step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamInfo {
    pub name: String,
    pub record: RecordKind,
    /// Whether `incremental` listings read only what changed since a checkpoint.
    pub incremental: bool,
    /// A stream listed once per record of another stream (e.g. billing lines per agreement).
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Company,
    Product,
    Agreement,
    BillingLine,
    Account,
    Service,
    Usage,
}

/// Hints that keep the host inside the remote API's published limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Requests in flight at once for one session.
    pub max_concurrency: u32,
    /// Requests in flight at once against one endpoint (`HttpRequest::endpoint`).
    pub per_endpoint_concurrency: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub requests_per_hour: Option<u32>,
    /// The largest page the API serves, for the host's request estimates.
    pub max_page_size: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildInfo {
    /// Version of `tally-plugin-sdk` (or of the schema) the plugin was written against.
    pub sdk_version: String,
    /// The compiler, for the record; the JSON boundary does not depend on it.
    pub compiler: String,
}

/// A question the host asks in a session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    /// One cheap authenticated request that proves the settings work. The host never retries
    /// a failed probe: report it as `auth` or `config`, with a message naming the setting.
    Probe,
    /// Read one stream, page by page.
    List {
        stream: String,
        mode: ListMode,
        /// Where an earlier listing stopped, or `None` from the start.
        checkpoint: Option<Checkpoint>,
        /// For a child stream, the parent record's id.
        parent_id: Option<String>,
        /// An incremental listing reads from `cursor - lookback_seconds` (case C17).
        lookback_seconds: u64,
    },
    /// The current state of one billing line.
    ReadLine { line: LineRef },
    /// Make a line's quantity `quantity` as of `effective_date`.
    SetQuantity { line: LineRef, quantity: Quantity, effective_date: String },
    /// Add a billing line.
    CreateLine {
        company_id: String,
        agreement_id: String,
        product_id: String,
        quantity: Quantity,
        effective_date: String,
    },
}

/// A decimal that travels as a string.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct Quantity(#[serde(with = "rust_decimal::serde::str")] pub Decimal);

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ListMode {
    /// Everything; a listing that reaches its last page may retire what it did not see.
    Full,
    /// What changed since the checkpoint.
    Incremental,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct LineRef {
    pub id: String,
    pub agreement_id: String,
}

/// How far a stream has been read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    /// The source's cursor value (e.g. a last-updated timestamp), exactly as received.
    pub cursor: Option<String>,
    /// The id of the last record at that cursor, to break ties.
    pub tie_id: Option<String>,
    /// Where a listing in progress resumes (page number, continuation URL, last id). Valid
    /// only for the same stream, parent and mode that produced it.
    pub page_token: Option<String>,
}

/// What the host feeds an operation.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum StepInput {
    /// The first step.
    Start,
    /// The response to the request of the previous step.
    Response { response: HttpResponse },
    /// The page of the previous step is stored; go on.
    Continue,
}

/// What an operation answers.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Send this request and step with its response.
    Send { request: HttpRequest },
    /// Store these records with this checkpoint in one transaction, then step with `continue`.
    /// `last` marks the final page of a listing that read everything it was asked for.
    Page { records: Vec<Record>, checkpoint: Checkpoint, last: bool },
    /// The operation ended with a result.
    Done { result: OpResult },
    /// The operation failed. A retryable failure leaves the operation where it was: the host
    /// may send the previous request again and step with the new response, or finish.
    Failed { error: PluginError },
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum OpResult {
    Probed {
        detail: String,
    },
    /// The state of a line after a read or a write.
    Line {
        line: BillingLine,
    },
    /// A listing that ends without a page.
    Listed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<Header>,
    pub body: Option<String>,
    /// A name for the endpoint, for per-endpoint concurrency limits and logs.
    pub endpoint: String,
}

impl HttpRequest {
    pub fn new(method: &str, url: impl Into<String>, endpoint: impl Into<String>) -> Self {
        HttpRequest {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            endpoint: endpoint.into(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push(Header { name: name.to_string(), value: value.into() });
        self
    }

    pub fn json_body(mut self, body: &Value) -> Self {
        self.body = Some(body.to_string());
        self.header("Content-Type", "application/json")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<Header>,
    pub body: String,
}

impl HttpResponse {
    /// The first header of that name, compared without regard to case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }
}

/// A typed failure that says whether trying again can help.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: String,
    pub retryable: bool,
    pub retry_after_seconds: Option<u64>,
    /// The setting or field the error is about, when there is one.
    pub field: Option<String>,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(kind, ErrorKind::RateLimited | ErrorKind::Server);
        PluginError {
            kind,
            message: message.into(),
            retryable,
            retry_after_seconds: None,
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Credentials missing or refused.
    Auth,
    /// The settings are wrong (a bad value, a missing setting).
    Config,
    RateLimited,
    NotFound,
    /// The remote API refused the request as invalid.
    InvalidRequest,
    /// The record changed under us (e.g. a line edited since it was read).
    Conflict,
    Server,
    /// A body that could not be read as the API's documented shape.
    MalformedResponse,
    /// A listing that cannot be proven whole (e.g. fewer rows than the API's own count).
    Incomplete,
    /// The plugin does not offer that operation or stream.
    Unsupported,
    /// A bug in the plugin, including a caught panic.
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Config => "config",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::NotFound => "not_found",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Server => "server",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Internal => "internal",
        }
    }
}

/// One record of the common model.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Company(Company),
    Product(Product),
    Agreement(Agreement),
    BillingLine(BillingLine),
    Account(Account),
    Service(Service),
    Usage(Usage),
}

impl Record {
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Company(_) => RecordKind::Company,
            Record::Product(_) => RecordKind::Product,
            Record::Agreement(_) => RecordKind::Agreement,
            Record::BillingLine(_) => RecordKind::BillingLine,
            Record::Account(_) => RecordKind::Account,
            Record::Service(_) => RecordKind::Service,
            Record::Usage(_) => RecordKind::Usage,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Company {
    pub id: String,
    pub name: String,
    pub identifier: Option<String>,
    pub active: bool,
    /// Deleted or merged away in the PSA (case C12): never a write target.
    #[serde(default)]
    pub deleted: bool,
    /// Whether the PSA bills this company (not a prospect, not unapproved).
    #[serde(default = "yes")]
    pub billable: bool,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub raw: Option<RawJson>,
    /// Where the source JSON stands in the response body instead of `raw` (see [`Span`]).
    #[serde(default)]
    pub raw_at: Option<Span>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub id: String,
    pub identifier: Option<String>,
    pub description: String,
    pub active: bool,
    #[serde(default)]
    pub unit_price: Option<Quantity>,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub raw: Option<RawJson>,
    /// Where the source JSON stands in the response body instead of `raw` (see [`Span`]).
    #[serde(default)]
    pub raw_at: Option<Span>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Agreement {
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub active: bool,
    /// Whether the agreement bills on a recurring cycle.
    #[serde(default = "yes")]
    pub recurring: bool,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub raw: Option<RawJson>,
    /// Where the source JSON stands in the response body instead of `raw` (see [`Span`]).
    #[serde(default)]
    pub raw_at: Option<Span>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BillingLine {
    pub id: String,
    pub agreement_id: String,
    /// May be empty when the PSA's line does not name its company: the host takes it from the
    /// agreement.
    pub company_id: String,
    pub product_id: String,
    pub quantity: Quantity,
    #[serde(default)]
    pub included_quantity: Option<Quantity>,
    #[serde(default)]
    pub unit_price: Option<Quantity>,
    /// `YYYY-MM-DD`.
    pub effective_date: Option<String>,
    /// `YYYY-MM-DD`; the line no longer bills from this date on.
    pub cancelled_date: Option<String>,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub raw: Option<RawJson>,
    /// Where the source JSON stands in the response body instead of `raw` (see [`Span`]).
    #[serde(default)]
    pub raw_at: Option<Span>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Account {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Service {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub account_id: String,
    pub service_id: String,
    pub quantity: Quantity,
}

fn yes() -> bool {
    true
}

/// A record's source JSON, carried as the text the source sent: a plugin copies it from the
/// response body and the host stores it, and neither builds a tree of it. On the wire it is the
/// JSON value itself, as before.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The JSON text of `raw`, copied.
    pub fn from_raw(raw: &RawValue) -> RawJson {
        RawJson(raw.to_owned())
    }

    /// `text`, if it is one JSON value.
    pub fn parse(text: &str) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text.to_owned()).map(RawJson)
    }

    /// `value` written as JSON text.
    pub fn from_value(value: &Value) -> RawJson {
        // A `Value` always encodes, and always as valid JSON.
        RawJson(serde_json::value::to_raw_value(value).expect("a JSON value encodes"))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The JSON as a tree, for the rare reader that needs one.
    pub fn to_value(&self) -> Value {
        // The text was valid JSON when it was made, so it parses.
        serde_json::from_str(self.0.get()).expect("raw JSON is valid JSON")
    }
}

/// Where a record's source JSON stands in the body of the response that the step answered:
/// bytes `start..end`. The host holds that body already, so a plugin that read a row out of it
/// names the row's place instead of copying it into `raw`, and the JSON crosses the boundary
/// once, in the response. A record gives `raw`, `raw_at` or neither; the host checks that the
/// span lies within the body and that what it names is JSON before storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    /// The place of `part` in `whole`, when `part` is a slice of `whole` (as a `&RawValue` read
    /// from a body with `serde_json::from_str` is); `None` otherwise.
    pub fn of(whole: &str, part: &str) -> Option<Span> {
        let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
        let end = start.checked_add(part.len())?;
        (end <= whole.len()).then_some(Span { start: start as u64, end: end as u64 })
    }

    /// The text of this span in `body`, if it lies within it on character boundaries.
    pub fn text<'a>(&self, body: &'a str) -> Option<&'a str> {
        let start = usize::try_from(self.start).ok()?;
        let end = usize::try_from(self.end).ok()?;
        if start > end {
            return None;
        }
        body.get(start..end)
    }
}

/// Two texts are the same record when they are the same bytes.
impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

tagged_enum!(Call, "call" {
    "handshake" => Handshake,
    "open" => Open { settings: Value },
    "close" => Close { session: u64 },
    "start" => Start { session: u64, operation: Operation },
    "step" => Step { operation: u64, input: StepInput },
    "finish" => Finish { operation: u64 },
});

tagged_enum!(Reply, "reply" {
    "handshake" => Handshake { handshake: Handshake },
    "opened" => Opened { session: u64, hosts: Vec<String> },
    "started" => Started { operation: u64, step: Step },
    "stepped" => Stepped { step: Step },
    "done" => Done,
    "failed" => Failed { error: PluginError },
});

tagged_enum!(StepInput, "input" {
    "start" => Start,
    "response" => Response { response: HttpResponse },
    "continue" => Continue,
});

tagged_enum!(Step, "step" {
    "send" => Send { request: HttpRequest },
    "page" => Page { records: Vec<Record>, checkpoint: Checkpoint, last: bool },
    "done" => Done { result: OpResult },
    "failed" => Failed { error: PluginError },
});

tagged_enum!(OpResult, "result" {
    "probed" => Probed { detail: String },
    "line" => Line { line: BillingLine },
    "listed" => Listed,
});

tagged_enum!(Record, "kind" {
    "company" => Company(Company),
    "product" => Product(Product),
    "agreement" => Agreement(Agreement),
    "billing_line" => BillingLine(BillingLine),
    "account" => Account(Account),
    "service" => Service(Service),
    "usage" => Usage(Usage),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_names_a_slice_of_the_body_and_nothing_else() {
        let body = r#"[{"id":1},{"id":"é2"}]"#;
        let rows: Vec<&RawValue> = serde_json::from_str(body).unwrap();
        let second = Span::of(body, rows[1].get()).unwrap();
        assert_eq!(second.text(body), Some(r#"{"id":"é2"}"#));
        assert_eq!(Span::of(body, "{\"id\":1}"), None, "a copy is not a slice of the body");

        let past = Span { start: 3, end: body.len() as u64 + 1 };
        assert_eq!(past.text(body), None);
        let backwards = Span { start: 5, end: 2 };
        assert_eq!(backwards.text(body), None);
        let inside_a_character = Span { start: 18, end: 20 };
        assert!(body.as_bytes()[18] >= 0x80);
        assert_eq!(inside_a_character.text(body), None);
    }
}
