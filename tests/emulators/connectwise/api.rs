//! The HTTP face of the emulator: the axum router with ConnectWise's paths, and the pipeline
//! every request goes through (latency, request log, fault injection, codebase and
//! authentication checks) before its handler runs. Handlers read and write `State` under its
//! lock and never hold it across an await. Every refusal is a ConnectWise-shaped body; nothing
//! a client sends can make a handler panic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, http};
use base64::Engine;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::faults::{Fault, FaultTarget, RetryAfter};
use super::fields::Record;
use super::lock;
use super::model::{Addition, Agreement, CatalogItem, Company};
use super::query::{ListRequest, QueryParams, link_header};
use super::render::{RenderCtx, ToJson, project};
use super::request_log::LoggedRequest;
use super::server::Shared;
use super::state::State;
use super::timestamps::now_millis;
use super::writes;
use crate::request_log::{Received, header_pairs};
use crate::respond::{first_half, json_response, verbatim};
use crate::serve::KillSwitch;

/// What the pipeline learnt about a request, handed to its handler.
pub struct RequestInfo {
    /// The path as sent, for `Link` URLs.
    path: String,
    raw_query: String,
    query: Vec<(String, String)>,
    forward_only: bool,
    /// `http://host:port` as the client addressed the emulator (or the configured override).
    origin: String,
    /// `{origin}/{codebase}apis/3.0`, for `_href` links.
    api_base: String,
}

type Info = Extension<Arc<RequestInfo>>;
type Shr = AxState<Arc<Shared>>;

pub fn router(shared: Arc<Shared>) -> Router {
    let api = "/{codebase}/apis/3.0";
    Router::new()
        .route("/login/companyinfo/{company_id}", get(company_info))
        .route(&format!("{api}/company/companies"), get(list::<Company>))
        .route(&format!("{api}/company/companies/count"), get(count::<Company>))
        .route(&format!("{api}/company/companies/{{id}}"), get(get_one::<Company>))
        .route(&format!("{api}/procurement/catalog"), get(list::<CatalogItem>))
        .route(&format!("{api}/procurement/catalog/count"), get(count::<CatalogItem>))
        .route(&format!("{api}/procurement/catalog/{{id}}"), get(get_one::<CatalogItem>))
        .route(&format!("{api}/finance/agreements"), get(list::<Agreement>))
        .route(&format!("{api}/finance/agreements/count"), get(count::<Agreement>))
        .route(&format!("{api}/finance/agreements/{{id}}"), get(get_one::<Agreement>))
        .route(
            &format!("{api}/finance/agreements/{{id}}/additions"),
            get(list_additions).post(create_addition),
        )
        .route(&format!("{api}/finance/agreements/{{id}}/additions/count"), get(count_additions))
        .route(
            &format!("{api}/finance/agreements/{{id}}/additions/{{addition_id}}"),
            get(get_addition).patch(patch_addition),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), pipeline))
        .with_state(shared)
}

/// The path relative to the API root (`company/companies`) when `path` is under this site's
/// codebase, the path without its leading `/` for other endpoints, or `Err` with the codebase
/// asked for when it is not this site's.
fn api_path(path: &str, codebase: &str) -> Result<String, String> {
    let trimmed = path.trim_start_matches('/');
    let mut segments = trimmed.splitn(4, '/');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some(cb), Some("apis"), Some("3.0"), rest) => {
            if cb.eq_ignore_ascii_case(codebase.trim_end_matches('/')) {
                Ok(rest.unwrap_or_default().to_owned())
            } else {
                Err(cb.to_owned())
            }
        }
        _ => Ok(trimmed.to_owned()),
    }
}

