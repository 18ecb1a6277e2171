//! The HaloPSA emulator over real HTTP on 127.0.0.1: its page cap (case C01), its token
//! expiry, its upsert that deletes every line it is not sent and refuses float ids, its faults
//! and shapes; then the HaloPSA adapter's machines driven against it, so that a line dropped
//! from an upsert, an id written as a float or a listing cut short would show here.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_halopsa::HaloPsa;
use tally_plugin_sdk::{
    ErrorKind, Header, HttpRequest, HttpResponse, LineRef, ListMode, Machine, OpResult, Operation,
    Plugin, PluginError, Quantity, Record, Step, StepInput,
};
use tally_tests::halopsa::{
    Credentials, Fault, FaultRule, HaloData, HaloEmulator, PAGE_CAP, TokenPolicy,
};

fn http() -> Client {
    // reqwest is built without a default TLS provider; these tests never use TLS, but building a
    // client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Client::builder().no_proxy().timeout(Duration::from_secs(30)).build() {
        Ok(client) => client,
        Err(e) => panic!("cannot build an HTTP client: {e}"),
    }
}

/// A test's view of one emulator: the handle, a client and a token.
struct Halo {
    emu: HaloEmulator,
    http: Client,
    token: String,
}

impl Halo {
    fn start(data: HaloData) -> Halo {
        let emu = HaloEmulator::start(data);
        let token = emu.issue_token();
        Halo { emu, http: http(), token }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.emu.base_url())
    }

    fn authed(&self, method: Method, path_and_query: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path_and_query))
            .header("Authorization", format!("Bearer {}", self.token))
    }

    async fn get(&self, path_and_query: &str) -> Response {
        send(self.authed(Method::GET, path_and_query)).await
    }

    async fn get_json(&self, path_and_query: &str) -> Value {
        let response = self.get(path_and_query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path_and_query}");
        json_of(response).await
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        send(self.authed(Method::POST, path).json(body)).await
    }
}

async fn send(request: RequestBuilder) -> Response {
    match request.send().await {
        Ok(response) => response,
        Err(e) => panic!("request failed: {e}"),
    }
}

