//! The HTTP face of the Autotask emulator: one handler that reads Autotask's paths ignoring
//! case (`{zone}V1.0/{Entity}/query`, `…/query/next?paging=`, `…/query/count`, `{Entity}/{id}`,
//! `ContractServiceAdjustments`, `Contracts/{id}/ServiceAdjustments`, `ThresholdInformation`,
//! and `…/v1.0/zoneInformation?user=` on any root), and the pipeline every request goes through
//! in Autotask's order: faults, the zone, the credentials (unknown user 500, wrong secret 401,
//! wrong integration code 500: case C10), the hourly threshold, the thread threshold of three
//! requests per integration and endpoint (case C09), then the request itself. Every refusal is
//! `{"errors":[…]}` (or ASP.NET's `{"Message"}` where Autotask sends that); nothing a client
//! sends can make the handler panic.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::faults::{Fault, FaultTarget};
use super::filter;
use super::lock;
use super::render;
use super::request_log::LoggedRequest;
use super::server::{Shared, Slot, THREAD_LIMIT};
use super::state::{Entity, QueryPage, Refusal};
use crate::request_log::{Received, header_pairs};
use crate::respond;

/// The text of the thread-threshold refusal, as Autotask words it.
pub const THREAD_THRESHOLD_TEXT: &str = "Thread Threshold Exceeded - The Autotask API thread \
     threshold of 3 threads has been exceeded. Please wait and retry.";

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// `body` as JSON with `status` (200 when HTTP does not know it).
fn json_response(status: u16, body: &Value) -> Response {
    respond::json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body)
}

/// `{"errors":[message]}` with `status`.
fn errors(status: u16, message: &str) -> Response {
    json_response(status, &json!({ "errors": [message] }))
}

fn refusal(refusal: Refusal) -> Response {
    errors(refusal.status, &refusal.message)
}

/// What a path asks for.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Zone { user: Option<String> },
    Api { zone: String, call: Call },
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Query(Entity),
    Next(Entity, Option<String>),
    Count(Entity),
    Get(Entity, String),
    Create {
        contract_id: Option<String>,
    },
    Threshold,
    /// A path under the zone that names no known resource.
    Missing(String),
}

impl Route {
    fn parse(path: &str, query: &[(String, String)]) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let Some(version) = segments.iter().position(|s| s.eq_ignore_ascii_case("v1.0")) else {
            return Route::Unknown;
        };
        let zone = format!("/{}/", segments[..version].join("/")).replace("//", "/");
        let rest = &segments[version + 1..];
        let is = |segment: &str, name: &str| segment.eq_ignore_ascii_case(name);
        let param = |name: &str| {
            query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
        };
        let call = match rest {
            [name] if is(name, "zoneInformation") => return Route::Zone { user: param("user") },
            [name] if is(name, "ThresholdInformation") => Call::Threshold,
            [name] if is(name, "ContractServiceAdjustments") => Call::Create { contract_id: None },
            [contracts, id, child]
                if is(contracts, "Contracts") && is(child, "ServiceAdjustments") =>
            {
                Call::Create { contract_id: Some((*id).to_owned()) }
            }
            [entity, rest @ ..] => match (Entity::from_path(entity), rest) {
                (Some(entity), [q]) if is(q, "query") => Call::Query(entity),
                (Some(entity), [q, n]) if is(q, "query") && is(n, "next") => {
                    Call::Next(entity, param("paging"))
                }
                (Some(entity), [q, c]) if is(q, "query") && is(c, "count") => Call::Count(entity),
                (Some(entity), [id]) => Call::Get(entity, (*id).to_owned()),
                _ => Call::Missing(rest.join("/")),
            },
            [] => Call::Missing(String::new()),
        };
        Route::Api { zone, call }
    }

    /// The entity name for the log, the fault rules and the thread threshold.
    fn entity(&self, path: &str) -> String {
        match self {
            Route::Zone { .. } => "zoneInformation".to_owned(),
            Route::Api { call, .. } => match call {
                Call::Query(e) | Call::Next(e, _) | Call::Count(e) | Call::Get(e, _) => {
                    e.name().to_owned()
                }
                Call::Create { .. } => Entity::ContractServiceAdjustments.name().to_owned(),
                Call::Threshold => "ThresholdInformation".to_owned(),
                Call::Missing(_) => path.trim_start_matches('/').to_owned(),
            },
            Route::Unknown => path.trim_start_matches('/').to_owned(),
        }
    }

    fn continuation(&self) -> bool {
        matches!(self, Route::Api { call: Call::Next(..), .. })
    }
}

