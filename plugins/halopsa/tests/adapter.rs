//! The HaloPSA adapter's machines against canned responses, without a network: settings and
//! handshake, authentication and token renewal, listings read whole (case C01), records,
//! the line operations' upsert body, and Halo's errors. A small in-memory Halo (`FakeHalo`)
//! answers like the real API where a test needs more than one canned response.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tally_halopsa::HaloPsa;
use tally_halopsa::operations::upsert_body;
use tally_plugin_sdk::{
    Capability, Checkpoint, ErrorKind, Header, HttpRequest, HttpResponse, LineRef, ListMode,
    Machine, OpResult, Operation, Plugin, PluginError, Quantity, QuantityWrites, Record, Step,
    StepInput,
};

const BASE: &str = "https://acme.halopsa.com";
const SECRET: &str = "s3cr3t-Value";

// Helpers.

fn settings() -> Value {
    json!({ "base_url": BASE, "client_id": "tally-app", "client_secret": SECRET })
}

fn settings_with(changes: Value) -> Value {
    let mut settings = settings();
    if let (Some(base), Some(changes)) = (settings.as_object_mut(), changes.as_object()) {
        for (key, value) in changes {
            base.insert(key.clone(), value.clone());
        }
    }
    settings
}

fn open(settings: Value) -> HaloPsa {
    HaloPsa::open(&settings).unwrap_or_else(|error| panic!("settings refused: {error}"))
}

fn open_error(settings: Value) -> PluginError {
    match HaloPsa::open(&settings) {
        Ok(_) => panic!("settings accepted: {settings}"),
        Err(error) => error,
    }
}

fn start(plugin: &HaloPsa, operation: Operation) -> Box<dyn Machine> {
    plugin.start(operation).unwrap_or_else(|error| panic!("operation refused: {error}"))
}

fn start_error(plugin: &HaloPsa, operation: Operation) -> PluginError {
    match plugin.start(operation) {
        Ok(_) => panic!("operation accepted"),
        Err(error) => error,
    }
}

fn list(stream: &str) -> Operation {
    list_from(stream, None)
}

fn list_from(stream: &str, checkpoint: Option<Checkpoint>) -> Operation {
    Operation::List {
        stream: stream.to_string(),
        mode: ListMode::Full,
        checkpoint,
        parent_id: None,
        lookback_seconds: 0,
    }
}

fn line_ref(agreement: &str, line: &str) -> LineRef {
    LineRef { id: line.to_string(), agreement_id: agreement.to_string() }
}

fn set_quantity(agreement: &str, line: &str, quantity: &str) -> Operation {
    Operation::SetQuantity {
        line: line_ref(agreement, line),
        quantity: Quantity(quantity.parse().unwrap_or_else(|_| panic!("bad decimal {quantity}"))),
        effective_date: "2025-04-01".to_string(),
    }
}

fn response(status: u16, body: impl Into<String>) -> HttpResponse {
    HttpResponse { status, headers: Vec::new(), body: body.into() }
}

fn ok(body: impl Into<String>) -> HttpResponse {
    response(200, body)
}

