//! The operations on one recurring invoice line, and the connection probe.
//!
//! Halo has no endpoint for one line: a line is read by reading its invoice
//! (`GET /api/RecurringInvoice/{id}?includelines=true`), and changed by upserting the invoice
//! (`POST /api/RecurringInvoice` with `[{"id": …, "lines": [...]}]`). Halo deletes every line
//! an upsert leaves out, so [`upsert_body`] sends back every line of the invoice exactly as
//! Halo wrote it, and changes nothing but the `qty_order` of the target line. Ids go out as
//! JSON integers (Halo refuses `95.0`), negative ones included. Halo has no conditional write:
//! an edit to another line of the same invoice between the read and the upsert would be
//! overwritten with what was read, so the upsert goes out in the step right after the read.
//! The probe reports every failure as `config` or `auth`: the host never retries a failed
//! probe. This module must never send an upsert built from anything but the invoice just
//! read, and never drop, add or reorder a line.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::value::RawValue;
use tally_plugin_sdk::{
    ErrorKind, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Quantity, Step, StepInput,
};

use crate::errors;
use crate::records::{Invoice, parse_decimal};
use crate::session::Session;
use crate::streams::Stream;

const INVOICES: &str = "RecurringInvoice";

/// `GET /api/client?pageinate=true&page_size=1&page_no=1`: proves the address, the
/// credentials and the permission to read clients, with one row.
pub struct Probe {
    session: Arc<Session>,
    state: ProbeState,
}

enum ProbeState {
    NotStarted,
    Awaiting,
    Failed(PluginError),
}

impl Probe {
    pub fn new(session: Arc<Session>) -> Probe {
        Probe { session, state: ProbeState::NotStarted }
    }

    fn finish(&self, response: &HttpResponse) -> Result<OpResult, PluginError> {
        let endpoint = Stream::Companies.endpoint();
        if !errors::is_success(response) {
            return Err(errors::from_response(response, &endpoint));
        }
        let page: BTreeMap<String, Box<RawValue>> = serde_json::from_str(&response.body)
            .map_err(|error| errors::malformed(&endpoint, error))?;
        if !page.contains_key("record_count") || !page.contains_key("clients") {
            return Err(errors::malformed(&endpoint, "expected `record_count` and `clients`"));
        }
        Ok(OpResult::Probed {
            detail: format!(
                "HaloPSA at {} accepted the client credentials of {}",
                self.session.settings().base_url,
                self.session.settings().client_id
            ),
        })
    }
}

impl Machine for Probe {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (ProbeState::NotStarted, StepInput::Start) => {
                self.state = ProbeState::Awaiting;
                let query = [
                    ("pageinate", "true".to_string()),
                    ("page_size", "1".to_string()),
                    ("page_no", "1".to_string()),
                ];
                let endpoint = Stream::Companies.endpoint();
                let request = self.session.api_request("GET", "client", &query, &endpoint);
                Step::Send { request }
            }
            (ProbeState::Awaiting, StepInput::Response { response }) => {
                match self.finish(&response) {
                    Ok(result) => Step::Done { result },
                    Err(error) => {
                        let error = probe_failure(error);
                        self.state = ProbeState::Failed(error.clone());
                        Step::Failed { error }
                    }
                }
            }
            (ProbeState::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the probe did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// Wraps the probe, authentication included, so that every failure reads as a configuration
/// problem.
pub struct ProbeMachine {
    inner: Box<dyn Machine>,
}

impl ProbeMachine {
    pub fn new(inner: Box<dyn Machine>) -> ProbeMachine {
        ProbeMachine { inner }
    }
}

impl Machine for ProbeMachine {
    fn step(&mut self, input: StepInput) -> Step {
        match self.inner.step(input) {
            Step::Failed { error } => Step::Failed { error: probe_failure(error) },
            step => step,
        }
    }
}

/// A failed probe: `auth` when Halo refused the credentials, else `config`; never retryable.
fn probe_failure(error: PluginError) -> PluginError {
    let mut error = match error.kind {
        ErrorKind::Auth | ErrorKind::Config => error,
        _ => PluginError {
            kind: ErrorKind::Config,
            message: format!(
                "the connection check failed: {}; check base_url, tenant, client_id and \
                 client_secret",
                error.message
            ),
            retryable: false,
            retry_after_seconds: None,
            field: error.field,
        },
    };
    error.retryable = false;
    error.retry_after_seconds = None;
    error
}

/// What to do with the line once its invoice is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Read,
    SetQuantity(Quantity),
}

enum LineState {
    NotStarted,
    /// The invoice GET is out.
    Reading,
    /// The upsert is out; resending it is harmless (it sets, it does not add).
    Writing,
    /// The upsert's answer held no lines: the invoice GET again, to report the line.
    Confirming,
    Done,
    Failed(PluginError),
}

/// Reads one line, or sets its quantity: see the module doc.
pub struct LineMachine {
    session: Arc<Session>,
    invoice: i64,
    line: i64,
    op: LineOp,
    state: LineState,
}

impl LineMachine {
    pub fn new(session: Arc<Session>, invoice: i64, line: i64, op: LineOp) -> LineMachine {
        LineMachine { session, invoice, line, op, state: LineState::NotStarted }
    }

