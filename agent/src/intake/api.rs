//! The vendor intake HTTP API: Gradient's vendor API paths, bodies and status codes, so a vendor
//! script written for `https://app.usegradient.com/api` works against tally with only its base
//! URL changed.
//!
//! Every request is checked in this order: partner key (401), request rate (429), vendor key
//! (401), body size (413), body fields (400), ids it refers to (404); only then is anything
//! written, in one journal transaction that also records the call, committed before the
//! response is sent. A refused request stores no vendor data. Reconciliation runs after the
//! commit, off the request path, with bursts of pushes coalesced. Nothing here logs a token, a
//! key or a request body.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use redb::WriteTransaction;
use serde_json::{Value, json};

use super::auth::{self, AuthError, Token};
use super::fields::{FieldError, Fields};
use super::integrations::{self, note_contact, note_usage};
use super::rate::{self, RateLimiter};
use super::records::{self, Change, ServiceUpdate};
use crate::config::Config;
use crate::journal::tables::INTEGRATIONS;
use crate::journal::{Journal, JournalError, Read, Write};
use crate::model::{self, Account, IntakeCall, Integration, IntegrationStatus, Millis, Service};

/// The largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// What the organization is called in Gradient-shaped answers: the MSP running this tally.
const ORGANIZATION: &str = "tally";

/// What the router needs: the journal, the config, the rate limit and the reconcile trigger.
#[derive(Clone)]
pub struct IntakeState {
    journal: Journal,
    limiter: Arc<RateLimiter>,
    refresher: Arc<Refresher>,
}

impl IntakeState {
    /// Gradient's limits: 100 requests a second per integration.
    pub fn new(journal: Journal, config: Config) -> IntakeState {
        IntakeState::with_rate_limit(journal, config, RateLimiter::gradient())
    }

    pub fn with_rate_limit(journal: Journal, config: Config, limiter: RateLimiter) -> IntakeState {
        IntakeState {
            refresher: Arc::new(Refresher {
                journal: journal.clone(),
                config,
                wake: tokio::sync::Notify::new(),
                started: OnceLock::new(),
            }),
            journal,
            limiter: Arc::new(limiter),
        }
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }
}

/// Runs `reconcile::refresh` after pushes, one run at a time; pushes that arrive during a run
/// cause exactly one more run.
struct Refresher {
    journal: Journal,
    config: Config,
    wake: tokio::sync::Notify,
    started: OnceLock<()>,
}

impl Refresher {
    fn request(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no async runtime to reconcile in; cards refresh on the next sync");
            return;
        };
        self.started.get_or_init(|| {
            let me = Arc::clone(self);
            runtime.spawn(async move {
                loop {
                    me.wake.notified().await;
                    let worker = Arc::clone(&me);
                    let done = tokio::task::spawn_blocking(move || {
                        crate::reconcile::after_vendor_change(&worker.journal, &worker.config)
                    })
                    .await;
                    match done {
                        Ok(Ok(_)) => tracing::debug!("cards refreshed after vendor push"),
                        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "reconcile after vendor push failed"),
                        Err(e) => tracing::warn!(error = %e, "reconcile after vendor push panicked"),
                    }
                }
            });
        });
        self.wake.notify_one();
    }
}