fn with_header(mut response: HttpResponse, name: &str, value: &str) -> HttpResponse {
    response.headers.push(Header { name: name.to_string(), value: value.to_string() });
    response
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

fn sent(step: Step) -> HttpRequest {
    match step {
        Step::Send { request } => request,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn failed(step: Step) -> PluginError {
    match step {
        Step::Failed { error } => error,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn respond(machine: &mut dyn Machine, response: HttpResponse) -> Step {
    machine.step(StepInput::Response { response })
}

fn path(request: &HttpRequest) -> String {
    url::Url::parse(&request.url).map(|url| url.path().to_string()).unwrap_or_default()
}

fn query(request: &HttpRequest) -> BTreeMap<String, String> {
    url::Url::parse(&request.url)
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn form(body: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body.as_bytes()).into_owned().collect()
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn sample_invoice() -> Value {
    serde_json::from_str(&fixture("halopsa-recurringinvoice.json"))
        .unwrap_or_else(|error| panic!("sample: {error}"))
}

fn authinfo() -> HttpResponse {
    ok(json!({ "auth_url": format!("{BASE}/auth") }).to_string())
}

fn token(value: &str) -> HttpResponse {
    ok(json!({ "access_token": value, "token_type": "Bearer", "expires_in": 3600 }).to_string())
}

/// What a machine did: every request, every page, and how it ended.
#[derive(Debug)]
struct Run {
    requests: Vec<HttpRequest>,
    pages: Vec<(Vec<Record>, Checkpoint, bool)>,
    end: Step,
}

impl Run {
    fn records(&self) -> Vec<&Record> {
        self.pages.iter().flat_map(|(records, _, _)| records).collect()
    }

    fn api_requests(&self) -> Vec<&HttpRequest> {
        self.requests
            .iter()
            .filter(|r| path(r).starts_with("/api/") && path(r) != "/api/authinfo")
            .collect()
    }

    fn error(&self) -> &PluginError {
        match &self.end {
            Step::Failed { error } => error,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    fn result(&self) -> &OpResult {
        match &self.end {
            Step::Done { result } => result,
            other => panic!("expected a result, got {other:?}"),
        }
    }
}

/// Runs a machine to its end (a result, or any failure), answering each request with `server`.
fn drive(machine: &mut dyn Machine, mut server: impl FnMut(&HttpRequest) -> HttpResponse) -> Run {
    let mut run = Run {
        requests: Vec::new(),
        pages: Vec::new(),
        end: Step::Done { result: OpResult::Listed },
    };
    let mut step = machine.step(StepInput::Start);
    for _ in 0..10_000 {
        match step {
            Step::Send { request } => {
                let answer = server(&request);
                run.requests.push(request);
                step = respond(machine, answer);
            }
            Step::Page { records, checkpoint, last } => {
                run.pages.push((records, checkpoint, last));
                step = machine.step(StepInput::Continue);
            }
            end => {
                run.end = end;
                return run;
            }
        }
    }
    panic!("the machine did not end within 10000 steps");
}

fn client(id: i64) -> Value {
    json!({ "id": id, "name": format!("Client {id}"), "inactive": false, "toplevel_id": 1 })
}

/// An in-memory Halo: authinfo, tokens, and paginated listings that serve at most `cap` rows
/// a page whatever `page_size` asks.
struct FakeHalo {
    clients: Vec<Value>,
    invoices: Vec<Value>,
    cap: usize,
    /// `record_count` as served, when it should disagree with the rows.
    claimed_count: Option<usize>,
    tokens_issued: usize,
    /// Tokens still accepted.
    valid: Vec<String>,
}

impl FakeHalo {
    fn new() -> FakeHalo {
        FakeHalo {
            clients: Vec::new(),
            invoices: Vec::new(),
            cap: 100,
            claimed_count: None,
            tokens_issued: 0,
            valid: Vec::new(),
        }
    }

    fn with_clients(count: i64) -> FakeHalo {
        FakeHalo { clients: (1..=count).map(client).collect(), ..FakeHalo::new() }
    }

    fn expire_tokens(&mut self) {
        self.valid.clear();
    }

    fn answer(&mut self, request: &HttpRequest) -> HttpResponse {
        match (request.method.as_str(), path(request).as_str()) {
            ("GET", "/api/authinfo") => authinfo(),
            ("POST", "/auth/token") => {
                self.tokens_issued += 1;
                let value = format!("token-{}", self.tokens_issued);
                self.valid.push(value.clone());
                token(&value)
            }
            (_, api) => {
                let bearer =
                    header(request, "Authorization").and_then(|h| h.strip_prefix("Bearer "));
                if !bearer.is_some_and(|t| self.valid.iter().any(|v| v == t)) {
                    return response(401, "");
                }
                let (key, rows) = match api {
                    "/api/client" => ("clients", &self.clients),
                    "/api/RecurringInvoice" => ("invoices", &self.invoices),
                    other => return response(404, format!("\"no route {other}\"")),
                };
                let query = query(request);
                let size: usize = query.get("page_size").and_then(|s| s.parse().ok()).unwrap_or(50);
                let page: usize = query.get("page_no").and_then(|s| s.parse().ok()).unwrap_or(1);
                let served = size.min(self.cap);
                let start = (page - 1) * served;
                let slice: Vec<Value> = rows.iter().skip(start).take(served).cloned().collect();
                let count = self.claimed_count.unwrap_or(rows.len());
                ok(json!({ "page_no": page, "page_size": served, "record_count": count, key: slice }).to_string())
            }
        }
    }
}

fn ids(run: &Run) -> Vec<String> {
    run.records()
        .into_iter()
        .map(|record| match record {
            Record::Company(c) => c.id.clone(),
            Record::Product(p) => p.id.clone(),
            Record::Agreement(a) => a.id.clone(),
            Record::BillingLine(l) => l.id.clone(),
            other => panic!("not a PSA record: {other:?}"),
        })
        .collect()
}

// Settings and handshake.

#[test]
fn settings_accept_the_minimum_and_refuse_what_is_unsafe() {
    let plugin = open(settings());
    assert_eq!(plugin.hosts(), vec!["acme.halopsa.com".to_string()]);

    let error = open_error(settings_with(json!({ "base_url": "http://acme.halopsa.com" })));
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Config, Some("base_url")));
    assert!(error.message.contains("https://"), "{}", error.message);
    open(settings_with(json!({ "base_url": "http://127.0.0.1:8080" })));

    let error = open_error(settings_with(json!({ "client_secret": "  " })));
    assert_eq!(error.field.as_deref(), Some("client_secret"));
    let error = open_error(settings_with(json!({ "page_size": 0 })));
    assert_eq!(error.field.as_deref(), Some("page_size"));
    let error = open_error(settings_with(json!({ "site": BASE })));
    assert_eq!(error.field.as_deref(), Some("site"));
    let error = open_error(settings_with(json!({ "tenant": "acme&x=1" })));
    assert_eq!(error.field.as_deref(), Some("tenant"));

    let plugin = open(settings_with(json!({ "auth_url": "https://auth.example.net/auth" })));
    assert_eq!(
        plugin.hosts(),
        vec!["acme.halopsa.com".to_string(), "auth.example.net".to_string()]
    );

    let parsed = tally_halopsa::settings::Settings::parse(&settings()).expect("settings");
    assert!(!format!("{parsed:?}").contains(SECRET));
}

#[test]
fn handshake_states_hosted_halo_limits_and_absolute_writes() {
    let handshake = HaloPsa::handshake();
    assert_eq!(handshake.name, "halopsa");
    assert_eq!(handshake.limits.max_concurrency, 2);
    assert_eq!(handshake.limits.requests_per_minute, Some(55));
    assert_eq!(handshake.limits.max_page_size, Some(100));
    assert_eq!(handshake.quantity_writes, QuantityWrites::Absolute);
    assert_eq!(handshake.capabilities, vec![Capability::ReadLine, Capability::SetQuantity]);
    assert_eq!(handshake.secret_settings, vec!["client_secret".to_string()]);
    let streams: Vec<&str> = handshake.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(streams, ["companies", "products", "agreements"]);
}

#[test]
fn unknown_streams_and_bad_ids_are_refused_before_any_request() {
    let plugin = open(settings());
    let error = start_error(&plugin, list("billing_lines"));
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(error.message.contains("agreements"), "{}", error.message);

    let error = start_error(&plugin, set_quantity("-94.0", "24967", "3"));
    assert_eq!(
        (error.kind, error.field.as_deref()),
        (ErrorKind::InvalidRequest, Some("agreement_id"))
    );
    let error = start_error(&plugin, set_quantity("-94", "24967", "-3"));
    assert_eq!(error.field.as_deref(), Some("quantity"));
    let error = start_error(
        &plugin,
        list_from(
            "companies",
            Some(Checkpoint { page_token: Some("7".into()), ..Checkpoint::default() }),
        ),
    );
    assert_eq!(error.field.as_deref(), Some("page_token"));
}

// Authentication.

#[test]
fn first_request_asks_authinfo_then_a_client_credentials_token() {
    let plugin = open(settings_with(json!({ "tenant": "acme" })));
    let mut machine = start(&plugin, list("companies"));

    let first = sent(machine.step(StepInput::Start));
    assert_eq!(
        (first.method.as_str(), first.url.as_str()),
        ("GET", "https://acme.halopsa.com/api/authinfo")
    );
    assert_eq!(header(&first, "Authorization"), None);

    let token_request = sent(respond(machine.as_mut(), authinfo()));
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.url, "https://acme.halopsa.com/auth/token?tenant=acme");
    assert_eq!(header(&token_request, "Content-Type"), Some("application/x-www-form-urlencoded"));
    let body = form(token_request.body.as_deref().unwrap_or_default());
    assert_eq!(body.get("grant_type").map(String::as_str), Some("client_credentials"));
    assert_eq!(body.get("client_id").map(String::as_str), Some("tally-app"));
    assert_eq!(body.get("client_secret").map(String::as_str), Some(SECRET));
    assert_eq!(body.get("scope").map(String::as_str), Some("all"));

    let listing = sent(respond(machine.as_mut(), token("tok-1")));
    assert_eq!(path(&listing), "/api/client");
    assert_eq!(header(&listing, "Authorization"), Some("Bearer tok-1"));
    assert!(!listing.url.contains(SECRET));
}

#[test]
fn a_configured_auth_url_skips_authinfo() {
    let plugin = open(settings_with(json!({ "auth_url": "https://acme.halopsa.com/auth/" })));
    let mut machine = start(&plugin, list("companies"));
    let first = sent(machine.step(StepInput::Start));
    assert_eq!(first.url, "https://acme.halopsa.com/auth/token");
}

#[test]
fn authinfo_naming_another_host_is_refused_before_the_secret_leaves() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies"));
    sent(machine.step(StepInput::Start));
    let step = respond(machine.as_mut(), ok(r#"{"auth_url":"https://evil.example/auth"}"#));
    let error = failed(step);
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::Config, Some("auth_url")));
    assert!(!error.retryable);
}

#[test]
fn refused_client_credentials_are_an_auth_error() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies"));
    sent(machine.step(StepInput::Start));
    sent(respond(machine.as_mut(), authinfo()));
    let error = failed(respond(
        machine.as_mut(),
        response(400, r#"{"error":"invalid_client","error_description":"Unknown client"}"#),
    ));
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.retryable);
    assert!(error.message.contains("invalid_client: Unknown client"), "{}", error.message);
    assert!(!error.message.contains(SECRET));
}

#[test]
fn an_expired_token_is_renewed_once_and_the_page_resent() {
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(150);
    let mut machine = start(&plugin, list("companies"));
    let mut pages_seen = 0;
    let run = drive(machine.as_mut(), |request| {
        if path(request) == "/api/client"
            && query(request).get("page_no").map(String::as_str) == Some("2")
            && pages_seen == 1
        {
            pages_seen += 1;
            halo.expire_tokens();
        } else if path(request) == "/api/client" {
            pages_seen += 1;
        }
        halo.answer(request)
    });
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(ids(&run).len(), 150);
    assert_eq!(halo.tokens_issued, 2);
    let seen: Vec<(String, String)> = run
        .requests
        .iter()
        .map(|r| (path(r), query(r).get("page_no").cloned().unwrap_or_default()))
        .collect();
    let expected = [
        ("/api/authinfo", ""),
        ("/auth/token", ""),
        ("/api/client", "1"),
        ("/api/client", "2"),
        ("/auth/token", ""),
        ("/api/client", "2"),
    ];
    let expected: Vec<(String, String)> =
        expected.iter().map(|(p, n)| (p.to_string(), n.to_string())).collect();
    assert_eq!(seen, expected);
    assert_eq!(header(&run.requests[5], "Authorization"), Some("Bearer token-2"));
}

#[test]
fn a_second_401_for_the_same_request_is_an_auth_error() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => response(401, ""),
    });
    let error = run.error();
    assert_eq!(error.kind, ErrorKind::Auth);
    assert!(!error.retryable);
    let tokens = run.requests.iter().filter(|r| path(r) == "/auth/token").count();
    assert_eq!(tokens, 2, "renewed exactly once");
}

