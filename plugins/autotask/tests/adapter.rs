//! The Autotask adapter's machines, driven with canned responses and a small in-memory Autotask
//! (no network): continuation paging (C02), the thread threshold (C09), credentials refused as
//! 401 or 500 (C10), unit writes as deltas re-read before every attempt (C13), whole units
//! (C15), checkpoints, the zone lookup and error classification.

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_autotask::Autotask;
use tally_plugin_sdk::{
    Checkpoint, ErrorKind, Header, HttpRequest, HttpResponse, LineRef, ListMode, Machine, OpResult,
    Operation, Plugin, PluginError, Quantity, QuantityWrites, Record, Step, StepInput,
};
use time::macros::date;

const ZONE: &str = "https://webservices5.autotask.net/ATServicesRest/";

fn settings() -> Value {
    json!({
        "username": "api@acme.example",
        "secret": "s3cret-value",
        "integration_code": "INTCODE-123",
        "zone_url": "https://webservices5.autotask.net/ATServicesRest"
    })
}

fn settings_with(changes: Value) -> Value {
    let mut settings = settings();
    for (key, value) in changes.as_object().into_iter().flatten() {
        if value.is_null() {
            settings.as_object_mut().map(|s| s.remove(key));
        } else {
            settings[key] = value.clone();
        }
    }
    settings
}

fn open(settings: Value) -> Autotask {
    match Autotask::open(&settings) {
        Ok(plugin) => plugin.with_today(date!(2024 - 05 - 20)),
        Err(error) => panic!("settings refused: {error}"),
    }
}

fn open_error(settings: Value) -> PluginError {
    match Autotask::open(&settings) {
        Ok(_) => panic!("settings accepted: {settings}"),
        Err(error) => error,
    }
}

fn start(plugin: &Autotask, operation: Operation) -> Box<dyn Machine> {
    match plugin.start(operation) {
        Ok(machine) => machine,
        Err(error) => panic!("operation refused: {error}"),
    }
}

fn start_error(plugin: &Autotask, operation: Operation) -> PluginError {
    match plugin.start(operation) {
        Ok(_) => panic!("operation accepted"),
        Err(error) => error,
    }
}

fn list(stream: &str, mode: ListMode, checkpoint: Option<Checkpoint>) -> Operation {
    Operation::List {
        stream: stream.to_string(),
        mode,
        checkpoint,
        parent_id: None,
        lookback_seconds: 0,
    }
}

fn set_quantity(line: u64, contract: u64, quantity: &str, date: &str) -> Operation {
    Operation::SetQuantity {
        line: LineRef { id: line.to_string(), agreement_id: contract.to_string() },
        quantity: Quantity(quantity.parse::<Decimal>().expect("a decimal")),
        effective_date: date.to_string(),
    }
}

fn response(status: u16, body: &str) -> HttpResponse {
    HttpResponse { status, headers: Vec::new(), body: body.to_string() }
}

fn ok(body: Value) -> HttpResponse {
    response(200, &body.to_string())
}

