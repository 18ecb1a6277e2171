//! ConnectWise's failures as typed errors: each HTTP status class, the error body's detail in
//! the message, `Retry-After` in seconds only, and 2xx bodies that are not the documented JSON
//! (truncated, malformed, not an array) as retryable `malformed_response`, never a page. A
//! retryable failure leaves the listing where it was; a final one stays final.

mod common;

use common::*;
use serde_json::json;
use tally_plugin_sdk::{ErrorKind, ListMode, PluginError, Step, StepInput};

/// The error a companies listing reports for `response` to its first page.
fn error_for(response: tally_plugin_sdk::HttpResponse) -> PluginError {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    failed(respond(&mut *machine, response))
}

#[test]
fn refused_credentials_are_auth_errors_naming_every_credential() {
    let body = json!({"code": "Unauthorized", "message": "Unauthorized"}).to_string();
    for status in [401, 403] {
        let error = error_for(response(status, body.clone()));
        assert_eq!(error.kind, ErrorKind::Auth, "{status}");
        assert!(!error.retryable);
        for name in ["company_id", "public_key", "private_key", "clientId"] {
            assert!(error.message.contains(name), "{status}: {}", error.message);
        }
        assert!(!error.message.contains("privkey"), "a secret leaked: {}", error.message);
    }

    // ConnectWise's own code says so even when the status does not (case C10).
    let body =
        json!({"code": "UserNotAuthenticated", "message": "Cannot authenticate"}).to_string();
    assert_eq!(error_for(response(500, body)).kind, ErrorKind::Auth);
}

#[test]
fn an_invalid_object_says_what_connectwise_objected_to() {
    let error = error_for(response(400, fixture("cw-error-invalidobject.json")));
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(!error.retryable);
    assert!(
        error.message.starts_with(
            "ConnectWise refused the request (InvalidObject): company object is invalid; \
             yearEstablished: The field yearEstablished must be between 1900 and 9999; \
             revenueYear: The field revenueYear must be between 1900 and 9999"
        ),
        "{}",
        error.message
    );
    assert!(error.message.contains("HTTP 400"), "{}", error.message);
}

#[test]
fn each_status_class_has_its_kind_and_retry_advice() {
    let cases = [
        (404, ErrorKind::NotFound, false),
        (400, ErrorKind::InvalidRequest, false),
        (422, ErrorKind::InvalidRequest, false),
        (409, ErrorKind::Conflict, false),
        (412, ErrorKind::Conflict, false),
        (429, ErrorKind::RateLimited, true),
        (500, ErrorKind::Server, true),
        (502, ErrorKind::Server, true),
        (503, ErrorKind::Server, true),
        (504, ErrorKind::Server, true),
        (501, ErrorKind::Server, false),
        (418, ErrorKind::InvalidRequest, false),
        (302, ErrorKind::Server, false),
    ];
    for (status, kind, retryable) in cases {
        let error = error_for(response(status, ""));
        assert_eq!((error.kind, error.retryable), (kind, retryable), "{status}: {}", error.message);
        assert!(error.message.contains(&format!("HTTP {status}")), "{}", error.message);
    }
}

#[test]
fn c04_a_server_error_body_is_quoted_and_retryable() {
    let body = json!({"code": "ConnectWiseApi", "message": "String was not recognized as a valid Boolean."});
    let error = error_for(response(500, body.to_string()));
    assert_eq!(error.kind, ErrorKind::Server);
    assert!(error.retryable);
    assert!(
        error.message.contains("(ConnectWiseApi): String was not recognized as a valid Boolean"),
        "{}",
        error.message
    );
}

#[test]
fn c07_retry_after_is_read_in_seconds_only() {
    let error = error_for(with_header(response(429, ""), "Retry-After", "2"));
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert!(error.retryable);
    assert_eq!(error.retry_after_seconds, Some(2));

    let error = error_for(with_header(response(429, ""), "retry-after", " 120 "));
    assert_eq!(error.retry_after_seconds, Some(120));

    // A date is the host's to read from the header itself.
    let error =
        error_for(with_header(response(429, ""), "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"));
    assert_eq!(error.retry_after_seconds, None);
    assert!(error.retryable);

    let error = error_for(response(429, ""));
    assert_eq!(error.retry_after_seconds, None);
}

#[test]
fn a_non_json_error_body_is_quoted_briefly() {
    let html = format!("<html><body>{}</body></html>", "Bad gateway ".repeat(100));
    let error = error_for(response(502, html));
    assert!(error.message.contains("<html>"), "{}", error.message);
    assert!(error.message.chars().count() < 400, "{}", error.message);
}

#[test]
fn bodies_that_are_not_a_json_array_are_malformed_and_retryable_never_a_page() {
    let full = serde_json::to_string(&company_rows(1..=3)).unwrap_or_default();
    let truncated = full[..full.len() - 40].to_string();
    for body in [
        truncated,
        String::new(),
        "<html>maintenance</html>".into(),
        r#"{"id": 1}"#.into(),
        "null".into(),
        "[1, 2".into(),
    ] {
        let error = error_for(ok(body.clone()));
        assert_eq!(error.kind, ErrorKind::MalformedResponse, "{body}");
        assert!(error.retryable, "{body}");
    }
}

#[test]
fn after_a_retryable_failure_the_resent_request_continues_the_listing() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let request = sent(machine.step(StepInput::Start));

    let full = serde_json::to_string(&company_rows(1..=3)).unwrap_or_default();
    let error = failed(respond(&mut *machine, ok(&full[..full.len() / 2])));
    assert!(error.retryable);
    let error = failed(respond(&mut *machine, with_header(response(429, ""), "Retry-After", "2")));
    assert!(error.retryable);
    let error = failed(respond(&mut *machine, response(503, "")));
    assert!(error.retryable);

    // The host resends `request` unchanged and steps with the new answer.
    assert!(request.url.ends_with("page=1"));
    match respond(&mut *machine, ok(full)) {
        Step::Page { records, last, .. } => {
            assert_eq!(records.len(), 3);
            assert!(last);
        }
        other => panic!("expected the page, got {other:?}"),
    }
}

#[test]
fn a_final_failure_stays_final() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let error = failed(respond(&mut *machine, response(401, "")));
    assert!(!error.retryable);
    let again = failed(respond(&mut *machine, ok("[]")));
    assert_eq!(again, error);
    assert_eq!(failed(machine.step(StepInput::Continue)), error);
}

#[test]
fn a_protocol_slip_of_the_host_is_an_internal_error_not_a_panic() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let error = failed(machine.step(StepInput::Continue));
    assert_eq!(error.kind, ErrorKind::Internal);
    let _ = sent(machine.step(StepInput::Start));
    let error = failed(machine.step(StepInput::Start));
    assert_eq!(error.kind, ErrorKind::Internal);
}