#[test]
fn machines_of_one_session_share_a_renewed_token() {
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(3);
    let mut first = start(&plugin, list("companies"));
    let run = drive(first.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }));

    // Both machines send with token-1; it expires; the first renews, the second reuses.
    let mut a = start(&plugin, list("companies"));
    let mut b = start(&plugin, list("companies"));
    let request_a = sent(a.step(StepInput::Start));
    let request_b = sent(b.step(StepInput::Start));
    assert_eq!(header(&request_a, "Authorization"), Some("Bearer token-1"));
    assert_eq!(header(&request_b, "Authorization"), Some("Bearer token-1"));
    halo.expire_tokens();
    let renew = sent(respond(a.as_mut(), halo.answer(&request_a)));
    assert_eq!(path(&renew), "/auth/token");
    let resent_a = sent(respond(a.as_mut(), halo.answer(&renew)));
    assert_eq!(header(&resent_a, "Authorization"), Some("Bearer token-2"));

    let resent_b = sent(respond(b.as_mut(), halo.answer(&request_b)));
    assert_eq!(path(&resent_b), "/api/client");
    assert_eq!(header(&resent_b, "Authorization"), Some("Bearer token-2"));
    assert_eq!(halo.tokens_issued, 2);
}

// Listings (case C01).

#[test]
fn c01_reads_250_clients_in_pages_of_100_when_1000_were_asked() {
    let plugin = open(settings_with(json!({ "page_size": 1000 })));
    let mut halo = FakeHalo::with_clients(250);
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| halo.answer(request));

    assert!(matches!(run.end, Step::Done { result: OpResult::Listed }), "{:?}", run.end);
    let listing = run.api_requests();
    assert_eq!(listing.len(), 3, "stops once it holds record_count rows");
    for (number, request) in listing.iter().enumerate() {
        let query = query(request);
        assert_eq!(query.get("pageinate").map(String::as_str), Some("true"));
        assert_eq!(query.get("page_size").map(String::as_str), Some("1000"));
        assert_eq!(query.get("page_no"), Some(&(number + 1).to_string()));
    }
    let ids = ids(&run);
    let expected: Vec<String> = (1..=250).map(|id| id.to_string()).collect();
    assert_eq!(ids, expected);
    let lasts: Vec<bool> = run.pages.iter().map(|(_, _, last)| *last).collect();
    assert_eq!(lasts, [false, false, true]);
    assert_eq!(run.pages[0].1.page_token.as_deref(), Some("page=2;rows=100;count=250"));
    assert_eq!(run.pages[2].1, Checkpoint::default());
}

