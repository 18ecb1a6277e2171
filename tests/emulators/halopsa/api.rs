//! The HTTP face of the HaloPSA emulator: one handler that every request goes through (fault
//! injection, the bearer check, routing, the request log), and the endpoints: `GET
//! /api/authinfo`, `POST /auth/token`, the four listings (`/api/client`, `/api/item`,
//! `/api/RecurringInvoice`, `/api/clientcontract`) with Halo's paging (`pageinate`,
//! `page_size`, `page_no`, `record_count`, never more than 100 rows a page), one recurring
//! invoice, and the invoice upsert. Paths compare without regard to case, as Halo's do. The
//! data lock is never held across an await; nothing a client sends can make it panic.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use url::form_urlencoded;

use super::faults::Fault;
use super::lock;
use super::model::HaloData;
use super::render;
use super::request_log::LoggedRequest;
use super::server::Shared;
use super::tokens::Refusal;
use super::upsert;
use crate::request_log::{Received, first_named, header_pairs};
use crate::respond::{first_half, json_response, verbatim};

/// The most rows Halo serves in one page, whatever `page_size` asks (case C01).
pub const PAGE_CAP: usize = 100;

/// The page size when a paginated request names none.
pub const DEFAULT_PAGE_SIZE: usize = 50;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A request as the handlers need it.
struct Asked<'a> {
    method: &'a str,
    /// Lower-cased path segments.
    segments: Vec<String>,
    query: &'a [(String, String)],
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Asked<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        first_named(self.query, name)
    }

    fn flag(&self, name: &str) -> Option<bool> {
        self.param(name).map(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received = Received::read(request).await;
    let Received { parts, body, path, query, .. } = &received;
    let method = received.method().to_owned();
    let asked = Asked {
        method: &method,
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        query,
        headers: &parts.headers,
        body,
    };
    let page = asked.param("page_no").and_then(|p| p.trim().parse().ok()).unwrap_or(1);
    let fault = shared.faults.take(&method, &(path.trim_start_matches('/'), page));

    let response = match &fault {
        Some(Fault::RateLimited { retry_after_seconds }) => {
            let mut response = text(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            if let Some(seconds) = retry_after_seconds {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            response
        }
        Some(Fault::ServerError(status)) => text(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "An error has occurred.",
        ),
        Some(Fault::Unauthorized) => unauthorized(),
        Some(Fault::Respond { status, body }) => verbatim(*status, body),
        Some(Fault::TruncatedBody) => first_half(route(&shared, &asked)).await,
        Some(Fault::CountMismatch(delta)) => {
            let whole = route(&shared, &asked);
            let (parts, body) = whole.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
            Response::from_parts(parts, Body::from(shift_count(&bytes, *delta)))
        }
        None => route(&shared, &asked),
    };

    shared.log.record(LoggedRequest {
        method,
        path: path.clone(),
        query: query.clone(),
        headers: header_pairs(&parts.headers),
        body: received.body_text(),
        status: response.status().as_u16(),
        fault: fault.as_ref().map(Fault::name),
    });
    response
}

/// `record_count` moved by `delta` in a listing's body; any other body unchanged.
fn shift_count(bytes: &Bytes, delta: i64) -> Bytes {
    let Ok(mut body) = serde_json::from_slice::<Value>(bytes) else { return bytes.clone() };
    let Some(count) = body.get("record_count").and_then(Value::as_i64) else {
        return bytes.clone();
    };
    body["record_count"] = json!((count + delta).max(0));
    Bytes::from(body.to_string())
}

fn route(shared: &Shared, asked: &Asked<'_>) -> Response {
    let segments: Vec<&str> = asked.segments.iter().map(String::as_str).collect();
    match (asked.method, segments.as_slice()) {
        ("GET", ["api", "authinfo"]) => authinfo(shared, asked),
        ("POST", ["auth", "token"]) => token(shared, asked),
        (_, ["api", ..]) => {
            if let Some(refusal) = refuse_bearer(shared, asked.headers) {
                return refusal;
            }
            api(shared, asked, &segments[1..])
        }
        _ => not_found(),
    }
}

fn api(shared: &Shared, asked: &Asked<'_>, path: &[&str]) -> Response {
    match (asked.method, path) {
        ("GET", ["client"]) => listing(shared, asked, Listing::Clients),
        ("GET", ["item"]) => listing(shared, asked, Listing::Items),
        ("GET", ["recurringinvoice"]) => listing(shared, asked, Listing::Invoices),
        ("GET", ["clientcontract"]) => listing(shared, asked, Listing::Contracts),
        ("GET", ["client", id]) => one_client(shared, id),
        ("GET", ["recurringinvoice", id]) => one_invoice(shared, id),
        ("POST", ["recurringinvoice"]) => upsert_invoices(shared, asked),
        (_, ["client" | "item" | "recurringinvoice" | "clientcontract", ..]) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "The requested resource does not support this method",
        ),
        _ => not_found(),
    }
}

fn text(status: StatusCode, message: &str) -> Response {
    json_response(status, &Value::String(message.to_owned()))
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "No HTTP resource was found that matches the request URI")
}

fn unauthorized() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": error, "error_description": description }),
    )
}

