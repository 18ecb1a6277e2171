//! Turns Halo's failures into typed `PluginError`s: the HTTP status decides the kind and
//! whether a retry can help, and Halo's error body (a JSON string, an object with a message,
//! or an OAuth `{error, error_description}`) says what it objected to, in the message. It also
//! builds the adapter's own refusals (a bad id, a body that is not the documented shape). It
//! must never guess a wait from anything but a numeric `Retry-After` (the host reads dates
//! itself), and never quote a request: requests carry the token or the client secret.

use serde_json::Value;
use tally_plugin_sdk::{ErrorKind, HttpResponse, PluginError};

/// The most of a body quoted in a message.
const QUOTED_BODY: usize = 200;

/// Whether a status is a success whose body the caller should read.
pub fn is_success(response: &HttpResponse) -> bool {
    (200..300).contains(&response.status)
}

/// The error for an API response that is not a success (a 401 reaches this only once the
/// token was renewed and refused again). `endpoint` names what was asked, e.g.
/// `GET /api/RecurringInvoice/-94`.
pub fn from_response(response: &HttpResponse, endpoint: &str) -> PluginError {
    let said = said(&response.body);
    let status = response.status;
    let context = format!("(HTTP {status}, {endpoint})");

    let (kind, retryable, lead) = match status {
        401 => {
            return auth(format!(
                "Halo refused a freshly issued token{}{context}",
                said_part(&said)
            ));
        }
        403 => {
            return auth(format!(
                "Halo refused the request for lack of permission{}{context}; give the API \
                 application's agent the permissions and the `all` scope",
                said_part(&said)
            ));
        }
        404 => (ErrorKind::NotFound, false, "Halo has no such record"),
        409 | 412 => (ErrorKind::Conflict, false, "Halo refused a conflicting change"),
        429 => (ErrorKind::RateLimited, true, "Halo is throttling this application"),
        500..=599 => (ErrorKind::Server, true, "Halo failed to answer"),
        400..=499 => (ErrorKind::InvalidRequest, false, "Halo refused the request"),
        _ => (ErrorKind::Server, false, "Halo gave an unexpected answer"),
    };
    let mut error =
        PluginError::new(kind, format!("{lead}{}{context}", said_part(&said))).retryable(retryable);
    if status == 429 {
        error.retry_after_seconds = retry_after_seconds(response);
    }
    error
}

/// The error for a token request that is not a success: refused credentials are `auth`,
/// throttling and server failures can be retried.
pub fn from_token_response(response: &HttpResponse, endpoint: &str) -> PluginError {
    match response.status {
        400 | 401 | 403 => auth(format!(
            "Halo's authorisation server refused the client credentials{}(HTTP {}, {endpoint})",
            said_part(&said(&response.body)),
            response.status
        )),
        _ => from_response(response, endpoint),
    }
}

/// A refusal of credentials: names every setting that takes part in authentication.
pub fn auth(detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::Auth,
        format!(
            "{detail}; check client_id and client_secret (a Halo API application using Client ID \
             and Secret (Services)), and tenant for a hosted Halo"
        ),
    )
    .retryable(false)
}

/// A success whose body is not what Halo documents: usually a truncated transfer, so a retry
/// can help. Never a partial page.
pub fn malformed(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("Halo's answer to {endpoint} is not the expected JSON: {detail}"),
    )
    .retryable(true)
}

/// A row that parsed as JSON but cannot be read as a record: the data, not the transfer, is at
/// fault, so sending the request again will not help.
pub fn bad_row(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("Halo's answer to {endpoint} holds a row tally cannot read: {detail}"),
    )
    .retryable(false)
}

/// Reads an id argument as a Halo id: a whole number, negative ones included (recurring
/// invoices use them).
pub fn parse_id(what: &str, id: &str) -> Result<i64, PluginError> {
    let digits = id.strip_prefix('-').unwrap_or(id);
    let plain = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| id.parse::<i64>().ok()).flatten().ok_or_else(|| {
        PluginError::new(
            ErrorKind::InvalidRequest,
            format!("{what} `{id}` is not a Halo id (Halo ids are whole numbers, e.g. 420 or -94)"),
        )
        .with_field(what)
        .retryable(false)
    })
}

/// A protocol slip of the host (e.g. `continue` where a response was due), or a bug here.
pub fn internal(message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::Internal, message).retryable(false)
}

/// `Retry-After` in whole seconds; `None` for a date or anything else, which the host reads.
fn retry_after_seconds(response: &HttpResponse) -> Option<u64> {
    response.header("Retry-After").and_then(|value| value.trim().parse::<u64>().ok())
}

/// What Halo said in an error body, on one line: a JSON string, an object's message, an OAuth
/// error, or the start of the body.
fn said(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(Value::String(message)) => message,
        Ok(Value::Object(object)) => {
            let field = |name: &str| {
                object.get(name).and_then(Value::as_str).filter(|text| !text.trim().is_empty())
            };
            match (field("error"), field("error_description")) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(error), None) => error.to_string(),
                _ => field("message")
                    .or_else(|| field("Message"))
                    .or_else(|| field("error_description"))
                    .or_else(|| field("title"))
                    .map(str::to_string)
                    .unwrap_or_else(|| body.to_string()),
            }
        }
        _ => body.to_string(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = line.chars().take(QUOTED_BODY).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut
}

fn said_part(said: &str) -> String {
    if said.is_empty() { " ".to_string() } else { format!(": {said} ") }
}