/// Everything that happens to a request: see the module doc.
async fn handle(AxState(shared): AxState<Arc<Shared>>, request: Request) -> Response {
    let received_at = OffsetDateTime::now_utc();
    let received = Received::read(request).await;
    let Received { parts, body, path, query, .. } = &received;
    let route = Route::parse(path, query);
    let entity = route.entity(path);
    let mut entry = LoggedRequest {
        method: received.method().to_owned(),
        path: path.clone(),
        query: query.clone(),
        headers: header_pairs(&parts.headers),
        body: received.body_text(),
        entity: entity.clone(),
        continuation: route.continuation(),
        status: None,
        fault: None,
        received_at,
    };

    let target = FaultTarget { entity: &entity, continuation: route.continuation() };
    let fault = shared.faults.take(parts.method.as_str(), &target);
    entry.fault = fault.as_ref().map(Fault::name);
    if let Some(response) = fault.as_ref().and_then(immediate) {
        entry.status = Some(response.status().as_u16());
        shared.log.record(entry);
        return response;
    }
    if let Some(Fault::Delay(delay)) = &fault {
        tokio::time::sleep(*delay).await;
    }
    let latency = shared.latency.get();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let (response, slot) =
        serve(&shared, &parts.method, &parts.headers, &route, &entity, body).await;
    let response = match fault {
        Some(Fault::TruncatedBody) => respond::first_half(response).await,
        Some(Fault::ServerErrorAfterProcessing) => errors(500, "An unexpected error has occurred."),
        _ => response,
    };
    drop(slot);
    entry.status = Some(response.status().as_u16());
    shared.log.record(entry);
    response
}

