//! Vendor intake end to end: the Gradient-compatible API over real HTTP on 127.0.0.1, the
//! integration commands, CSV import, and the `tally` binary for `integration add` and `import`.
//!
//! Every refused request is checked three ways: its status, its message, and that the journal
//! holds exactly the vendor data it held before.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tally_agent::config::Config;
use tally_agent::intake::csv_import;
use tally_agent::intake::integrations;
use tally_agent::intake::rate::RateLimiter;
use tally_agent::intake::{IntakeState, integration_rows, router};
use tally_agent::journal::tables::{
    ACCOUNT_MAPPINGS, ACCOUNTS, INTEGRATIONS, SERVICE_MAPPINGS, SERVICES, USAGE, key2, key3,
};
use tally_agent::journal::{Journal, Read, Write};
use tally_agent::model::{
    Account, IntegrationStatus, Mapping, Origin, Service, Target, UsageCount,
};

const CONFIG: &str = r#"
journal = "tally.redb"
mapping = "mapping.toml"

[agent]
listen = "127.0.0.1:8737"

[[vendor]]
name = "safedns"
source = "push"

[[vendor]]
name = "backupco"
source = "csv"

[vendor.csv]
account_id = "Tenant ID"
account_name = "Tenant"
service = "SKU"
quantity = "Seats"

[[vendor]]
name = "m365"
source = "plugin"
plugin = "pax8"
"#;

const VENDOR_KEY: &str = "vendor-key-1";

/// A temporary tally: config, journal, one `safedns` integration, and the intake API served on
/// a loopback port.
struct Harness {
    _dir: tempfile::TempDir,
    config: Config,
    journal: Journal,
    base: String,
    client: reqwest::Client,
    key: String,
}

fn setup() -> (tempfile::TempDir, Config, Journal) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tally.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let config = Config::load(&path, true).unwrap();
    let journal = Journal::open(&config.journal, Some(&config.mapping)).unwrap();
    (dir, config, journal)
}

fn token(vendor_key: &str, partner_key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{vendor_key}:{partner_key}"))
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(RateLimiter::gradient()).await
    }

    async fn start_with(limiter: RateLimiter) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (dir, config, journal) = setup();
        let issued = integrations::add(&journal, &config, "safedns").unwrap();
        let state = IntakeState::with_rate_limit(journal.clone(), config.clone(), limiter);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router(state)).await.unwrap();
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .unwrap();
        Harness {
            _dir: dir,
            config,
            journal,
            base: format!("http://{addr}/api"),
            client,
            key: issued.key,
        }
    }

    fn token(&self) -> String {
        token(VENDOR_KEY, &self.key)
    }

    /// Sends a request with this harness's token and returns the status and JSON body.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.raw(method, path, Some(&self.token()), body, "application/json").await
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("GRADIENT-TOKEN", token);
        }
        if let Some(body) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!("status {status}: body is not JSON ({e}): {}", String::from_utf8_lossy(&bytes))
        });
        (status, body)
    }

    fn data(&self) -> VendorData {
        vendor_data(&self.journal)
    }

    /// One account and one service, so that counts have something to refer to.
    async fn seed(&self) {
        let (status, _) = self
            .call(
                "POST",
                "/vendor-api/organization/accounts",
                Some(json!([{ "id": "acme-01", "name": "Acme Inc." }])),
            )
            .await;
        assert_eq!(status, 201);
        let (status, _) =
            self.call("POST", "/vendor-api/service", Some(json!({ "name": "SafeDNS Pro" }))).await;
        assert_eq!(status, 201);
    }

    fn status(&self) -> IntegrationStatus {
        self.journal.read().unwrap().get(&INTEGRATIONS, "safedns").unwrap().unwrap().status
    }
}

#[derive(Debug, PartialEq)]
struct VendorData {
    accounts: Vec<Account>,
    services: Vec<Service>,
    usage: Vec<UsageCount>,
}

