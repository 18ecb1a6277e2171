//! The ConnectWise emulator, exercised over real HTTP on 127.0.0.1 the way the ConnectWise
//! plugin will use it: authentication, paging and its `Link` header, forward-only paging,
//! `conditions`, `orderBy`, writes that move `_info.lastUpdated`, every fault kind, the request
//! log, and the field cases the emulator must reproduce (C03, C04, C06, C07, C10, C12, C16).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant, SystemTime};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_tests::connectwise::{
    Company, ConnectWiseEmulator, CwData, Fault, FaultRule, RecordRef, RetryAfter, format_instant,
    parse_instant, sample_ids,
};
use time::macros::datetime;

fn http() -> Client {
    // reqwest is built without a default TLS provider; these tests never use TLS, but building a
    // client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Client::builder().no_proxy().timeout(Duration::from_secs(20)).build() {
        Ok(client) => client,
        Err(e) => panic!("cannot build an HTTP client: {e}"),
    }
}

/// A test's view of one emulator: the handle plus an authenticated client.
struct Cw {
    emu: ConnectWiseEmulator,
    http: Client,
}

impl Cw {
    fn start(data: CwData) -> Cw {
        Cw { emu: ConnectWiseEmulator::start(data), http: http() }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{}", self.emu.api_url(), path_and_query)
    }

    fn authed(&self, method: Method, url: &str) -> RequestBuilder {
        self.http
            .request(method, url)
            .header("Authorization", self.emu.authorization())
            .header("clientId", self.emu.client_id())
    }

    async fn get(&self, path_and_query: &str) -> Response {
        self.send(self.authed(Method::GET, &self.url(path_and_query))).await
    }

    async fn get_url(&self, url: &str) -> Response {
        self.send(self.authed(Method::GET, url)).await
    }

    async fn send(&self, request: RequestBuilder) -> Response {
        match request.send().await {
            Ok(response) => response,
            Err(e) => panic!("request failed: {e:?}"),
        }
    }

    async fn json(&self, path_and_query: &str) -> Value {
        let response = self.get(path_and_query).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path_and_query}");
        body_json(response).await
    }

    /// The ids of a listing's first page.
    async fn ids(&self, path_and_query: &str) -> Vec<i64> {
        ids_of(&self.json(path_and_query).await)
    }

    async fn patch_quantity(&self, agreement: i64, addition: i64, quantity: Value) -> Response {
        let url = self.url(&format!("/finance/agreements/{agreement}/additions/{addition}"));
        let body = json!([{ "op": "replace", "path": "quantity", "value": quantity }]);
        self.send(self.authed(Method::PATCH, &url).json(&body)).await
    }
}

async fn body_json(response: Response) -> Value {
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn ids_of(rows: &Value) -> Vec<i64> {
    rows.as_array()
        .map(|rows| rows.iter().filter_map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default()
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

/// `conditions=...` percent-encoded, as a careful client sends it.
fn cond(text: &str) -> String {
    format!("conditions={}", encode(text))
}

/// The `Link` header as rel → URL.
fn links(response: &Response) -> HashMap<String, String> {
    let Some(header) = response.headers().get("link").and_then(|h| h.to_str().ok()) else {
        return HashMap::new();
    };
    header
        .split(", <")
        .filter_map(|part| {
            let (url, rel) = part.trim_start_matches('<').split_once(">; rel=\"")?;
            Some((rel.trim_end_matches('"').to_owned(), url.to_owned()))
        })
        .collect()
}

fn companies(count: usize) -> CwData {
    CwData::generate(11, count, 0, 0, 0)
}

#[tokio::test]
async fn auth_rejects_missing_or_wrong_credentials_with_a_connectwise_body() {
    let cw = Cw::start(CwData::sample());
    let url = cw.url("/company/companies");

    let none = cw.send(cw.http.get(&url).header("clientId", cw.emu.client_id())).await;
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(none).await;
    assert_eq!(body["code"], "Unauthorized");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let wrong_key = format!(
        "Basic {}",
        base64_encode(&format!("{}+{}:wrong", cw.emu.company_id(), cw.emu.public_key()))
    );
    let wrong = cw
        .send(
            cw.http
                .get(&url)
                .header("Authorization", wrong_key)
                .header("clientId", cw.emu.client_id()),
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(wrong).await["code"], "Unauthorized");

    let other_company = format!(
        "Basic {}",
        base64_encode(&format!("other+{}:{}", cw.emu.public_key(), cw.emu.private_key()))
    );
    let other = cw
        .send(
            cw.http
                .get(&url)
                .header("Authorization", other_company)
                .header("clientId", cw.emu.client_id()),
        )
        .await;
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);

    // C10: a missing clientId is an authentication error, not a server error.
    let no_client =
        cw.send(cw.http.get(&url).header("Authorization", cw.emu.authorization())).await;
    assert_eq!(no_client.status(), StatusCode::UNAUTHORIZED);
    let body = body_json(no_client).await;
    assert_eq!(body["code"], "Unauthorized");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("clientId")), "{body}");

    let bad_client = cw
        .send(
            cw.http
                .get(&url)
                .header("Authorization", cw.emu.authorization())
                .header("clientId", "nope"),
        )
        .await;
    assert_eq!(bad_client.status(), StatusCode::UNAUTHORIZED);

    let bearer = cw
        .send(
            cw.http
                .get(&url)
                .header("Authorization", "Bearer abc")
                .header("clientId", cw.emu.client_id()),
        )
        .await;
    assert_eq!(bearer.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(cw.get("/company/companies").await.status(), StatusCode::OK);
    let statuses: Vec<Option<u16>> = cw.emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 401, 200].map(Some));
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn company_info_reports_the_codebase_without_credentials() {
    let cw = Cw::start(CwData::sample());
    let url = format!("{}/login/companyinfo/{}", cw.emu.base_url(), cw.emu.company_id());
    let response = cw.send(cw.http.get(&url)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["Codebase"], "v4_6_release/");
    assert_eq!(body["CompanyID"], cw.emu.company_id());
    for key in ["CompanyName", "VersionCode", "VersionNumber", "IsCloud"] {
        assert!(body.get(key).is_some(), "companyinfo lacks {key}");
    }

    let unknown =
        cw.send(cw.http.get(format!("{}/login/companyinfo/nobody", cw.emu.base_url()))).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let other_codebase = format!("{}/v2017_3/apis/3.0/company/companies", cw.emu.base_url());
    let response = cw.get_url(&other_codebase).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_json(response).await["code"], "NotFound");
}