fn query_answer(items: Vec<Value>, next: Option<&str>) -> HttpResponse {
    let count = items.len();
    ok(json!({
        "items": items,
        "pageDetails": { "count": count, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": next }
    }))
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn body(request: &HttpRequest) -> Value {
    serde_json::from_str(request.body.as_deref().unwrap_or("null")).expect("a JSON body")
}

/// What a machine did until it ended.
#[derive(Default)]
struct Run {
    requests: Vec<HttpRequest>,
    pages: Vec<(Vec<Record>, Checkpoint, bool)>,
    result: Option<OpResult>,
    error: Option<PluginError>,
}

impl Run {
    fn records(&self) -> Vec<&Record> {
        self.pages.iter().flat_map(|(records, _, _)| records).collect()
    }

    fn error(&self) -> &PluginError {
        self.error.as_ref().expect("the operation failed")
    }

    fn posts_to(&self, entity: &str) -> Vec<&HttpRequest> {
        self.requests.iter().filter(|r| r.url.ends_with(&format!("/V1.0/{entity}"))).collect()
    }
}

/// Runs a machine to its end, answering every request with `respond`.
fn drive(machine: &mut dyn Machine, mut respond: impl FnMut(&HttpRequest) -> HttpResponse) -> Run {
    let mut run = Run::default();
    let mut input = StepInput::Start;
    for _ in 0..200 {
        match machine.step(input) {
            Step::Send { request } => {
                let answer = respond(&request);
                run.requests.push(request);
                input = StepInput::Response { response: answer };
            }
            Step::Page { records, checkpoint, last } => {
                run.pages.push((records, checkpoint, last));
                input = StepInput::Continue;
            }
            Step::Done { result } => {
                run.result = Some(result);
                return run;
            }
            Step::Failed { error } => {
                run.error = Some(error);
                return run;
            }
        }
    }
    panic!("the machine did not end within 200 steps");
}

fn company(id: u64, name: &str, last_activity: &str) -> Value {
    json!({
        "id": id, "companyName": name, "companyNumber": format!("C{id}"), "companyType": 1,
        "isActive": true, "lastActivityDate": last_activity
    })
}

fn companies(ids: std::ops::RangeInclusive<u64>) -> Vec<Value> {
    ids.map(|id| company(id, &format!("Company {id}"), "2024-05-01T11:15:07.263Z")).collect()
}

// C02: continuation pages.

#[test]
fn c02_continuation_is_posted_with_the_identical_body() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let next = format!("{ZONE}V1.0/Companies/query/next?paging=abc");
    let run = drive(machine.as_mut(), |request| {
        if request.url.contains("/next?") {
            query_answer(companies(501..=620), None)
        } else {
            query_answer(companies(1..=500), Some(&next))
        }
    });

    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.requests.len(), 2);
    assert!(run.requests.iter().all(|r| r.method == "POST"), "a GET gets 405 (C02)");
    assert_eq!(run.requests[0].url, format!("{ZONE}V1.0/Companies/query"));
    assert_eq!(run.requests[1].url, next);
    assert_eq!(run.requests[0].body, run.requests[1].body, "the same body, byte for byte");
    assert_eq!(body(&run.requests[0])["MaxRecords"], 500);
    assert_eq!(run.records().len(), 620);
    assert_eq!(run.pages.len(), 2);
    assert!(!run.pages[0].2 && run.pages[1].2);
    assert_eq!(run.pages[0].1.page_token.as_deref(), Some("500"));
    assert_eq!(run.pages[0].1.cursor, None, "the cursor waits for the last page");
    assert_eq!(run.pages[1].1.cursor.as_deref(), Some("2024-05-01T11:15:07.263Z"));
    assert_eq!(run.pages[1].1.tie_id.as_deref(), Some("620"));
    for request in &run.requests {
        assert_eq!(request.endpoint, "Companies");
        assert_eq!(header(request, "ApiIntegrationCode"), Some("INTCODE-123"));
        assert_eq!(header(request, "UserName"), Some("api@acme.example"));
        assert_eq!(header(request, "Secret"), Some("s3cret-value"));
    }
}

#[test]
fn c02_a_failed_continuation_fails_the_listing() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let next = format!("{ZONE}V1.0/Companies/query/next?paging=abc");
    let run = drive(machine.as_mut(), |request| {
        if request.url.contains("/next?") {
            response(
                405,
                r#"{"Message":"The requested resource does not support http method 'GET'."}"#,
            )
        } else {
            query_answer(companies(1..=500), Some(&next))
        }
    });

    let error = run.error();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
    assert!(!error.retryable);
    assert!(run.pages.iter().all(|(_, _, last)| !last), "no page may claim to be the last");
    assert_eq!(run.records().len(), 500);
}

#[test]
fn c02_a_server_error_on_a_continuation_is_retried_with_the_same_request() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let next = format!("{ZONE}V1.0/Companies/query/next?paging=abc");

    let Step::Send { request: first } = machine.step(StepInput::Start) else { panic!() };
    let page = machine
        .step(StepInput::Response { response: query_answer(companies(1..=500), Some(&next)) });
    assert!(matches!(page, Step::Page { last: false, .. }));
    let Step::Send { request: second } = machine.step(StepInput::Continue) else { panic!() };
    let failed = machine.step(StepInput::Response {
        response: response(500, r#"{"errors":["An unexpected error occurred."]}"#),
    });
    let Step::Failed { error } = failed else { panic!("expected a failure") };
    assert_eq!(error.kind, ErrorKind::Server);
    assert!(error.retryable);

    // The host sends the same request again; the machine takes the new answer.
    let Step::Page { records, last, .. } =
        machine.step(StepInput::Response { response: query_answer(companies(501..=620), None) })
    else {
        panic!("expected the last page")
    };
    assert_eq!(records.len(), 120);
    assert!(last);
    assert_eq!(first.body, second.body);
}

#[test]
fn c02_a_next_page_on_another_host_is_refused() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| {
        query_answer(
            companies(1..=500),
            Some("https://collector.example/V1.0/Companies/query/next"),
        )
    });

    let error = run.error();
    assert!(!error.retryable);
    assert!(error.message.contains("collector.example"), "{}", error.message);
    assert_eq!(run.requests.len(), 1, "credentials never go to another host");
    assert!(run.pages.is_empty(), "the page with the bad link is not handed out");
}