#[test]
fn c01_a_short_page_does_not_end_the_listing() {
    // A server that serves fewer rows than even its own cap: 100, 100, 30, 20. Only the count
    // says when the listing is whole.
    let plugin = open(settings_with(json!({ "page_size": 1000 })));
    let pages: Vec<Vec<i64>> = vec![
        (1..=100).collect(),
        (101..=200).collect(),
        (201..=230).collect(),
        (231..=250).collect(),
    ];
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => {
            let page: usize = query(request)["page_no"].parse().unwrap_or(99);
            let rows: Vec<Value> =
                pages.get(page - 1).into_iter().flatten().map(|id| client(*id)).collect();
            ok(json!({ "record_count": 250, "clients": rows }).to_string())
        }
    });
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(run.api_requests().len(), 4);
    assert_eq!(ids(&run).len(), 250);
}

#[test]
fn c01_a_record_count_the_rows_disagree_with_is_incomplete() {
    let plugin = open(settings_with(json!({ "page_size": 1000 })));
    let mut halo = FakeHalo { claimed_count: Some(260), ..FakeHalo::with_clients(250) };
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| halo.answer(request));

    let error = run.error();
    assert_eq!(error.kind, ErrorKind::Incomplete);
    assert!(!error.retryable);
    assert!(error.message.contains("260") && error.message.contains("250"), "{}", error.message);
    assert!(run.pages.iter().all(|(_, _, last)| !last), "no page may claim to be the last");
    assert_eq!(run.api_requests().len(), 4, "read up to the empty page");
}