/// The vendor API. Mount it as is (`Router::merge`); it has no fallback of its own, and
/// unknown paths under `/api/vendor-api/` answer 404 in Gradient's error shape.
pub fn router(state: IntakeState) -> Router {
    Router::new()
        .route("/api/vendor-api", get(get_vendor))
        .route("/api/vendor-api/", get(get_vendor))
        .route("/api/vendor-api/organization", get(get_organization))
        .route("/api/vendor-api/organization/", get(get_organization))
        .route("/api/vendor-api/organization/status/{status}", patch(set_status))
        .route("/api/vendor-api/organization/accounts", get(list_accounts).post(post_accounts))
        .route("/api/vendor-api/organization/accounts/", get(list_accounts).post(post_accounts))
        .route("/api/vendor-api/organization/accounts/{id}", patch(patch_account))
        .route("/api/vendor-api/service", post(post_service))
        .route("/api/vendor-api/service/", post(post_service))
        .route("/api/vendor-api/service/{id}", get(get_service).patch(patch_service))
        .route("/api/vendor-api/service/{id}/count", post(post_count))
        .route("/api/vendor-api/{*rest}", any(unknown_path))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Why a request was refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{0}")]
    Unauthorized(#[from] AuthError),
    #[error(
        "too many requests: integration \"{integration}\" may make {limit} requests per {window:?}; \
         retry after {retry_after} s"
    )]
    RateLimited { integration: String, limit: usize, window: Duration, retry_after: u64 },
    #[error("the request body is larger than 1 MiB; send accounts in smaller batches")]
    TooLarge,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("tally could not store this request: {0}")]
    Journal(#[from] JournalError),
    #[error("tally failed while handling this request: {0}")]
    Internal(String),
}

impl From<FieldError> for IntakeError {
    fn from(e: FieldError) -> Self {
        IntakeError::BadRequest(e.to_string())
    }
}

impl IntakeError {
    pub fn status(&self) -> StatusCode {
        match self {
            IntakeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IntakeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            IntakeError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            IntakeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IntakeError::NotFound(_) => StatusCode::NOT_FOUND,
            IntakeError::Conflict(_) => StatusCode::CONFLICT,
            IntakeError::Journal(_) | IntakeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The shape Gradient's (NestJS) API answers errors with.
        let body = json!({
            "statusCode": status.as_u16(),
            "message": self.to_string(),
            "error": status.canonical_reason().unwrap_or("Error"),
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let IntakeError::RateLimited { retry_after, .. } = self {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        response
    }
}

fn body_bytes(body: ReadBody) -> Result<Bytes, IntakeError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            IntakeError::TooLarge
        } else {
            IntakeError::BadRequest(format!(
                "the request body could not be read: {}",
                rejection.body_text()
            ))
        }
    })
}

/// A successful answer.
struct Reply {
    status: StatusCode,
    body: Value,
    /// The "Success - …" text recorded for `tally integration check`.
    message: &'static str,
    /// Whether vendor data changed, so cards need a refresh.
    refresh: bool,
}

impl Reply {
    fn new(status: StatusCode, message: &'static str, body: Value) -> Reply {
        Reply { status, body, message, refresh: false }
    }

    /// `{"status": 200, "data": …, "message": "Success - …"}`.
    fn envelope(status: StatusCode, message: &'static str, data: Value) -> Reply {
        let body = json!({ "status": status.as_u16(), "data": data, "message": message });
        Reply::new(status, message, body)
    }

    fn refreshing(mut self) -> Reply {
        self.refresh = true;
        self
    }
}

/// A request body as axum read it, or why it could not: the handlers judge it only after the
/// key checks.
type ReadBody = Result<Bytes, BytesRejection>;

/// What one request asks of the journal: runs inside the write transaction that also records
/// the call, with the caller's integration to update.
type Op = Box<
    dyn FnOnce(&WriteTransaction, &mut Integration, Millis) -> Result<Reply, IntakeError> + Send,
>;

struct Request {
    method: Method,
    path: String,
    token: Option<Vec<u8>>,
    content_type: Option<String>,
}

impl Request {
    fn new(method: Method, uri: &Uri, headers: &HeaderMap) -> Request {
        Request {
            method,
            path: uri.path().to_string(),
            token: headers.get(auth::HEADER).map(|v| v.as_bytes().to_vec()),
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }
}

/// Answers a request: `op` runs once the request passed every check (see the module doc).
async fn handle(
    state: IntakeState,
    request: Request,
    op: impl FnOnce(&WriteTransaction, &mut Integration, Millis) -> Result<Reply, IntakeError>
    + Send
    + 'static,
) -> Response {
    let op: Op = Box::new(op);
    let span = tracing::info_span!(
        "intake.request",
        method = %request.method,
        path = %request.path,
        integration = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let worker_span = span.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _entered = worker_span.enter();
        process(&state, &request, op).map(|reply| (reply, state))
    })
    .await
    .unwrap_or_else(|e| Err(IntakeError::Internal(e.to_string())));
    match outcome {
        Ok((reply, state)) => {
            span.record("status", reply.status.as_u16());
            span.in_scope(|| tracing::debug!("vendor request answered"));
            if reply.refresh {
                state.refresher.request();
            }
            (reply.status, axum::Json(reply.body)).into_response()
        }
        Err(e) => {
            span.record("status", e.status().as_u16());
            span.in_scope(|| match &e {
                IntakeError::Journal(_) | IntakeError::Internal(_) => {
                    tracing::error!(error = %e, "vendor request failed")
                }
                _ => tracing::info!(reason = %e, "vendor request refused"),
            });
            e.into_response()
        }
    }
}