#[test]
fn c02_truncated_and_malformed_pages_fail_whole() {
    let plugin = open(settings());
    let whole = query_answer(companies(1..=3), None).body;
    for body in [&whole[..whole.len() / 2], "<html>gateway</html>", r#"{"items": 5}"#] {
        let mut machine = start(&plugin, list("companies", ListMode::Full, None));
        let run = drive(machine.as_mut(), |_| response(200, body));
        assert_eq!(run.error().kind, ErrorKind::MalformedResponse, "{body}");
        assert!(run.error().retryable);
        assert!(run.pages.is_empty());
    }
}

// Paging and checkpoints.

#[test]
fn incremental_companies_ask_from_the_cursor_and_drop_what_the_checkpoint_holds() {
    let plugin = open(settings());
    let checkpoint = Checkpoint {
        cursor: Some("2024-05-01T11:15:07.263Z".to_string()),
        tie_id: Some("7".to_string()),
        page_token: None,
    };
    let mut machine = start(&plugin, list("companies", ListMode::Incremental, Some(checkpoint)));
    let run = drive(machine.as_mut(), |_| {
        query_answer(
            vec![
                company(5, "Old", "2024-05-01T11:15:07.263Z"),
                company(7, "Tie", "2024-05-01T11:15:07.263Z"),
                company(9, "Same instant, later id", "2024-05-01T11:15:07.263Z"),
                company(3, "Later", "2024-05-02T08:00:00.5Z"),
            ],
            None,
        )
    });

    let filter = &body(&run.requests[0])["filter"];
    assert_eq!(
        filter[0],
        json!({"op": "gte", "field": "lastActivityDate", "value": "2024-05-01T11:15:07.263Z"})
    );
    let ids: Vec<String> = run
        .records()
        .iter()
        .map(|r| match r {
            Record::Company(c) => c.id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["9", "3"]);
    let (_, checkpoint, last) = &run.pages[0];
    assert!(last);
    assert_eq!(checkpoint.cursor.as_deref(), Some("2024-05-02T08:00:00.5Z"), "exactly as received");
    assert_eq!(checkpoint.tie_id.as_deref(), Some("3"));
}

#[test]
fn a_stopped_listing_resumes_past_its_page_token() {
    let plugin = open(settings());
    let checkpoint = Checkpoint { cursor: None, tie_id: None, page_token: Some("500".to_string()) };
    let mut machine = start(&plugin, list("products", ListMode::Full, Some(checkpoint)));
    let run = drive(machine.as_mut(), |_| query_answer(Vec::new(), None));
    assert_eq!(
        body(&run.requests[0])["filter"],
        json!([{"op": "gt", "field": "id", "value": 500}])
    );
    assert_eq!(run.requests[0].url, format!("{ZONE}V1.0/Services/query"));
}

#[test]
fn incremental_agreements_read_rows_past_the_last_id_of_recurring_contracts() {
    let plugin = open(settings());
    let checkpoint =
        Checkpoint { cursor: None, tie_id: Some("29684183".to_string()), page_token: None };
    let mut machine = start(&plugin, list("agreements", ListMode::Incremental, Some(checkpoint)));
    let sample: Value = serde_json::from_str(include_str!("fixtures/autotask-contract-query.json"))
        .unwrap_or_else(|_| json!({"items": []}));
    let mut contract = sample["items"][0].clone();
    contract["id"] = json!(29684190);
    let run = drive(machine.as_mut(), |_| query_answer(vec![contract.clone()], None));

    assert_eq!(
        body(&run.requests[0])["filter"],
        json!([
            {"op": "eq", "field": "contractType", "value": 7},
            {"op": "gt", "field": "id", "value": 29684183u64}
        ])
    );
    let Record::Agreement(agreement) = run.records()[0] else { panic!() };
    assert_eq!(agreement.company_id, "174");
    assert!(agreement.active && agreement.recurring);
    assert_eq!(run.pages[0].1.tie_id.as_deref(), Some("29684190"));
}

#[test]
fn the_company_sample_maps_to_a_company() {
    let plugin = open(settings());
    let sample = include_str!("fixtures/autotask-company-query.json");
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| response(200, sample));
    let Record::Company(company) = run.records()[0] else { panic!() };
    assert_eq!(company.id, "174");
    assert_eq!(company.name, "Autotask Corporation");
    assert_eq!(company.identifier.as_deref(), Some("289843"));
    assert!(company.active);
    assert!(!company.billable, "companyType 7 is not a customer");
    assert_eq!(company.updated_at.as_deref(), Some("2012-06-18T13:15:47.000Z"));
}

