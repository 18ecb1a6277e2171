//! The one-request operations: the connection probe, reading one agreement addition, setting
//! its quantity with a JSON Patch, and creating one. Each is a machine that sends one request
//! and turns the answer into a result or a typed error. Quantities are written from the
//! decimal's exact text, never through `f64`. The probe reports every failure as `config` or
//! `auth` (case C10: the host never retries a failed probe). This module must never send a
//! request whose ids it could not read as ConnectWise ids, and never write anything but the
//! quantity of the named line or the one line asked for.

use std::sync::Arc;

use serde_json::value::RawValue;
use tally_plugin_sdk::{
    ErrorKind, HttpRequest, HttpResponse, Machine, OpResult, PluginError, Quantity, Record, Step,
    StepInput,
};
use time::Date;
use time::macros::format_description;

use crate::conditions::Query;
use crate::errors;
use crate::records::billing_line;
use crate::session::Session;

const ADDITIONS: &str = "finance/agreements/additions";

/// What a one-request operation sends and how it reads the answer.
pub trait Exchange: Send {
    /// The request, built once the codebase is known.
    fn request(&self, session: &Session) -> Result<HttpRequest, PluginError>;
    /// The result of a response, whatever its status.
    fn finish(&self, session: &Session, response: &HttpResponse) -> Result<OpResult, PluginError>;
}

enum State {
    NotStarted,
    /// The request is out; a retryable failure stays here.
    Awaiting,
    Done,
    Failed(PluginError),
}

/// Runs one [`Exchange`].
pub struct Single<E> {
    session: Arc<Session>,
    exchange: E,
    state: State,
}

impl<E: Exchange> Single<E> {
    pub fn new(session: Arc<Session>, exchange: E) -> Single<E> {
        Single { session, exchange, state: State::NotStarted }
    }

    fn fail(&mut self, error: PluginError) -> Step {
        if !error.retryable {
            self.state = State::Failed(error.clone());
        }
        Step::Failed { error }
    }
}

impl<E: Exchange> Machine for Single<E> {
    fn step(&mut self, input: StepInput) -> Step {
        match (&self.state, input) {
            (State::NotStarted, StepInput::Start) => match self.exchange.request(&self.session) {
                Ok(request) => {
                    self.state = State::Awaiting;
                    Step::Send { request }
                }
                Err(error) => self.fail(error),
            },
            (State::Awaiting, StepInput::Response { response }) => {
                match self.exchange.finish(&self.session, &response) {
                    Ok(result) => {
                        self.state = State::Done;
                        Step::Done { result }
                    }
                    Err(error) => self.fail(error),
                }
            }
            (State::Failed(error), _) => Step::Failed { error: error.clone() },
            (_, input) => Step::Failed {
                error: errors::internal(format!(
                    "a one-request operation did not expect {}",
                    crate::describe_input(&input)
                )),
            },
        }
    }
}

/// `GET company/companies?pageSize=1&fields=id`: proves the site, codebase and credentials.
pub struct Probe;

impl Exchange for Probe {
    fn request(&self, session: &Session) -> Result<HttpRequest, PluginError> {
        let query = Query::new().pair("pageSize", "1").pair("fields", "id");
        session.request("GET", "company/companies", &query, "company/companies")
    }

    fn finish(&self, session: &Session, response: &HttpResponse) -> Result<OpResult, PluginError> {
        let endpoint = "GET company/companies";
        if !errors::is_success(response) {
            return Err(errors::from_response(response, endpoint));
        }
        if serde_json::from_str::<Vec<&RawValue>>(&response.body).is_err() {
            return Err(errors::malformed(endpoint, "expected a JSON array of companies"));
        }
        let settings = session.settings();
        Ok(OpResult::Probed {
            detail: format!(
                "ConnectWise at {} accepted the credentials of company {} (codebase {})",
                settings.site,
                settings.company_id,
                session.codebase().unwrap_or("?")
            ),
        })
    }
}

/// Wraps the probe's machine so that every failure reads as a configuration problem.
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