/// Everything that happens around a handler: see the module doc.
async fn pipeline(AxState(shared): Shr, request: Request, next: Next) -> Response {
    let received_at = now_millis();
    let latency = shared.latency.get();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let received = Received::read(request).await;
    let codebase = shared.codebase.clone();
    let relative = api_path(&received.path, &codebase);
    let relative_text = match &relative {
        Ok(p) => p.clone(),
        Err(_) => received.path.trim_start_matches('/').to_owned(),
    };
    let mut entry = LoggedRequest {
        method: received.method().to_owned(),
        path: received.path.clone(),
        api_path: relative_text.clone(),
        raw_query: received.raw_query.clone(),
        query: received.query.clone(),
        headers: header_pairs(&received.parts.headers),
        body: received.body_text(),
        status: None,
        fault: None,
        received_at,
    };
    let Received { mut parts, body, path, raw_query, query } = received;

    let page =
        QueryParams::new(&query).get("page").and_then(|p| p.trim().parse().ok()).unwrap_or(1);
    let target = FaultTarget { path: &relative_text, page, query: &query };
    let fault = shared.faults.take(parts.method.as_str(), &target);
    entry.fault = fault.as_ref().map(Fault::name);
    let kill = parts.extensions.get::<KillSwitch>().cloned();

    if let Some(response) = fault.as_ref().and_then(immediate_response) {
        entry.status = Some(response.status().as_u16());
        shared.log.record(entry);
        return response;
    }
    match &fault {
        Some(Fault::DropConnection) => {
            shared.log.record(entry);
            return close_without_answer(kill).await;
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(*delay).await,
        _ => {}
    }

    let refusal = match &relative {
        Err(asked) => Some(ApiError::not_found(format!(
            "Codebase '{asked}/' is not served here; this site uses '{codebase}'"
        ))),
        Ok(_) if path.starts_with("/login/") => None,
        Ok(_) => check_auth(&parts.headers, &shared).err(),
    };
    if let Some(refusal) = refusal {
        let response = refusal.into_response();
        entry.status = Some(response.status().as_u16());
        shared.log.record(entry);
        return response;
    }

    let origin = shared.origin.for_request(&parts.headers);
    let forward_only = parts
        .headers
        .get("pagination-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("forward-only"));
    let info = RequestInfo {
        api_base: format!("{origin}/{codebase}apis/3.0"),
        origin,
        path,
        raw_query,
        query,
        forward_only,
    };
    parts.extensions.insert(Arc::new(info));
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    entry.status = Some(response.status().as_u16());

    match fault {
        Some(Fault::DropAfterProcessing) => {
            entry.status = None;
            shared.log.record(entry);
            close_without_answer(kill).await
        }
        Some(Fault::TruncatedBody) => {
            shared.log.record(entry);
            first_half(response).await
        }
        Some(Fault::MalformedBody) => {
            shared.log.record(entry);
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let malformed =
                r#"[{"id":250,"identifier":"Contoso","name":"Contoso Ltd",,"deletedFlag":fals"#;
            Response::from_parts(parts, Body::from(malformed))
        }
        Some(Fault::AbortMidBody) => {
            shared.log.record(entry);
            abort_mid_body(response).await
        }
        _ => {
            shared.log.record(entry);
            response
        }
    }
}

/// The response for a fault that answers instead of the handler, if `fault` is one.
fn immediate_response(fault: &Fault) -> Option<Response> {
    let response = match fault {
        Fault::RateLimited(retry_after) => {
            let body = Fault::error_body(
                "TooManyRequests",
                "Rate limit exceeded: too many requests, retry after the period given",
            );
            let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
            let value = match retry_after {
                RetryAfter::Seconds(s) => Some(s.to_string()),
                RetryAfter::Date(at) => Some(httpdate::fmt_http_date(*at)),
                RetryAfter::Raw(raw) => Some(raw.clone()),
                RetryAfter::Absent => None,
            };
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Fault::ApiError { status, code, message } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, &Fault::error_body(code, message))
        }
        Fault::ServiceUnavailable => {
            let mut response = Response::new(Body::from(
                "<html><head><title>503 Service Temporarily Unavailable</title></head><body>\
                 <h1>503 Service Temporarily Unavailable</h1></body></html>",
            ));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }
        Fault::Respond { status, headers, body } => {
            let mut response = verbatim(*status, body);
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) =
                    (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
                {
                    response.headers_mut().append(name, value);
                }
            }
            response
        }
        _ => return None,
    };
    Some(response)
}

/// Closes the client's connection without answering.
async fn close_without_answer(kill: Option<KillSwitch>) -> Response {
    match kill {
        Some(kill) => {
            kill.trigger();
            std::future::pending().await
        }
        // Not served through the emulator's own accept loop: the nearest thing is a bare 502.
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Announces the whole body, sends half of it, then fails the stream so the connection closes.
/// The failure waits a moment so that the status line, headers and first half are flushed first.
async fn abort_mid_body(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let head = futures_util::stream::iter([Ok::<Bytes, std::io::Error>(half)]);
    let tail = futures_util::stream::once(async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "emulated abort"))
    });
    Response::from_parts(parts, Body::from_stream(head.chain(tail)))
}