fn vendor_data(journal: &Journal) -> VendorData {
    let tx = journal.read().unwrap();
    VendorData {
        accounts: tx.values(&ACCOUNTS, "").unwrap(),
        services: tx.values(&SERVICES, "").unwrap(),
        usage: tx.values(&USAGE, "").unwrap(),
    }
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_flow_check_connection_pending_accounts_service_counts() {
    let h = Harness::start().await;
    let before = integrations::check(&h.journal, &h.config, "safedns").unwrap();
    assert!(!before.called);
    assert_eq!(before.row.status, "inactive");
    assert!(before.hint.as_deref().unwrap().contains("http://127.0.0.1:8737/api"));

    // "Check Connection": the vendor reads the partner integration.
    let (status, org) = h.call("GET", "/vendor-api/organization", None).await;
    assert_eq!(status, 200, "{org}");
    assert_eq!(org["vendorName"], "safedns");
    assert_eq!(org["status"], "pending", "first contact leaves `inactive`");
    assert_eq!(org["lastSyncedAt"], Value::Null);

    let (status, body) = h.call("PATCH", "/vendor-api/organization/status/pending", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["message"], "Success - Updated Integration Status");
    assert_eq!(body["data"]["status"], "pending");

    let accounts = json!([
        { "id": "acme-01", "name": "Acme Inc.", "description": "acme.example" },
        { "id": 42, "name": "Contoso" },
    ]);
    let (status, body) = h.call("POST", "/vendor-api/organization/accounts", Some(accounts)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body,
        json!([
            { "id": "acme-01", "name": "Acme Inc.", "description": "acme.example" },
            { "id": "42", "name": "Contoso", "description": "" },
        ])
    );

    let service = json!({ "name": "SafeDNS Pro", "description": "DNS filtering",
        "category": "security", "subcategory": "dns" });
    let (status, body) = h.call("POST", "/vendor-api/service", Some(service)).await;
    assert_eq!(status, 201, "{body}");
    // Scripts written for Gradient pick the new service out of `skus` by name.
    assert_eq!(body["skus"][0]["name"], "SafeDNS Pro");
    assert_eq!(body["skus"][0]["id"], "safedns-pro");
    assert_eq!(body["data"]["id"], "safedns-pro");

    let (status, vendor) = h.call("GET", "/vendor-api", None).await;
    assert_eq!(status, 200);
    assert_eq!(vendor["message"], "Success - Retrieved Vendor");
    assert_eq!(vendor["data"]["skus"].as_array().unwrap().len(), 1);
    let (status, body) = h.call("GET", "/vendor-api/service/safedns-pro", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["name"], "SafeDNS Pro");

    for (account, count) in [(json!("acme-01"), json!(25)), (json!(42), json!(1.75))] {
        let (status, body) = h
            .call(
                "POST",
                "/vendor-api/service/safedns-pro/count",
                Some(json!({ "accountId": account, "unitCount": count })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(
            body,
            json!({ "status": 201, "message": "Success - Created service unit count" })
        );
    }

    let (status, listed) = h.call("GET", "/vendor-api/organization/accounts", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed.as_array().unwrap().len(), 2);

    // The journal holds all of it; nothing is mapped, and the counts are kept anyway.
    let data = h.data();
    assert_eq!(data.accounts.len(), 2);
    let names: Vec<(&str, &str)> =
        data.accounts.iter().map(|a| (a.id.as_str(), a.name.as_str())).collect();
    assert_eq!(names, [("42", "Contoso"), ("acme-01", "Acme Inc.")]);
    assert_eq!(data.services.len(), 1);
    let tx = h.journal.read().unwrap();
    let acme = tx.get(&USAGE, &key3("safedns", "acme-01", "safedns-pro")).unwrap().unwrap();
    assert_eq!(acme.quantity.to_string(), "25");
    let contoso = tx.get(&USAGE, &key3("safedns", "42", "safedns-pro")).unwrap().unwrap();
    assert_eq!(contoso.quantity.to_string(), "1.75");
    drop(tx);
    assert_eq!(h.status(), IntegrationStatus::Active);

    let report = integrations::check(&h.journal, &h.config, "safedns").unwrap();
    assert!(report.called);
    assert!(report.vendor_key_bound);
    assert_eq!(report.row.status, "active");
    assert!(report.row.last_contact.is_some());
    assert!(report.row.last_usage.is_some());
    assert_eq!((report.row.accounts, report.row.services, report.row.counts), (2, 1, 2));
    assert!(!report.row.configured);
    let last = report.last_call.unwrap();
    assert_eq!((last.method.as_str(), last.status), ("GET", 200));
    assert_eq!(last.path, "/api/vendor-api/organization/accounts");
    assert_eq!(report.failures, 0);
    assert_eq!(report.calls, 9);

    let (_, org) = h.call("GET", "/vendor-api/organization", None).await;
    assert_eq!(org["status"], "active");
    assert!(org["lastSyncedAt"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_store_nothing() {
    let h = Harness::start().await;
    let before = h.data();
    let body = serde_json::to_vec(&json!([{ "id": "a", "name": "A" }])).unwrap();
    let cases = [
        (None, "header is missing"),
        (Some("!!!not base64!!!".to_string()), "not base64"),
        (Some(base64::engine::general_purpose::STANDARD.encode("no separator")), "no ':'"),
        (Some(token("", &h.key)), "empty vendor key"),
        (Some(token(VENDOR_KEY, "")), "empty partner key"),
        (Some(token(VENDOR_KEY, "tally_pk_guessed")), "not one this tally issued"),
    ];
    for (token, expected) in cases {
        let (status, reply) = h
            .raw(
                "POST",
                "/vendor-api/organization/accounts",
                token.as_deref(),
                Some(body.clone()),
                "application/json",
            )
            .await;
        assert_eq!(status, 401, "{expected}: {reply}");
        assert_eq!(reply["statusCode"], 401);
        assert!(message(&reply).contains(expected), "{expected}: {reply}");
        assert!(!message(&reply).contains(&h.key), "a message must not echo the key");
    }
    assert_eq!(h.data(), before);
    assert!(!integrations::check(&h.journal, &h.config, "safedns").unwrap().called);

    // The first successful call binds the vendor key; another vendor key is refused after.
    let (status, _) = h.call("GET", "/vendor-api/organization", None).await;
    assert_eq!(status, 200);
    let (status, reply) = h
        .raw(
            "POST",
            "/vendor-api/organization/accounts",
            Some(&token("someone-else", &h.key)),
            Some(body),
            "application/json",
        )
        .await;
    assert_eq!(status, 401);
    assert!(message(&reply).contains("vendor key"), "{reply}");
    assert_eq!(h.data(), before);
    let report = integrations::check(&h.journal, &h.config, "safedns").unwrap();
    let refused = report.last_failure.unwrap();
    assert_eq!((refused.method.as_str(), refused.status), ("POST", 401));
    assert_eq!(report.failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_and_removed_keys_get_401_and_the_data_is_kept() {
    let h = Harness::start().await;
    h.seed().await;
    let old_token = h.token();

    let rotated = integrations::rotate_key(&h.journal, &h.config, "safedns").unwrap();
    assert_ne!(rotated.key, h.key);
    let (status, reply) =
        h.raw("GET", "/vendor-api/organization", Some(&old_token), None, "").await;
    assert_eq!(status, 401);
    assert!(message(&reply).contains("rotated"), "{reply}");
    // A new key binds a vendor key afresh.
    let new_token = token("vendor-key-2", &rotated.key);
    let (status, _) = h.raw("GET", "/vendor-api/organization", Some(&new_token), None, "").await;
    assert_eq!(status, 200);

    assert!(integrations::remove(&h.journal, "safedns").unwrap());
    assert!(!integrations::remove(&h.journal, "safedns").unwrap(), "already removed");
    let (status, _) = h.raw("GET", "/vendor-api/organization", Some(&new_token), None, "").await;
    assert_eq!(status, 401);
    let data = h.data();
    assert_eq!((data.accounts.len(), data.services.len()), (1, 1), "removal keeps the data");
    let rows = integration_rows(&h.journal).unwrap();
    assert!(rows[0].removed);
    let e = integrations::rotate_key(&h.journal, &h.config, "safedns").unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("was removed"), "{e}");

    let back = integrations::add(&h.journal, &h.config, "safedns").unwrap();
    let (status, accounts) = h
        .raw("GET", "/vendor-api/organization/accounts", Some(&token("v3", &back.key)), None, "")
        .await;
    assert_eq!(status, 200);
    assert_eq!(accounts[0]["id"], "acme-01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_one_mebibyte_is_413_and_stores_nothing() {
    let h = Harness::start().await;
    let before = h.data();
    let accounts: Vec<Value> =
        (0..12_000).map(|i| json!({ "id": format!("acct-{i}"), "name": "x".repeat(80) })).collect();
    let body = serde_json::to_vec(&accounts).unwrap();
    assert!(body.len() > 1024 * 1024);
    let (status, reply) = h
        .raw(
            "POST",
            "/vendor-api/organization/accounts",
            Some(&h.token()),
            Some(body),
            "application/json",
        )
        .await;
    assert_eq!(status, 413, "{reply}");
    assert!(message(&reply).contains("larger than 1 MiB"), "{reply}");
    assert_eq!(h.data(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400_and_stores_nothing() {
    let h = Harness::start().await;
    let before = h.data();
    let (status, reply) = h
        .raw(
            "POST",
            "/vendor-api/organization/accounts",
            Some(&h.token()),
            Some(br#"[{"id": "a", "name": "#.to_vec()),
            "application/json",
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(message(&reply).starts_with("the body is not valid JSON"), "{reply}");
    assert_eq!(reply["error"], "Bad Request");
    assert_eq!(h.data(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_fields_are_400_naming_the_field_and_store_nothing() {
    let h = Harness::start().await;
    h.seed().await;
    let before = h.data();
    let cases = [
        (
            "/vendor-api/organization/accounts",
            json!([{ "id": "b-1", "name": "Bravo" }, { "id": "c-1" }]),
            "`[1].name` is required",
        ),
        (
            "/vendor-api/organization/accounts",
            json!([{ "id": "  ", "name": "Blank" }]),
            "`[0].id` is empty",
        ),
        ("/vendor-api/service", json!({ "description": "no name" }), "`name` is required"),
        (
            "/vendor-api/service/safedns-pro/count",
            json!({ "unitCount": 3 }),
            "`accountId` is required",
        ),
        (
            "/vendor-api/service/safedns-pro/count",
            json!({ "clientOid": "64ab", "unitCount": 3 }),
            "`accountId` is required",
        ),
        (
            "/vendor-api/service/safedns-pro/count",
            json!({ "accountId": "acme-01" }),
            "`unitCount` is required",
        ),
        ("/vendor-api/service/safedns-pro/count", json!([1, 2]), "must be a JSON object"),
    ];
    for (path, body, expected) in cases {
        let (status, reply) = h.call("POST", path, Some(body)).await;
        assert_eq!(status, 400, "{expected}: {reply}");
        assert!(message(&reply).contains(expected), "{expected}: {reply}");
    }
    assert_eq!(h.data(), before, "the valid first account of a bad batch is not stored either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_and_non_numeric_counts_are_400_and_store_nothing() {
    let h = Harness::start().await;
    h.seed().await;
    let before = h.data();
    let cases = [
        (json!(-3), "`unitCount` \"-3\" is negative; quantities are zero or more"),
        (json!(-0.5), "is negative"),
        (json!("abc"), "`unitCount` \"abc\" is not a number"),
        (json!(true), "`unitCount` must be a number, not the boolean true"),
        (json!({ "n": 1 }), "`unitCount` must be a number, not an object"),
    ];
    for (count, expected) in cases {
        let body = json!({ "accountId": "acme-01", "unitCount": count });
        let (status, reply) =
            h.call("POST", "/vendor-api/service/safedns-pro/count", Some(body)).await;
        assert_eq!(status, 400, "{expected}: {reply}");
        assert!(message(&reply).contains(expected), "{expected}: {reply}");
    }
    assert_eq!(h.data(), before);
    assert_ne!(h.status(), IntegrationStatus::Active, "refused counts do not activate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_status_word_is_400_naming_the_allowed_words() {
    let h = Harness::start().await;
    let (status, _) = h.call("PATCH", "/vendor-api/organization/status/disabled", None).await;
    assert_eq!(status, 200);
    let (status, reply) = h.call("PATCH", "/vendor-api/organization/status/paused", None).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        message(&reply).contains(
            "\"paused\" is not an integration status; use one of active, \
                                  inactive, pending, disabled, error"
        ),
        "{reply}"
    );
    assert_eq!(h.status(), IntegrationStatus::Disabled, "the status did not change");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_for_unknown_accounts_or_services_are_404_and_store_nothing() {
    let h = Harness::start().await;
    h.seed().await;
    let before = h.data();
    let (status, reply) = h
        .call(
            "POST",
            "/vendor-api/service/safedns-pro/count",
            Some(json!({ "accountId": "ghost", "unitCount": 4 })),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert!(message(&reply).contains("account id \"ghost\" was never created"), "{reply}");
    let (status, reply) = h
        .call(
            "POST",
            "/vendor-api/service/nope/count",
            Some(json!({ "accountId": "acme-01", "unitCount": 4 })),
        )
        .await;
    assert_eq!(status, 404, "{reply}");
    assert!(message(&reply).contains("service id \"nope\" does not exist"), "{reply}");
    let (status, reply) = h.call("GET", "/vendor-api/service/nope", None).await;
    assert_eq!(status, 404, "{reply}");
    assert_eq!(h.data(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_requests_than_the_limit_is_429_with_retry_after() {
    // Five per hour, so that no test machine is slow enough to see the window move.
    let h = Harness::start_with(RateLimiter::new(5, Duration::from_secs(3600))).await;
    for _ in 0..5 {
        let (status, _) = h.call("GET", "/vendor-api/organization", None).await;
        assert_eq!(status, 200);
    }
    let before = h.data();
    let response = h
        .client
        .post(format!("{}/vendor-api/organization/accounts", h.base))
        .header("GRADIENT-TOKEN", h.token())
        .header("content-type", "application/json")
        .body(r#"[{"id": "a", "name": "A"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let reply: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(message(&reply).contains("too many requests"), "{reply}");
    // Calls with a wrong vendor key count against the limit too, and are not noted past it.
    let (status, _) =
        h.raw("GET", "/vendor-api/organization", Some(&token("intruder", &h.key)), None, "").await;
    assert_eq!(status, 429);
    assert_eq!(integrations::check(&h.journal, &h.config, "safedns").unwrap().failures, 0);
    assert_eq!(h.data(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resending_accounts_services_and_counts_is_idempotent() {
    let h = Harness::start().await;
    h.seed().await;
    let (status, _) = h
        .call(
            "POST",
            "/vendor-api/organization/accounts",
            Some(json!([{ "id": "acme-01", "name": "Acme Corporation" }])),
        )
        .await;
    assert_eq!(status, 201);
    let data = h.data();
    assert_eq!(data.accounts.len(), 1, "a re-sent account never duplicates");
    assert_eq!(data.accounts[0].name, "Acme Corporation");

    let (status, body) =
        h.call("POST", "/vendor-api/service", Some(json!({ "name": "SafeDNS Pro" }))).await;
    assert_eq!(status, 200, "an existing name is returned, not created: {body}");
    assert_eq!(body["data"]["id"], "safedns-pro");
    assert_eq!(body["skus"].as_array().unwrap().len(), 1);

    let path = "/vendor-api/service/safedns-pro/count";
    let count = json!({ "accountId": "acme-01", "unitCount": 10 });
    h.call("POST", path, Some(count.clone())).await;
    let first = h.data().usage[0].clone();
    // Let the clock move on by at least a millisecond, without timing anything.
    while tally_agent::model::now_millis() <= first.received_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (status, _) =
        h.call("POST", path, Some(json!({ "accountId": "acme-01", "unitCount": 10.0 }))).await;
    assert_eq!(status, 201);
    let second = h.data().usage[0].clone();
    assert_eq!(second.quantity, first.quantity);
    assert!(second.previous.is_empty(), "the same value again is not history");
    assert!(second.received_at > first.received_at, "only the received time moves");

    for n in 11..=17 {
        h.call("POST", path, Some(json!({ "accountId": "acme-01", "unitCount": n }))).await;
    }
    let last = h.data().usage[0].clone();
    assert_eq!(last.quantity.to_string(), "17");
    let history: Vec<String> = last.previous.iter().map(|(q, _)| q.to_string()).collect();
    assert_eq!(history, ["16", "15", "14", "13", "12"], "newest first, five at most");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c15_decimal_counts_are_stored_exactly() {
    let h = Harness::start().await;
    h.seed().await;
    let body = br#"{"accountId": "acme-01", "unitCount": 0.30000000000000004}"#.to_vec();
    let (status, reply) = h
        .raw(
            "POST",
            "/vendor-api/service/safedns-pro/count",
            Some(&h.token()),
            Some(body),
            "application/json",
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(h.data().usage[0].quantity.to_string(), "0.30000000000000004");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patching_accounts_and_services_takes_json_or_form_bodies() {
    let h = Harness::start().await;
    h.seed().await;
    let (status, body) = h
        .raw(
            "PATCH",
            "/vendor-api/organization/accounts/acme-01",
            Some(&h.token()),
            Some(b"id=acme-01&name=Acme+Corp".to_vec()),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "id": "acme-01", "name": "Acme Corp", "description": "" }));

    let (status, body) = h
        .call(
            "PATCH",
            "/vendor-api/service/safedns-pro",
            Some(json!({ "name": "SafeDNS Premium" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Success - Updated Service");
    assert_eq!(body["data"]["name"], "SafeDNS Premium");
    let (status, body) =
        h.call("POST", "/vendor-api/service", Some(json!({ "name": "SafeDNS Premium" }))).await;
    assert_eq!((status, &body["data"]["id"]), (200, &json!("safedns-pro")));

    let (status, reply) = h
        .call("PATCH", "/vendor-api/organization/accounts/ghost", Some(json!({ "name": "G" })))
        .await;
    assert_eq!(status, 404, "{reply}");
    let (status, reply) =
        h.call("PATCH", "/vendor-api/organization/accounts/acme-01", Some(json!({}))).await;
    assert_eq!(status, 400, "{reply}");
    assert!(message(&reply).contains("`name` or `description` is required"), "{reply}");
    let (status, reply) = h.call("GET", "/vendor-api/nothing-here", None).await;
    assert_eq!(status, 404, "{reply}");
    assert!(message(&reply).contains("not a vendor API path"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integration_rows_report_configured_once_an_account_and_a_service_are_mapped() {
    let h = Harness::start().await;
    h.seed().await;
    assert!(!integration_rows(&h.journal).unwrap()[0].configured);
    let mapped = |target: Target| Mapping { target, origin: Origin::File };
    h.journal
        .write(|tx| {
            tx.put(
                &ACCOUNT_MAPPINGS,
                &key2("safedns", "acme-01"),
                &mapped(Target::Id("250".into())),
            )?;
            tx.put(&SERVICE_MAPPINGS, &key2("safedns", "safedns-pro"), &mapped(Target::Excluded))
        })
        .unwrap();
    let row = &integration_rows(&h.journal).unwrap()[0];
    assert_eq!((row.accounts_mapped, row.services_mapped, row.configured), (1, 0, false));
    h.journal
        .write(|tx| {
            tx.put(
                &SERVICE_MAPPINGS,
                &key2("safedns", "safedns-pro"),
                &mapped(Target::Id("7".into())),
            )
        })
        .unwrap();
    let row = &integration_rows(&h.journal).unwrap()[0];
    assert!(row.configured);
    assert_eq!((row.name.as_str(), row.source.as_str()), ("safedns", "push"));
}

#[test]
fn adding_an_unconfigured_or_plugin_vendor_is_a_usage_error() {
    let (_dir, config, journal) = setup();
    let e = integrations::add(&journal, &config, "nosuch").unwrap_err();
    assert!(e.is_usage());
    assert!(e.to_string().contains("[[vendor]]\n  name = \"nosuch\""), "{e}");
    let e = integrations::add(&journal, &config, "m365").unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("source = \"plugin\""), "{e}");
    integrations::add(&journal, &config, "safedns").unwrap();
    let e = integrations::add(&journal, &config, "safedns").unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("rotate-key"), "{e}");
    assert!(integration_rows(&journal).unwrap().len() == 1);
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const HEADER: &str = "Tenant ID,Tenant,SKU,Seats,Region\r\n";

#[test]
fn csv_import_reads_bom_crlf_quoted_commas_and_configured_headers() {
    let (dir, config, journal) = setup();
    let text = format!(
        "\u{feff}{HEADER}t-1,\"Contoso, Ltd\",Backup TB,1.75,eu\r\nt-2,Fabrikam,Backup TB,3,us\r\n\
         t-1,\"Contoso, Ltd\",\"Cloud, Archive\",0.30000000000000004,eu\r\n"
    );
    let file = write(dir.path(), "usage.csv", &text);
    let summary = csv_import::import(&journal, &config, "backupco", &file).unwrap();
    assert_eq!((summary.rows, summary.accounts, summary.accounts_created), (3, 2, 2));
    assert_eq!((summary.services, summary.services_created), (2, 2));
    assert_eq!((summary.counts_stored, summary.counts_unchanged), (3, 0));

    let tx = journal.read().unwrap();
    let contoso = tx.get(&ACCOUNTS, &key2("backupco", "t-1")).unwrap().unwrap();
    assert_eq!(contoso.name, "Contoso, Ltd");
    let archive = tx.get(&SERVICES, &key2("backupco", "cloud-archive")).unwrap().unwrap();
    assert_eq!(archive.name, "Cloud, Archive");
    let usage = tx.get(&USAGE, &key3("backupco", "t-1", "cloud-archive")).unwrap().unwrap();
    assert_eq!(usage.quantity.to_string(), "0.30000000000000004");
    drop(tx);

    // The same file again changes no count; a renamed account is updated, not duplicated.
    let again = text.replace("Fabrikam", "Fabrikam Inc");
    let file = write(dir.path(), "usage-2.csv", &again);
    let summary = csv_import::import(&journal, &config, "backupco", &file).unwrap();
    assert_eq!((summary.counts_stored, summary.counts_unchanged), (0, 3));
    assert_eq!((summary.accounts_created, summary.accounts_renamed), (0, 1));
    assert_eq!(vendor_data(&journal).accounts.len(), 2);

    let row = &integration_rows(&journal).unwrap()[0];
    assert_eq!(
        (row.name.as_str(), row.source.as_str(), row.status.as_str()),
        ("backupco", "csv", "active")
    );
    assert_eq!(row.counts, 3);

    // The import made a keyless integration, which needs mapping, not a key; `add` still gives
    // it a key without replacing one.
    let report = integrations::check(&journal, &config, "backupco").unwrap();
    let hint = report.hint.unwrap();
    assert!(hint.contains("map at least one account") && !hint.contains("key"), "{hint}");
    let issued = integrations::add(&journal, &config, "backupco").unwrap();
    assert!(!issued.replaced);
    assert_eq!(integration_rows(&journal).unwrap()[0].status, "active");
}

#[test]
fn csv_import_says_how_many_counts_a_file_leaves_out_and_keeps_them() {
    let (dir, config, journal) = setup();
    let march = format!(
        "{HEADER}t-1,Contoso,Backup TB,2,eu\r\nt-2,Fabrikam,Backup TB,3,us\r\n\
         t-2,Fabrikam,Backup Seats,10,us\r\n"
    );
    let import = |name: &str, text: &str| {
        csv_import::import(&journal, &config, "backupco", &write(dir.path(), name, text)).unwrap()
    };
    let summary = import("march.csv", &march);
    assert_eq!(summary.counts_not_in_file, 0);
    assert!(!summary.line().contains("note:"), "{}", summary.line());

    // Fabrikam dropped one service but is still in the file; Contoso is gone.
    let april = format!("{HEADER}t-2,Fabrikam,Backup TB,3,us\r\n");
    let summary = import("april.csv", &april);
    assert_eq!(summary.counts_not_in_file, 2);
    assert!(
        summary.line().contains(
            "note: 2 counts from earlier imports are not in this file and keep \
             their value"
        ),
        "{}",
        summary.line()
    );
    let kept = journal.read().unwrap().get(&USAGE, &key3("backupco", "t-1", "backup-tb")).unwrap();
    assert_eq!(kept.unwrap().quantity.to_string(), "2", "a left-out count stays");

    // Set to 0, a cancelled customer and service are nothing to keep.
    let may = format!(
        "{HEADER}t-1,Contoso,Backup TB,0,eu\r\nt-2,Fabrikam,Backup TB,3,us\r\n\
         t-2,Fabrikam,Backup Seats,0,us\r\n"
    );
    import("may.csv", &may);
    let summary = import("june.csv", &april);
    assert_eq!(summary.counts_not_in_file, 0, "zero counts are nothing to keep");
}

#[test]
fn csv_bad_rows_are_reported_by_line_and_column_and_nothing_is_stored() {
    let (dir, config, journal) = setup();
    let good = "t-1,Contoso,Backup TB,2,eu\r\n";
    let cases = [
        (
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,-3,us\r\n"),
            "usage.csv:3:4: quantity \"-3\" is negative; quantities are zero or more",
        ),
        (
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,lots,us\r\n"),
            "usage.csv:3:4: quantity \"lots\" is not a number",
        ),
        (
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,,us\r\n"),
            "usage.csv:3:4: quantity \"\" is empty",
        ),
        (
            format!("{HEADER}{good} ,Fabrikam,Backup TB,1,us\r\n"),
            "usage.csv:3:1: account id is empty",
        ),
        (format!("{HEADER}{good}t-2,Fabrikam,,1,us\r\n"), "usage.csv:3:3: service is empty"),
        (
            format!("{HEADER}{good}t-2,Fabrikam\r\n"),
            "usage.csv:3:3: the row has 2 fields, so service (column 3) is missing",
        ),
        (
            // A decimal comma splits the quantity: never store "1" for 1,5.
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,1,5,us\r\n"),
            "usage.csv:3:6: the row has 6 fields but the header has 5",
        ),
        (
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,1,us\r\n{good}"),
            "usage.csv:4:1: account \"t-1\" and service \"Backup TB\" appear twice (lines 2 and 4)",
        ),
        (
            format!("{HEADER}{good}t-1,Contoso Ltd,Archive,1,eu\r\n"),
            "usage.csv:3:2: account \"t-1\" is named \"Contoso Ltd\" here but \"Contoso\" at line 2",
        ),
        (
            "Tenant ID,Tenant,Product,Seats\r\nt-1,Contoso,Backup,1\r\n".to_string(),
            "usage.csv:1: no column named \"SKU\"",
        ),
        (HEADER.to_string(), "has a header but no rows"),
        (
            // A quote never closed: it swallows the rest of the file.
            format!(
                "{HEADER}{good}t-2,\"Fabrikam,Backup TB,1,us\r\nt-3,Tailspin,Backup TB,2,eu\r\n"
            ),
            "usage.csv:3:2: a quote opened here is never closed",
        ),
        (
            // The same at the end of a file cut short: never stored as a row.
            format!("{HEADER}{good}t-2,Fabrikam,Backup TB,\"7"),
            "usage.csv:3:4: a quote opened here is never closed",
        ),
        (
            // A quote closed only on a later line joins two rows into one field.
            format!("{HEADER}{good}t-2,\"Fabrikam,Backup TB,1,us\r\nt-3\",Tail,Backup TB,2,eu\r\n"),
            "usage.csv:3:2: a quoted field runs past the end of its line: close the quote",
        ),
    ];
    for (text, expected) in cases {
        let file = write(dir.path(), "usage.csv", &text);
        let e = csv_import::import(&journal, &config, "backupco", &file).unwrap_err();
        assert!(e.is_usage(), "{e}");
        let text = e.to_string();
        assert!(text.contains(expected), "expected {expected:?} in:\n{text}");
        assert!(text.contains("was stored"), "{text}");
        assert_eq!(
            vendor_data(&journal),
            VendorData { accounts: vec![], services: vec![], usage: vec![] }
        );
    }
    assert!(integration_rows(&journal).unwrap().is_empty());
}

#[test]
fn csv_import_for_an_unconfigured_vendor_says_how_to_configure_it() {
    let (dir, config, journal) = setup();
    let file = write(dir.path(), "usage.csv", &format!("{HEADER}t-1,A,B,1,eu\r\n"));
    let e = csv_import::import(&journal, &config, "nosuch", &file).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("[vendor.csv]"), "{e}");
    let e = csv_import::import(&journal, &config, "m365", &file).unwrap_err();
    assert!(e.is_usage() && e.to_string().contains("source = \"plugin\""), "{e}");
}

fn tally(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .arg("--config")
        .arg(dir.join("tally.toml"))
        .args(args)
        .current_dir(dir)
        .env_remove("TALLY_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn binary_integration_add_prints_the_key_once_and_a_bad_import_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "tally.toml", CONFIG);

    let out = tally(dir.path(), &["integration", "add", "safedns"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let key = stdout.split_whitespace().find(|w| w.starts_with("tally_pk_")).unwrap();
    assert_eq!(key.len(), "tally_pk_".len() + 43);
    assert!(stdout.contains("http://127.0.0.1:8737/api"), "{stdout}");

    let again = tally(dir.path(), &["integration", "add", "safedns"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&again.stdout).contains("tally_pk_"), "shown only once");
    let unknown = tally(dir.path(), &["integration", "add", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));

    write(
        dir.path(),
        "bad.csv",
        &format!("{HEADER}t-1,Contoso,Backup TB,2,eu\r\nt-2,Fabrikam,Backup TB,-3,us\r\n"),
    );
    let out = tally(dir.path(), &["import", "--vendor", "backupco", "bad.csv"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.csv:3:4: quantity \"-3\" is negative"), "{stderr}");

    let check = tally(dir.path(), &["--format", "json", "integration", "check", "safedns"]);
    assert_eq!(check.status.code(), Some(1), "never called is a failed check");
    let report: Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(
        (report["called"].clone(), report["status"].clone()),
        (json!(false), json!("inactive"))
    );
    let list = tally(dir.path(), &["--format", "json", "integration", "list"]);
    assert!(list.status.success());
    let rows: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "the failed import created nothing: {rows}");

    let config = Config::load(&dir.path().join("tally.toml"), true).unwrap();
    let journal = Journal::open(&config.journal, Some(&config.mapping)).unwrap();
    let data = vendor_data(&journal);
    assert!(data.accounts.is_empty() && data.usage.is_empty(), "{data:?}");
    drop(journal);

    // A CSV vendor with nothing imported yet is sent to `tally import`, not to a partner key.
    let check = tally(dir.path(), &["integration", "check", "backupco"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing was imported for it yet: `tally import --vendor backupco"));
    // A vendor whose usage comes by CSV never calls, and its check does not fail for that.
    write(dir.path(), "good.csv", &format!("{HEADER}t-1,Contoso,Backup TB,2,eu\r\n"));
    let out = tally(dir.path(), &["import", "--vendor", "backupco", "good.csv"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = tally(dir.path(), &["integration", "check", "backupco"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains("partner key") && !stdout.contains("API base URL"), "{stdout}");
    // A vendor tally.toml does not name is sent to tally.toml, not to `integration add`.
    let check = tally(dir.path(), &["integration", "check", "nosuch"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("vendor \"nosuch\" is not configured in"), "{stderr}");

    // A vendor that began by pushing and now comes by CSV is checked as CSV, as configured.
    let switched = CONFIG
        .replace("name = \"safedns\"\nsource = \"push\"", "name = \"safedns\"\nsource = \"csv\"");
    assert_ne!(switched, CONFIG);
    write(dir.path(), "tally.toml", &switched);
    let check = tally(dir.path(), &["integration", "check", "safedns"]);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("integration:   safedns (csv)"), "{stdout}");
}