fn process(state: &IntakeState, request: &Request, op: Op) -> Result<Reply, IntakeError> {
    let now = model::now_millis();
    let token = Token::parse(request.token.as_deref())?;
    let integration = token.integration(&state.journal.read()?)??;
    let name = integration.name.clone();
    tracing::Span::current().record("integration", name.as_str());

    let refused = |e: IntakeError| -> IntakeError {
        record_refusal(&state.journal, &name, request, now, &e);
        e
    };
    // Before the vendor key check, so that a flood of refused calls is limited too (and a
    // refused call, which is noted in the journal, cannot be made at will).
    if let Err(wait) = state.limiter.check(&name, Instant::now()) {
        return Err(IntakeError::RateLimited {
            integration: name,
            limit: state.limiter.limit(),
            window: state.limiter.window(),
            retry_after: rate::retry_after_secs(wait),
        });
    }
    if let Err(e) = token.check_vendor_key(&integration) {
        return Err(refused(e.into()));
    }

    let result = state.journal.write(|tx| -> Result<Reply, IntakeError> {
        // The key may have been rotated, or the integration removed, since the read above.
        let mut current = tx
            .get(&INTEGRATIONS, &name)?
            .filter(|i| token.still_valid(i))
            .ok_or(IntakeError::Unauthorized(AuthError::UnknownPartnerKey))?;
        let first = token.check_vendor_key(&current)?;
        if first {
            token.bind_vendor_key(&mut current);
        }
        note_contact(&mut current, first, now);
        let reply = op(tx, &mut current, now)?;
        tx.put(&INTEGRATIONS, &name, &current)?;
        integrations::record_call(tx, &name, call(request, now, reply.status, reply.message))?;
        Ok(reply)
    });
    result.map_err(refused)
}

/// What every vendor API handler starts from: the router's state and the request's path and
/// headers. Handlers name their method themselves, so that a `HEAD` served by a `GET` route is
/// noted as the `GET` it is.
struct Asked {
    state: IntakeState,
    uri: Uri,
    headers: HeaderMap,
}

impl FromRequestParts<IntakeState> for Asked {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &IntakeState,
    ) -> Result<Asked, Infallible> {
        Ok(Asked { state: state.clone(), uri: parts.uri.clone(), headers: parts.headers.clone() })
    }
}

impl Asked {
    /// Answers a request without a body: `op` runs once the request passed every check.
    async fn answer(
        self,
        method: Method,
        op: impl FnOnce(&WriteTransaction, &mut Integration, Millis) -> Result<Reply, IntakeError>
        + Send
        + 'static,
    ) -> Response {
        handle(self.state, Request::new(method, &self.uri, &self.headers), op).await
    }

    /// Answers a request with a body: once the request passed the key checks, the body is read
    /// (413 when too large) and parsed by `parse` (400 when malformed), then handed to `op`.
    async fn answer_body<T: 'static, F>(
        self,
        method: Method,
        body: ReadBody,
        parse: fn(&[u8], Option<&str>) -> Result<T, FieldError>,
        op: F,
    ) -> Response
    where
        F: FnOnce(&WriteTransaction, &mut Integration, Millis, T) -> Result<Reply, IntakeError>
            + Send
            + 'static,
    {
        let request = Request::new(method, &self.uri, &self.headers);
        let content_type = request.content_type.clone();
        handle(self.state, request, move |tx, integration, now| {
            let body = body_bytes(body)?;
            let parsed = parse(&body, content_type.as_deref())?;
            op(tx, integration, now, parsed)
        })
        .await
    }
}

