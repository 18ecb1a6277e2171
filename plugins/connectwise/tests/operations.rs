//! The one-request operations: the probe (case C10: every failure is `config` or `auth`, never
//! retried), reading a line, the exact JSON Patch that sets a quantity, creating a line, and
//! ids that are not ConnectWise ids refused before any request.

mod common;

use common::*;
use rust_decimal::Decimal;
use serde_json::json;
use tally_plugin_sdk::{ErrorKind, LineRef, OpResult, Operation, PluginError, Quantity, StepInput};

fn quantity(text: &str) -> Quantity {
    match Decimal::from_str_exact(text) {
        Ok(value) => Quantity(value),
        Err(error) => panic!("{text}: {error}"),
    }
}

fn line_ref(id: &str, agreement_id: &str) -> LineRef {
    LineRef { id: id.into(), agreement_id: agreement_id.into() }
}

fn probe_failure(response: tally_plugin_sdk::HttpResponse) -> PluginError {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let _ = sent(machine.step(StepInput::Start));
    failed(respond(&mut *machine, response))
}

#[test]
fn the_probe_sends_one_cheap_authenticated_request() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(request.method, "GET");
    assert_eq!(request.url, format!("{API}company/companies?pageSize=1&fields=id"));
    assert!(header(&request, "Authorization").is_some());
    assert_eq!(header(&request, "clientId"), Some("client-1"));

    match done(respond(&mut *machine, ok(r#"[{"id": 2}]"#))) {
        OpResult::Probed { detail } => assert!(detail.contains("acme"), "{detail}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn c10_a_failed_probe_is_config_or_auth_and_never_retryable() {
    let error = probe_failure(response(401, ""));
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.retryable);
    for name in ["company_id", "public_key", "private_key", "clientId"] {
        assert!(error.message.contains(name), "{}", error.message);
    }

    for failure in [
        response(500, r#"{"code":"ConnectWiseApi","message":"clientId missing"}"#),
        response(503, ""),
        with_header(response(429, ""), "Retry-After", "30"),
        response(404, ""),
        ok("<html>login</html>"),
        ok(r#"{"not": "an array"}"#),
    ] {
        let error = probe_failure(failure.clone());
        assert_eq!(error.kind, ErrorKind::Config, "{failure:?}");
        assert!(!error.retryable, "{failure:?}");
        assert_eq!(error.retry_after_seconds, None);
        for name in ["company_id", "public_key", "private_key", "client_id"] {
            assert!(error.message.contains(name), "{}", error.message);
        }
    }
}

#[test]
fn a_probe_that_cannot_find_the_codebase_is_a_config_error() {
    let plugin = open(settings_with(json!({ "codebase": null })));
    let mut machine = start(&plugin, Operation::Probe);
    let _ = sent(machine.step(StepInput::Start));
    let error = failed(respond(&mut *machine, response(503, "")));
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(!error.retryable);
}

#[test]
fn read_line_gets_the_addition() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::ReadLine { line: line_ref("7001", "5001") });
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(request.method, "GET");
    assert_eq!(request.url, format!("{API}finance/agreements/5001/additions/7001"));
    assert_eq!(request.body, None);

    match done(respond(&mut *machine, ok(fixture("cw-addition.json")))) {
        OpResult::Line { line } => {
            assert_eq!(line.id, "7001");
            assert_eq!(line.agreement_id, "5001");
            assert_eq!(line.quantity, quantity("42"));
            assert_eq!(line.company_id, "", "the host fills it from the agreement");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_line_is_not_found() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::ReadLine { line: line_ref("7001", "5001") });
    let _ = sent(machine.step(StepInput::Start));
    let body = r#"{"code":"NotFound","message":"Agreement addition not found"}"#;
    let error = failed(respond(&mut *machine, response(404, body)));
    assert_eq!(error.kind, ErrorKind::NotFound);
    assert!(error.message.contains("Agreement addition not found"), "{}", error.message);
}

#[test]
fn set_quantity_patches_the_exact_decimal_text() {
    let plugin = open(settings());
    for (text, body) in [
        ("45", r#"[{"op":"replace","path":"quantity","value":45}]"#),
        ("1.75", r#"[{"op":"replace","path":"quantity","value":1.75}]"#),
        (
            "0.30000000000000004",
            r#"[{"op":"replace","path":"quantity","value":0.30000000000000004}]"#,
        ),
        ("12.50", r#"[{"op":"replace","path":"quantity","value":12.50}]"#),
    ] {
        let operation = Operation::SetQuantity {
            line: line_ref("7001", "5001"),
            quantity: quantity(text),
            effective_date: "2024-05-20".into(),
        };
        let mut machine = start(&plugin, operation);
        let request = sent(machine.step(StepInput::Start));
        assert_eq!(request.method, "PATCH");
        assert_eq!(request.url, format!("{API}finance/agreements/5001/additions/7001"));
        assert_eq!(request.body.as_deref(), Some(body));
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        assert!(header(&request, "Authorization").is_some());
    }
}

#[test]
fn set_quantity_returns_the_line_from_the_answer() {
    let plugin = open(settings());
    let operation = Operation::SetQuantity {
        line: line_ref("7001", "5001"),
        quantity: quantity("45"),
        effective_date: "2024-05-20".into(),
    };
    let mut machine = start(&plugin, operation);
    let _ = sent(machine.step(StepInput::Start));
    let answer = fixture("cw-addition.json").replace(r#""quantity": 42"#, r#""quantity": 45"#);
    match done(respond(&mut *machine, ok(answer))) {
        OpResult::Line { line } => assert_eq!(line.quantity, quantity("45")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_patch_says_why_and_a_truncated_answer_can_be_retried() {
    let plugin = open(settings());
    let operation = Operation::SetQuantity {
        line: line_ref("7001", "5001"),
        quantity: quantity("45"),
        effective_date: "2024-05-20".into(),
    };
    let mut machine = start(&plugin, operation);
    let _ = sent(machine.step(StepInput::Start));
    let answer = fixture("cw-addition.json");
    let error = failed(respond(&mut *machine, ok(&answer[..answer.len() / 3])));
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(error.retryable);
    let error = failed(respond(&mut *machine, ok("[]")));
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    let body = r#"{"code":"InvalidObject","message":"agreementAddition object is invalid","errors":[{"code":"InvalidField","message":"Quantity cannot be changed on a cancelled addition.","resource":"agreementAddition","field":"quantity"}]}"#;
    let error = failed(respond(&mut *machine, response(400, body)));
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(
        error.message.contains("quantity: Quantity cannot be changed on a cancelled addition"),
        "{}",
        error.message
    );
}

#[test]
fn create_line_posts_a_billable_addition_and_keeps_the_company() {
    let plugin = open(settings());
    let operation = Operation::CreateLine {
        company_id: "250".into(),
        agreement_id: "5001".into(),
        product_id: "310".into(),
        quantity: quantity("1.75"),
        effective_date: "2024-06-01".into(),
    };
    let mut machine = start(&plugin, operation);
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, format!("{API}finance/agreements/5001/additions"));
    assert_eq!(
        request.body.as_deref(),
        Some(
            r#"{"product":{"id":310},"quantity":1.75,"billCustomer":"Billable","effectiveDate":"2024-06-01T00:00:00Z"}"#
        )
    );
    assert_eq!(header(&request, "Content-Type"), Some("application/json"));

    match done(respond(&mut *machine, response(201, fixture("cw-addition.json")))) {
        OpResult::Line { line } => {
            assert_eq!(line.company_id, "250");
            assert_eq!(line.agreement_id, "5001");
            assert_eq!(line.product_id, "310");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ids_that_are_not_connectwise_ids_are_refused_without_a_request() {
    let plugin = open(settings());
    for bad in ["abc", "", "-1", "1.5", "+7", " 7", "99999999999999999999999"] {
        let operations = [
            Operation::ReadLine { line: line_ref(bad, "5001") },
            Operation::ReadLine { line: line_ref("7001", bad) },
            Operation::SetQuantity {
                line: line_ref(bad, "5001"),
                quantity: quantity("1"),
                effective_date: "2024-05-20".into(),
            },
            Operation::CreateLine {
                company_id: "250".into(),
                agreement_id: "5001".into(),
                product_id: bad.into(),
                quantity: quantity("1"),
                effective_date: "2024-05-20".into(),
            },
            Operation::CreateLine {
                company_id: bad.into(),
                agreement_id: "5001".into(),
                product_id: "310".into(),
                quantity: quantity("1"),
                effective_date: "2024-05-20".into(),
            },
        ];
        for operation in operations {
            let error = start_error(&plugin, operation.clone());
            assert_eq!(error.kind, ErrorKind::InvalidRequest, "{bad:?} in {operation:?}");
            assert!(!error.retryable);
        }
    }
}

#[test]
fn a_bad_effective_date_is_refused_without_a_request() {
    let plugin = open(settings());
    for date in ["2024-13-01", "20240501", "2024-05-01T00:00:00Z", ""] {
        let operation = Operation::CreateLine {
            company_id: "250".into(),
            agreement_id: "5001".into(),
            product_id: "310".into(),
            quantity: quantity("1"),
            effective_date: date.into(),
        };
        let error = start_error(&plugin, operation);
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{date}");
        assert_eq!(error.field.as_deref(), Some("effective_date"));
    }
}