#[test]
fn c01_more_rows_than_record_count_is_incomplete() {
    let plugin = open(settings());
    let mut halo = FakeHalo { claimed_count: Some(120), ..FakeHalo::with_clients(250) };
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert_eq!(run.error().kind, ErrorKind::Incomplete);
    assert!(run.pages.iter().all(|(_, _, last)| !last));
}

#[test]
fn rows_repeated_across_pages_are_listed_once() {
    let plugin = open(settings());
    let pages: Vec<Vec<i64>> = vec![(1..=10).collect(), (8..=12).collect()];
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => {
            let page: usize = query(request)["page_no"].parse().unwrap_or(99);
            let rows: Vec<Value> =
                pages.get(page - 1).into_iter().flatten().map(|id| client(*id)).collect();
            ok(json!({ "record_count": 12, "clients": rows }).to_string())
        }
    });
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    let expected: Vec<String> = (1..=12).map(|id| id.to_string()).collect();
    assert_eq!(ids(&run), expected);
}

#[test]
fn a_server_ignoring_page_no_is_incomplete_not_an_endless_listing() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => {
            let rows: Vec<Value> = (1..=100).map(client).collect();
            ok(json!({ "record_count": 300, "clients": rows }).to_string())
        }
    });
    assert_eq!(run.error().kind, ErrorKind::Incomplete);
    assert_eq!(run.api_requests().len(), 4);
}

#[test]
fn a_stopped_listing_resumes_from_its_page_token() {
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(250);
    let checkpoint = Checkpoint {
        page_token: Some("page=3;rows=200;count=250".into()),
        ..Checkpoint::default()
    };
    let mut machine = start(&plugin, list_from("companies", Some(checkpoint)));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(run.api_requests().len(), 1);
    assert_eq!(query(run.api_requests()[0]).get("page_no").map(String::as_str), Some("3"));
    assert_eq!(ids(&run).len(), 50);
}

fn page_numbers(run: &Run) -> Vec<String> {
    run.api_requests()
        .iter()
        .map(|r| query(r).get("page_no").cloned().unwrap_or_default())
        .collect()
}

fn resume_at(token: &str) -> Option<Checkpoint> {
    Some(Checkpoint { page_token: Some(token.to_string()), ..Checkpoint::default() })
}

#[test]
fn a_resumed_listing_whose_count_changed_reads_again_from_page_1() {
    // The stopped run counted against 250 clients; 20 were deleted since, so rows have moved.
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(230);
    let mut machine =
        start(&plugin, list_from("companies", resume_at("page=3;rows=200;count=250")));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(page_numbers(&run), ["3", "1", "2", "3"]);
    assert!(run.pages.last().is_some_and(|page| page.2));
}

#[test]
fn a_resumed_listing_whose_rows_do_not_add_up_reads_again_from_page_1_once() {
    // The stopped run stored 190 distinct rows of its first 200: resuming meets 240 of 250.
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(250);
    let mut machine =
        start(&plugin, list_from("companies", resume_at("page=3;rows=190;count=250")));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(page_numbers(&run), ["3", "4", "1", "2", "3"]);

    // When a fresh read does not add up either, the listing fails instead of going round.
    let plugin = open(settings());
    let mut halo = FakeHalo { claimed_count: Some(260), ..FakeHalo::with_clients(250) };
    let mut machine =
        start(&plugin, list_from("companies", resume_at("page=3;rows=200;count=260")));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert_eq!(run.error().kind, ErrorKind::Incomplete);
    assert_eq!(page_numbers(&run), ["3", "4", "1", "2", "3", "4"]);
}