/// The `name` (read as `what`) and `description` a PATCH changes; at least one is required.
fn changes(fields: &Fields, what: &str) -> Result<(Option<String>, Option<String>), IntakeError> {
    let name = fields.name_field("name", what, false)?;
    let description = fields.description("description")?;
    if name.is_none() && description.is_none() {
        return Err(IntakeError::BadRequest(
            "`name` or `description` is required: give the fields to change".into(),
        ));
    }
    Ok((name, description))
}

fn call(request: &Request, now: Millis, status: StatusCode, message: &str) -> IntakeCall {
    IntakeCall {
        at: now,
        method: request.method.to_string(),
        path: request.path.clone(),
        status: status.as_u16(),
        message: message.to_string(),
    }
}

/// Notes a refused call of a known integration for `tally integration check`; the refusal
/// itself stored nothing. Best effort: failing to note it is logged, not answered.
fn record_refusal(journal: &Journal, name: &str, request: &Request, now: Millis, e: &IntakeError) {
    if matches!(e, IntakeError::Journal(_) | IntakeError::RateLimited { .. }) {
        return;
    }
    let noted = journal.write(|tx| {
        integrations::record_call(tx, name, call(request, now, e.status(), &e.to_string()))
    });
    if let Err(err) = noted {
        tracing::warn!(error = %err, "could not note a refused vendor call");
    }
}

/// RFC 3339 with milliseconds, as Gradient writes times.
fn iso(at: Millis) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

fn account_json(account: &Account) -> Value {
    json!({ "id": account.id, "name": account.name, "description": account.description })
}

fn sku_json(service: &Service) -> Value {
    json!({
        "_id": service.id,
        "id": service.id,
        "name": service.name,
        "description": service.description,
        "createdAt": iso(service.created_at),
        "updatedAt": iso(service.updated_at),
    })
}

/// The vendor as `GET /api/vendor-api` shows it, with its services as `skus`.
fn vendor_json(tx: &impl Read, integration: &Integration) -> Result<Value, JournalError> {
    let services = records::services(tx, &integration.name)?;
    let updated = services.iter().map(|s| s.updated_at).max().unwrap_or(integration.created_at);
    Ok(json!({
        "_id": integration.name,
        "id": integration.name,
        "name": integration.name,
        "description": format!("{}: usage pushed to tally", integration.name),
        "integrationType": "custom",
        "isDistributor": false,
        "externalIntegrationStatus":
            if integration.last_contact_at.is_some() { "integrated" } else { "notIntegrated" },
        "mappingResponsibilities": ["accounts", "services"],
        "modules": [{ "variation": "billing" }],
        "organizationId": ORGANIZATION,
        "attributes": [],
        "skus": services.iter().map(sku_json).collect::<Vec<_>>(),
        "createdAt": iso(integration.created_at),
        "updatedAt": iso(updated.max(integration.created_at)),
        "__v": 0,
    }))
}

/// The partner integration as `GET /api/vendor-api/organization` shows it.
fn organization_json(integration: &Integration) -> Value {
    json!({
        "organizationId": ORGANIZATION,
        "name": ORGANIZATION,
        "vendorId": integration.name,
        "vendorName": integration.name,
        "integrationId": integration.name,
        "status": integration.status.as_str(),
        "lastSyncedAt": integration.last_usage_at.map(iso),
    })
}

fn no_account(id: &str) -> IntakeError {
    IntakeError::NotFound(format!(
        "account id {id:?} was never created; POST it to /api/vendor-api/organization/accounts \
         first"
    ))
}

fn no_service(id: &str) -> IntakeError {
    IntakeError::NotFound(format!(
        "service id {id:?} does not exist; create it with POST /api/vendor-api/service (GET \
         /api/vendor-api lists the ids under `skus`)"
    ))
}

