//! The HTTP executor: the one place where tally sends the requests plugins build.
//!
//! Plugins do no I/O. They hand the host an [`HttpRequest`]; an [`Executor`] (one per plugin
//! session) checks that its URL goes to a host the session declared, waits for a concurrency
//! permit and a rate slot, sends it on the process's shared client, reads the body (at most
//! [`MAX_BODY_BYTES`]) and hands back an [`HttpResponse`]. Transport faults, 429, 502, 503 and
//! 504 are retried here with back-off and `Retry-After` (see `retry`); every other status goes
//! back to the plugin, which classifies it. Every attempt is logged with method, redacted URL,
//! endpoint, status, attempt and duration. This module never logs a header, a body or a
//! secret, and never follows a redirect (a redirect could leave the declared hosts).

pub mod clock;
pub mod limits;
pub mod redact;
pub mod retry;
pub mod target;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tally_plugin_sdk::{Header, HttpRequest, HttpResponse};
use tracing::Instrument as _;

pub use clock::{Clock, ManualClock, SystemClock};
pub use limits::{Concurrency, RateLimit};
pub use redact::Redactor;
pub use retry::{RetryPolicy, Wait};
pub use target::Destinations;

/// The largest response body the executor reads; a larger one is refused.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Why a request could not be completed. Every URL in a message is redacted.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{url}: not a usable URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "refused to send a request to {host}: this session may only reach {}; credentials never \
         go to another host",
        list(allowed)
    )]
    HostNotAllowed { host: String, allowed: Vec<String> },
    #[error("refused to send {url} over plain http: http:// is allowed for loopback hosts only")]
    InsecureScheme { url: String },
    #[error("the plugin declared host `{host}`, which is not usable: {reason}")]
    InvalidHost { host: String, reason: String },
    /// `request` is the method and the redacted URL.
    #[error("{request}: not a valid request: {reason}")]
    InvalidRequest { request: String, reason: String },
    #[error("{request} failed after {attempts} attempt(s): {reason}")]
    Transport { request: String, attempts: u32, reason: String },
    #[error("{request}: the response body is larger than {limit} bytes and was refused")]
    TooLarge { request: String, limit: usize },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

fn list(hosts: &[String]) -> String {
    if hosts.is_empty() { "no host".to_string() } else { hosts.join(", ") }
}

/// Connection timeouts of the shared client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing a connection (TCP and TLS).
    pub connect: Duration,
    /// The longest silence while reading a response.
    pub read: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(10), read: Duration::from_secs(60) }
    }
}

/// A pooled HTTP client; clones share connections.
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// The process's client, with the default timeouts, built on first use.
    pub fn shared() -> Result<HttpClient, HttpError> {
        static SHARED: OnceLock<HttpClient> = OnceLock::new();
        if let Some(client) = SHARED.get() {
            return Ok(client.clone());
        }
        let client = HttpClient::new(Timeouts::default())?;
        Ok(SHARED.get_or_init(|| client).clone())
    }

    /// A client of its own (tests, or a deployment needing other timeouts).
    pub fn new(timeouts: Timeouts) -> Result<HttpClient, HttpError> {
        static PROVIDER: OnceLock<()> = OnceLock::new();
        PROVIDER.get_or_init(|| {
            // Fails only when a provider is installed already, which is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let inner = reqwest::Client::builder()
            .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HttpError::Client(e.to_string()))?;
        Ok(HttpClient { inner })
    }
}

/// Everything an executor needs from its session.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Hosts (`host` or `host:port`) requests may go to.
    pub hosts: Vec<String>,
    /// Secret values to keep out of logs and messages.
    pub redactor: Redactor,
    pub max_concurrency: u32,
    pub per_endpoint_concurrency: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub requests_per_hour: Option<u32>,
    pub retry: RetryPolicy,
    pub max_body_bytes: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            hosts: Vec::new(),
            redactor: Redactor::default(),
            max_concurrency: 4,
            per_endpoint_concurrency: None,
            requests_per_minute: None,
            requests_per_hour: None,
            retry: RetryPolicy::default(),
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// How one request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// Retry 502, 503 and 504. Off for a probe (case C10): a server error while checking the
    /// settings is reported, not retried.
    pub retry_server_errors: bool,
    /// Whether sending the request twice is harmless. When it is not (a delta write, a
    /// create), only faults that prove the server did not take it are retried: a failed
    /// connect, 429 and 503.
    pub replay_safe: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions { retry_server_errors: true, replay_safe: true }
    }
}

/// A response and what it took to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub response: HttpResponse,
    /// Requests sent, retries included.
    pub attempts: u32,
}

/// Sends one session's requests within its limits.
#[derive(Debug)]
pub struct Executor {
    client: reqwest::Client,
    destinations: Destinations,
    redactor: Redactor,
    concurrency: Concurrency,
    rate: RateLimit,
    retry: RetryPolicy,
    max_body_bytes: usize,
    clock: Arc<dyn Clock>,
}

enum AttemptError {
    /// Nothing reached the server: always safe to retry.
    Connect(String),
    /// The exchange broke after the request may have been sent.
    Transport(String),
    /// Will not get better by trying again.
    Final(HttpError),
}