#[test]
fn a_client_deleted_mid_listing_restarts_it_so_no_shifted_row_is_missed() {
    // Deleting client 5 after page 1 moves client 101 onto page 1: page 2 starts at 102, and
    // the sum would still add up (249 of 249) without client 101.
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(250);
    let mut deleted = false;
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| {
        if query(request).get("page_no").map(String::as_str) == Some("2") && !deleted {
            deleted = true;
            halo.clients.retain(|c| c["id"] != json!(5));
        }
        halo.answer(request)
    });
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);
    assert_eq!(page_numbers(&run), ["1", "2", "1", "2", "3"]);
    let seen: std::collections::BTreeSet<String> = ids(&run).into_iter().collect();
    assert!(seen.contains("101"));
    assert_eq!(seen.len(), 250, "client 5 was listed before it went");
}

#[test]
fn a_record_count_that_keeps_changing_is_incomplete() {
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(250);
    let mut served = 0;
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| {
        if path(request) == "/api/client" {
            served += 1;
            halo.claimed_count = Some(250 + served);
        }
        halo.answer(request)
    });
    let error = run.error();
    assert_eq!(error.kind, ErrorKind::Incomplete);
    assert!(error.message.contains("went from"), "{}", error.message);
    assert_eq!(page_numbers(&run), ["1", "2", "1", "2"]);
}

#[test]
fn an_empty_listing_ends_with_an_empty_last_page() {
    let plugin = open(settings());
    let mut halo = FakeHalo::new();
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }));
    assert_eq!(run.pages.len(), 1);
    assert!(run.pages[0].2 && run.pages[0].0.is_empty());
}

#[test]
fn a_truncated_page_is_a_retryable_malformed_response_and_the_resend_continues() {
    let plugin = open(settings());
    let mut halo = FakeHalo::with_clients(150);
    let mut machine = start(&plugin, list("companies"));
    let mut request = sent(machine.step(StepInput::Start));
    request = sent(respond(machine.as_mut(), halo.answer(&request)));
    let page_one = sent(respond(machine.as_mut(), halo.answer(&request)));

    let whole = halo.answer(&page_one).body;
    let error = failed(respond(machine.as_mut(), ok(&whole[..whole.len() / 2])));
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(error.retryable);

    let page = respond(machine.as_mut(), halo.answer(&page_one));
    assert!(matches!(page, Step::Page { last: false, .. }), "{page:?}");
}

#[test]
fn a_page_without_record_count_is_refused() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => ok(json!({ "clients": [client(1)] }).to_string()),
    });
    let error = run.error();
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
    assert!(error.message.contains("record_count"), "{}", error.message);
    assert!(run.pages.is_empty());
}

// Records.

#[test]
fn invoices_list_as_agreements_with_their_lines_in_the_same_page() {
    let plugin = open(settings());
    let mut invoice = sample_invoice();
    invoice["lines"][0]["isinactive"] = json!(true);
    invoice["lines"].as_array_mut().expect("lines").push(json!({
        "id": 24970, "ihid": -94, "item_shortdescription": "Free text", "qty_order": 1.0,
        "_itemid": 0, "isinactive": false
    }));
    let mut halo = FakeHalo { invoices: vec![invoice], ..FakeHalo::new() };
    let mut machine = start(&plugin, list("agreements"));
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.end, Step::Done { .. }), "{:?}", run.end);

    let listing = run.api_requests();
    assert_eq!(listing.len(), 1);
    assert_eq!(path(listing[0]), "/api/RecurringInvoice");
    assert_eq!(query(listing[0]).get("includelines").map(String::as_str), Some("true"));

    let records = run.records();
    assert_eq!(records.len(), 3, "the agreement and its two item lines: {records:?}");
    let Record::Agreement(agreement) = records[0] else { panic!("{:?}", records[0]) };
    assert_eq!(agreement.id, "-94");
    assert_eq!(agreement.company_id, "420");
    assert_eq!(agreement.name, "Synergy Gallery IT Support");
    assert!(agreement.active && agreement.recurring);
    assert!(agreement.raw.as_ref().is_some_and(|raw| raw.to_value().get("lines").is_none()));

    let Record::BillingLine(inactive) = records[1] else { panic!("{:?}", records[1]) };
    assert_eq!(inactive.id, "24963");
    assert_eq!(inactive.cancelled_date.as_deref(), Some("2025-03-20"));

    let Record::BillingLine(line) = records[2] else { panic!("{:?}", records[2]) };
    assert_eq!((line.id.as_str(), line.agreement_id.as_str()), ("24967", "-94"));
    assert_eq!((line.company_id.as_str(), line.product_id.as_str()), ("420", "1000"));
    assert_eq!(line.quantity.0.to_string(), "14.0");
    assert_eq!(line.unit_price.map(|p| p.0.to_string()).as_deref(), Some("10.32"));
    assert_eq!(line.cancelled_date, None);
}