async fn get_vendor(asked: Asked) -> Response {
    asked
        .answer(Method::GET, |tx, integration, _| {
            let vendor = vendor_json(tx, integration)?;
            Ok(Reply::envelope(StatusCode::OK, "Success - Retrieved Vendor", vendor))
        })
        .await
}

async fn get_organization(asked: Asked) -> Response {
    asked
        .answer(Method::GET, |_, integration, _| {
            let body = organization_json(integration);
            Ok(Reply::new(StatusCode::OK, "Success - Retrieved Integration", body))
        })
        .await
}

async fn set_status(asked: Asked, Path(word): Path<String>) -> Response {
    asked
        .answer(Method::PATCH, move |_, integration, _| {
            let status = IntegrationStatus::parse(&word.to_ascii_lowercase()).ok_or_else(|| {
                IntakeError::BadRequest(format!(
                    "`status` {word:?} is not an integration status; use one of active, inactive, \
                     pending, disabled, error"
                ))
            })?;
            integration.status = status;
            Ok(Reply::envelope(
                StatusCode::OK,
                "Success - Updated Integration Status",
                organization_json(integration),
            ))
        })
        .await
}

async fn list_accounts(asked: Asked) -> Response {
    asked
        .answer(Method::GET, |tx, integration, _| {
            let accounts = records::accounts(tx, &integration.name)?;
            let body = Value::Array(accounts.iter().map(account_json).collect());
            Ok(Reply::new(StatusCode::OK, "Success - Retrieved Accounts", body))
        })
        .await
}

async fn post_accounts(asked: Asked, body: ReadBody) -> Response {
    asked
        .answer_body(Method::POST, body, Fields::list, |tx, integration, now, items| {
            // Every item is checked before any is stored.
            let mut accounts = Vec::new();
            for item in items {
                let id = item.id("id", "account id")?;
                let name = item.name_field("name", "account name", true)?.unwrap_or_default();
                let description = item.description("description")?;
                accounts.push((id, name, description));
            }
            if accounts.is_empty() {
                return Err(IntakeError::BadRequest(
                    "the body is an empty array; send at least one {\"id\", \"name\"} account"
                        .into(),
                ));
            }
            let mut stored = Vec::new();
            for (id, name, description) in &accounts {
                let (account, _) = records::upsert_account(
                    tx,
                    &integration.name,
                    id,
                    name,
                    description.as_deref(),
                    now,
                )?;
                stored.push(account_json(&account));
            }
            Ok(Reply::new(StatusCode::CREATED, "Success - Created Accounts", Value::Array(stored))
                .refreshing())
        })
        .await
}

async fn patch_account(asked: Asked, Path(id): Path<String>, body: ReadBody) -> Response {
    asked.answer_body(Method::PATCH, body, Fields::object, move |tx, integration, now, fields| {
        if let Some(body_id) = fields.text("id")?
            && body_id.trim() != id
        {
            return Err(IntakeError::BadRequest(format!(
                "`id` {body_id:?} differs from the account id in the path ({id:?}); account ids \
                 cannot change, create the new id with POST instead"
            )));
        }
        let (name, description) = changes(&fields, "account name")?;
        let account = records::update_account(
            tx,
            &integration.name,
            &id,
            name.as_deref(),
            description.as_deref(),
            now,
        )?
        .ok_or_else(|| no_account(&id))?;
        Ok(Reply::new(StatusCode::OK, "Success - Updated Account", account_json(&account))
            .refreshing())
    })
    .await
}

async fn post_service(asked: Asked, body: ReadBody) -> Response {
    asked
        .answer_body(Method::POST, body, Fields::object, |tx, integration, now, fields| {
            let name = fields.name_field("name", "service name", true)?.unwrap_or_default();
            let description = fields.description("description")?;
            let ignored = fields.unknown(&["name", "description"]);
            if !ignored.is_empty() {
                tracing::debug!(?ignored, "service fields tally does not keep");
            }
            let (service, change) =
                records::ensure_service(tx, &integration.name, &name, description.as_deref(), now)?;
            let (status, message) = match change {
                Change::Created => (StatusCode::CREATED, "Success - Created Service"),
                _ => (StatusCode::OK, "Success - Service already exists"),
            };
            // Gradient answers with the vendor and all its `skus` (scripts pick the new service out
            // by name); `data` holds the service itself as well.
            let mut body = vendor_json(tx, integration)?;
            if let Value::Object(map) = &mut body {
                map.insert("data".into(), sku_json(&service));
                map.insert("status".into(), json!(status.as_u16()));
                map.insert("message".into(), json!(message));
            }
            let reply = Reply::new(status, message, body);
            Ok(if change == Change::Created { reply.refreshing() } else { reply })
        })
        .await
}

