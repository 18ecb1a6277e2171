//! Turns Autotask's failures into typed `PluginError`s. Autotask answers errors as
//! `{"errors":["…"]}` and does not keep to HTTP's vocabulary: refused credentials come back as
//! 401 or as 500 (case C10), and the per-endpoint thread limit as an error whose text names the
//! "thread threshold" (case C09). So the text decides before the status does. This module also
//! builds the adapter's own refusals (a bad id, a body that is not the documented shape). It
//! must never quote a request's headers: they carry the credentials.

use serde::Deserialize;
use tally_plugin_sdk::{ErrorKind, HttpResponse, PluginError};

/// Autotask's error body; ASP.NET's own refusals use `Message` instead.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Option<Vec<String>>,
    #[serde(default, rename = "Message")]
    message: Option<String>,
}

/// Words of Autotask's answers to refused credentials, lower case.
const AUTH_TEXTS: [&str; 12] = [
    "integrationcode",
    "integration code",
    "tracking identifier",
    "username",
    "user name",
    "password",
    "secret",
    "credential",
    "authenticat",
    "unauthorized",
    "authorization has been denied",
    "zone information could not be determined",
];

/// Words of Autotask's answers to its concurrency and hourly limits, lower case.
const THROTTLE_TEXTS: [&str; 3] = ["thread threshold", "request threshold", "threshold exceeded"];

/// The most of a non-JSON body quoted in a message.
const QUOTED_BODY: usize = 200;

/// Whether a status is a success whose body the caller should read.
pub fn is_success(response: &HttpResponse) -> bool {
    (200..300).contains(&response.status)
}

/// Whether a failed response is Autotask refusing to start the request at all (the thread or
/// hourly threshold): then nothing was applied and sending the same request again is safe.
pub fn is_throttle(response: &HttpResponse) -> bool {
    let said = said(&response.body).to_lowercase();
    response.status == 429 || THROTTLE_TEXTS.iter().any(|text| said.contains(text))
}

/// The error for a response that is not a success. `endpoint` names what was asked, e.g.
/// `POST Companies/query`.
pub fn from_response(response: &HttpResponse, endpoint: &str) -> PluginError {
    let status = response.status;
    let said = said(&response.body);
    let lower = said.to_lowercase();
    let context = format!("(HTTP {status}, {endpoint})");
    let quoted = if said.is_empty() { String::new() } else { format!(": {said}") };

    if is_throttle(response) {
        let mut error = PluginError::new(
            ErrorKind::RateLimited,
            format!("Autotask is throttling this integration{quoted} {context}"),
        )
        .retryable(true);
        error.retry_after_seconds = retry_after_seconds(response);
        return error;
    }
    let auth_text = AUTH_TEXTS.iter().any(|text| lower.contains(text));
    if status == 401 || (auth_text && status >= 400) {
        return credentials_rejected(&lower, status, &format!("{quoted} {context}"));
    }
    let (kind, retryable, lead) = match status {
        403 => (ErrorKind::Auth, false, "Autotask does not let this API user do that"),
        404 => (ErrorKind::NotFound, false, "Autotask has no such record"),
        405 => (ErrorKind::InvalidRequest, false, "Autotask does not allow this method here"),
        409 => (ErrorKind::Conflict, false, "Autotask refused a conflicting change"),
        400..=499 => (ErrorKind::InvalidRequest, false, "Autotask refused the request"),
        500..=599 => (ErrorKind::Server, true, "Autotask failed to answer"),
        _ => (ErrorKind::Server, false, "Autotask gave an unexpected answer"),
    };
    PluginError::new(kind, format!("{lead}{quoted} {context}")).retryable(retryable)
}

/// "Credentials rejected": never retryable, with the setting most likely at fault as `field`.
fn credentials_rejected(lower: &str, status: u16, detail: &str) -> PluginError {
    let field = if lower.contains("integration") || lower.contains("tracking identifier") {
        "integration_code"
    } else if status == 401 {
        "secret"
    } else {
        "username"
    };
    PluginError::new(
        ErrorKind::Auth,
        format!(
            "Autotask rejected the credentials{detail}; check username, secret and \
             integration_code (the API user's name, its secret and the API tracking identifier)"
        ),
    )
    .with_field(field)
    .retryable(false)
}

/// A success whose body is not what Autotask documents: usually a truncated transfer, so a
/// retry can help. Never a partial page.
pub fn malformed(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("Autotask's answer to {endpoint} is not the expected JSON: {detail}"),
    )
    .retryable(true)
}

/// A row that parsed as JSON but cannot be read as a record: the data, not the transfer, is at
/// fault, so sending the request again will not help.
pub fn bad_row(endpoint: &str, detail: impl std::fmt::Display) -> PluginError {
    PluginError::new(
        ErrorKind::MalformedResponse,
        format!("Autotask's answer to {endpoint} holds a row tally cannot read: {detail}"),
    )
    .retryable(false)
}

/// An operation argument the adapter refuses before sending anything.
pub fn invalid(field: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(ErrorKind::InvalidRequest, message).with_field(field).retryable(false)
}

/// Reads an id argument as an Autotask id.
pub fn parse_id(what: &str, id: &str) -> Result<u64, PluginError> {
    let parsed = (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .then(|| id.parse::<u64>().ok())
        .flatten();
    parsed.ok_or_else(|| {
        invalid(what, format!("{what} `{id}` is not an Autotask id (ids are whole numbers)"))
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

/// What Autotask said: its `errors` joined, ASP.NET's `Message`, or the start of the body.
fn said(body: &str) -> String {
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        let mut parts: Vec<String> = parsed.errors.unwrap_or_default();
        parts.extend(parsed.message);
        let parts: Vec<&str> = parts
            .iter()
            .map(|p| p.trim().trim_end_matches('.'))
            .filter(|p| !p.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut cut: String = line.chars().take(QUOTED_BODY).collect();
    if cut.len() < line.len() {
        cut.push('…');
    }
    cut
}