#[tokio::test]
async fn records_have_connectwise_shapes() {
    let cw = Cw::start(CwData::sample());

    let company = cw.json(&format!("/company/companies/{}", sample_ids::CONTOSO)).await;
    assert_eq!(company["identifier"], "ContosoLtd");
    assert_eq!(company["status"]["name"], "Active");
    assert_eq!(company["types"][0]["name"], "Customer");
    assert_eq!(company["deletedFlag"], false);
    assert_eq!(company["_info"]["lastUpdated"], "2024-04-01T00:00:00Z");

    let product = cw.json(&format!("/procurement/catalog/{}", sample_ids::BKP_TB)).await;
    assert_eq!(product["identifier"], "BKP-TB");
    assert_eq!(product["inactiveFlag"], false);
    assert_eq!(product["price"].to_string(), "45.0");

    let agreement =
        cw.json(&format!("/finance/agreements/{}", sample_ids::CONTOSO_AGREEMENT)).await;
    assert_eq!(agreement["company"]["id"], sample_ids::CONTOSO);
    assert_eq!(agreement["company"]["name"], "Contoso Ltd");
    assert_eq!(agreement["agreementStatus"], "Active");
    assert_eq!(agreement["billingCycle"]["name"], "Monthly");
    assert_eq!(agreement["cancelledFlag"], false);
    let one_time = cw.json(&format!("/finance/agreements/{}", sample_ids::OBRIEN_ONE_TIME)).await;
    assert_eq!(one_time["billingCycle"], Value::Null);
    assert_eq!(one_time["billOneTimeFlag"], true);

    let fabrikam_lines = cw.json("/finance/agreements/5006/additions").await;
    let backup = &fabrikam_lines[0];
    assert_eq!(backup["product"]["identifier"], "BKP-TB");
    assert_eq!(backup["quantity"].to_string(), "1.75");
    assert_eq!(backup["agreementId"], 5006);
    assert_eq!(backup["cancelledDate"], Value::Null);
    assert!(backup["_info"]["lastUpdated"].as_str().is_some_and(|t| t.ends_with('Z')));

    let contoso_lines = cw.json("/finance/agreements/5001/additions").await;
    assert_eq!(ids_of(&contoso_lines), [1, 2, 3, 4]);
    assert_eq!(contoso_lines[0]["cancelledDate"], "2024-03-31T00:00:00Z");
    assert_eq!(contoso_lines[0]["agreementStatus"], "Cancelled");

    let missing = cw.get("/company/companies/999999").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(cw.get("/company/companies/abc").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(cw.get("/finance/agreements/999/additions").await.status(), StatusCode::NOT_FOUND);
    let count = cw.json("/finance/agreements/5001/additions/count").await;
    assert_eq!(count, json!({ "count": 4 }));

    let projected = cw.json("/company/companies?fields=id,_info/lastUpdated&pageSize=1").await;
    assert_eq!(
        projected,
        json!([{ "id": 250, "_info": { "lastUpdated": "2024-04-01T00:00:00Z" } }])
    );
}

#[tokio::test]
async fn paging_zero_rows_has_no_link() {
    let cw = Cw::start(CwData::default());
    let response = cw.get("/company/companies?pageSize=1000&page=1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("link").is_none());
    assert_eq!(body_json(response).await, json!([]));
    assert_eq!(cw.json("/company/companies/count").await, json!({ "count": 0 }));
}

#[tokio::test]
async fn paging_exactly_1000_rows_is_one_page() {
    let cw = Cw::start(companies(1000));
    let response = cw.get("/company/companies?orderBy=id%20asc&pageSize=1000").await;
    assert!(links(&response).is_empty(), "{:?}", response.headers().get("link"));
    assert_eq!(ids_of(&body_json(response).await).len(), 1000);
    assert_eq!(cw.ids("/company/companies?pageSize=1000&page=2").await, Vec::<i64>::new());
}

/// C03: the next page keeps the request's query byte for byte, with only `page` changed.
#[tokio::test]
async fn c03_paging_1001_rows_links_next_and_last_with_the_same_query() {
    let data = companies(1001);
    let all_ids: Vec<i64> = data.companies.iter().map(|c| c.id).collect();
    let cw = Cw::start(data);
    let query = format!(
        "{}&orderBy=id%20asc&pageSize=1000&page=1",
        cond("deletedFlag=false or deletedFlag=true")
    );

    let first = cw.get(&format!("/company/companies?{query}")).await;
    let link =
        first.headers().get("link").and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
    let rels = links(&first);
    let expected_next =
        cw.url(&format!("/company/companies?{}", query.replace("page=1", "page=2")));
    assert_eq!(link, format!("<{expected_next}>; rel=\"next\", <{expected_next}>; rel=\"last\""));
    let page_one = ids_of(&body_json(first).await);
    assert_eq!(page_one.len(), 1000);

    let second = cw.get_url(&rels["next"]).await;
    let rels = links(&second);
    assert!(!rels.contains_key("next"));
    assert_eq!(rels.get("prev"), Some(&cw.url(&format!("/company/companies?{query}"))));
    let page_two = ids_of(&body_json(second).await);
    assert_eq!(page_two.len(), 1);

    assert_eq!([page_one, page_two].concat(), all_ids);
    let raw: Vec<String> = cw.emu.requests().iter().map(|r| r.raw_query.clone()).collect();
    assert_eq!(raw, [query.clone(), query.replace("page=1", "page=2")]);
    let decoded = cw.emu.requests()[1].query_param("conditions").map(str::to_owned);
    assert_eq!(decoded.as_deref(), Some("deletedFlag=false or deletedFlag=true"));
}

#[tokio::test]
async fn c03_page_size_defaults_to_25_and_is_capped_at_1000() {
    let cw = Cw::start(companies(1500));
    assert_eq!(cw.ids("/company/companies").await.len(), 25);
    let capped = cw.get("/company/companies?pageSize=5000").await;
    assert!(links(&capped)["next"].ends_with("pageSize=5000&page=2"));
    assert_eq!(ids_of(&body_json(capped).await).len(), 1000);
    assert_eq!(cw.ids("/company/companies?pageSize=1000&page=2").await.len(), 500);
    assert_eq!(cw.get("/company/companies?page=two").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn forward_only_paging_follows_page_id() {
    let data = companies(2300);
    let all_ids: Vec<i64> = data.companies.iter().map(|c| c.id).collect();
    let cw = Cw::start(data);

    let mut url = cw.url("/company/companies?pageSize=1000&orderBy=id%20asc");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let response =
            cw.send(cw.authed(Method::GET, &url).header("pagination-type", "forward-only")).await;
        assert_eq!(response.status(), StatusCode::OK);
        let rels = links(&response);
        assert!(!rels.contains_key("last"), "forward-only paging cannot know the last page");
        let ids = ids_of(&body_json(response).await);
        pages += 1;
        let next = rels.get("next").cloned();
        if let Some(next) = &next {
            let last = ids.last().copied().unwrap_or_default();
            assert!(next.ends_with(&format!("orderBy=id%20asc&pageId={last}")), "{next}");
        }
        seen.extend(ids);
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, all_ids);

    let by_name = cw
        .send(
            cw.authed(Method::GET, &cw.url("/company/companies?orderBy=name%20asc"))
                .header("pagination-type", "forward-only"),
        )
        .await;
    assert_eq!(by_name.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn order_by_is_honoured() {
    let cw = Cw::start(CwData::sample());
    let ascending = cw.ids("/company/companies?orderBy=id%20asc").await;
    let mut descending = cw.ids("/company/companies?orderBy=id%20desc").await;
    descending.reverse();
    assert_eq!(ascending, descending);

    let rows =
        cw.json(&format!("/company/companies?orderBy={}", encode("_info/lastUpdated asc"))).await;
    let stamps: Vec<_> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["_info"]["lastUpdated"].as_str().and_then(parse_instant))
        .collect();
    assert_eq!(stamps.len(), 8);
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");

    let by_name = cw.json("/company/companies?orderBy=name%20desc&pageSize=2").await;
    assert_eq!(by_name[0]["name"], "Woodgrove Bank");
    assert_eq!(
        cw.get("/company/companies?orderBy=nosuch%20asc").await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn conditions_support_every_operator() {
    let cw = Cw::start(CwData::sample());
    let companies = |text: &str| format!("/company/companies?{}&orderBy=id%20asc", cond(text));
    let check = |text: &'static str, want: Vec<i64>| {
        let path = companies(text);
        let cw = &cw;
        async move { assert_eq!(cw.ids(&path).await, want, "conditions: {text}") }
    };

    check("id=250", vec![250]).await;
    check("id != 250 and id < 19302", vec![251, 19301]).await;
    check("id<=251", vec![250, 251]).await;
    check("id>19305", vec![19306]).await;
    check("id >= 19305", vec![19305, 19306]).await;
    check("name contains \"bäckerei\"", vec![19302]).await;
    check("name like \"contoso*\"", vec![250, 251]).await;
    check("name like \"%Sons\"", vec![19301]).await;
    check("id in (250, 19301,19306)", vec![250, 19301, 19306]).await;
    check("id not in (250,251,19301,19302,19303)", vec![19304, 19305, 19306]).await;
    check("deletedFlag=true", vec![251]).await;
    check("(id=250 OR id=251) AND deletedFlag=false", vec![250]).await;
    check("id=19301 or id=19302 and deletedFlag=true", vec![19301]).await;
    check("identifier=\"contosoltd\"", vec![250]).await;
    check("status/name=\"Active\" and leadFlag=true", vec![19306]).await;
    check("city=null and id<19303", vec![250, 251, 19301]).await;
    check("city!=null", vec![19302]).await;

    // C16: instants compare to the millisecond.
    check("_info/lastUpdated>[2024-05-01T11:15:07Z]", vec![19303, 19304, 19305, 19306]).await;
    check("_info/lastUpdated=[2024-05-01T11:15:07.263Z]", vec![19303, 19304, 19305]).await;
    check("_info/lastUpdated>[2024-05-01T11:15:07.263Z]", vec![19306]).await;
    // C06: an offset is an instant too.
    check("_info/lastUpdated<=[2024-04-01T02:00:00+02:00]", vec![250, 251, 19301]).await;

    let agreements = cw
        .ids(&format!("/finance/agreements?{}", cond("company/id=19301 and cancelledFlag=false")))
        .await;
    assert_eq!(agreements, [5003, 5004]);
    let active =
        cw.ids(&format!("/finance/agreements?{}", cond("agreementStatus=\"Active\""))).await;
    assert_eq!(active.len(), 8);
    let in_force = cw
        .ids(&format!(
            "/finance/agreements/5001/additions?{}",
            cond("cancelledDate=null and product/identifier=\"SAFEDNS-SEAT\"")
        ))
        .await;
    assert_eq!(in_force, [2, 3]);
    let catalog =
        cw.ids(&format!("/procurement/catalog?{}", cond("identifier like \"*-TB\""))).await;
    assert_eq!(catalog, [sample_ids::BKP_TB]);
    let count = cw.json(&format!("/company/companies/count?{}", cond("deletedFlag=false"))).await;
    assert_eq!(count, json!({ "count": 7 }));
}

#[tokio::test]
async fn conditions_find_a_name_with_quotes_and_punctuation() {
    let cw = Cw::start(CwData::sample());
    let name = "O'Brien & Sons \"Ltd\" #1 +x";
    cw.emu.add_company(Company::new(777, "OBrienLtd", name));
    cw.emu.add_company(Company::new(778, "OBrienSp", "O'Brien & Sons \"Ltd\" #1  x"));

    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    let rows =
        cw.json(&format!("/company/companies?{}", cond(&format!("name=\"{escaped}\"")))).await;
    assert_eq!(ids_of(&rows), [777]);
    assert_eq!(rows[0]["name"], name);
    let logged = cw.emu.requests();
    assert_eq!(logged[0].query_param("conditions"), Some(format!("name=\"{escaped}\"").as_str()));

    // A `+` the client left unencoded is a space, as in any form-encoded query.
    cw.emu.add_company(Company::new(779, "PlusTest", "Plus Test"));
    assert_eq!(cw.ids("/company/companies?conditions=name%3D%22Plus+Test%22").await, [779]);

    let backslash = "Back\\slash";
    cw.emu.add_company(Company::new(780, "Backslash", backslash));
    assert_eq!(
        cw.ids(&format!("/company/companies?{}", cond("name=\"Back\\\\slash\""))).await,
        [780]
    );
}

#[tokio::test]
async fn bad_conditions_are_a_400_invalid_object() {
    let cw = Cw::start(CwData::sample());
    let cases = [
        ("name=", "Expected a value"),
        ("(id=1", "')'"),
        ("id=1 and", "Expected"),
        ("name=\"unterminated", "Unterminated"),
        ("id==1", "Expected a value"),
        ("nosuch=1", "nosuch"),
        ("name like 5", "name"),
        ("deletedFlag>true", "deletedFlag"),
        ("id in ()", "Expected a value"),
        // C06: dates only in square brackets.
        ("_info/lastUpdated>2024-05-01T19:04:05Z", "square brackets"),
        ("_info/lastUpdated>\"2024-05-01T19:04:05Z\"", "square brackets"),
        ("_info/lastUpdated>[05/01/2024 3:04 PM]", "date"),
    ];
    for (text, needle) in cases {
        let response = cw.get(&format!("/company/companies?{}", cond(text))).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "conditions: {text}");
        let body = body_json(response).await;
        assert_eq!(body["code"], "InvalidObject", "{text}: {body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{text}: {message}");
    }
    let unknown =
        body_json(cw.get(&format!("/company/companies?{}", cond("nosuch=1"))).await).await;
    assert_eq!(unknown["errors"][0]["field"], "nosuch");
    let count = cw.get(&format!("/company/companies/count?{}", cond("id=="))).await;
    assert_eq!(count.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn patch_sets_quantity_and_moves_last_updated() {
    let cw = Cw::start(CwData::sample());
    let before = cw.emu.addition(5001, 2).map(|a| a.last_updated);
    let latest = cw.emu.additions(5001).iter().map(|a| a.last_updated).max();

    let response = cw.patch_quantity(5001, 2, json!(45)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["quantity"].to_string(), "45.0");
    let after = body["_info"]["lastUpdated"].as_str().and_then(parse_instant);
    assert!(after > before, "{before:?} -> {after:?}");
    assert_eq!(cw.emu.addition(5001, 2).map(|a| a.quantity), Some(Decimal::new(45, 0)));
    assert_eq!(cw.emu.writes().patches, 1);

    let second = body_json(cw.patch_quantity(5006, 11, json!(2.25)).await).await;
    assert_eq!(second["quantity"].to_string(), "2.25");
    let third = body_json(cw.patch_quantity(5006, 11, json!(2.5)).await).await;
    let stamp = |body: &Value| body["_info"]["lastUpdated"].as_str().and_then(parse_instant);
    assert!(stamp(&third) > stamp(&second), "two quick writes still move the stamp");

    // An incremental read sees the change and only the change.
    let since = latest.map(format_instant).unwrap_or_default();
    let changed = cw
        .ids(&format!(
            "/finance/agreements/5001/additions?{}",
            cond(&format!("_info/lastUpdated>[{since}]"))
        ))
        .await;
    assert_eq!(changed, [2]);

    let url = cw.url("/finance/agreements/5001/additions/2");
    for bad in [
        json!({ "op": "replace", "path": "quantity", "value": 1 }),
        json!([{ "op": "replace", "path": "nosuch", "value": 1 }]),
        json!([{ "op": "replace", "path": "quantity", "value": "lots" }]),
        json!([{ "op": "move", "path": "quantity", "from": "lessIncluded" }]),
        json!([{ "op": "replace", "path": "id", "value": 9 }]),
        json!([]),
    ] {
        let response = cw.send(cw.authed(Method::PATCH, &url).json(&bad)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let not_json = cw.send(cw.authed(Method::PATCH, &url).body("[{")).await;
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    assert_eq!(cw.patch_quantity(5001, 999, json!(1)).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(cw.emu.writes().patches, 3);
    assert_eq!(cw.emu.addition(5001, 2).map(|a| a.quantity), Some(Decimal::new(45, 0)));
}

#[tokio::test]
async fn post_creates_an_addition() {
    let cw = Cw::start(CwData::sample());
    let url = cw.url("/finance/agreements/5003/additions");
    let body = json!({
        "product": { "id": sample_ids::BKP_TB },
        "quantity": 1.75,
        "billCustomer": "Billable",
        "effectiveDate": "2024-06-01T00:00:00Z",
    });
    let response = cw.send(cw.authed(Method::POST, &url).json(&body)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = body_json(response).await;
    let id = created["id"].as_i64().unwrap_or_default();
    assert!(id > 18);
    assert_eq!(created["product"]["identifier"], "BKP-TB");
    assert_eq!(created["quantity"].to_string(), "1.75");
    assert_eq!(created["unitPrice"].to_string(), "45.0");
    assert_eq!(created["effectiveDate"], "2024-06-01T00:00:00Z");
    assert_eq!(created["agreementId"], 5003);
    assert_eq!(cw.emu.writes().posts, 1);
    assert!(cw.ids("/finance/agreements/5003/additions").await.contains(&id));

    let unknown_product = json!({ "product": { "id": 424242 }, "quantity": 1 });
    let response = cw.send(cw.authed(Method::POST, &url).json(&unknown_product)).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(body_json(response).await["errors"][0]["field"], "product");
    let no_product = cw.send(cw.authed(Method::POST, &url).json(&json!({ "quantity": 1 }))).await;
    assert_eq!(no_product.status(), StatusCode::BAD_REQUEST);
    let no_agreement = cw.url("/finance/agreements/4242/additions");
    let response = cw.send(cw.authed(Method::POST, &no_agreement).json(&body)).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(cw.emu.writes().posts, 1);
}

/// C07: 429 with Retry-After in seconds, then as an HTTP-date, mid-pagination.
#[tokio::test]
async fn c07_rate_limits_with_retry_after_seconds_and_date() {
    let cw = Cw::start(companies(30));
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(1_792_567_680);
    cw.emu.inject(FaultRule::new("company/companies", Fault::rate_limited_secs(2)).on_page(2));
    cw.emu.inject(FaultRule::new("company/companies", Fault::rate_limited_until(date)).on_page(3));

    assert_eq!(cw.get("/company/companies?pageSize=10&page=1").await.status(), StatusCode::OK);
    let throttled = cw.get("/company/companies?pageSize=10&page=2").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.headers()["retry-after"], "2");
    assert_eq!(cw.get("/company/companies?pageSize=10&page=2").await.status(), StatusCode::OK);
    let throttled = cw.get("/company/companies?pageSize=10&page=3").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let header = throttled.headers()["retry-after"].to_str().unwrap_or_default().to_owned();
    assert_eq!(httpdate::parse_http_date(&header).ok(), Some(date));
    assert!(header.ends_with(" GMT"), "{header}");
    assert_eq!(cw.get("/company/companies?pageSize=10&page=3").await.status(), StatusCode::OK);

    let faults: Vec<_> = cw.emu.requests().iter().map(|r| r.fault).collect();
    assert_eq!(faults, [None, Some("rate_limited"), None, Some("rate_limited"), None]);

    cw.emu.inject(FaultRule::new("company/**", Fault::RateLimited(RetryAfter::Raw("soon".into()))));
    let odd = cw.get("/company/companies/count").await;
    assert_eq!(odd.headers()["retry-after"], "soon");
}

/// C04: a page that fails with ConnectWise's 500 on every retry.
#[tokio::test]
async fn c04_a_bad_page_fails_every_time() {
    let cw = Cw::start(companies(40));
    cw.emu.inject(FaultRule::new("company/companies", Fault::server_error()).on_page(4).always());
    for page in 1..=3 {
        let path = format!("/company/companies?pageSize=10&orderBy=id%20asc&page={page}");
        assert_eq!(cw.ids(&path).await.len(), 10);
    }
    for _ in 0..3 {
        let response = cw.get("/company/companies?pageSize=10&orderBy=id%20asc&page=4").await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(response).await;
        assert_eq!(body["code"], "ConnectWiseApi");
        assert_eq!(body["message"], "String was not recognized as a valid Boolean.");
    }
    cw.emu.clear_faults();
    assert_eq!(cw.ids("/company/companies?pageSize=10&page=4").await.len(), 10);
}

#[tokio::test]
async fn faults_503_delay_and_latency() {
    let cw = Cw::start(CwData::sample());
    cw.emu.inject(FaultRule::new("procurement/catalog", Fault::ServiceUnavailable).times(2));
    for _ in 0..2 {
        assert_eq!(cw.get("/procurement/catalog").await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(cw.get("/procurement/catalog").await.status(), StatusCode::OK);

    cw.emu.inject(FaultRule::new("procurement/catalog", Fault::Delay(Duration::from_millis(300))));
    let started = Instant::now();
    assert_eq!(cw.get("/procurement/catalog").await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    cw.emu.set_latency(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(cw.get("/company/companies/count").await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    cw.emu.set_latency(Duration::ZERO);

    cw.emu.inject(
        FaultRule::new("company/companies", Fault::ServiceUnavailable).with_query("pageId", "7"),
    );
    assert_eq!(cw.get("/company/companies?pageId=8").await.status(), StatusCode::OK);
    assert_eq!(
        cw.get("/company/companies?pageId=7").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(cw.emu.armed_faults(), 0);
}

#[tokio::test]
async fn faults_truncated_malformed_and_aborted_bodies() {
    let cw = Cw::start(CwData::sample());
    let whole = cw.get("/company/companies").await.bytes().await.unwrap_or_default();

    cw.emu.inject(FaultRule::new("company/companies", Fault::TruncatedBody));
    let truncated = cw.get("/company/companies").await;
    assert_eq!(truncated.status(), StatusCode::OK);
    let bytes = truncated.bytes().await.unwrap_or_default();
    assert_eq!(bytes.len(), whole.len() / 2);
    assert!(whole.starts_with(&bytes));
    assert!(serde_json::from_slice::<Value>(&bytes).is_err());

    cw.emu.inject(FaultRule::new("company/companies", Fault::MalformedBody));
    let malformed = cw.get("/company/companies").await;
    assert_eq!(malformed.status(), StatusCode::OK);
    let text = malformed.text().await.unwrap_or_default();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    cw.emu.inject(FaultRule::new("company/companies", Fault::AbortMidBody));
    let aborted = cw.get("/company/companies").await;
    assert_eq!(aborted.status(), StatusCode::OK);
    assert!(aborted.bytes().await.is_err());

    assert_eq!(cw.get("/company/companies").await.bytes().await.unwrap_or_default(), whole);
}

#[tokio::test]
async fn faults_dropped_connections_before_and_after_processing() {
    let cw = Cw::start(CwData::sample());
    cw.emu.inject(FaultRule::new("company/companies", Fault::DropConnection));
    let dropped = cw.authed(Method::GET, &cw.url("/company/companies")).send().await;
    assert!(dropped.is_err(), "expected a closed connection");
    assert_eq!(cw.get("/company/companies").await.status(), StatusCode::OK);

    // The write lands, but the client never hears so (C18's remote half).
    cw.emu.inject(
        FaultRule::new("finance/agreements/*/additions/*", Fault::DropAfterProcessing)
            .method("PATCH"),
    );
    let url = cw.url("/finance/agreements/5001/additions/2");
    let body = json!([{ "op": "replace", "path": "quantity", "value": 44 }]);
    assert!(cw.authed(Method::PATCH, &url).json(&body).send().await.is_err());
    assert_eq!(cw.emu.addition(5001, 2).map(|a| a.quantity), Some(Decimal::new(44, 0)));
    assert_eq!(cw.emu.writes().patches, 1);

    let statuses: Vec<_> = cw.emu.requests().iter().map(|r| (r.status, r.fault)).collect();
    assert_eq!(
        statuses,
        [(None, Some("drop_connection")), (Some(200), None), (None, Some("drop_after_processing"))]
    );

    cw.emu.inject(FaultRule::new(
        "company/companies",
        Fault::Respond {
            status: 502,
            headers: vec![("content-type".into(), "text/html".into())],
            body: "<html>Bad gateway</html>".into(),
        },
    ));
    let custom = cw.get("/company/companies").await;
    assert_eq!(custom.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(custom.text().await.unwrap_or_default(), "<html>Bad gateway</html>");
}

/// C12: a merge sets deletedFlag without touching lastUpdated, so an incremental query misses it.
#[tokio::test]
async fn c12_deleted_flag_changes_without_moving_last_updated() {
    let cw = Cw::start(CwData::sample());
    let checkpoint = "_info/lastUpdated>[2024-04-01T00:00:00Z]";
    let before = cw.ids(&format!("/company/companies?{}", cond(checkpoint))).await;
    assert!(!before.contains(&sample_ids::CONTOSO));

    assert!(cw.emu.set_company_deleted_flag(sample_ids::CONTOSO, true));
    let company = cw.json(&format!("/company/companies/{}", sample_ids::CONTOSO)).await;
    assert_eq!(company["deletedFlag"], true);
    assert_eq!(company["status"]["name"], "Active");
    assert_eq!(company["_info"]["lastUpdated"], "2024-04-01T00:00:00Z");
    assert_eq!(cw.ids(&format!("/company/companies?{}", cond(checkpoint))).await, before);

    // An ordinary edit does move it.
    assert!(cw.emu.update_company(sample_ids::CONTOSO, |c| c.name = "Contoso Ltd.".into()));
    let after = cw.ids(&format!("/company/companies?{}", cond(checkpoint))).await;
    assert!(after.contains(&sample_ids::CONTOSO));
}

/// C16/C17: a row can be given any stamp, including one behind a client's cursor.
#[tokio::test]
async fn last_updated_can_be_set_explicitly() {
    let cw = Cw::start(CwData::sample());
    let mut late = Company::new(42, "Late", "Late Row");
    late.last_updated = datetime!(2024-05-01 11:59:59.869 UTC);
    cw.emu.add_company(late);
    let rows = cw.json("/company/companies/42").await;
    assert_eq!(rows["_info"]["lastUpdated"], "2024-05-01T11:59:59.869Z");

    let stamp = datetime!(2024-05-01 11:15:07.263 UTC);
    assert!(cw.emu.set_last_updated(RecordRef::Addition { agreement_id: 5001, id: 4 }, stamp));
    let line = cw.json("/finance/agreements/5001/additions/4").await;
    assert_eq!(line["_info"]["lastUpdated"], "2024-05-01T11:15:07.263Z");
    assert!(!cw.emu.set_last_updated(RecordRef::Company(31337), stamp));
}

#[tokio::test]
async fn request_log_keeps_what_was_sent() {
    let cw = Cw::start(CwData::sample());
    let query = format!("{}&pageSize=5", cond("name like \"C*\""));
    cw.get(&format!("/company/companies?{query}")).await;
    cw.get("/finance/agreements/5001/additions?page=1").await;
    cw.patch_quantity(5001, 2, json!(43)).await;

    let log = cw.emu.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/v4_6_release/apis/3.0/company/companies");
    assert_eq!(log[0].api_path, "company/companies");
    assert_eq!(log[0].raw_query, query);
    assert_eq!(log[0].query_param("conditions"), Some("name like \"C*\""));
    assert_eq!(log[0].header("clientid"), Some(cw.emu.client_id()));
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[2].method, "PATCH");
    assert!(log[2].body.contains("\"quantity\""));
    assert!(log[1].received_at <= log[2].received_at);

    assert_eq!(cw.emu.request_count("finance/agreements/*/additions"), 1);
    assert_eq!(cw.emu.request_count("finance/**"), 2);
    let counts = cw.emu.request_counts();
    assert_eq!(counts.get("/v4_6_release/apis/3.0/company/companies"), Some(&1));

    cw.emu.set_logging(false);
    cw.get("/company/companies").await;
    assert_eq!(cw.emu.requests().len(), 3);
    assert_eq!(cw.emu.request_count("company/companies"), 2);
    cw.emu.clear_log();
    assert!(cw.emu.requests().is_empty());
    assert_eq!(cw.emu.request_count("**"), 0);
}

#[tokio::test]
async fn link_origin_can_point_elsewhere() {
    let cw = Cw::start(companies(30));
    cw.emu.set_link_origin(Some("http://other.invalid"));
    let response = cw.get("/company/companies?pageSize=10").await;
    let next = links(&response).remove("next").unwrap_or_default();
    assert_eq!(
        next,
        "http://other.invalid/v4_6_release/apis/3.0/company/companies?pageSize=10&page=2"
    );
    cw.emu.set_link_origin(None);
    let response = cw.get("/company/companies?pageSize=10").await;
    assert!(links(&response)["next"].starts_with(&cw.emu.base_url()));
}

#[tokio::test]
async fn data_changes_while_serving_are_seen_at_once() {
    let cw = Cw::start(CwData::sample());
    assert_eq!(cw.json("/company/companies/count").await, json!({ "count": 8 }));
    cw.emu.add_company(Company::new(90_001, "New", "New Customer"));
    assert_eq!(cw.json("/company/companies/count").await, json!({ "count": 9 }));
    cw.emu.remove_company(90_001);
    assert!(cw.emu.remove_agreement(5001).is_some());
    assert_eq!(cw.get("/finance/agreements/5001/additions").await.status(), StatusCode::NOT_FOUND);
    assert!(cw.emu.addition(5001, 2).is_none());
    assert_eq!(cw.json("/company/companies/count").await, json!({ "count": 8 }));
}

#[tokio::test]
async fn benchmark_sized_data_is_served() {
    let data = CwData::generate(2024, 5_000, 2_000, 7_500, 75_000);
    assert_eq!(data.additions.len(), 75_000);
    let first_agreement = data.agreements[0].id;
    let lines = data.additions.iter().filter(|a| a.agreement_id == first_agreement).count();
    let cw = Cw::start(data);
    assert_eq!(cw.json("/company/companies/count").await, json!({ "count": 5000 }));
    assert_eq!(cw.ids("/company/companies?pageSize=1000&page=5").await.len(), 1000);
    let path = format!("/finance/agreements/{first_agreement}/additions?pageSize=1000");
    assert_eq!(cw.ids(&path).await.len(), lines);
}

/// The emulator runs its own runtime, so a test without one can use it too.
#[test]
fn works_from_synchronous_code() {
    let emu = ConnectWiseEmulator::start(CwData::sample());
    let request = format!(
        "GET /login/companyinfo/{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        emu.company_id(),
        emu.site()
    );
    let mut stream = match std::net::TcpStream::connect(emu.site()) {
        Ok(stream) => stream,
        Err(e) => panic!("connect: {e}"),
    };
    let mut answer = String::new();
    let sent =
        stream.write_all(request.as_bytes()).and_then(|()| stream.read_to_string(&mut answer));
    assert!(sent.is_ok(), "{sent:?}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"Codebase\":\"v4_6_release/\""), "{answer}");
    drop(emu);
}

#[test]
fn the_handle_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ConnectWiseEmulator>();
}