async fn get_service(asked: Asked, Path(id): Path<String>) -> Response {
    asked
        .answer(Method::GET, move |tx, integration, _| {
            let service =
                records::service(tx, &integration.name, &id)?.ok_or_else(|| no_service(&id))?;
            Ok(Reply::envelope(StatusCode::OK, "Success - Retrieved Service", sku_json(&service)))
        })
        .await
}

async fn patch_service(asked: Asked, Path(id): Path<String>, body: ReadBody) -> Response {
    asked
        .answer_body(Method::PATCH, body, Fields::object, move |tx, integration, now, fields| {
            let (name, description) = changes(&fields, "service name")?;
            let updated = records::update_service(
                tx,
                &integration.name,
                &id,
                name.as_deref(),
                description.as_deref(),
                now,
            )?;
            match updated {
                ServiceUpdate::Done(service) => Ok(Reply::envelope(
                    StatusCode::OK,
                    "Success - Updated Service",
                    sku_json(&service),
                )
                .refreshing()),
                ServiceUpdate::NotFound => Err(no_service(&id)),
                ServiceUpdate::NameTaken { other_id } => Err(IntakeError::Conflict(format!(
                    "`name` {:?} is already the name of service {other_id:?}; service names are \
                     unique per vendor",
                    name.unwrap_or_default()
                ))),
            }
        })
        .await
}

async fn post_count(asked: Asked, Path(service_id): Path<String>, body: ReadBody) -> Response {
    asked
        .answer_body(Method::POST, body, Fields::object, move |tx, integration, now, fields| {
            if !fields.has("accountId") && fields.has("clientOid") {
                return Err(IntakeError::BadRequest(
                    "`accountId` is required; tally keeps no Gradient client ids, so `clientOid` \
                     cannot stand in for it"
                        .into(),
                ));
            }
            let account_id = fields.id("accountId", "accountId")?;
            let quantity = fields
                .quantity("unitCount")?
                .ok_or_else(|| IntakeError::BadRequest("`unitCount` is required".into()))?;
            let vendor = integration.name.clone();
            if records::service(tx, &vendor, &service_id)?.is_none() {
                return Err(no_service(&service_id));
            }
            if records::account(tx, &vendor, &account_id)?.is_none() {
                return Err(no_account(&account_id));
            }
            // Counts for accounts or services that are not mapped yet are kept: they show as
            // unmapped usage until the mapping file places them.
            let (_, change) =
                records::store_count(tx, &vendor, &account_id, &service_id, quantity, now)?;
            tracing::debug!(account = %account_id, service = %service_id, ?change, "usage count");
            note_usage(integration, now);
            let message = "Success - Created service unit count";
            Ok(Reply::new(
                StatusCode::CREATED,
                message,
                json!({ "status": 201, "message": message }),
            )
            .refreshing())
        })
        .await
}

async fn unknown_path(method: Method, uri: Uri) -> Response {
    let status = StatusCode::NOT_FOUND;
    let body = json!({
        "statusCode": status.as_u16(),
        "message": format!(
            "{method} {} is not a vendor API path tally serves; see `tally --help` and the README's \
             vendor intake section for the paths",
            uri.path()
        ),
        "error": "Not Found",
    });
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_gradient_writes_them() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_686_059_704_681), "2023-06-06T13:55:04.681Z");
    }

    #[test]
    fn errors_use_the_nest_error_shape() {
        let response = IntakeError::RateLimited {
            integration: "safedns".into(),
            limit: 100,
            window: Duration::from_secs(1),
            retry_after: 1,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