/// Checks `Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")` and `clientId`.
fn check_auth(headers: &HeaderMap, shared: &Shared) -> Result<(), ApiError> {
    let creds = &shared.credentials;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("Authorization header is missing"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("Authorization header is not readable"))?;
    let (scheme, encoded) = authorization.trim().split_once(' ').unwrap_or(("", ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(ApiError::unauthorized("Authorization must use the Basic scheme"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| ApiError::unauthorized("Authorization header is not valid base64"))?;
    let (user, private_key) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    let (company_id, public_key) = user.split_once('+').unwrap_or(("", user));
    let valid = company_id.eq_ignore_ascii_case(&creds.company_id)
        && public_key == creds.public_key
        && private_key == creds.private_key;
    if !valid {
        return Err(ApiError::unauthorized(
            "Authentication failed: check the company id, public key and private key",
        ));
    }
    match headers.get("clientid").and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("") => Err(ApiError::unauthorized(
            "A clientId header is required; see https://developer.connectwise.com/ClientID",
        )),
        Some(client_id) if client_id != creds.client_id => {
            Err(ApiError::unauthorized("The clientId is not valid"))
        }
        Some(_) => Ok(()),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("The requested resource was not found")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("The requested resource does not support http method '{method}'."),
    )
}

async fn company_info(
    AxState(shared): Shr,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let asked = params.get("company_id").map(String::as_str).unwrap_or_default();
    if !asked.eq_ignore_ascii_case(&shared.credentials.company_id) {
        return Err(ApiError::not_found(format!("Company '{asked}' was not found")));
    }
    let body = json!({
        "CompanyName": "Tally Emulated MSP",
        "Codebase": shared.codebase,
        "VersionCode": "v2025.1",
        "VersionNumber": "v4.6.102345",
        "CompanyID": shared.credentials.company_id,
        "IsCloud": true,
    });
    Ok(json_response(StatusCode::OK, &body))
}

fn id_param(params: &HashMap<String, String>, name: &str) -> Result<i64, ApiError> {
    let text = params.get(name).map(String::as_str).unwrap_or_default();
    text.parse().map_err(|_| ApiError::bad_request(format!("'{text}' is not a valid id")))
}

/// Serves one page of a listing: `select` yields the candidate rows in id order, or `None`
/// when their parent does not exist.
fn list_response<T, F>(shared: &Shared, info: &RequestInfo, select: F) -> Result<Response, ApiError>
where
    T: Record + ToJson,
    F: for<'s> FnOnce(&'s State) -> Result<Box<dyn Iterator<Item = &'s T> + 's>, ApiError>,
{
    let request = ListRequest::<T>::parse(&QueryParams::new(&info.query), info.forward_only)?;
    let state = lock(&shared.state);
    let rows = select(&state)?;
    let page = request.page(rows, &state);
    let ctx = RenderCtx { api_base: &info.api_base, state: &state };
    let items: Vec<Value> = page
        .rows
        .iter()
        .map(|row| {
            let value = row.to_json(&ctx);
            match &request.fields {
                Some(fields) => project(value, fields),
                None => value,
            }
        })
        .collect();
    let link = link_header(&info.origin, &info.path, &info.raw_query, &page.links);
    drop(state);

    let mut response = json_response(StatusCode::OK, &Value::Array(items));
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, value);
    }
    Ok(response)
}

fn count_response<T, F>(
    shared: &Shared,
    info: &RequestInfo,
    select: F,
) -> Result<Response, ApiError>
where
    T: Record,
    F: for<'s> FnOnce(&'s State) -> Result<Box<dyn Iterator<Item = &'s T> + 's>, ApiError>,
{
    let request = ListRequest::<T>::parse(&QueryParams::new(&info.query), false)?;
    let state = lock(&shared.state);
    let count = request.count(select(&state)?, &state);
    Ok(json_response(StatusCode::OK, &json!({ "count": count })))
}

fn one_response<T: ToJson>(
    shared: &Shared,
    info: &RequestInfo,
    status: StatusCode,
    find: impl FnOnce(&State) -> Option<&T>,
    missing: impl FnOnce() -> ApiError,
) -> Result<Response, ApiError> {
    let state = lock(&shared.state);
    let record = find(&state).ok_or_else(missing)?;
    let mut value = record.to_json(&RenderCtx { api_base: &info.api_base, state: &state });
    if let Some(fields) = QueryParams::new(&info.query).get("fields").filter(|f| f.trim() != "*") {
        let fields: Vec<String> = fields.split(',').map(|s| s.trim().to_owned()).collect();
        value = project(value, &fields);
    }
    Ok(json_response(status, &value))
}