#[test]
fn billing_lines_take_the_units_in_force_today_and_their_contracts_company() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("billing_lines", ListMode::Full, None));
    let run = drive(machine.as_mut(), |request| {
        let filter = &body(request)["filter"];
        match request.endpoint.as_str() {
            // Written out, so the price reaches the adapter as the text Autotask sent.
            "ContractServices" => response(
                200,
                r#"{"items":[
                    {"id":77,"contractID":12,"serviceID":300,"unitPrice":21.50,"adjustedPrice":null},
                    {"id":78,"contractID":12,"serviceID":301,"unitPrice":0.30000000000000004}
                ],"pageDetails":{"count":2,"requestCount":500,"prevPageUrl":null,"nextPageUrl":null}}"#,
            ),
            "ContractServiceUnits" => {
                assert_eq!(
                    filter[0],
                    json!({"op": "in", "field": "contractServiceID", "value": [77, 78]})
                );
                query_answer(
                    vec![
                        unit(1, 77, "2024-04-01", "2024-04-30", 30),
                        unit(2, 77, "2024-05-01", "2024-05-31", 40),
                        unit(3, 77, "2024-06-01", "2024-06-30", 50),
                    ],
                    None,
                )
            }
            "Contracts" => {
                assert_eq!(filter[0], json!({"op": "in", "field": "id", "value": [12]}));
                query_answer(vec![json!({"id": 12, "companyID": 174})], None)
            }
            other => panic!("unexpected {other}"),
        }
    });

    assert_eq!(run.requests.len(), 3, "three requests for a page of lines");
    let lines: Vec<_> = run
        .records()
        .into_iter()
        .map(|r| match r {
            Record::BillingLine(line) => line.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(lines[0].id, "77");
    assert_eq!(lines[0].agreement_id, "12");
    assert_eq!(lines[0].company_id, "174");
    assert_eq!(lines[0].product_id, "300");
    assert_eq!(lines[0].quantity, Quantity(Decimal::from(40)), "May's row, not the latest");
    assert_eq!(lines[0].unit_price.map(|p| p.0.to_string()).as_deref(), Some("21.50"));
    assert_eq!(lines[0].effective_date.as_deref(), Some("2024-05-01"));
    assert_eq!(lines[1].quantity, Quantity(Decimal::ZERO), "no row covers today");
    assert_eq!(
        lines[1].unit_price.map(|p| p.0.to_string()).as_deref(),
        Some("0.30000000000000004")
    );
    assert_eq!(run.pages[0].1.tie_id.as_deref(), Some("78"));
}

#[test]
fn a_failed_unit_query_fails_the_page_of_lines() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("billing_lines", ListMode::Full, None));
    let run = drive(machine.as_mut(), |request| match request.endpoint.as_str() {
        "ContractServices" => {
            query_answer(vec![json!({"id": 77, "contractID": 12, "serviceID": 300})], None)
        }
        _ => response(404, r#"{"errors":["Not found"]}"#),
    });
    assert_eq!(run.error().kind, ErrorKind::NotFound);
    assert!(run.pages.is_empty());
}

// C09 and C10: limits and credentials.

#[test]
fn c09_the_thread_threshold_is_a_retryable_throttle() {
    let text = r#"{"errors":["Thread Threshold Exceeded - The Autotask API thread threshold of 3 threads has been exceeded."]}"#;
    for status in [429, 500] {
        let plugin = open(settings());
        let mut machine = start(&plugin, list("companies", ListMode::Full, None));
        let run = drive(machine.as_mut(), |_| response(status, text));
        assert_eq!(run.error().kind, ErrorKind::RateLimited, "HTTP {status}");
        assert!(run.error().retryable);
    }
    let mut throttled = response(429, "{}");
    throttled.headers.push(Header { name: "Retry-After".to_string(), value: "7".to_string() });
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| throttled.clone());
    assert_eq!(run.error().retry_after_seconds, Some(7));
}

#[test]
fn c09_the_handshake_keeps_below_autotasks_limits() {
    let handshake = Autotask::handshake();
    assert_eq!(handshake.limits.per_endpoint_concurrency, Some(2));
    assert!(handshake.limits.requests_per_hour.is_some_and(|n| n <= 9_000));
    assert_eq!(handshake.limits.max_page_size, Some(500));
    assert_eq!(handshake.quantity_writes, QuantityWrites::Delta);
    assert_eq!(handshake.secret_settings, ["secret", "integration_code"]);
}