/// A failed probe: `auth` when ConnectWise refused the credentials, else `config`; never
/// retryable.
fn probe_failure(error: PluginError) -> PluginError {
    let mut error = match error.kind {
        ErrorKind::Auth | ErrorKind::Config => error,
        _ => PluginError {
            kind: ErrorKind::Config,
            message: format!(
                "the connection check failed: {}; check site, codebase, company_id, public_key, \
                 private_key and client_id",
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

/// `GET finance/agreements/{agreement}/additions/{line}`.
pub struct ReadLine {
    pub agreement: u64,
    pub line: u64,
}

impl Exchange for ReadLine {
    fn request(&self, session: &Session) -> Result<HttpRequest, PluginError> {
        let path = format!("finance/agreements/{}/additions/{}", self.agreement, self.line);
        session.request("GET", &path, &Query::new(), ADDITIONS)
    }

    fn finish(&self, _: &Session, response: &HttpResponse) -> Result<OpResult, PluginError> {
        line_result(response, "GET", self.agreement, None)
    }
}

/// `PATCH finance/agreements/{agreement}/additions/{line}` with
/// `[{"op":"replace","path":"quantity","value":N}]`.
///
/// ConnectWise changes the addition in place; the operation's effective date is checked but
/// not sent, since an addition's quantity has no date of its own.
pub struct SetQuantity {
    pub agreement: u64,
    pub line: u64,
    pub quantity: Quantity,
}

impl SetQuantity {
    /// The JSON Patch body, the number written from the decimal's text.
    pub fn body(&self) -> String {
        format!(r#"[{{"op":"replace","path":"quantity","value":{}}}]"#, self.quantity.0)
    }
}

impl Exchange for SetQuantity {
    fn request(&self, session: &Session) -> Result<HttpRequest, PluginError> {
        let path = format!("finance/agreements/{}/additions/{}", self.agreement, self.line);
        let mut request = session.request("PATCH", &path, &Query::new(), ADDITIONS)?;
        request.body = Some(self.body());
        Ok(request.header("Content-Type", "application/json"))
    }

    fn finish(&self, _: &Session, response: &HttpResponse) -> Result<OpResult, PluginError> {
        line_result(response, "PATCH", self.agreement, None)
    }
}

/// `POST finance/agreements/{agreement}/additions`: a billable addition of `product`.
pub struct CreateLine {
    pub company_id: String,
    pub agreement: u64,
    pub product: u64,
    pub quantity: Quantity,
    /// `YYYY-MM-DD`, checked.
    pub effective_date: String,
}

impl CreateLine {
    pub fn body(&self) -> String {
        format!(
            r#"{{"product":{{"id":{}}},"quantity":{},"billCustomer":"Billable","effectiveDate":"{}T00:00:00Z"}}"#,
            self.product, self.quantity.0, self.effective_date
        )
    }
}

impl Exchange for CreateLine {
    fn request(&self, session: &Session) -> Result<HttpRequest, PluginError> {
        let path = format!("finance/agreements/{}/additions", self.agreement);
        let mut request = session.request("POST", &path, &Query::new(), ADDITIONS)?;
        request.body = Some(self.body());
        Ok(request.header("Content-Type", "application/json"))
    }

    fn finish(&self, _: &Session, response: &HttpResponse) -> Result<OpResult, PluginError> {
        line_result(response, "POST", self.agreement, Some(&self.company_id))
    }
}

/// Checks an operation's `YYYY-MM-DD` date and writes it back the same way.
pub fn parse_date(field: &str, text: &str) -> Result<String, PluginError> {
    let format = format_description!("[year]-[month]-[day]");
    Date::parse(text, format).ok().and_then(|date| date.format(format).ok()).ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("{field} `{text}` is not a date written YYYY-MM-DD"),
        )
        .with_field(field)
        .retryable(false)
    })
}

/// The line in an addition answer.
fn line_result(
    response: &HttpResponse,
    method: &str,
    agreement: u64,
    company_id: Option<&str>,
) -> Result<OpResult, PluginError> {
    let endpoint = format!("{method} {ADDITIONS}");
    if !errors::is_success(response) {
        return Err(errors::from_response(response, &endpoint));
    }
    let raw: &RawValue = serde_json::from_str(&response.body)
        .map_err(|error| errors::malformed(&endpoint, error))?;
    if !raw.get().trim_start().starts_with('{') {
        return Err(errors::malformed(&endpoint, "expected one agreement addition object"));
    }
    match billing_line(raw, agreement, company_id, &endpoint)?.record {
        Record::BillingLine(line) => Ok(OpResult::Line { line }),
        _ => Err(errors::internal("an addition was read as another kind of record")),
    }
}
