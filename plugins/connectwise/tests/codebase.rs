//! Codebase discovery: without a configured `codebase`, the first operation asks
//! `/login/companyinfo/{company_id}` (without credentials), and the session keeps the answer;
//! with one configured, nothing is asked. Also pins the credentials headers of API requests.

mod common;

use common::*;
use serde_json::json;
use tally_plugin_sdk::{ErrorKind, ListMode, Operation, StepInput};

fn discovering() -> tally_connectwise::ConnectWise {
    open(settings_with(json!({ "codebase": null })))
}

#[test]
fn the_codebase_is_discovered_without_credentials_then_used() {
    let plugin = discovering();
    let mut machine = start(&plugin, Operation::Probe);

    let info = sent(machine.step(StepInput::Start));
    assert_eq!(info.method, "GET");
    assert_eq!(info.url, "https://api-na.myconnectwise.net/login/companyinfo/acme");
    assert_eq!(header(&info, "Authorization"), None);
    assert_eq!(header(&info, "clientId"), None);

    let probe = sent(respond(&mut *machine, ok(fixture("cw-companyinfo.json"))));
    assert_eq!(
        probe.url,
        "https://api-na.myconnectwise.net/v2017_3/apis/3.0/company/companies?pageSize=1&fields=id"
    );
}

#[test]
fn the_session_asks_for_the_codebase_once() {
    let plugin = discovering();
    let mut first = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(first.step(StepInput::Start));
    let page = sent(respond(&mut *first, ok(fixture("cw-companyinfo.json"))));
    assert!(page.url.starts_with("https://api-na.myconnectwise.net/v2017_3/apis/3.0/company/"));

    let mut second = start(&plugin, list("products", ListMode::Full, None));
    let request = sent(second.step(StepInput::Start));
    assert!(
        request
            .url
            .starts_with("https://api-na.myconnectwise.net/v2017_3/apis/3.0/procurement/catalog?"),
        "{}",
        request.url
    );
}

#[test]
fn a_configured_codebase_skips_discovery() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let request = sent(machine.step(StepInput::Start));
    assert_eq!(request.url, format!("{API}company/companies?pageSize=1&fields=id"));
}

#[test]
fn api_requests_carry_the_credentials_headers() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let request = sent(machine.step(StepInput::Start));

    // base64("acme+pubkey:privkey")
    assert_eq!(header(&request, "Authorization"), Some("Basic YWNtZStwdWJrZXk6cHJpdmtleQ=="));
    assert_eq!(header(&request, "clientId"), Some("client-1"));
    assert_eq!(
        header(&request, "Accept"),
        Some("application/vnd.connectwise.com+json; version=2022.1")
    );
}

#[test]
fn an_unknown_company_id_is_a_config_error_naming_company_id() {
    let plugin = discovering();
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let error = failed(respond(&mut *machine, response(404, "")));
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(error.field.as_deref(), Some("company_id"));
    assert!(!error.retryable);

    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let error = failed(respond(&mut *machine, ok("null")));
    assert_eq!(error.field.as_deref(), Some("company_id"));
}

#[test]
fn an_unusable_reported_codebase_is_refused_naming_codebase() {
    let plugin = discovering();
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let _ = sent(machine.step(StepInput::Start));
    let body = json!({"CompanyName": "x", "Codebase": "../../elsewhere?x=/"}).to_string();
    let error = failed(respond(&mut *machine, ok(body)));
    assert_eq!(error.kind, ErrorKind::Config);
    assert_eq!(error.field.as_deref(), Some("codebase"));
}

#[test]
fn a_truncated_companyinfo_is_retryable_and_the_machine_waits_for_the_resend() {
    let plugin = discovering();
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let info = sent(machine.step(StepInput::Start));

    let body = fixture("cw-companyinfo.json");
    let error = failed(respond(&mut *machine, ok(&body[..body.len() / 2])));
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(error.retryable);

    // The host sends the same request again and steps with the new answer.
    assert!(info.url.ends_with("/login/companyinfo/acme"));
    let page = sent(respond(&mut *machine, ok(body)));
    assert!(page.url.contains("/v2017_3/apis/3.0/company/companies?"), "{}", page.url);
}

#[test]
fn the_company_id_is_encoded_in_the_companyinfo_path() {
    let plugin = open(settings_with(json!({ "codebase": null, "company_id": "acme/ü#1" })));
    let mut machine = start(&plugin, Operation::Probe);
    let info = sent(machine.step(StepInput::Start));
    assert_eq!(info.url, "https://api-na.myconnectwise.net/login/companyinfo/acme%2F%C3%BC%231");
}