#[test]
fn clients_and_items_map_to_companies_and_products() {
    let plugin = open(settings());
    let mut machine = start(&plugin, list("products"));
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        _ => ok(
            r#"{"record_count":1,"items":[{"id":1000,"name":"Microsoft-365-Apps-Business","description":"Microsoft 365 Apps for Business","baseprice":10.32,"inactive":true}]}"#,
        ),
    });
    let Record::Product(product) = run.records()[0] else { panic!("{:?}", run.records()) };
    assert_eq!(product.identifier.as_deref(), Some("Microsoft-365-Apps-Business"));
    assert_eq!(product.description, "Microsoft 365 Apps for Business");
    assert!(!product.active);
    assert_eq!(product.unit_price.map(|p| p.0.to_string()).as_deref(), Some("10.32"));

    let mut machine = start(&plugin, list("companies"));
    let run = drive(machine.as_mut(), |_| {
        ok(
            r#"{"record_count":1,"clients":[{"id":420,"name":"Harbourside Brewing Limited","inactive":true}]}"#,
        )
    });
    let Record::Company(company) = run.records()[0] else { panic!("{:?}", run.records()) };
    assert_eq!(
        (company.id.as_str(), company.name.as_str()),
        ("420", "Harbourside Brewing Limited")
    );
    assert!(!company.active);
}

// Line operations.