impl Executor {
    pub fn new(
        client: &HttpClient,
        config: ExecutorConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Executor, HttpError> {
        Ok(Executor {
            client: client.inner.clone(),
            destinations: Destinations::new(&config.hosts)?,
            redactor: config.redactor,
            concurrency: Concurrency::new(config.max_concurrency, config.per_endpoint_concurrency),
            rate: RateLimit::new(config.requests_per_minute, config.requests_per_hour),
            retry: config.retry,
            max_body_bytes: config.max_body_bytes,
            clock,
        })
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Requests counted by the rate limit's longest window.
    pub fn recent_requests(&self) -> usize {
        self.rate.recent()
    }

    /// Sends `request`, retrying transport faults and throttling as `options` allow, and
    /// returns the last response (whatever its status) or why there is none.
    pub async fn send(
        &self,
        request: &HttpRequest,
        options: SendOptions,
    ) -> Result<Sent, HttpError> {
        let shown = self.redactor.url(&request.url);
        let span = tracing::debug_span!(
            "http_request",
            method = %request.method,
            url = %shown,
            endpoint = %request.endpoint,
        );
        self.send_checked(request, options, &shown).instrument(span).await
    }

    async fn send_checked(
        &self,
        request: &HttpRequest,
        options: SendOptions,
        shown: &str,
    ) -> Result<Sent, HttpError> {
        let url = self.destinations.check(&request.url, shown)?;
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            HttpError::InvalidRequest {
                request: format!("{} {shown}", request.method),
                reason: "the method is not a valid HTTP method".to_string(),
            }
        })?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let permits = self.concurrency.acquire(&request.endpoint).await;
            self.rate.acquire(self.clock.as_ref()).await;
            let started = Instant::now();
            let result = self.attempt(method.clone(), &url, request, shown).await;
            drop(permits);
            let duration_ms = started.elapsed().as_millis() as u64;

            let last = attempt >= self.retry.max_attempts;
            match result {
                Ok(response) => {
                    let status = response.status;
                    tracing::debug!(
                        method = %request.method,
                        url = %shown,
                        endpoint = %request.endpoint,
                        status,
                        attempt,
                        duration_ms,
                        "response"
                    );
                    let retry = retry::retryable_status(
                        status,
                        options.retry_server_errors,
                        options.replay_safe,
                    );
                    if !retry || last {
                        return Ok(Sent { response, attempts: attempt });
                    }
                    let wait =
                        self.retry.wait(attempt, response.header("retry-after"), self.clock.now());
                    tracing::warn!(
                        method = %request.method,
                        url = %shown,
                        endpoint = %request.endpoint,
                        status,
                        attempt,
                        duration_ms,
                        wait_ms = wait.duration().as_millis() as u64,
                        wait_reason = wait.reason(),
                        "retrying"
                    );
                    self.clock.sleep(wait.duration()).await;
                }
                Err(AttemptError::Final(error)) => return Err(error),
                Err(AttemptError::Connect(reason) | AttemptError::Transport(reason)) if last => {
                    tracing::warn!(
                        method = %request.method,
                        url = %shown,
                        endpoint = %request.endpoint,
                        attempt,
                        duration_ms,
                        error = %reason,
                        "giving up"
                    );
                    return Err(HttpError::Transport {
                        request: format!("{} {shown}", request.method),
                        attempts: attempt,
                        reason,
                    });
                }
                Err(AttemptError::Transport(reason)) if !options.replay_safe => {
                    tracing::warn!(
                        method = %request.method,
                        url = %shown,
                        endpoint = %request.endpoint,
                        attempt,
                        duration_ms,
                        error = %reason,
                        "not retrying: the server may have applied the request"
                    );
                    return Err(HttpError::Transport {
                        request: format!("{} {shown}", request.method),
                        attempts: attempt,
                        reason: format!(
                            "{reason}; not retried because sending it twice may apply it twice"
                        ),
                    });
                }
                Err(AttemptError::Connect(reason) | AttemptError::Transport(reason)) => {
                    let wait = self.retry.backoff(attempt);
                    tracing::warn!(
                        method = %request.method,
                        url = %shown,
                        endpoint = %request.endpoint,
                        attempt,
                        duration_ms,
                        error = %reason,
                        wait_ms = wait.as_millis() as u64,
                        wait_reason = "backoff",
                        "retrying"
                    );
                    self.clock.sleep(wait).await;
                }
            }
        }
    }

    /// One exchange: send, then read the whole body while still holding the permits.
    async fn attempt(
        &self,
        method: reqwest::Method,
        url: &url::Url,
        request: &HttpRequest,
        shown: &str,
    ) -> Result<HttpResponse, AttemptError> {
        let mut builder = self.client.request(method, url.clone());
        for header in &request.headers {
            builder = builder.header(header.name.as_str(), header.value.as_str());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(|e| self.classify(e, request, shown))?;

        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| Header {
                name: name.as_str().to_string(),
                value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            })
            .collect();
        let too_large = || {
            AttemptError::Final(HttpError::TooLarge {
                request: format!("{} {shown}", request.method),
                limit: self.max_body_bytes,
            })
        };
        let length = response.content_length();
        if length.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(length.unwrap_or(0) as usize);
        while let Some(chunk) =
            response.chunk().await.map_err(|e| self.classify(e, request, shown))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // JSON APIs send UTF-8 (RFC 8259); anything else is kept, with replacement characters,
        // for the plugin to judge.
        let body = String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok(HttpResponse { status, headers, body })
    }

    fn classify(&self, error: reqwest::Error, request: &HttpRequest, shown: &str) -> AttemptError {
        let connect = error.is_connect();
        let builder = error.is_builder();
        let reason = self.redactor.text(&describe(error.without_url()));
        if builder {
            AttemptError::Final(HttpError::InvalidRequest {
                request: format!("{} {shown}", request.method),
                reason,
            })
        } else if connect {
            AttemptError::Connect(reason)
        } else {
            AttemptError::Transport(reason)
        }
    }
}

/// An error with its causes, which reqwest keeps out of `Display`.
fn describe(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