/// The answer for a fault that answers instead of the API, if `fault` is one.
fn immediate(fault: &Fault) -> Option<Response> {
    let response = match fault {
        Fault::RateLimited { retry_after } => {
            let mut response = errors(429, "Too many requests; retry after the period given.");
            if let Some(value) =
                retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::ServerError { message } => errors(500, message),
        Fault::ThreadThreshold => errors(429, THREAD_THRESHOLD_TEXT),
        Fault::Respond { status, body } => respond::verbatim(*status, body),
        _ => return None,
    };
    Some(response)
}

/// Sends the first half of the body only.
/// The zone, the credentials, the thresholds, then the call. The slot is held until the
/// answer is sent.
async fn serve(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    route: &Route,
    entity: &str,
    body: &Bytes,
) -> (Response, Option<Slot>) {
    let (zone, call) = match route {
        Route::Zone { user } => return (zone_information(shared, headers, user.as_deref()), None),
        Route::Unknown => return (errors(404, "The requested resource was not found."), None),
        Route::Api { zone, call } => (zone, call),
    };
    if !zone.eq_ignore_ascii_case(&shared.zone_path()) {
        let denied = json!({ "Message": "Authorization has been denied for this request." });
        return (json_response(401, &denied), None);
    }
    if let Some(response) = refuse_credentials(shared, headers) {
        return (response, None);
    }
    if let Err(limit) = shared.count_request() {
        let message = format!(
            "The request threshold of {limit} requests per hour has been exceeded for this \
             integration."
        );
        return (errors(429, &message), None);
    }
    let code = header_value(headers, "ApiIntegrationCode").unwrap_or_default();
    let Some(slot) = shared.acquire(&code, entity) else {
        return (errors(429, THREAD_THRESHOLD_TEXT), None);
    };
    shared.wait_if_paused().await;

    let origin = shared.origin.for_request(headers);
    let response = call_api(shared, method, call, body, &origin);
    (response, Some(slot))
}

fn header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The refusal of bad credentials, checked in Autotask's order: the user, then the secret,
/// then the integration code (case C10).
fn refuse_credentials(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let creds = &shared.credentials;
    let user = header_value(headers, "UserName").unwrap_or_default();
    if !user.eq_ignore_ascii_case(&creds.username) {
        return Some(errors(
            500,
            "Unable to authenticate: the user name or password is incorrect.",
        ));
    }
    if header_value(headers, "Secret").as_deref() != Some(creds.secret.as_str()) {
        let denied = json!({ "Message": "Authorization has been denied for this request." });
        return Some(json_response(401, &denied));
    }
    if header_value(headers, "ApiIntegrationCode").as_deref() != Some(&creds.integration_code) {
        return Some(errors(500, "IntegrationCode is invalid."));
    }
    None
}

/// `GET …/v1.0/zoneInformation?user=`: unauthenticated and exempt from the thread threshold.
fn zone_information(shared: &Shared, headers: &HeaderMap, user: Option<&str>) -> Response {
    let known = user.is_some_and(|u| u.eq_ignore_ascii_case(&shared.credentials.username));
    if !known {
        return errors(500, "Zone information could not be determined");
    }
    let origin = shared.origin.for_request(headers);
    json_response(
        200,
        &json!({
            "zoneName": "Emulated Zone",
            "url": format!("{origin}{}", shared.zone_path()),
            "webUrl": format!("{origin}/"),
            "ci": 29_683_453
        }),
    )
}

fn call_api(shared: &Shared, method: &Method, call: &Call, body: &Bytes, origin: &str) -> Response {
    let post = method == Method::POST;
    let not_allowed = || {
        let message = format!("The requested resource does not support http method '{method}'.");
        json_response(405, &json!({ "Message": message }))
    };
    let parsed = || -> Result<Value, String> {
        serde_json::from_slice(body).map_err(|e| format!("The request body is not valid JSON: {e}"))
    };
    match call {
        Call::Query(entity) | Call::Next(entity, _) | Call::Count(entity) if !post => {
            let _ = entity;
            not_allowed()
        }
        Call::Query(entity) => {
            let query = match parsed() {
                Ok(query) => query,
                Err(message) => return errors(400, &message),
            };
            let result = lock(&shared.state).query(*entity, &query);
            page_response(shared, origin, *entity, result)
        }
        Call::Next(entity, token) => {
            let query = match parsed() {
                Ok(query) => query,
                Err(message) => return errors(400, &message),
            };
            let Some(token) = token else {
                return errors(400, "The paging token is missing.");
            };
            let result = lock(&shared.state).continue_query(*entity, token, &query);
            page_response(shared, origin, *entity, result)
        }
        Call::Count(entity) => {
            let mut query = match parsed() {
                Ok(query) => query,
                Err(message) => return errors(400, &message),
            };
            if let Some(object) = query.as_object_mut() {
                object.insert("MaxRecords".to_owned(), json!(500));
                object.remove("IncludeFields");
            }
            let mut state = lock(&shared.state);
            let mut count = 0;
            let mut result = state.query(*entity, &query);
            loop {
                match result {
                    Ok(QueryPage { items, next_token: Some(token), .. }) => {
                        count += items.len();
                        result = state.continue_query(*entity, &token, &query);
                    }
                    Ok(QueryPage { items, next_token: None, .. }) => {
                        count += items.len();
                        break json_response(200, &json!({ "queryCount": count }));
                    }
                    Err(e) => break refusal(e),
                }
            }
        }
        Call::Get(entity, id) => {
            if method != Method::GET {
                return not_allowed();
            }
            let item = id.parse::<i64>().ok().and_then(|id| lock(&shared.state).get(*entity, id));
            json_response(200, &json!({ "item": item }))
        }
        Call::Create { contract_id } => {
            if !post {
                return not_allowed();
            }
            match parsed() {
                Ok(body) => create_adjustment(shared, contract_id.as_deref(), &body),
                Err(message) => errors(400, &message),
            }
        }
        Call::Threshold => {
            let used = shared.requests_this_hour();
            json_response(
                200,
                &json!({
                    "externalRequestThreshold": 10_000,
                    "requestThresholdTimeframe": 60,
                    "currentTimeframeRequestCount": used,
                    "threadThreshold": THREAD_LIMIT
                }),
            )
        }
        Call::Missing(what) => errors(404, &format!("The resource '{what}' was not found.")),
    }
}

fn page_response(
    shared: &Shared,
    origin: &str,
    entity: Entity,
    result: Result<QueryPage, Refusal>,
) -> Response {
    match result {
        Ok(page) => {
            let next = page.next_token.map(|token| {
                format!(
                    "{origin}{}V1.0/{}/query/next?paging={token}",
                    shared.zone_path(),
                    entity.name()
                )
            });
            json_response(200, &render::page(page.items, page.max_records, next))
        }
        Err(e) => refusal(e),
    }
}

/// `POST ContractServiceAdjustments` (or `Contracts/{id}/ServiceAdjustments`):
/// `{contractID, serviceID | contractServiceID, unitChange, effectiveDate}` → `{"itemId"}`.
fn create_adjustment(shared: &Shared, path_contract: Option<&str>, body: &Value) -> Response {
    let Value::Object(fields) = body else {
        return errors(400, "The request body must be a ContractServiceAdjustment object.");
    };
    let int = |name: &str| filter::get(fields, name).and_then(Value::as_i64);
    let contract_id = match path_contract {
        Some(text) => text.parse::<i64>().ok(),
        None => int("contractID"),
    };
    let Some(contract_id) = contract_id else {
        return errors(400, "contractID is required.");
    };
    let unit_change = match filter::get(fields, "unitChange") {
        Some(value) => match value.as_i64() {
            Some(change) => change,
            None => return errors(400, "unitChange must be a whole number."),
        },
        None => return errors(400, "unitChange is required."),
    };
    let effective = filter::get(fields, "effectiveDate")
        .and_then(Value::as_str)
        .and_then(filter::instant)
        .map(|at| at.date());
    let Some(effective) = effective else {
        return errors(400, "effectiveDate is required and must be a date.");
    };
    let contract_service_id = int("contractServiceID");
    let mut state = lock(&shared.state);
    let service_id = match (int("serviceID"), contract_service_id) {
        (Some(service), _) => service,
        (None, Some(cs)) => match state.contract_services.get(&cs) {
            Some(line) => line.service_id,
            None => return errors(400, &format!("Contract service {cs} does not exist.")),
        },
        (None, None) => return errors(400, "serviceID is required."),
    };
    let now = OffsetDateTime::now_utc();
    match state.adjust(contract_id, service_id, contract_service_id, unit_change, effective, now) {
        Ok(id) => json_response(200, &json!({ "itemId": id })),
        Err(e) => refusal(e),
    }
}
