//! The Autotask emulator, exercised over real HTTP on 127.0.0.1 the way the Autotask adapter
//! uses it: the zone lookup, POST queries and their filter language, continuation pages that
//! refuse GET (C02), the credential quirks (C10), the thread threshold (C09), adjustments that
//! split unit rows by effective date (C13), faults, the hourly threshold, a moved tenant and
//! the request log.

use std::time::{Duration, Instant};

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tally_tests::autotask::{
    AtData, AutotaskEmulator, Fault, FaultRule, THREAD_THRESHOLD_TEXT, sample_ids,
};
use time::macros::date;

fn http() -> Client {
    // reqwest is built without a default TLS provider; these tests never use TLS, but building a
    // client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Client::builder().no_proxy().timeout(Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(e) => panic!("cannot build an HTTP client: {e}"),
    }
}

/// A test's view of one emulator: the handle plus an authenticated client.
struct At {
    emu: AutotaskEmulator,
    http: Client,
}

impl At {
    fn start(data: AtData) -> At {
        At { emu: AutotaskEmulator::start(data), http: http() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emu.api_url())
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("ApiIntegrationCode", self.emu.integration_code())
            .header("UserName", self.emu.username())
            .header("Secret", self.emu.secret())
    }

    async fn post(&self, url: &str, body: &Value) -> Response {
        send(self.request(Method::POST, url).json(body)).await
    }

    async fn query(&self, entity: &str, body: &Value) -> Response {
        self.post(&self.url(&format!("/{entity}/query")), body).await
    }

    /// Every row of a query, following `nextPageUrl` with POSTs of the same body.
    async fn query_all(&self, entity: &str, body: &Value) -> (Vec<Value>, usize) {
        let mut response = self.query(entity, body).await;
        let mut rows = Vec::new();
        let mut pages = 0;
        loop {
            assert_eq!(response.status(), StatusCode::OK);
            let page = body_json(response).await;
            pages += 1;
            rows.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["pageDetails"]["nextPageUrl"].as_str() {
                Some(next) => response = self.post(next, body).await,
                None => return (rows, pages),
            }
        }
    }

    async fn adjust(&self, body: &Value) -> Response {
        self.post(&self.url("/ContractServiceAdjustments"), body).await
    }
}

async fn send(request: reqwest::RequestBuilder) -> Response {
    match request.send().await {
        Ok(response) => response,
        Err(e) => panic!("request failed: {e:?}"),
    }
}

async fn body_json(response: Response) -> Value {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ids(rows: &[Value]) -> Vec<i64> {
    rows.iter().filter_map(|r| r["id"].as_i64()).collect()
}

fn all() -> Value {
    json!({"filter": [{"op": "gte", "field": "id", "value": 0}]})
}

/// Waits for `condition` with a generous limit; never a timed assertion on the happy path.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < Duration::from_secs(60), "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_zone_lookup_names_the_zone_and_needs_no_credentials() {
    let at = At::start(AtData::sample());
    let url =
        format!("{}/v1.0/zoneInformation?user={}", at.emu.zone_discovery_url(), at.emu.username());
    let response = send(at.http.get(&url)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let zone = body_json(response).await;
    assert_eq!(zone["url"], at.emu.zone_url());
    assert!(at.emu.zone_url().ends_with("/ATServicesRest/"));

    let url =
        format!("{}/v1.0/zoneInformation?user=nobody@example.com", at.emu.zone_discovery_url());
    let response = send(at.http.get(&url)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = body_json(response).await;
    assert_eq!(body["errors"][0], "Zone information could not be determined");
}

#[tokio::test]
async fn c02_next_page_url_answers_405_to_get_and_continues_with_the_same_body() {
    let at = At::start(AtData::generate(7, 1200, 0, 0, 0));
    let first = body_json(at.query("Companies", &all()).await).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(500));
    assert_eq!(first["pageDetails"]["count"], 500);
    let next = first["pageDetails"]["nextPageUrl"].as_str().expect("a next page").to_owned();
    assert!(next.starts_with(&at.emu.api_url()), "{next}");

    let get = send(at.request(Method::GET, &next)).await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);

    let other = json!({"filter": [{"op": "gte", "field": "id", "value": 1}]});
    let mismatched = at.post(&next, &other).await;
    assert_eq!(mismatched.status(), StatusCode::BAD_REQUEST);

    let (rows, pages) = at.query_all("Companies", &all()).await;
    assert_eq!(pages, 3);
    assert_eq!(rows.len(), 1200);
    let ids = ids(&rows);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order, no repeats");

    let capped = json!({"MaxRecords": 1000, "filter": [{"op": "gte", "field": "id", "value": 0}]});
    let page = body_json(at.query("Companies", &capped).await).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(500));
    assert_eq!(page["pageDetails"]["requestCount"], 500);

    let logged = at.emu.requests();
    assert!(logged.iter().any(|r| r.continuation && r.method == "GET" && r.status == Some(405)));
}