#[test]
fn the_upsert_sends_every_line_back_and_changes_only_the_target_quantity() {
    let invoice = sample_invoice();
    let body =
        upsert_body(&invoice.to_string(), 24967, Quantity("20".parse().expect("decimal")), "test")
            .expect("body");
    let sent: Value = serde_json::from_str(&body).expect("JSON");
    let upserts = sent.as_array().expect("an array of invoices");
    assert_eq!(upserts.len(), 1);
    assert_eq!(upserts[0]["id"], json!(-94));
    let lines = upserts[0]["lines"].as_array().expect("lines");
    let original = invoice["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), original.len(), "no line may be left out: Halo deletes it");
    assert_eq!(lines[0], original[0], "the other line goes back unchanged");
    let mut expected = original[1].clone();
    expected["qty_order"] = json!(20);
    assert_eq!(lines[1], expected);
    assert!(body.contains(r#""id":-94"#) && body.contains(r#""id":24967"#), "{body}");
    assert!(!body.contains("-94.0") && !body.contains("24967.0"), "{body}");
}

#[test]
fn the_upsert_writes_ids_as_integers_even_when_read_as_floats() {
    let mut invoice = sample_invoice();
    invoice["id"] = json!(-95);
    let text = invoice
        .to_string()
        .replace(r#""id":24963"#, r#""id":95.0"#)
        .replace(r#""ihid":-94"#, r#""ihid":-95.0"#);
    assert!(text.contains("95.0"));
    let body =
        upsert_body(&text, 24967, Quantity("1.5".parse().expect("decimal")), "test").expect("body");
    assert!(!body.contains("95.0"), "{body}");
    assert!(body.contains(r#""id":95,"#) && body.contains(r#""ihid":-95,"#), "{body}");
    assert!(body.contains(r#""qty_order":1.5"#), "{body}");

    let bad = invoice.to_string().replace(r#""id":24963"#, r#""id":95.5"#);
    let error =
        upsert_body(&bad, 24967, Quantity("1".parse().expect("decimal")), "test").unwrap_err();
    assert_eq!(error.kind, ErrorKind::MalformedResponse);
}

#[test]
fn set_quantity_reads_the_invoice_then_upserts_it_and_reports_the_line() {
    let plugin = open(settings());
    let invoice = sample_invoice();
    let mut machine = start(&plugin, set_quantity("-94", "24967", "16"));
    let mut posted = None;
    let run = drive(machine.as_mut(), |request| {
        match (request.method.as_str(), path(request).as_str()) {
            (_, "/api/authinfo") => authinfo(),
            (_, "/auth/token") => token("tok"),
            ("GET", "/api/RecurringInvoice/-94") => ok(invoice.to_string()),
            ("POST", "/api/RecurringInvoice") => {
                let body: Value =
                    serde_json::from_str(request.body.as_deref().unwrap_or("")).expect("JSON body");
                posted = Some(body.clone());
                let mut saved = invoice.clone();
                saved["lines"] = body[0]["lines"].clone();
                ok(saved.to_string())
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let OpResult::Line { line } = run.result() else { panic!("{:?}", run.end) };
    assert_eq!((line.id.as_str(), line.quantity.0.to_string().as_str()), ("24967", "16"));

    let api = run.api_requests();
    assert_eq!(api.len(), 2);
    assert_eq!(query(api[0]).get("includelines").map(String::as_str), Some("true"));
    assert_eq!(header(api[1], "Content-Type"), Some("application/json"));
    assert_eq!(header(api[1], "Authorization"), Some("Bearer tok"));
    let posted = posted.expect("an upsert");
    assert_eq!(posted[0]["lines"].as_array().map(Vec::len), Some(2));
}

#[test]
fn an_upsert_answer_without_lines_is_confirmed_by_reading_the_invoice() {
    let plugin = open(settings());
    let mut invoice = sample_invoice();
    let mut machine = start(&plugin, set_quantity("-94", "24963", "2"));
    let run = drive(machine.as_mut(), |request| {
        match (request.method.as_str(), path(request).as_str()) {
            (_, "/api/authinfo") => authinfo(),
            (_, "/auth/token") => token("tok"),
            ("GET", _) => ok(invoice.to_string()),
            ("POST", _) => {
                invoice["lines"][0]["qty_order"] = json!(2.0);
                ok(r#"{"id":-94}"#)
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    let OpResult::Line { line } = run.result() else { panic!("{:?}", run.end) };
    assert_eq!(line.quantity.0.to_string(), "2.0");
    let methods: Vec<&str> = run.api_requests().iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "POST", "GET"]);
}

#[test]
fn read_line_returns_the_line_and_a_missing_one_is_not_found() {
    let plugin = open(settings());
    let invoice = sample_invoice().to_string();
    let serve = |request: &HttpRequest| match path(request).as_str() {
        "/api/authinfo" => authinfo(),
        "/auth/token" => token("tok"),
        "/api/RecurringInvoice/-94" => ok(invoice.clone()),
        _ => response(404, "\"Recurring invoice not found\""),
    };
    let mut machine = start(&plugin, Operation::ReadLine { line: line_ref("-94", "24963") });
    let run = drive(machine.as_mut(), serve);
    let OpResult::Line { line } = run.result() else { panic!("{:?}", run.end) };
    assert_eq!((line.product_id.as_str(), line.quantity.0.to_string().as_str()), ("1402", "1.0"));

    let mut machine = start(&plugin, Operation::ReadLine { line: line_ref("-94", "1") });
    assert_eq!(drive(machine.as_mut(), serve).error().kind, ErrorKind::NotFound);
    let mut machine = start(&plugin, Operation::ReadLine { line: line_ref("-7", "1") });
    assert_eq!(drive(machine.as_mut(), serve).error().kind, ErrorKind::NotFound);
}

// Errors.

#[test]
fn halo_errors_become_typed_errors() {
    let plugin = open(settings());
    let cases = [
        (with_header(response(429, ""), "Retry-After", "30"), ErrorKind::RateLimited, true),
        (response(500, "<html>oops</html>"), ErrorKind::Server, true),
        (response(503, ""), ErrorKind::Server, true),
        (
            response(400, r#""The id 95.0 is not a valid integer""#),
            ErrorKind::InvalidRequest,
            false,
        ),
        (response(403, ""), ErrorKind::Auth, false),
        (ok("{\"record_count\":1,\"invoices\":[{\"id\":"), ErrorKind::MalformedResponse, true),
    ];
    for (answer, kind, retryable) in cases {
        let mut machine = start(&plugin, list("agreements"));
        let mut step = machine.step(StepInput::Start);
        let error = loop {
            let request = sent(step);
            step = match path(&request).as_str() {
                "/api/authinfo" => respond(machine.as_mut(), authinfo()),
                "/auth/token" => respond(machine.as_mut(), token("tok")),
                _ => break failed(respond(machine.as_mut(), answer.clone())),
            };
        };
        assert_eq!((error.kind, error.retryable), (kind, retryable), "{error}");
        if kind == ErrorKind::RateLimited {
            assert_eq!(error.retry_after_seconds, Some(30));
        }
        if kind == ErrorKind::InvalidRequest {
            assert!(
                error.message.contains("The id 95.0 is not a valid integer"),
                "{}",
                error.message
            );
        }
        if retryable {
            let again = machine
                .step(StepInput::Response { response: ok(r#"{"record_count":0,"invoices":[]}"#) });
            assert!(matches!(again, Step::Page { last: true, .. }), "a retry continues: {again:?}");
        }
    }
}

#[test]
fn a_failed_probe_is_a_configuration_problem() {
    let plugin = open(settings());
    let mut machine = start(&plugin, Operation::Probe);
    let run = drive(machine.as_mut(), |request| match path(request).as_str() {
        "/api/authinfo" => response(503, ""),
        other => panic!("unexpected {other}"),
    });
    let error = run.error();
    assert_eq!((error.kind, error.retryable), (ErrorKind::Config, false));

    let mut halo = FakeHalo::with_clients(5);
    let mut machine = start(&plugin, Operation::Probe);
    let run = drive(machine.as_mut(), |request| halo.answer(request));
    assert!(matches!(run.result(), OpResult::Probed { .. }), "{:?}", run.end);
    assert_eq!(query(run.api_requests()[0]).get("page_size").map(String::as_str), Some("1"));
}
