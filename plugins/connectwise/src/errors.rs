//! Turns ConnectWise's failures into typed `PluginError`s: the HTTP status decides the kind
//! and whether a retry can help, and ConnectWise's error body (`{code, message, errors[]}`)
//! says what it objected to, in the message. It also builds the adapter's own refusals (a bad
//! id, a body that is not the documented shape). It must never guess a wait from anything but
//! a numeric `Retry-After` (the host reads dates itself), and never quote a request's headers:
//! they carry the credentials.

use serde::Deserialize;
use tally_plugin_sdk::{ErrorKind, HttpResponse, PluginError};

/// ConnectWise's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    #[serde(default)]
    errors: Option<Vec<FieldError>>,
}

#[derive(Debug, Deserialize)]
struct FieldError {
    code: Option<String>,
    message: Option<String>,
    resource: Option<String>,
    field: Option<String>,
}

/// Error codes ConnectWise uses for refused credentials whatever the HTTP status (case C10).
const AUTH_CODES: [&str; 3] = ["UserNotAuthenticated", "NotAuthenticated", "Unauthorized"];

/// The most of a non-JSON body quoted in a message.
const QUOTED_BODY: usize = 200;

/// Whether a status is a success whose body the caller should read.
pub fn is_success(response: &HttpResponse) -> bool {
    (200..300).contains(&response.status)
}

/// The error for a response that is not a success. `endpoint` names what was asked, e.g.
/// `GET finance/agreements/5/additions/7`.
pub fn from_response(response: &HttpResponse, endpoint: &str) -> PluginError {
    let body = serde_json::from_str::<ErrorBody>(&response.body).ok();
    let said = body.as_ref().map(describe).unwrap_or_else(|| quote(&response.body));
    let status = response.status;
    let code = body.as_ref().and_then(|b| b.code.as_deref()).unwrap_or("");
    let context = format!("(HTTP {status}, {endpoint})");

    if matches!(status, 401 | 403) || AUTH_CODES.iter().any(|c| c.eq_ignore_ascii_case(code)) {
        return auth(format!("ConnectWise refused the credentials{}{context}", said_part(&said)));
    }
    let (kind, retryable, lead) = match status {
        404 => (ErrorKind::NotFound, false, "ConnectWise has no such record"),
        400 | 422 => (ErrorKind::InvalidRequest, false, "ConnectWise refused the request"),
        409 | 412 => (ErrorKind::Conflict, false, "ConnectWise refused a conflicting change"),
        429 => (ErrorKind::RateLimited, true, "ConnectWise is throttling this integration"),
        500 | 502 | 503 | 504 => (ErrorKind::Server, true, "ConnectWise failed to answer"),
        500..=599 => (ErrorKind::Server, false, "ConnectWise cannot answer this request"),
        400..=499 => (ErrorKind::InvalidRequest, false, "ConnectWise refused the request"),
        _ => (ErrorKind::Server, false, "ConnectWise gave an unexpected answer"),
    };
    let mut error =
        PluginError::new(kind, format!("{lead}{}{context}", said_part(&said))).retryable(retryable);
    if status == 429 {
        error.retry_after_seconds = retry_after_seconds(response);
    }
    error
}

/// The refusal of credentials: names every setting that takes part in authentication.
pub fn auth(detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::Auth,
        format!(
            "{detail}; check company_id, public_key and private_key (sent as \
             company_id+public_key:private_key) and client_id (sent as the clientId header)"
        ),
    )
    .retryable(false)
}

/// A success whose body is not what ConnectWise documents: usually a truncated transfer, so
/// a retry can help. Never a partial page.
pub fn malformed(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("ConnectWise's answer to {endpoint} is not the expected JSON: {detail}"),
    )
    .retryable(true)
}

/// A row that parsed as JSON but cannot be read as a record: the data, not the transfer, is
/// at fault, so sending the request again will not help.
pub fn bad_row(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("ConnectWise's answer to {endpoint} holds a row tally cannot read: {detail}"),
    )
    .retryable(false)
}

/// An operation argument that cannot be a ConnectWise id.
pub fn bad_id(what: &str, id: &str) -> PluginError {
    PluginError::new(
        ErrorKind::InvalidRequest,
        format!("{what} `{id}` is not a ConnectWise id (ConnectWise ids are whole numbers)"),
    )
    .with_field(what)
    .retryable(false)
}

/// Reads an id argument as a ConnectWise id.
pub fn parse_id(what: &str, id: &str) -> Result<u64, PluginError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_id(what, id));
    }
    id.parse::<u64>().map_err(|_| bad_id(what, id))
}

/// A protocol slip of the host (e.g. `continue` where a response was due).
pub fn internal(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Internal, message).retryable(false)
}

/// `Retry-After` in whole seconds; `None` for a date or anything else, which the host reads.
fn retry_after_seconds(response: &HttpResponse) -> Option<u64> {
    response.header("Retry-After").and_then(|value| value.trim().parse::<u64>().ok())
}

/// `(InvalidObject): company object is invalid; yearEstablished: The field …`
fn describe(body: &ErrorBody) -> String {
    let mut said = String::new();
    if let Some(code) = body.code.as_deref().filter(|c| !c.is_empty()) {
        said.push_str(&format!("({code})"));
    }
    if let Some(message) = body.message.as_deref().filter(|m| !m.is_empty()) {
        if !said.is_empty() {
            said.push_str(": ");
        }
        said.push_str(message.trim_end_matches('.'));
    }
    for error in body.errors.iter().flatten() {
        let about = error
            .field
            .as_deref()
            .or(error.resource.as_deref())
            .or(error.code.as_deref())
            .unwrap_or("error");
        let message = error.message.as_deref().unwrap_or("(no message)").trim_end_matches('.');
        said.push_str(&format!("; {about}: {message}"));
    }
    said
}

/// The start of a body that is not an error document, on one line.
fn quote(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return String::new();
    }
    let mut cut: String = line.chars().take(QUOTED_BODY).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    format!("answered `{cut}`")
}

/// Joins what ConnectWise said to the lead: ` (Code): message ` or a quoted body, then the
/// context.
fn said_part(said: &str) -> String {
    if said.is_empty() {
        " ".to_string()
    } else if said.starts_with('(') {
        format!(" {said} ")
    } else {
        format!(": {said} ")
    }
}