    fn get_request(&self) -> HttpRequest {
        let path = format!("{INVOICES}/{}", self.invoice);
        let query = [("includelines", "true".to_string())];
        self.session.api_request("GET", &path, &query, INVOICES)
    }

    fn get_endpoint(&self) -> String {
        format!("GET /api/{INVOICES}/{}", self.invoice)
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = LineState::Failed(error.clone());
        }
        Step::Failed { error }
    }

    fn done(&mut self, result: Result<OpResult, PluginError>) -> Step {
        match result {
            Ok(result) => {
                self.state = LineState::Done;
                Step::Done { result }
            }
            Err(error) => self.fail(error),
        }
    }

    fn read(&mut self, response: &HttpResponse) -> Step {
        let endpoint = self.get_endpoint();
        let invoice = match invoice_body(response, &endpoint, self.invoice) {
            Ok(invoice) => invoice,
            Err(error) => return self.fail(error),
        };
        match self.op {
            LineOp::Read => {
                let result = line_result(&invoice, self.invoice, self.line, &endpoint);
                self.done(result)
            }
            LineOp::SetQuantity(quantity) => {
                match upsert_body(&invoice, self.line, quantity, &endpoint) {
                    Ok(body) => {
                        self.state = LineState::Writing;
                        let mut request = self.session.api_request("POST", INVOICES, &[], INVOICES);
                        request.body = Some(body);
                        Step::Send { request: request.header("Content-Type", "application/json") }
                    }
                    Err(error) => self.fail(error),
                }
            }
        }
    }

    fn written(&mut self, response: &HttpResponse) -> Step {
        let endpoint = format!("POST /api/{INVOICES}");
        if !errors::is_success(response) {
            return self.fail(errors::from_response(response, &endpoint));
        }
        let saved = match saved_invoice(&response.body, &endpoint) {
            Ok(saved) => saved,
            Err(error) => return self.fail(error),
        };
        match saved {
            Some(invoice) => {
                let result = line_result(&invoice, self.invoice, self.line, &endpoint);
                self.done(result)
            }
            None => {
                self.state = LineState::Confirming;
                Step::Send { request: self.get_request() }
            }
        }
    }

    fn confirmed(&mut self, response: &HttpResponse) -> Step {
        let endpoint = self.get_endpoint();
        let result = invoice_body(response, &endpoint, self.invoice)
            .and_then(|invoice| line_result(&invoice, self.invoice, self.line, &endpoint));
        self.done(result)
    }
}