async fn json_of(response: Response) -> Value {
    let text = response.text().await.unwrap_or_else(|e| panic!("body: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ids(rows: &Value) -> Vec<i64> {
    rows.as_array().into_iter().flatten().filter_map(|row| row["id"].as_i64()).collect()
}

fn sample_file() -> Value {
    let path = format!(
        "{}/../plugins/halopsa/tests/fixtures/halopsa-recurringinvoice.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

// The emulator.

#[tokio::test]
async fn c01_pages_hold_at_most_100_rows_whatever_page_size_asks() {
    let halo = Halo::start(HaloData::generate(7, 250));
    let mut seen = Vec::new();
    for page in 1..=4 {
        let body = halo
            .get_json(&format!(
                "/api/Client?pageinate=true&page_size=1000&page_no={page}&includeinactive=true"
            ))
            .await;
        assert_eq!(body["record_count"], json!(250));
        assert_eq!(body["page_size"], json!(PAGE_CAP));
        let rows = ids(&body["clients"]);
        let expected = match page {
            1 | 2 => 100,
            3 => 50,
            _ => 0,
        };
        assert_eq!(rows.len(), expected, "page {page}");
        seen.extend(rows);
    }
    let distinct: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), 250);

    // Without page_size a page holds 50; without pageinate the listing is whole.
    let body = halo.get_json("/api/client?pageinate=true").await;
    assert_eq!(ids(&body["clients"]).len(), 50);
    let body = halo.get_json("/api/client").await;
    assert_eq!(ids(&body["clients"]).len(), 225, "inactive clients only when asked for");
    let body = halo.get_json("/api/client?includeinactive=true").await;
    assert_eq!(ids(&body["clients"]).len(), 250);

    let response = halo.get("/api/client?pageinate=true&page_no=0").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn listings_and_the_single_invoice_have_halos_shapes() {
    let halo = Halo::start(HaloData::sample());
    let invoice = halo.get_json("/api/RecurringInvoice/-94").await;
    let sample = sample_file();
    assert_eq!(keys(&invoice), keys(&sample));
    assert_eq!(keys(&invoice["lines"][0]), keys(&sample["lines"][0]));
    for field in ["id", "client_id", "client_name", "notes_1", "last_modified"] {
        assert_eq!(invoice[field], sample[field], "{field}");
    }
    for (line, expected) in invoice["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(sample["lines"].as_array().into_iter().flatten())
    {
        for field in
            ["id", "ihid", "_itemid", "qty_order", "unit_price", "nominal_code", "isinactive"]
        {
            assert_eq!(line[field], expected[field], "line {} {field}", line["id"]);
        }
    }
    let text = halo.get("/api/RecurringInvoice/-94").await.text().await.unwrap_or_default();
    assert!(text.contains(r#""qty_order":14.0"#), "Halo writes quantities as floats: {text}");

    let listing =
        halo.get_json("/api/recurringinvoice?pageinate=true&page_size=10&page_no=1").await;
    assert!(listing["invoices"][0].get("lines").is_none(), "lines only with includelines");
    let listing = halo
        .get_json("/api/RecurringInvoice?pageinate=true&page_size=10&page_no=1&includelines=true")
        .await;
    assert_eq!(listing["invoices"][0]["lines"].as_array().map(Vec::len), Some(2));
    let items = halo.get_json("/api/item?pageinate=true&page_size=10&page_no=1").await;
    assert_eq!(ids(&items["items"]), [1000, 1402]);
    let contracts =
        halo.get_json("/api/clientcontract?pageinate=true&page_size=10&page_no=1").await;
    assert_eq!(
        (contracts["record_count"].clone(), ids(&contracts["contracts"])),
        (json!(1), vec![31])
    );
    assert_eq!(halo.get("/api/RecurringInvoice/5").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn tokens_come_from_client_credentials_and_expire() {
    let halo = Halo::start(HaloData::sample());
    let info = json_of(send(halo.http.get(halo.url("/api/authinfo"))).await).await;
    let auth_url = info["auth_url"].as_str().unwrap_or_default().to_string();
    assert_eq!(auth_url, format!("{}/auth", halo.emu.base_url()));

    let ask = |secret: &str, scope: &str| {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", halo.emu.client_id()),
            ("client_secret", secret),
            ("scope", scope),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        halo.http
            .post(format!("{auth_url}/token"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let refused = send(ask("wrong", "all")).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(refused).await["error"], json!("invalid_client"));
    assert_eq!(send(ask(halo.emu.client_secret(), "read")).await.status(), StatusCode::BAD_REQUEST);
    let json_body = halo
        .http
        .post(format!("{auth_url}/token"))
        .json(&json!({"grant_type": "client_credentials"}));
    assert_eq!(send(json_body).await.status(), StatusCode::BAD_REQUEST);

    // Tokens that last two requests.
    halo.emu.set_token_policy(TokenPolicy::requests(2));
    let issued = json_of(send(ask(halo.emu.client_secret(), "all")).await).await;
    assert_eq!(issued["token_type"], json!("Bearer"));
    let token = issued["access_token"].as_str().unwrap_or_default().to_string();
    let get = |token: &str| {
        halo.http
            .get(halo.url("/api/client?pageinate=true&page_size=1&page_no=1"))
            .bearer_auth(token.to_string())
    };
    assert_eq!(send(get(&token)).await.status(), StatusCode::OK);
    assert_eq!(send(get(&token)).await.status(), StatusCode::OK);
    assert_eq!(send(get(&token)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        send(halo.http.get(halo.url("/api/client"))).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Tokens that expire at once, and every token expired by the test.
    halo.emu.set_token_policy(TokenPolicy::lifetime(Duration::ZERO));
    let issued = json_of(send(ask(halo.emu.client_secret(), "all")).await).await;
    assert_eq!(issued["expires_in"], json!(0));
    let token = issued["access_token"].as_str().unwrap_or_default().to_string();
    assert_eq!(send(get(&token)).await.status(), StatusCode::UNAUTHORIZED);
    halo.emu.set_token_policy(TokenPolicy::default());
    assert_eq!(halo.get("/api/client").await.status(), StatusCode::OK);
    halo.emu.expire_tokens();
    assert_eq!(halo.get("/api/client").await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_hosted_tenant_needs_its_tenant_on_the_token_request() {
    let credentials = Credentials { tenant: Some("acme".to_owned()), ..Credentials::default() };
    let emu = HaloEmulator::try_start(HaloData::sample(), credentials.clone())
        .unwrap_or_else(|e| panic!("cannot start: {e}"));
    let http = http();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.as_str()),
            ("scope", "all"),
        ])
        .finish();
    let ask = |query: &str| {
        http.post(format!("{}/auth/token{query}", emu.base_url()))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
    };
    assert_eq!(send(ask("")).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(send(ask("?tenant=acme")).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_upsert_deletes_every_line_it_is_not_sent() {
    let halo = Halo::start(HaloData::sample());
    let response = halo
        .post(
            "/api/RecurringInvoice",
            &json!([{ "id": -94, "lines": [{ "id": 24967, "qty_order": 20 }] }]),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let saved = json_of(response).await;
    assert_eq!(ids(&saved["lines"]), [24967]);

    let invoice = halo.emu.invoice(-94).unwrap_or_else(|| panic!("invoice -94"));
    assert_eq!(invoice.lines.len(), 1, "line 24963 was left out, so Halo deleted it");
    assert_eq!(invoice.lines[0].qty_order, Decimal::from(20));
    assert_ne!(invoice.last_modified, "2025-03-20T18:50:25.057");

    // A line without an id is added; an invoice without lines keeps them.
    let body =
        json!([{ "id": -94, "lines": [{ "id": 24967 }, { "_itemid": 1402, "qty_order": 2.5 }] }]);
    assert_eq!(halo.post("/api/RecurringInvoice", &body).await.status(), StatusCode::CREATED);
    let body = json!({ "id": -94, "notes_1": "Renamed" });
    assert_eq!(halo.post("/api/RecurringInvoice", &body).await.status(), StatusCode::CREATED);
    let invoice = halo.emu.invoice(-94).unwrap_or_else(|| panic!("invoice -94"));
    assert_eq!(invoice.notes, "Renamed");
    assert_eq!(invoice.lines.len(), 2);
    assert_eq!((invoice.lines[1].item_id, invoice.lines[1].qty_order), (1402, Decimal::new(25, 1)));
    assert_eq!(halo.emu.upserts(), 3);
}

#[tokio::test]
async fn an_upsert_with_a_float_id_is_refused_and_changes_nothing() {
    let halo = Halo::start(HaloData::sample());
    let before = halo.emu.snapshot();
    let cases = [
        json!([{ "id": -94.0, "lines": [{ "id": 24967, "qty_order": 3 }] }]),
        json!([{ "id": -94, "lines": [{ "id": 24963.0, "qty_order": 1 }, { "id": 24967, "qty_order": 3 }] }]),
        json!([{ "id": -94, "lines": [{ "id": 24963, "ihid": -94.0 }, { "id": 24967 }] }]),
        json!([{ "id": -94, "lines": [{ "id": 99999 }] }]),
        json!([{ "id": 5, "lines": [] }]),
    ];
    for body in cases {
        let response = halo.post("/api/RecurringInvoice", &body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let message = json_of(response).await;
        assert!(message.is_string(), "Halo answers a message: {message}");
    }
    let text = halo
        .post("/api/RecurringInvoice", &json!([{ "id": -94.0 }]))
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(text.contains("-94.0") && text.contains("System.Int32"), "{text}");
    assert_eq!(halo.emu.snapshot(), before);
    assert_eq!(halo.emu.upserts(), 0);
}

#[tokio::test]
async fn faults_throttle_fail_truncate_and_miscount() {
    let halo = Halo::start(HaloData::generate(3, 120));
    halo.emu.inject(FaultRule::new("api/client", Fault::rate_limited(7)));
    let response = halo.get("/api/client?pageinate=true&page_size=100&page_no=1").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));

    halo.emu.inject(FaultRule::new("api/client", Fault::ServerError(503)).on_page(2));
    let page = "/api/client?pageinate=true&page_size=100&page_no=";
    assert_eq!(halo.get(&format!("{page}1")).await.status(), StatusCode::OK);
    assert_eq!(halo.get(&format!("{page}2")).await.status(), StatusCode::SERVICE_UNAVAILABLE);

    halo.emu.inject(FaultRule::new("api/client", Fault::TruncatedBody));
    let response = halo.get(&format!("{page}1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap_or_default();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "a truncated body does not parse");

    halo.emu.inject(FaultRule::new("api/client", Fault::CountMismatch(5)).times(2));
    let miscounted = halo.get_json(&format!("{page}2")).await;
    assert_eq!(miscounted["record_count"], json!(113), "108 clients listed, 5 more claimed");
    assert_eq!(ids(&miscounted["clients"]).len(), 8);

    halo.emu.inject(FaultRule::new("api/RecurringInvoice/*", Fault::Unauthorized).method("GET"));
    assert_eq!(halo.get("/api/RecurringInvoice/-1").await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(halo.emu.armed_faults(), 1, "one count-mismatch left");

    let faults: Vec<Option<&str>> = halo.emu.requests().iter().map(|r| r.fault).collect();
    assert!(faults.contains(&Some("truncated_body")) && faults.contains(&Some("rate_limited")));
    assert_eq!(halo.emu.request_count("api/client"), 5);
}

// The adapter against the emulator.

/// What an operation did against the emulator.
struct Run {
    records: Vec<Record>,
    requests: Vec<HttpRequest>,
    end: Step,
}

impl Run {
    fn error(&self) -> &PluginError {
        match &self.end {
            Step::Failed { error } => error,
            other => panic!("expected a failure, got {other:?}"),
        }
    }
}

fn adapter(emu: &HaloEmulator, extra: Value) -> HaloPsa {
    let mut settings = json!({
        "base_url": emu.base_url(),
        "client_id": emu.client_id(),
        "client_secret": emu.client_secret(),
    });
    if let (Some(base), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    HaloPsa::open(&settings).unwrap_or_else(|e| panic!("settings refused: {e}"))
}

/// Runs an operation as the host would: sends each request over HTTP, stores nothing, and
/// stops at the first failure.
async fn run(plugin: &HaloPsa, operation: Operation) -> Run {
    let http = http();
    let mut machine: Box<dyn Machine> =
        plugin.start(operation).unwrap_or_else(|e| panic!("operation refused: {e}"));
    let mut run = Run {
        records: Vec::new(),
        requests: Vec::new(),
        end: Step::Done { result: OpResult::Listed },
    };
    let mut step = machine.step(StepInput::Start);
    for _ in 0..1000 {
        step = match step {
            Step::Send { request } => {
                let response = exchange(&http, &request).await;
                run.requests.push(request);
                machine.step(StepInput::Response { response })
            }
            Step::Page { records, .. } => {
                run.records.extend(records);
                machine.step(StepInput::Continue)
            }
            end => {
                run.end = end;
                return run;
            }
        };
    }
    panic!("the operation did not end within 1000 steps");
}

async fn exchange(http: &Client, request: &HttpRequest) -> HttpResponse {
    let method = Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET);
    let mut builder = http.request(method, &request.url);
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
            name: k.to_string(),
            value: v.to_str().unwrap_or_default().to_string(),
        })
        .collect();
    let body = response.text().await.unwrap_or_default();
    HttpResponse { status, headers, body }
}

fn list(stream: &str) -> Operation {
    Operation::List {
        stream: stream.to_string(),
        mode: ListMode::Full,
        checkpoint: None,
        parent_id: None,
        lookback_seconds: 0,
    }
}

#[tokio::test]
async fn c01_the_adapter_lists_250_clients_whole_through_the_page_cap() {
    let emu = HaloEmulator::start(HaloData::generate(7, 250));
    let plugin = adapter(&emu, json!({ "page_size": 1000 }));
    let done = run(&plugin, list("companies")).await;
    assert!(matches!(done.end, Step::Done { .. }), "{:?}", done.end);
    assert_eq!(done.records.len(), 250);
    let pages: Vec<(Option<String>, Option<String>)> = emu
        .requests()
        .iter()
        .filter(|r| r.matches("api/client"))
        .map(|r| {
            (
                r.query_param("page_size").map(str::to_string),
                r.query_param("page_no").map(str::to_string),
            )
        })
        .collect();
    let expected: Vec<(Option<String>, Option<String>)> =
        (1..=3).map(|n| (Some("1000".to_string()), Some(n.to_string()))).collect();
    assert_eq!(pages, expected);

    // A record_count the rows never reach: the listing is incomplete and claims no last page.
    emu.inject(FaultRule::new("api/client", Fault::CountMismatch(10)).always());
    let cut = run(&plugin, list("companies")).await;
    assert_eq!(cut.error().kind, ErrorKind::Incomplete);
}

#[tokio::test]
async fn the_adapter_lists_invoices_with_their_lines_in_one_listing() {
    let data = HaloData::generate(11, 30);
    let lines: usize = data.invoices.iter().map(|i| i.lines.len()).sum();
    let emu = HaloEmulator::start(data);
    let plugin = adapter(&emu, json!({}));
    let done = run(&plugin, list("agreements")).await;
    assert!(matches!(done.end, Step::Done { .. }), "{:?}", done.end);
    let agreements = done.records.iter().filter(|r| matches!(r, Record::Agreement(_))).count();
    let billing = done.records.iter().filter(|r| matches!(r, Record::BillingLine(_))).count();
    assert_eq!((agreements, billing), (30, lines));
    assert_eq!(emu.request_count("api/RecurringInvoice"), 1);
}

#[tokio::test]
async fn the_adapter_sets_a_quantity_without_dropping_a_line_across_a_token_expiry() {
    let emu = HaloEmulator::start(HaloData::sample());
    // Every token lasts one request: the upsert meets an expired token and renews it.
    emu.set_token_policy(TokenPolicy::requests(1));
    let before = emu.invoice(-94).unwrap_or_else(|| panic!("invoice -94"));
    let plugin = adapter(&emu, json!({}));
    let operation = Operation::SetQuantity {
        line: LineRef { id: "24967".to_string(), agreement_id: "-94".to_string() },
        quantity: Quantity(Decimal::from(16)),
        effective_date: "2025-04-01".to_string(),
    };
    let done = run(&plugin, operation).await;
    let Step::Done { result: OpResult::Line { line } } = &done.end else {
        panic!("{:?}", done.end)
    };
    assert_eq!((line.id.as_str(), line.quantity.0), ("24967", Decimal::from(16)));

    let after = emu.invoice(-94).unwrap_or_else(|| panic!("invoice -94"));
    assert_eq!(after.lines.len(), before.lines.len(), "the upsert kept every line");
    assert_eq!(after.lines[0], before.lines[0], "the other line is untouched");
    assert_eq!(after.lines[1].qty_order, Decimal::from(16));
    assert_eq!(emu.upserts(), 1);
    assert_eq!(emu.tokens_issued(), 2, "one renewal");
    let statuses: Vec<(String, u16)> =
        emu.requests().iter().map(|r| (format!("{} {}", r.method, r.path), r.status)).collect();
    assert!(statuses.contains(&("POST /api/RecurringInvoice".to_string(), 401)), "{statuses:?}");
    assert!(statuses.contains(&("POST /api/RecurringInvoice".to_string(), 201)), "{statuses:?}");
}