fn c10_answers() -> [(HttpResponse, &'static str); 3] {
    [
        (
            response(
                500,
                r#"{"errors":["Unable to authenticate: the user name or password is incorrect."]}"#,
            ),
            "username",
        ),
        (
            response(401, r#"{"Message":"Authorization has been denied for this request."}"#),
            "secret",
        ),
        (response(500, r#"{"errors":["IntegrationCode is invalid."]}"#), "integration_code"),
    ]
}

#[test]
fn c10_refused_credentials_are_auth_errors_whatever_the_status() {
    for (answer, field) in c10_answers() {
        let plugin = open(settings());
        let mut machine = start(&plugin, list("companies", ListMode::Full, None));
        let run = drive(machine.as_mut(), |_| answer.clone());
        let error = run.error();
        assert_eq!(error.kind, ErrorKind::Auth, "{answer:?}");
        assert!(!error.retryable, "a configuration error must not loop");
        assert_eq!(error.field.as_deref(), Some(field));
        assert!(error.message.contains("rejected the credentials"), "{}", error.message);
        assert!(!error.message.contains("s3cret-value") && !error.message.contains("INTCODE"));
    }
    // An ordinary 500 stays a retryable server error.
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| {
        response(500, r#"{"errors":["Object reference not set to an instance of an object."]}"#)
    });
    assert_eq!(run.error().kind, ErrorKind::Server);
    assert!(run.error().retryable);
}

#[test]
fn c10_every_probe_failure_is_a_configuration_error() {
    let mut answers: Vec<HttpResponse> = c10_answers().into_iter().map(|(a, _)| a).collect();
    answers.push(response(503, "Service Unavailable"));
    answers
        .push(response(429, r#"{"errors":["thread threshold of 3 threads has been exceeded"]}"#));
    for answer in answers {
        let plugin = open(settings());
        let mut machine = start(&plugin, Operation::Probe);
        let run = drive(machine.as_mut(), |request| {
            assert_eq!(body(request)["MaxRecords"], 1, "a one-row query");
            answer.clone()
        });
        let error = run.error();
        assert_eq!(error.kind, ErrorKind::Config, "{answer:?}");
        assert!(!error.retryable);
        for setting in ["username", "secret", "integration_code"] {
            assert!(error.message.contains(setting), "{}", error.message);
        }
        assert_eq!(run.requests.len(), 1, "no retry loop");
        // The machine stays failed.
        let again = machine.step(StepInput::Response { response: query_answer(vec![], None) });
        assert!(matches!(again, Step::Failed { .. }));
    }

    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let run = drive(machine.as_mut(), |_| query_answer(vec![json!({"id": 0})], None));
    assert!(matches!(run.result, Some(OpResult::Probed { .. })));
}

// The zone.

#[test]
fn the_zone_is_looked_up_without_credentials_and_kept_for_the_session() {
    let plugin = open(settings_with(json!({"zone_url": null})));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |request| {
        if request.endpoint == "zoneInformation" {
            ok(
                json!({"zoneName": "America West", "url": ZONE, "webUrl": "https://ww5.autotask.net/", "ci": 1}),
            )
        } else {
            query_answer(vec![], None)
        }
    });
    let lookup = &run.requests[0];
    assert_eq!(lookup.method, "GET");
    assert_eq!(
        lookup.url,
        "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation?user=api%40acme.example"
    );
    assert!(header(lookup, "Secret").is_none() && header(lookup, "ApiIntegrationCode").is_none());
    assert_eq!(run.requests[1].url, format!("{ZONE}V1.0/Companies/query"));

    let mut machine = start(&plugin, list("products", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| query_answer(vec![], None));
    assert_eq!(run.requests.len(), 1, "the session remembers its zone");
}

#[test]
fn after_a_401_the_zone_is_looked_up_once_more_and_a_moved_tenant_is_followed() {
    let plugin = open(settings_with(json!({"zone_url": null})));
    let moved = "https://webservices14.autotask.net/ATServicesRest/";
    let mut lookups = 0;
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |request| {
        if request.endpoint == "zoneInformation" {
            lookups += 1;
            let url = if lookups == 1 { ZONE } else { moved };
            ok(json!({"url": url}))
        } else if request.url.starts_with(ZONE) {
            response(401, "")
        } else {
            query_answer(companies(1..=2), None)
        }
    });
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.requests.len(), 4);
    assert_eq!(run.requests[3].url, format!("{moved}V1.0/Companies/query"));
    assert_eq!(run.requests[3].body, run.requests[1].body);
    assert_eq!(run.records().len(), 2);

    // The same zone again: the 401 is the refusal it looks like.
    let plugin = open(settings_with(json!({"zone_url": null})));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |request| {
        if request.endpoint == "zoneInformation" {
            ok(json!({"url": ZONE}))
        } else {
            response(401, "")
        }
    });
    assert_eq!(run.error().kind, ErrorKind::Auth);
    assert_eq!(run.requests.len(), 3, "one lookup after the 401, no more");
}

#[test]
fn a_zone_on_an_unknown_host_is_refused() {
    let plugin = open(settings_with(json!({"zone_url": null})));
    let mut machine = start(&plugin, list("companies", ListMode::Full, None));
    let run = drive(machine.as_mut(), |_| {
        ok(json!({"url": "https://autotask.example.net/ATServicesRest/"}))
    });
    assert_eq!(run.error().kind, ErrorKind::Config);
    assert_eq!(run.error().field.as_deref(), Some("zone_url"));
    assert_eq!(run.requests.len(), 1);
}

#[test]
fn an_unknown_user_has_no_zone() {
    let plugin = open(settings_with(json!({"zone_url": null})));
    let mut machine = start(&plugin, Operation::Probe);
    let run = drive(machine.as_mut(), |_| {
        response(500, r#"{"errors":["Zone information could not be determined"]}"#)
    });
    assert_eq!(run.error().kind, ErrorKind::Config);
    assert_eq!(run.error().field.as_deref(), Some("username"));
}

// Settings.

#[test]
fn settings_are_checked_and_name_the_bad_one() {
    let cases = [
        (json!({"zone_discovery_url": "http://autotask.example"}), "zone_discovery_url"),
        (json!({"zone_url": "ftp://webservices5.autotask.net"}), "zone_url"),
        (json!({"secret": ""}), "secret"),
        (json!({"integration_code": null}), "integration_code"),
        (json!({"page_size": 501}), "page_size"),
        (json!({"site": "x"}), "site"),
    ];
    for (change, field) in cases {
        let error = open_error(settings_with(change));
        assert_eq!(error.kind, ErrorKind::Config);
        assert_eq!(error.field.as_deref(), Some(field), "{}", error.message);
        assert!(!error.message.contains("s3cret-value"));
    }
    let loopback = open(settings_with(json!({
        "zone_url": null, "zone_discovery_url": "http://127.0.0.1:9000/atservicesrest"
    })));
    assert_eq!(loopback.hosts(), ["127.0.0.1:9000"]);
    assert!(open(settings()).hosts().contains(&"webservices5.autotask.net".to_string()));
}

// C13 and C15: unit writes.

fn unit(id: u64, service: u64, start: &str, end: &str, units: i64) -> Value {
    json!({
        "id": id, "contractID": 12, "contractServiceID": service, "serviceID": 300,
        "startDate": format!("{start}T00:00:00Z"), "endDate": format!("{end}T00:00:00Z"),
        "units": units, "price": 21.5
    })
}

/// A tiny Autotask holding one contract service (77 on contract 12, service 300, company 174)
/// whose unit rows split on an adjustment as Autotask's do.
struct FakeAutotask {
    /// `(start, end, units)`, as `YYYY-MM-DD`.
    rows: Vec<(String, String, i64)>,
    adjustments: Vec<Value>,
    /// How to answer the next adjustment: `None` normally.
    post_fault: Option<HttpResponse>,
    /// Apply the adjustment even when answering with the fault (the answer was lost).
    apply_on_fault: bool,
}

impl FakeAutotask {
    fn new(rows: &[(&str, &str, i64)]) -> FakeAutotask {
        FakeAutotask {
            rows: rows.iter().map(|(s, e, u)| (s.to_string(), e.to_string(), *u)).collect(),
            adjustments: Vec::new(),
            post_fault: None,
            apply_on_fault: false,
        }
    }

    fn units_on(&self, date: &str) -> Option<i64> {
        self.rows.iter().find(|(s, e, _)| s.as_str() <= date && date <= e.as_str()).map(|r| r.2)
    }

    fn apply(&mut self, adjustment: &Value) {
        let date = adjustment["effectiveDate"].as_str().unwrap_or_default()[..10].to_string();
        let change = adjustment["unitChange"].as_i64().expect("a whole unitChange");
        let mut rows = Vec::new();
        for (start, end, units) in self.rows.drain(..) {
            if start < date && date <= end {
                let day_before = time::Date::parse(
                    &date,
                    time::macros::format_description!("[year]-[month]-[day]"),
                )
                .ok()
                .and_then(|d| d.previous_day())
                .map(|d| d.to_string())
                .unwrap_or_default();
                rows.push((start, day_before, units));
                rows.push((date.clone(), end, units + change));
            } else if start >= date {
                rows.push((start, end, units + change));
            } else {
                rows.push((start, end, units));
            }
        }
        self.rows = rows;
        self.adjustments.push(adjustment.clone());
    }

    fn answer(&mut self, request: &HttpRequest) -> HttpResponse {
        match request.endpoint.as_str() {
            "ContractServices" => query_answer(
                vec![json!({"id": 77, "contractID": 12, "serviceID": 300, "unitPrice": 21.5})],
                None,
            ),
            "Contracts" => query_answer(vec![json!({"id": 12, "companyID": 174})], None),
            "ContractServiceUnits" => {
                let rows = self
                    .rows
                    .iter()
                    .enumerate()
                    .map(|(i, (s, e, u))| unit(i as u64 + 1, 77, s, e, *u))
                    .collect();
                query_answer(rows, None)
            }
            "ContractServiceAdjustments" => {
                assert_eq!(request.method, "POST");
                let adjustment = body(request);
                match self.post_fault.take() {
                    Some(fault) => {
                        if self.apply_on_fault {
                            self.apply(&adjustment);
                        }
                        fault
                    }
                    None => {
                        self.apply(&adjustment);
                        ok(json!({"itemId": 9000 + self.adjustments.len()}))
                    }
                }
            }
            other => panic!("unexpected {other}"),
        }
    }
}

fn line_quantity(run: &Run) -> Decimal {
    match &run.result {
        Some(OpResult::Line { line }) => line.quantity.0,
        other => panic!("expected a line, got {other:?} / {:?}", run.error),
    }
}

#[test]
fn c13_a_retry_after_a_crash_reads_43_and_sends_nothing() {
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);

    // The first attempt creates the adjustment, then the agent is killed before it records
    // that: the machine is dropped.
    let mut first = start(&plugin, set_quantity(77, 12, "43", "2024-05-15"));
    let run = drive(first.as_mut(), |request| autotask.answer(request));
    drop(first);
    let posts = run.posts_to("ContractServiceAdjustments");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        body(posts[0]),
        json!({"contractID": 12, "serviceID": 300, "unitChange": 3, "effectiveDate": "2024-05-15T00:00:00"})
    );
    assert_eq!(autotask.units_on("2024-05-15"), Some(43));
    assert_eq!(autotask.units_on("2024-05-14"), Some(40), "the row was split, not rewritten");
    let recorded = posts[0].clone();

    // After the restart the agent asks again for the target.
    let mut retry = start(&plugin, set_quantity(77, 12, "43", "2024-05-15"));
    let run = drive(retry.as_mut(), |request| autotask.answer(request));
    assert!(
        run.posts_to("ContractServiceAdjustments").is_empty(),
        "43 is in force: nothing to send"
    );
    assert_eq!(line_quantity(&run), Decimal::from(43));
    assert_eq!(autotask.adjustments.len(), 1);
    assert_eq!(autotask.units_on("2024-05-15"), Some(43));

    // What a blind replay of the recorded delta would have done.
    let mut blind = FakeAutotask { rows: autotask.rows.clone(), ..FakeAutotask::new(&[]) };
    blind.answer(&recorded);
    assert_eq!(blind.units_on("2024-05-15"), Some(46), "the doubling the machine avoids");
}

#[test]
fn c13_the_delta_is_taken_against_the_row_in_force_on_the_effective_date() {
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[
        ("2024-04-01", "2024-04-30", 30),
        ("2024-05-01", "2024-05-31", 40),
        ("2024-06-01", "2024-06-30", 50),
    ]);
    let mut machine = start(&plugin, set_quantity(77, 12, "43", "2024-05-15"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    let posts = run.posts_to("ContractServiceAdjustments");
    assert_eq!(posts.len(), 1);
    assert_eq!(body(posts[0])["unitChange"], 3, "against May's 40, not June's 50");
    assert_eq!(line_quantity(&run), Decimal::from(43));
    assert_eq!(autotask.units_on("2024-04-15"), Some(30));
    assert_eq!(autotask.units_on("2024-06-15"), Some(53), "later rows move by the same delta");
}

#[test]
fn c13_an_unanswered_adjustment_is_checked_before_anything_is_sent_again() {
    // The adjustment landed, but its answer was a 500: the re-read finds 43, no second POST.
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    autotask.post_fault = Some(response(500, r#"{"errors":["Timeout expired."]}"#));
    autotask.apply_on_fault = true;
    let mut machine = start(&plugin, set_quantity(77, 12, "43", "2024-05-15"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert_eq!(run.posts_to("ContractServiceAdjustments").len(), 1);
    assert_eq!(line_quantity(&run), Decimal::from(43));
    assert_eq!(autotask.units_on("2024-05-15"), Some(43));

    // It did not land: the re-read finds 40 and the next delta is computed from it.
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    autotask.post_fault = Some(response(200, r#"{"itemI"#));
    let mut machine = start(&plugin, set_quantity(77, 12, "43", "2024-05-15"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert_eq!(run.posts_to("ContractServiceAdjustments").len(), 2);
    assert_eq!(line_quantity(&run), Decimal::from(43));
    assert_eq!(autotask.adjustments.len(), 1);
}

#[test]
fn c13_a_throttled_adjustment_is_retryable_as_it_was() {
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    let mut machine = start(&plugin, set_quantity(77, 12, "41", "2024-05-15"));
    let mut input = StepInput::Start;
    let post = loop {
        match machine.step(input) {
            Step::Send { request } if request.endpoint == "ContractServiceAdjustments" => {
                break request;
            }
            Step::Send { request } => {
                input = StepInput::Response { response: autotask.answer(&request) };
            }
            other => panic!("{other:?}"),
        }
    };
    let throttled = machine.step(StepInput::Response {
        response: response(
            429,
            r#"{"errors":["thread threshold of 3 threads has been exceeded"]}"#,
        ),
    });
    let Step::Failed { error } = throttled else { panic!() };
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert!(error.retryable, "nothing was applied, so the same POST is safe");

    // The host sends the same POST again.
    let mut input = StepInput::Response { response: autotask.answer(&post) };
    loop {
        match machine.step(input) {
            Step::Send { request } => {
                input = StepInput::Response { response: autotask.answer(&request) };
            }
            Step::Done { result: OpResult::Line { line } } => {
                assert_eq!(line.quantity.0, Decimal::from(41));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(autotask.adjustments.len(), 1);
}

#[test]
fn c13_a_date_outside_every_period_is_refused() {
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    let mut machine = start(&plugin, set_quantity(77, 12, "43", "2024-07-01"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert_eq!(run.error().kind, ErrorKind::InvalidRequest);
    assert_eq!(run.error().field.as_deref(), Some("effective_date"));
    assert!(autotask.adjustments.is_empty());
}

#[test]
fn c15_units_are_whole_numbers_and_never_truncated() {
    let plugin = open(settings());
    for quantity in ["43.5", "0.30000000000000004", "-1"] {
        let error = start_error(&plugin, set_quantity(77, 12, quantity, "2024-05-15"));
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{quantity}");
        assert_eq!(error.field.as_deref(), Some("quantity"));
    }
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    let mut machine = start(&plugin, set_quantity(77, 12, "43.000", "2024-05-15"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert_eq!(body(run.posts_to("ContractServiceAdjustments")[0])["unitChange"], 3);
}

#[test]
fn an_unchanged_quantity_sends_nothing() {
    let plugin = open(settings());
    let mut autotask = FakeAutotask::new(&[("2024-05-01", "2024-05-31", 40)]);
    let mut machine = start(&plugin, set_quantity(77, 12, "40", "2024-05-15"));
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert!(run.posts_to("ContractServiceAdjustments").is_empty());
    assert_eq!(line_quantity(&run), Decimal::from(40));
}

#[test]
fn read_line_answers_the_units_in_force_today() {
    let plugin = open(settings());
    let mut autotask =
        FakeAutotask::new(&[("2024-05-01", "2024-05-19", 40), ("2024-05-20", "2024-05-31", 44)]);
    let operation = Operation::ReadLine {
        line: LineRef { id: "77".to_string(), agreement_id: "12".to_string() },
    };
    let mut machine = start(&plugin, operation);
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    let Some(OpResult::Line { line }) = &run.result else { panic!("{:?}", run.error) };
    assert_eq!(line.quantity.0, Decimal::from(44));
    assert_eq!(line.company_id, "174");
    assert_eq!(line.product_id, "300");
    assert_eq!(line.effective_date.as_deref(), Some("2024-05-20"));

    let wrong = Operation::ReadLine {
        line: LineRef { id: "77".to_string(), agreement_id: "13".to_string() },
    };
    let mut machine = start(&plugin, wrong);
    let run = drive(machine.as_mut(), |request| autotask.answer(request));
    assert_eq!(run.error().kind, ErrorKind::NotFound);
}

#[test]
fn unsupported_and_malformed_operations_are_refused_before_sending() {
    let plugin = open(settings());
    let create = Operation::CreateLine {
        company_id: "174".to_string(),
        agreement_id: "12".to_string(),
        product_id: "300".to_string(),
        quantity: Quantity(Decimal::ONE),
        effective_date: "2024-05-01".to_string(),
    };
    assert_eq!(start_error(&plugin, create).kind, ErrorKind::Unsupported);
    assert_eq!(
        start_error(&plugin, list("tickets", ListMode::Full, None)).kind,
        ErrorKind::Unsupported
    );
    let error = start_error(&plugin, set_quantity(77, 12, "4", "15/05/2024"));
    assert_eq!(error.field.as_deref(), Some("effective_date"));
    let bad_token = Checkpoint { page_token: Some("abc".to_string()), ..Checkpoint::default() };
    let error = start_error(&plugin, list("companies", ListMode::Full, Some(bad_token)));
    assert_eq!(error.field.as_deref(), Some("page_token"));
}