fn boxed<'s, T: 's>(
    rows: impl Iterator<Item = &'s T> + 's,
) -> Result<Box<dyn Iterator<Item = &'s T> + 's>, ApiError> {
    Ok(Box::new(rows))
}

/// A record kind served at its own path: listed, counted and read by id.
trait TopLevel: Record + ToJson {
    /// The name a missing record is reported under (`Company with id 7 not found`).
    const NAME: &'static str;

    /// Every record of the kind, by id.
    fn table(state: &State) -> &BTreeMap<i64, Self>;
}

impl TopLevel for Company {
    const NAME: &'static str = "Company";

    fn table(state: &State) -> &BTreeMap<i64, Company> {
        &state.companies
    }
}

impl TopLevel for CatalogItem {
    const NAME: &'static str = "CatalogItem";

    fn table(state: &State) -> &BTreeMap<i64, CatalogItem> {
        &state.catalog
    }
}

impl TopLevel for Agreement {
    const NAME: &'static str = "Agreement";

    fn table(state: &State) -> &BTreeMap<i64, Agreement> {
        &state.agreements
    }
}

async fn list<T: TopLevel>(AxState(sh): Shr, Extension(info): Info) -> Result<Response, ApiError> {
    list_response(&sh, &info, |s| boxed(T::table(s).values()))
}

async fn count<T: TopLevel>(AxState(sh): Shr, Extension(info): Info) -> Result<Response, ApiError> {
    count_response(&sh, &info, |s| boxed(T::table(s).values()))
}

async fn get_one<T: TopLevel>(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = id_param(&params, "id")?;
    one_response(
        &sh,
        &info,
        StatusCode::OK,
        |s| T::table(s).get(&id),
        || ApiError::record_not_found(T::NAME, id),
    )
}

/// The additions of agreement `id`, or 404 when there is no such agreement.
fn additions_of(
    state: &State,
    id: i64,
) -> Result<Box<dyn Iterator<Item = &Addition> + '_>, ApiError> {
    if state.agreement(id).is_none() {
        return Err(ApiError::record_not_found("Agreement", id));
    }
    boxed(state.additions_of(id))
}

async fn list_additions(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = id_param(&params, "id")?;
    list_response(&sh, &info, |s| additions_of(s, id))
}

async fn count_additions(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let id = id_param(&params, "id")?;
    count_response(&sh, &info, |s| additions_of(s, id))
}

async fn get_addition(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let agreement_id = id_param(&params, "id")?;
    let id = id_param(&params, "addition_id")?;
    addition_response(&sh, &info, StatusCode::OK, agreement_id, id)
}

/// Addition `id` of agreement `agreement_id` with `status`, or 404.
fn addition_response(
    shared: &Shared,
    info: &RequestInfo,
    status: StatusCode,
    agreement_id: i64,
    id: i64,
) -> Result<Response, ApiError> {
    one_response(
        shared,
        info,
        status,
        |s| s.addition(agreement_id, id),
        || ApiError::record_not_found("Addition", id),
    )
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request body is not valid JSON: {e}")))
}

async fn patch_addition(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let agreement_id = id_param(&params, "id")?;
    let id = id_param(&params, "addition_id")?;
    let patch = json_body(&body)?;
    {
        let mut state = lock(&sh.state);
        let current = state
            .addition(agreement_id, id)
            .ok_or_else(|| ApiError::record_not_found("Addition", id))?;
        let patched = writes::apply_patch(current, &patch, &state)?;
        state.write_addition(agreement_id, id, |a| *a = patched);
        state.writes.patches += 1;
    }
    addition_response(&sh, &info, StatusCode::OK, agreement_id, id)
}

async fn create_addition(
    AxState(sh): Shr,
    Extension(info): Info,
    Path(params): Path<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let agreement_id = id_param(&params, "id")?;
    let body = json_body(&body)?;
    let id = {
        let mut state = lock(&sh.state);
        if state.agreement(agreement_id).is_none() {
            return Err(ApiError::record_not_found("Agreement", agreement_id));
        }
        let id = state.next_addition_id();
        let addition = writes::new_addition(agreement_id, id, &body, &state)?;
        state.put_addition(addition);
        state.writes.posts += 1;
        id
    };
    addition_response(&sh, &info, StatusCode::CREATED, agreement_id, id)
}