/// `http://host:port` as the client addressed the emulator.
fn origin(shared: &Shared, headers: &HeaderMap) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("http://{host}"),
        _ => format!("http://{}", shared.addr),
    }
}

/// Names the authorisation server: this emulator, as the client addressed it.
fn authinfo(shared: &Shared, asked: &Asked<'_>) -> Response {
    let auth_url = format!("{}/auth", origin(shared, asked.headers));
    json_response(StatusCode::OK, &json!({ "auth_url": auth_url }))
}

fn token(shared: &Shared, asked: &Asked<'_>) -> Response {
    let form_type =
        asked.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
        });
    if !form_type {
        return oauth_error("invalid_request", "the token request must be form-encoded");
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(asked.body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let credentials = &shared.credentials;
    if field("grant_type") != Some("client_credentials") {
        return oauth_error("unsupported_grant_type", "grant_type must be client_credentials");
    }
    if let Some(tenant) = &credentials.tenant
        && asked.param("tenant") != Some(tenant.as_str())
    {
        return oauth_error("invalid_request", "unknown tenant");
    }
    if field("client_id") != Some(credentials.client_id.as_str())
        || field("client_secret") != Some(credentials.client_secret.as_str())
    {
        return oauth_error("invalid_client", "the client id or secret is not valid");
    }
    if !field("scope").is_some_and(|scope| scope.split_whitespace().any(|s| s == "all")) {
        return oauth_error("invalid_scope", "scope must include all");
    }
    let (token, policy) = shared.tokens.issue();
    json_response(
        StatusCode::OK,
        &json!({
            "scope": "all",
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": policy.lifetime.as_secs(),
            "refresh_token": "",
        }),
    )
}

/// The 401 for a request without a live bearer token, or `None` when the token is good.
fn refuse_bearer(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(token) = value.strip_prefix("Bearer ").map(str::trim) else {
        return Some(unauthorized());
    };
    match shared.tokens.check(token) {
        Ok(()) => None,
        Err(Refusal::Unknown | Refusal::Expired) => Some(unauthorized()),
    }
}

#[derive(Clone, Copy)]
enum Listing {
    Clients,
    Items,
    Invoices,
    Contracts,
}

fn listing(shared: &Shared, asked: &Asked<'_>, listing: Listing) -> Response {
    let include_inactive = asked.flag("includeinactive").unwrap_or(false);
    let include_active = asked.flag("includeactive").unwrap_or(true);
    let keep = |inactive: bool| if inactive { include_inactive } else { include_active };
    let (key, rows) = {
        let data = lock(&shared.data);
        let name_of = |id: i64| client_name(&data, id);
        match listing {
            Listing::Clients => {
                let mut rows: Vec<_> = data.clients.iter().filter(|c| keep(c.inactive)).collect();
                rows.sort_by_key(|c| c.id);
                ("clients", rows.into_iter().map(render::client).collect::<Vec<_>>())
            }
            Listing::Items => {
                let mut rows: Vec<_> = data.items.iter().filter(|i| keep(i.inactive)).collect();
                rows.sort_by_key(|i| i.id);
                ("items", rows.into_iter().map(render::item).collect())
            }
            Listing::Invoices => {
                let with_lines = asked.flag("includelines").unwrap_or(false);
                let mut rows: Vec<_> = data.invoices.iter().filter(|i| keep(i.disabled)).collect();
                rows.sort_by_key(|i| i.id);
                let rows =
                    rows.into_iter().map(|i| render::invoice(i, &name_of(i.client_id), with_lines));
                ("invoices", rows.collect())
            }
            Listing::Contracts => {
                let mut rows: Vec<_> = data.contracts.iter().collect();
                rows.sort_by_key(|c| c.id);
                let rows = rows.into_iter().map(|c| render::contract(c, &name_of(c.client_id)));
                ("contracts", rows.collect())
            }
        }
    };

    let record_count = rows.len();
    if !asked.flag("pageinate").unwrap_or(false) {
        return json_response(StatusCode::OK, &json!({ "record_count": record_count, key: rows }));
    }
    let size = match asked.param("page_size").map(|s| s.trim().parse::<usize>()) {
        None => DEFAULT_PAGE_SIZE,
        Some(Ok(size)) if size >= 1 => size,
        Some(_) => return text(StatusCode::BAD_REQUEST, "page_size must be a positive integer"),
    };
    let page = match asked.param("page_no").map(|s| s.trim().parse::<usize>()) {
        None => 1,
        Some(Ok(page)) if page >= 1 => page,
        Some(_) => return text(StatusCode::BAD_REQUEST, "page_no must be a positive integer"),
    };
    // Halo serves at most 100 rows whatever was asked, and says nothing about it.
    let served = size.min(PAGE_CAP);
    let start = (page - 1).saturating_mul(served);
    let slice: Vec<Value> = rows.into_iter().skip(start).take(served).collect();
    json_response(
        StatusCode::OK,
        &json!({ "page_no": page, "page_size": served, "record_count": record_count, key: slice }),
    )
}

fn client_name(data: &HaloData, id: i64) -> String {
    data.clients.iter().find(|c| c.id == id).map(|c| c.name.clone()).unwrap_or_default()
}

fn parse_id(id: &str) -> Option<i64> {
    id.parse().ok()
}

fn one_client(shared: &Shared, id: &str) -> Response {
    let data = lock(&shared.data);
    match parse_id(id).and_then(|id| data.clients.iter().find(|c| c.id == id)) {
        Some(client) => json_response(StatusCode::OK, &render::client(client)),
        None => text(StatusCode::NOT_FOUND, &format!("Client {id} not found")),
    }
}

fn one_invoice(shared: &Shared, id: &str) -> Response {
    let data = lock(&shared.data);
    match parse_id(id).and_then(|id| data.invoices.iter().find(|i| i.id == id)) {
        Some(invoice) => {
            let name = client_name(&data, invoice.client_id);
            json_response(StatusCode::OK, &render::invoice(invoice, &name, true))
        }
        None => text(StatusCode::NOT_FOUND, &format!("Recurring invoice {id} not found")),
    }
}

fn upsert_invoices(shared: &Shared, asked: &Asked<'_>) -> Response {
    let body: Value = match serde_json::from_slice(asked.body) {
        Ok(body) => body,
        Err(error) => {
            return text(StatusCode::BAD_REQUEST, &format!("The request is invalid: {error}"));
        }
    };
    let now = shared.now();
    let mut data = lock(&shared.data);
    let written = match upsert::apply(&mut data, &body, &now) {
        Ok(written) => written,
        Err(upsert::Refused(message)) => return text(StatusCode::BAD_REQUEST, &message),
    };
    *lock(&shared.upserts) += 1;
    let rendered: Vec<Value> = written
        .iter()
        .filter_map(|id| data.invoices.iter().find(|i| i.id == *id))
        .map(|invoice| render::invoice(invoice, &client_name(&data, invoice.client_id), true))
        .collect();
    match rendered.as_slice() {
        [one] => json_response(StatusCode::CREATED, one),
        _ => json_response(StatusCode::CREATED, &Value::Array(rendered)),
    }
}