#[tokio::test]
async fn queries_filter_project_and_refuse_what_autotask_refuses() {
    let at = At::start(AtData::sample());
    let body = json!({
        "IncludeFields": ["companyName"],
        "filter": [
            {"op": "eq", "field": "isActive", "value": true},
            {"op": "or", "items": [
                {"op": "beginsWith", "field": "companyName", "value": "contoso"},
                {"op": "and", "items": [
                    {"op": "in", "field": "id", "value": [sample_ids::OBRIEN, sample_ids::WOODGROVE]},
                    {"op": "noteq", "field": "companyType", "value": 3}
                ]}
            ]}
        ]
    });
    let (rows, _) = at.query_all("Companies", &body).await;
    assert_eq!(ids(&rows), [sample_ids::CONTOSO, sample_ids::OBRIEN]);
    assert_eq!(rows[0], json!({"id": sample_ids::CONTOSO, "companyName": "Contoso Ltd"}));

    let since = json!({"filter": [
        {"op": "gt", "field": "lastActivityDate", "value": "2024-05-01T11:15:07.263Z"}
    ]});
    let (rows, _) = at.query_all("Companies", &since).await;
    assert_eq!(ids(&rows), [sample_ids::WOODGROVE]);

    let units = json!({"filter": [
        {"op": "eq", "field": "contractServiceID", "value": sample_ids::FABRIKAM_M365},
        {"op": "lte", "field": "startDate", "value": "2024-05-15T00:00:00"},
        {"op": "gte", "field": "endDate", "value": "2024-05-15T00:00:00"}
    ]});
    let (rows, _) = at.query_all("ContractServiceUnits", &units).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["units"], 40);
    assert_eq!(rows[0]["startDate"], "2024-05-01T00:00:00Z");

    for bad in [
        json!({}),
        json!({"filter": []}),
        json!({"filter": [{"op": "like", "field": "id", "value": 1}]}),
    ] {
        assert_eq!(at.query("Companies", &bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let get = send(at.request(Method::GET, &at.url("/Companies/query"))).await;
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let adjustments = at.query("ContractServiceAdjustments", &all()).await;
    assert_eq!(adjustments.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn c10_bad_user_is_500_bad_secret_is_401_bad_integration_code_is_500() {
    let at = At::start(AtData::sample());
    let url = at.url("/Companies/query");
    let with = |user: &str, secret: &str, code: &str| {
        at.http
            .post(&url)
            .header("UserName", user)
            .header("Secret", secret)
            .header("ApiIntegrationCode", code)
            .json(&all())
    };
    let (user, secret, code) = (at.emu.username(), at.emu.secret(), at.emu.integration_code());

    let response = send(with("someone@else.example", secret, code)).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body_json(response).await["errors"][0].as_str().is_some_and(|e| e.contains("user name"))
    );

    let response = send(with(user, "wrong", code)).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = send(with(user, secret, "WRONGCODE")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body_json(response).await["errors"][0], "IntegrationCode is invalid.");

    assert_eq!(send(with(user, secret, code)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn c09_a_fourth_concurrent_request_on_one_endpoint_meets_the_thread_threshold() {
    let at = std::sync::Arc::new(At::start(AtData::sample()));
    at.emu.pause();
    let mut calls = Vec::new();
    for _ in 0..4 {
        let at = std::sync::Arc::clone(&at);
        calls.push(tokio::spawn(async move {
            let response = at.query("Companies", &all()).await;
            let status = response.status();
            (status, response.text().await.unwrap_or_default())
        }));
    }
    let emu = &at.emu;
    eventually("three held requests and one refusal", || {
        emu.in_flight("Companies") == 3 && emu.requests().iter().any(|r| r.status == Some(429))
    })
    .await;

    // Another endpoint has slots of its own, and the zone lookup is exempt.
    let services = {
        let at = std::sync::Arc::clone(&at);
        tokio::spawn(async move { at.query("Services", &all()).await.status() })
    };
    eventually("the Services request in flight", || emu.in_flight("Services") == 1).await;
    let zone = format!("{}/v1.0/zoneInformation?user={}", emu.zone_discovery_url(), emu.username());
    assert_eq!(send(at.http.get(&zone)).await.status(), StatusCode::OK);

    at.emu.resume();
    let mut statuses = Vec::new();
    for call in calls {
        let (status, body) = call.await.expect("the request task");
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(body.contains("thread threshold of 3 threads has been exceeded"), "{body}");
            assert!(body.contains(&THREAD_THRESHOLD_TEXT[..20]));
        }
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count(), 1);
    assert_eq!(services.await.expect("the Services task"), StatusCode::OK);
    eventually("every slot released", || emu.in_flight("Companies") == 0).await;
}

#[tokio::test]
async fn c13_an_adjustment_splits_the_row_covering_its_date_and_moves_later_rows() {
    let at = At::start(AtData::sample());
    let line = sample_ids::FABRIKAM_M365;
    assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 15)), Some(40));

    let response = at
        .adjust(&json!({
            "contractID": sample_ids::FABRIKAM_CONTRACT,
            "serviceID": sample_ids::M365_BP,
            "unitChange": 3,
            "effectiveDate": "2024-05-15T00:00:00"
        }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(body_json(response).await["itemId"].is_i64());

    assert_eq!(at.emu.units_on(line, date!(2024 - 04 - 30)), Some(40));
    assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 14)), Some(40));
    assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 15)), Some(43));
    assert_eq!(at.emu.units_on(line, date!(2024 - 06 - 15)), Some(43));
    let may: Vec<_> = at
        .emu
        .unit_rows(line)
        .into_iter()
        .filter(|r| r.start >= date!(2024 - 05 - 01) && r.end <= date!(2024 - 05 - 31))
        .map(|r| (r.start, r.end, r.units))
        .collect();
    assert_eq!(
        may,
        [
            (date!(2024 - 05 - 01), date!(2024 - 05 - 14), 40),
            (date!(2024 - 05 - 15), date!(2024 - 05 - 31), 43)
        ]
    );

    // An adjustment on a period's first day changes that row whole, through the child path.
    let child = at.url(&format!("/Contracts/{}/ServiceAdjustments", sample_ids::FABRIKAM_CONTRACT));
    let body = json!({"contractServiceID": line, "unitChange": -1, "effectiveDate": "2024-06-01"});
    assert_eq!(at.post(&child, &body).await.status(), StatusCode::OK);
    assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 20)), Some(43));
    assert_eq!(at.emu.units_on(line, date!(2024 - 06 - 01)), Some(42));
    assert_eq!(at.emu.units_on(line, date!(2028 - 12 - 31)), Some(42));

    // The units on a date are the base plus every adjustment effective on or before it.
    let adjustments = at.emu.adjustments();
    let fabrikam: Vec<_> = adjustments.iter().filter(|a| a.contract_service_id == line).collect();
    assert_eq!(fabrikam.len(), 2);
    for day in [date!(2024 - 05 - 10), date!(2024 - 05 - 15), date!(2024 - 07 - 01)] {
        let applied: i64 =
            fabrikam.iter().filter(|a| a.effective_date <= day).map(|a| a.unit_change).sum();
        assert_eq!(at.emu.units_on(line, day), Some(40 + applied), "{day}");
    }

    let refused = [
        json!({"contractID": 12, "serviceID": 301, "unitChange": 2.5, "effectiveDate": "2024-05-15"}),
        json!({"contractID": 12, "serviceID": 301, "unitChange": 1, "effectiveDate": "2030-01-01"}),
        json!({"contractID": 12, "serviceID": 301, "unitChange": -100, "effectiveDate": "2024-05-15"}),
        json!({"contractID": 12, "serviceID": 999, "unitChange": 1, "effectiveDate": "2024-05-15"}),
        json!({"contractID": 12, "serviceID": 301, "unitChange": 1}),
    ];
    for body in refused {
        assert_eq!(at.adjust(&body).await.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(at.emu.writes().adjustments, 2);
}

#[tokio::test]
async fn faults_fire_as_armed() {
    let at = At::start(AtData::sample());
    at.emu.inject(FaultRule::new("Companies", Fault::server_error()));
    assert_eq!(at.query("Companies", &all()).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(at.query("Companies", &all()).await.status(), StatusCode::OK);

    at.emu.inject(FaultRule::new("Services", Fault::rate_limited_secs(3)));
    let throttled = at.query("Services", &all()).await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));

    at.emu.inject(FaultRule::new("Contracts", Fault::TruncatedBody));
    let cut = at.query("Contracts", &all()).await;
    assert_eq!(cut.status(), StatusCode::OK);
    let text = cut.text().await.unwrap_or_default();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "a cut body does not parse");

    at.emu.inject(FaultRule::new("*", Fault::server_error()).always());
    for entity in ["Companies", "ContractServices"] {
        assert_eq!(at.query(entity, &all()).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    at.emu.clear_faults();

    // The adjustment lands, yet the answer says it failed.
    at.emu.inject(
        FaultRule::new("ContractServiceAdjustments", Fault::ServerErrorAfterProcessing)
            .method("POST"),
    );
    let body =
        json!({"contractID": 12, "serviceID": 301, "unitChange": 3, "effectiveDate": "2024-05-15"});
    assert_eq!(at.adjust(&body).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(at.emu.units_on(sample_ids::FABRIKAM_M365, date!(2024 - 05 - 15)), Some(43));
    assert_eq!(at.emu.armed_faults(), 0);
}

#[tokio::test]
async fn continuation_faults_and_foreign_next_links() {
    let at = At::start(AtData::generate(3, 700, 0, 0, 0));
    at.emu.inject(FaultRule::new("Companies", Fault::server_error()).on_continuation());
    let first = body_json(at.query("Companies", &all()).await).await;
    let next = first["pageDetails"]["nextPageUrl"].as_str().unwrap_or_default().to_owned();
    assert_eq!(at.post(&next, &all()).await.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(at.post(&next, &all()).await.status(), StatusCode::OK);

    at.emu.set_link_origin(Some("http://collector.example"));
    let first = body_json(at.query("Companies", &all()).await).await;
    let next = first["pageDetails"]["nextPageUrl"].as_str().unwrap_or_default();
    assert!(
        next.starts_with(
            "http://collector.example/ATServicesRest/V1.0/Companies/query/next?paging="
        )
    );
}

#[tokio::test]
async fn a_moved_tenant_answers_401_at_the_old_zone() {
    let at = At::start(AtData::sample());
    let old = at.url("/Companies/query");
    at.emu.move_zone("/zone14/ATServicesRest/");
    assert_eq!(at.post(&old, &all()).await.status(), StatusCode::UNAUTHORIZED);
    assert!(at.emu.zone_url().ends_with("/zone14/ATServicesRest/"));
    assert_eq!(at.query("Companies", &all()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_hourly_threshold_refuses_requests_beyond_it() {
    let at = At::start(AtData::sample());
    at.emu.set_request_threshold(Some(2));
    assert_eq!(at.query("Companies", &all()).await.status(), StatusCode::OK);
    assert_eq!(at.query("Services", &all()).await.status(), StatusCode::OK);
    let refused = at.query("Companies", &all()).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.text().await.unwrap_or_default().contains("request threshold"));
    at.emu.set_request_threshold(None);
    assert_eq!(at.query("Companies", &all()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_request_log_keeps_what_was_sent() {
    let at = At::start(AtData::sample());
    at.query("Services", &all()).await;
    let logged = at.emu.requests();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].entity, "Services");
    assert_eq!(logged[0].method, "POST");
    assert_eq!(logged[0].header("apiintegrationcode"), Some(at.emu.integration_code()));
    assert_eq!(serde_json::from_str::<Value>(&logged[0].body).ok(), Some(all()));
    assert_eq!(at.emu.request_count("services"), 1);
    at.emu.clear_log();
    assert!(at.emu.requests().is_empty());
}

#[test]
fn the_sample_is_the_connectwise_sample_msp_and_generate_is_deterministic() {
    let sample = AtData::sample();
    let names: Vec<&str> = sample.services.iter().map(|s| s.name.as_str()).collect();
    for sku in ["SAFEDNS-SEAT", "M365-BP", "BKP-TB", "EDR-AGENT", "SAT-USER"] {
        assert!(names.contains(&sku), "{sku}");
    }
    assert!(sample.companies.iter().any(|c| c.name == "Fabrikam\u{a0}Inc"));
    assert!(sample.units.iter().all(|u| u.start <= u.end));
    assert_eq!(AtData::generate(5, 50, 10, 20, 40), AtData::generate(5, 50, 10, 20, 40));
    assert_ne!(AtData::generate(5, 50, 10, 20, 40), AtData::generate(6, 50, 10, 20, 40));
}

// The Autotask adapter against the emulator: every request the adapter's machines ask for is
// sent over HTTP, and only to a host the session allows.

mod adapter {
    use rust_decimal::Decimal;
    use tally_autotask::Autotask;
    use tally_plugin_sdk::{
        ErrorKind, Header, HttpRequest, HttpResponse, LineRef, ListMode, OpResult, Operation,
        Plugin, PluginError, Quantity, Record, Step, StepInput,
    };

    use super::*;

    fn open(at: &At) -> Autotask {
        open_with(at, at.emu.secret())
    }

    fn open_with(at: &At, secret: &str) -> Autotask {
        let settings = json!({
            "username": at.emu.username(),
            "secret": secret,
            "integration_code": at.emu.integration_code(),
            "zone_discovery_url": at.emu.zone_discovery_url(),
        });
        match Autotask::open(&settings) {
            Ok(plugin) => plugin.with_today(date!(2024 - 05 - 20)),
            Err(e) => panic!("settings refused: {e}"),
        }
    }

    #[derive(Default)]
    struct Run {
        requests: Vec<HttpRequest>,
        pages: usize,
        records: Vec<Record>,
        result: Option<OpResult>,
        error: Option<PluginError>,
    }

    /// Runs one operation to its end, sending its requests to the emulator.
    async fn run(at: &At, plugin: &Autotask, operation: Operation) -> Run {
        let mut machine = match plugin.start(operation) {
            Ok(machine) => machine,
            Err(e) => panic!("operation refused: {e}"),
        };
        let hosts = plugin.hosts();
        let mut run = Run::default();
        let mut input = StepInput::Start;
        for _ in 0..500 {
            match machine.step(input) {
                Step::Send { request } => {
                    let url = reqwest::Url::parse(&request.url).expect("a URL");
                    let host =
                        format!("{}:{}", url.host_str().unwrap_or(""), url.port().unwrap_or(0));
                    assert!(hosts.contains(&host), "{host} is not among {hosts:?}");
                    let response = send_request(at, &request).await;
                    run.requests.push(request);
                    input = StepInput::Response { response };
                }
                Step::Page { records, .. } => {
                    run.pages += 1;
                    run.records.extend(records);
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
        panic!("the operation did not end within 500 steps");
    }

    async fn send_request(at: &At, request: &HttpRequest) -> HttpResponse {
        let method = Method::from_bytes(request.method.as_bytes()).expect("a method");
        let mut builder = at.http.request(method, &request.url);
        for header in &request.headers {
            builder = builder.header(&header.name, &header.value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = send(builder).await;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| Header {
                name: k.as_str().to_owned(),
                value: v.to_str().unwrap_or_default().to_owned(),
            })
            .collect();
        HttpResponse { status, headers, body: response.text().await.unwrap_or_default() }
    }

    fn list(stream: &str) -> Operation {
        Operation::List {
            stream: stream.to_owned(),
            mode: ListMode::Full,
            checkpoint: None,
            parent_id: None,
            lookback_seconds: 0,
        }
    }

    fn set(line: i64, contract: i64, quantity: i64, date: &str) -> Operation {
        Operation::SetQuantity {
            line: LineRef { id: line.to_string(), agreement_id: contract.to_string() },
            quantity: Quantity(Decimal::from(quantity)),
            effective_date: date.to_owned(),
        }
    }

    fn quantity(run: &Run) -> i64 {
        match &run.result {
            Some(OpResult::Line { line }) => line.quantity.0.try_into().unwrap_or(-1),
            other => panic!("expected a line, got {other:?} / {:?}", run.error),
        }
    }

    #[tokio::test]
    async fn the_adapter_reads_every_stream_of_the_sample() {
        let at = At::start(AtData::sample());
        let plugin = open(&at);
        let probe = run(&at, &plugin, Operation::Probe).await;
        assert!(matches!(probe.result, Some(OpResult::Probed { .. })), "{:?}", probe.error);

        let companies = run(&at, &plugin, list("companies")).await;
        assert_eq!(companies.records.len(), 8);
        let products = run(&at, &plugin, list("products")).await;
        assert_eq!(products.records.len(), 6);
        let agreements = run(&at, &plugin, list("agreements")).await;
        assert_eq!(agreements.records.len(), 7, "the block-hours contract is not recurring");

        let lines = run(&at, &plugin, list("billing_lines")).await;
        assert!(lines.error.is_none(), "{:?}", lines.error);
        assert_eq!(lines.records.len(), 14);
        assert_eq!(lines.requests.len(), 3, "one page: lines, their units, their contracts");
        let line = |id: i64| {
            lines.records.iter().find_map(|r| match r {
                Record::BillingLine(l) if l.id == id.to_string() => Some(l.clone()),
                _ => None,
            })
        };
        let fabrikam = line(sample_ids::FABRIKAM_M365).expect("line 77");
        assert_eq!(fabrikam.quantity.0, Decimal::from(40));
        assert_eq!(fabrikam.company_id, sample_ids::FABRIKAM.to_string());
        assert_eq!(fabrikam.effective_date.as_deref(), Some("2024-05-01"));
        let contoso = line(sample_ids::CONTOSO_SAFEDNS).expect("line 70");
        assert_eq!(contoso.quantity.0, Decimal::from(42), "the April adjustment is in force");
        assert_eq!(at.emu.request_count("zoneInformation"), 1, "one zone lookup per session");
    }

    #[tokio::test]
    async fn c02_the_adapter_reads_every_page_with_posts() {
        let at = At::start(AtData::generate(9, 1234, 0, 0, 0));
        let plugin = open(&at);
        let companies = run(&at, &plugin, list("companies")).await;
        assert!(companies.error.is_none(), "{:?}", companies.error);
        assert_eq!(companies.records.len(), 1234);
        assert_eq!(companies.pages, 3);
        let logged = at.emu.requests();
        assert_eq!(logged.iter().filter(|r| r.continuation).count(), 2);
        assert!(logged.iter().filter(|r| r.entity == "Companies").all(|r| r.method == "POST"));

        at.emu
            .inject(FaultRule::new("Companies", Fault::server_error()).on_continuation().always());
        let failed = run(&at, &plugin, list("companies")).await;
        let error = failed.error.expect("the listing fails");
        assert_eq!(error.kind, ErrorKind::Server);
        assert_eq!(failed.pages, 1, "the first page only, and never as the last");
    }

    #[tokio::test]
    async fn c13_the_adapter_never_applies_a_change_twice() {
        let at = At::start(AtData::sample());
        let plugin = open(&at);
        let line = sample_ids::FABRIKAM_M365;
        let contract = sample_ids::FABRIKAM_CONTRACT;

        let first = run(&at, &plugin, set(line, contract, 43, "2024-05-15")).await;
        assert_eq!(quantity(&first), 43);
        assert_eq!(at.emu.writes().adjustments, 1);

        // A restart asks again for the same target: nothing is sent.
        let again = run(&at, &plugin, set(line, contract, 43, "2024-05-15")).await;
        assert_eq!(quantity(&again), 43);
        assert_eq!(at.emu.writes().adjustments, 1);
        assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 15)), Some(43));

        // The next adjustment lands but is answered 500: the adapter reads before it sends
        // anything more.
        at.emu.inject(FaultRule::new(
            "ContractServiceAdjustments",
            Fault::ServerErrorAfterProcessing,
        ));
        let lost = run(&at, &plugin, set(line, contract, 45, "2024-05-15")).await;
        assert_eq!(quantity(&lost), 45);
        assert_eq!(at.emu.writes().adjustments, 2);
        assert_eq!(at.emu.units_on(line, date!(2024 - 05 - 14)), Some(40));
        assert_eq!(at.emu.units_on(line, date!(2024 - 06 - 14)), Some(45));
    }

    #[tokio::test]
    async fn c09_c10_the_adapter_classifies_the_emulators_refusals() {
        let at = At::start(AtData::sample());
        let probe = run(&at, &open_with(&at, "wrong"), Operation::Probe).await;
        let error = probe.error.expect("the probe fails");
        assert_eq!(error.kind, ErrorKind::Config);
        assert!(!error.retryable);
        assert!(!error.message.contains(at.emu.integration_code()));

        let plugin = open(&at);
        at.emu.inject(FaultRule::new("Services", Fault::ThreadThreshold));
        let throttled = run(&at, &plugin, list("products")).await;
        let error = throttled.error.expect("throttled");
        assert_eq!(error.kind, ErrorKind::RateLimited);
        assert!(error.retryable);
    }

    #[tokio::test]
    async fn the_adapter_follows_a_tenant_to_its_new_zone() {
        let at = At::start(AtData::sample());
        let plugin = open(&at);
        assert!(run(&at, &plugin, list("products")).await.error.is_none());
        at.emu.move_zone("/zone14/ATServicesRest/");
        let moved = run(&at, &plugin, list("products")).await;
        assert!(moved.error.is_none(), "{:?}", moved.error);
        assert_eq!(moved.records.len(), 6);
        assert!(moved.requests.last().is_some_and(|r| r.url.contains("/zone14/ATServicesRest/")));
        assert_eq!(at.emu.request_count("zoneInformation"), 2);
    }
}