impl Machine for LineMachine {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (LineState::NotStarted, StepInput::Start) => {
                self.state = LineState::Reading;
                Step::Send { request: self.get_request() }
            }
            (LineState::Reading, StepInput::Response { response }) => self.read(&response),
            (LineState::Writing, StepInput::Response { response }) => self.written(&response),
            (LineState::Confirming, StepInput::Response { response }) => self.confirmed(&response),
            (LineState::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "the operation on line {} of recurring invoice {} did not expect {}",
                    self.line,
                    self.invoice,
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// The invoice in a GET answer, as text; a 404 or an empty answer is `not_found`.
fn invoice_body(response: &HttpResponse, endpoint: &str, id: i64) -> Result<String, PluginError> {
    let missing = || {
        PluginError::new(
            ErrorKind::NotFound,
            format!("Halo has no recurring invoice {id} ({endpoint})"),
        )
        .retryable(false)
    };
    if response.status == 404 {
        return Err(missing());
    }
    if !errors::is_success(response) {
        return Err(errors::from_response(response, endpoint));
    }
    let raw: &RawValue =
        serde_json::from_str(&response.body).map_err(|error| errors::malformed(endpoint, error))?;
    let text = raw.get().trim();
    if text == "null" || text == "{}" {
        return Err(missing());
    }
    if !text.starts_with('{') {
        return Err(errors::malformed(endpoint, "expected one recurring invoice object"));
    }
    Ok(text.to_string())
}

/// The invoice an upsert answered with, when it holds the lines: Halo answers an upsert of
/// one invoice with that invoice (or a list of one).
fn saved_invoice(body: &str, endpoint: &str) -> Result<Option<String>, PluginError> {
    let raw: &RawValue =
        serde_json::from_str(body).map_err(|error| errors::malformed(endpoint, error))?;
    let text = raw.get().trim();
    let object = if text.starts_with('[') {
        let list: Vec<&RawValue> =
            serde_json::from_str(text).map_err(|error| errors::malformed(endpoint, error))?;
        match list.as_slice() {
            [one] => one.get().trim().to_string(),
            _ => return Ok(None),
        }
    } else {
        text.to_string()
    };
    if !object.starts_with('{') {
        return Ok(None);
    }
    let fields: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(&object).map_err(|error| errors::malformed(endpoint, error))?;
    let has_lines = fields.get("lines").is_some_and(|lines| lines.get().trim().starts_with('['));
    Ok(has_lines.then_some(object))
}

/// The line `line` of the invoice `invoice` (its JSON text) as the operation's result.
fn line_result(
    invoice: &str,
    invoice_id: i64,
    line: i64,
    endpoint: &str,
) -> Result<OpResult, PluginError> {
    let raw: &RawValue =
        serde_json::from_str(invoice).map_err(|error| errors::malformed(endpoint, error))?;
    let invoice = Invoice::read(raw, endpoint)?;
    if invoice.id != invoice_id {
        return Err(errors::bad_row(
            endpoint,
            format!("asked for recurring invoice {invoice_id}, Halo answered with {}", invoice.id),
        ));
    }
    for raw_line in &invoice.lines {
        if invoice.line_id(raw_line, endpoint)? != line {
            continue;
        }
        return match invoice.billing_line(raw_line, endpoint)? {
            Some(line) => Ok(OpResult::Line { line }),
            None => Err(PluginError::new(
                ErrorKind::InvalidRequest,
                format!(
                    "line {line} of recurring invoice {invoice_id} has no item: tally does not \
                     reconcile free-text lines"
                ),
            )
            .retryable(false)),
        };
    }
    Err(line_missing(invoice_id, line, endpoint))
}

fn line_missing(invoice: i64, line: i64, endpoint: &str) -> PluginError {
    PluginError::new(
        ErrorKind::NotFound,
        format!("recurring invoice {invoice} has no line {line} ({endpoint})"),
    )
    .retryable(false)
}

/// The upsert that sets line `line` of `invoice` (the invoice's JSON as Halo sent it) to
/// `quantity`: `[{"id": <invoice>, "lines": [<every line>]}]`, each line exactly as received
/// but for the target's `qty_order`, and every id written as a JSON integer.
pub fn upsert_body(
    invoice: &str,
    line: i64,
    quantity: Quantity,
    endpoint: &str,
) -> Result<String, PluginError> {
    let raw: &RawValue =
        serde_json::from_str(invoice).map_err(|error| errors::malformed(endpoint, error))?;
    let read = Invoice::read(raw, endpoint)?;
    let quantity_text = RawValue::from_string(quantity.0.normalize().to_string())
        .map_err(|error| errors::internal(format!("a quantity did not encode: {error}")))?;

    let mut lines = Vec::with_capacity(read.lines.len());
    let mut found = false;
    for raw_line in &read.lines {
        let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_str(raw_line.get())
            .map_err(|error| {
                errors::bad_row(
                    endpoint,
                    format!("a line of recurring invoice {}: {error}", read.id),
                )
            })?;
        for key in ["id", "ihid", "_itemid"] {
            if let Some(value) = fields.get_mut(key) {
                *value = integer(value, key, read.id, endpoint)?;
            }
        }
        if read.line_id(raw_line, endpoint)? == line {
            found = true;
            fields.insert("qty_order".to_string(), quantity_text.clone());
        }
        lines.push(fields);
    }
    if !found {
        return Err(line_missing(read.id, line, endpoint));
    }

    #[derive(serde::Serialize)]
    struct Upsert {
        id: i64,
        lines: Vec<BTreeMap<String, Box<RawValue>>>,
    }
    serde_json::to_string(&[Upsert { id: read.id, lines }])
        .map_err(|error| errors::internal(format!("an upsert did not encode: {error}")))
}

/// An id field as a JSON integer: `95` stays, `95.0` becomes `95`, `null` stays; anything
/// else is a row tally cannot send back.
fn integer(
    value: &RawValue,
    key: &str,
    invoice: i64,
    endpoint: &str,
) -> Result<Box<RawValue>, PluginError> {
    let text = value.get().trim();
    if text == "null" {
        return Ok(value.to_owned());
    }
    let whole = parse_decimal(text)
        .filter(|number| number.fract().is_zero())
        .and_then(|number| i64::try_from(number.trunc()).ok());
    let Some(whole) = whole else {
        return Err(errors::bad_row(
            endpoint,
            format!("a line of recurring invoice {invoice} has `{key}` {text}, not a whole number"),
        ));
    };
    RawValue::from_string(whole.to_string())
        .map_err(|error| errors::internal(format!("an id did not encode: {error}")))
}
