//! A plugin session and the driver that runs its operations to completion.
//!
//! Opening a session checks the settings against the plugin's `settings_schema` (each problem
//! names the setting), then asks the plugin to open; the hosts it declares become the only
//! hosts the session's executor will send to. [`PluginSession::run`] drives one operation's
//! step machine: it sends every request the plugin asks for through the executor, hands every
//! page to the caller (who stores records and checkpoint in one transaction) before asking for
//! more, resends a request the plugin reports as retryably failed, and returns the result or a
//! typed error. A probe is never retried on a server or auth failure: its failure is a
//! configuration error (case C10). Sessions are `Sync`: the sync engine runs several
//! operations of one session at once, and the executor keeps them within the limits.
//! The driver never stores anything itself and never logs a secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tally_plugin_sdk::{
    Call, Checkpoint, HttpRequest, OpResult, Operation, PluginError, Record, Reply, Step, StepInput,
};
use tracing::Instrument as _;

use super::error::HostError;
use super::library::{LoadedPlugin, reply_name};
use crate::config::PsaConfig;
use crate::http::{
    Clock, Executor, ExecutorConfig, HttpClient, HttpError, MAX_BODY_BYTES, Redactor, RetryPolicy,
    SendOptions, SystemClock,
};

/// How a session is opened: what the config adds to the plugin's own limits, and the clock.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Where the settings come from, for messages (`psa.settings`, `vendor.settings`).
    pub settings_key: String,
    /// Caps the plugin's `limits.max_concurrency` (config `psa.max_concurrency`).
    pub max_concurrency: Option<u32>,
    /// Caps the plugin's `limits.requests_per_minute` (config `psa.requests_per_minute`).
    pub requests_per_minute: Option<u32>,
    pub retry: RetryPolicy,
    /// `None`: the process's shared client.
    pub client: Option<HttpClient>,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            settings_key: "settings".to_string(),
            max_concurrency: None,
            requests_per_minute: None,
            retry: RetryPolicy::default(),
            client: None,
            clock: Arc::new(SystemClock::new()),
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

impl SessionOptions {
    /// The options for the `[psa]` section.
    pub fn for_psa(psa: &PsaConfig) -> SessionOptions {
        SessionOptions {
            settings_key: "psa.settings".to_string(),
            max_concurrency: psa.max_concurrency,
            requests_per_minute: psa.requests_per_minute,
            ..SessionOptions::default()
        }
    }
}

/// One page of a listing, handed to the caller before the driver asks for the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Record>,
    /// Covers exactly the records of this page and those before it.
    pub checkpoint: Checkpoint,
    /// The final page of a listing that read everything it was asked for.
    pub last: bool,
}

/// How an operation ended, with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOutcome {
    pub result: OpResult,
    /// HTTP requests sent, retries included.
    pub requests: u32,
    /// Pages handed to the caller.
    pub pages: u32,
    /// Whether a page marked `last` was handed over: the listing is whole.
    pub complete: bool,
}

/// An open session of a loaded plugin. Closed in the plugin when dropped.
#[derive(Debug)]
pub struct PluginSession {
    plugin: Arc<LoadedPlugin>,
    id: u64,
    settings_key: String,
    executor: Executor,
    requests: AtomicU64,
}

impl PluginSession {
    /// Checks `settings` against the plugin's schema and opens a session with them.
    pub fn open(
        plugin: Arc<LoadedPlugin>,
        settings: &Value,
        options: SessionOptions,
    ) -> Result<PluginSession, HostError> {
        let handshake = plugin.handshake();
        let redactor = Redactor::from_settings(settings, &handshake.secret_settings);
        let problems = settings_problems(&plugin, settings, &options.settings_key, &redactor);
        if !problems.is_empty() {
            return Err(HostError::Settings { plugin: plugin.name().to_string(), problems });
        }

        let reply = plugin.call(&Call::Open { settings: settings.clone() })?;
        let (id, hosts) = match reply {
            Reply::Opened { session, hosts } => (session, hosts),
            Reply::Failed { error } => {
                return Err(HostError::Config {
                    plugin: plugin.name().to_string(),
                    error: setting_error(redact_error(error, &redactor), &options.settings_key),
                });
            }
            other => return Err(unexpected(&plugin, "open", "opened", &other)),
        };

        let limits = &handshake.limits;
        let config = ExecutorConfig {
            hosts,
            redactor,
            max_concurrency: min_some(Some(limits.max_concurrency), options.max_concurrency)
                .unwrap_or(1),
            per_endpoint_concurrency: limits.per_endpoint_concurrency,
            requests_per_minute: min_some(limits.requests_per_minute, options.requests_per_minute),
            requests_per_hour: limits.requests_per_hour,
            retry: options.retry,
            max_body_bytes: options.max_body_bytes,
        };
        let client = match options.client {
            Some(client) => Ok(client),
            None => HttpClient::shared(),
        };
        let executor = client.and_then(|client| Executor::new(&client, config, options.clock));
        let executor = match executor {
            Ok(executor) => executor,
            Err(source) => {
                let _ = plugin.call(&Call::Close { session: id });
                return Err(HostError::Http {
                    plugin: plugin.name().to_string(),
                    operation: "open".to_string(),
                    source,
                });
            }
        };
        tracing::debug!(plugin = %plugin.name(), session = id, "plugin session opened");
        Ok(PluginSession {
            plugin,
            id,
            settings_key: options.settings_key,
            executor,
            requests: AtomicU64::new(0),
        })
    }

    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// HTTP requests sent by every operation of this session so far.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Runs the probe (one cheap authenticated request) and returns the plugin's detail. Any
    /// failure is a configuration error.
    pub async fn probe(&self) -> Result<String, HostError> {
        let outcome = self.run(Operation::Probe, |_| Ok(())).await?;
        match outcome.result {
            OpResult::Probed { detail } => Ok(detail),
            other => Err(HostError::Malformed {
                plugin: self.plugin.name().to_string(),
                call: "step",
                detail: format!("a probe ended with {other:?} instead of `probed`"),
            }),
        }
    }

    /// Runs `operation` to its end. Each page goes to `on_page` (synchronously, on this task)
    /// before the plugin is asked to continue; an error from `on_page` stops the operation.
    pub async fn run<F>(&self, operation: Operation, on_page: F) -> Result<RunOutcome, HostError>
    where
        F: FnMut(Page) -> anyhow::Result<()> + Send,
    {
        let name = describe(&operation);
        let span = tracing::info_span!(
            "plugin_operation",
            plugin = %self.plugin.name(),
            operation = %name,
        );
        self.drive(operation, name, on_page).instrument(span).await
    }

    async fn drive<F>(
        &self,
        operation: Operation,
        name: String,
        mut on_page: F,
    ) -> Result<RunOutcome, HostError>
    where
        F: FnMut(Page) -> anyhow::Result<()> + Send,
    {
        let probe = matches!(operation, Operation::Probe);
        let options =
            SendOptions { retry_server_errors: !probe, replay_safe: self.replay_safe(&operation) };
        let max_attempts = self.executor.retry_policy().max_attempts;

        let reply = self.plugin.call_blocking(Call::Start { session: self.id, operation }).await?;
        let (op, mut step) = match reply {
            Reply::Started { operation, step } => (operation, step),
            Reply::Failed { error } => return Err(self.failure(&name, error, probe)),
            other => return Err(unexpected(&self.plugin, "start", "started", &other)),
        };
        let _finish = Finish { plugin: self.plugin.clone(), operation: op };

        let mut requests = 0u32;
        let mut pages = 0u32;
        let mut complete = false;
        // The request the current step answers, and how often it has been sent.
        let mut previous: Option<(HttpRequest, u32)> = None;
        loop {
            step = match step {
                Step::Send { request } => {
                    let sent = self.send(&request, options, &name, probe).await?;
                    requests += sent.attempts;
                    let response = sent.response;
                    previous = Some((request, sent.attempts));
                    self.step(op, StepInput::Response { response }).await?
                }
                Step::Page { records, checkpoint, last } => {
                    pages += 1;
                    complete |= last;
                    tracing::debug!(page = pages, records = records.len(), last, "page");
                    on_page(Page { records, checkpoint, last }).map_err(|source| {
                        HostError::Page {
                            plugin: self.plugin.name().to_string(),
                            operation: name.clone(),
                            source,
                        }
                    })?;
                    previous = None;
                    self.step(op, StepInput::Continue).await?
                }
                Step::Done { result } => {
                    tracing::debug!(requests, pages, "operation done");
                    return Ok(RunOutcome { result, requests, pages, complete });
                }
                Step::Failed { error } => {
                    let error = redact_error(error, self.executor.redactor());
                    let Some((request, sends)) = previous.as_mut() else {
                        return Err(self.failure(&name, error, probe));
                    };
                    if !error.retryable || probe || *sends >= max_attempts {
                        return Err(self.failure(&name, error, probe));
                    }
                    let policy = self.executor.retry_policy();
                    let wait = match error.retry_after_seconds {
                        Some(seconds) => policy.capped_seconds(seconds),
                        None => policy.backoff(*sends),
                    };
                    tracing::warn!(
                        endpoint = %request.endpoint,
                        attempt = *sends,
                        wait_ms = wait.as_millis() as u64,
                        error = %error,
                        "retrying after a retryable plugin error"
                    );
                    self.executor.clock().sleep(wait).await;
                    let sent = self.send(request, options, &name, probe).await?;
                    requests += sent.attempts;
                    *sends += sent.attempts;
                    self.step(op, StepInput::Response { response: sent.response }).await?
                }
            };
        }
    }

    async fn send(
        &self,
        request: &HttpRequest,
        options: SendOptions,
        operation: &str,
        probe: bool,
    ) -> Result<crate::http::Sent, HostError> {
        let result = self.executor.send(request, options).await;
        if let Ok(sent) = &result {
            self.requests.fetch_add(sent.attempts as u64, Ordering::Relaxed);
        }
        result.map_err(|source| self.http_failure(operation, source, probe))
    }

    async fn step(&self, operation: u64, input: StepInput) -> Result<Step, HostError> {
        match self.plugin.call_blocking(Call::Step { operation, input }).await? {
            Reply::Stepped { step } => Ok(step),
            // The runtime could not step it (a panic, a lost operation): a final failure.
            Reply::Failed { error } => Ok(Step::Failed { error: error.retryable(false) }),
            other => Err(unexpected(&self.plugin, "step", "stepped", &other)),
        }
    }

    /// Whether the operation's requests may be sent twice without harm.
    fn replay_safe(&self, operation: &Operation) -> bool {
        match operation {
            Operation::Probe | Operation::List { .. } | Operation::ReadLine { .. } => true,
            // A write whose answer was lost is never resent blindly, even an absolute one: the
            // outbox reads the line back first, so each change reaches the PSA exactly once.
            Operation::SetQuantity { .. } | Operation::CreateLine { .. } => false,
        }
    }

    fn failure(&self, operation: &str, error: PluginError, probe: bool) -> HostError {
        let error = redact_error(error, self.executor.redactor());
        if probe {
            HostError::Config {
                plugin: self.plugin.name().to_string(),
                error: setting_error(error, &self.settings_key),
            }
        } else {
            HostError::Failed {
                plugin: self.plugin.name().to_string(),
                operation: operation.to_string(),
                error,
            }
        }
    }

    fn http_failure(&self, operation: &str, source: HttpError, probe: bool) -> HostError {
        if probe {
            let error = PluginError::new(tally_plugin_sdk::ErrorKind::Config, source.to_string())
                .retryable(false);
            return self.failure(operation, error, true);
        }
        HostError::Http {
            plugin: self.plugin.name().to_string(),
            operation: operation.to_string(),
            source,
        }
    }
}

impl Drop for PluginSession {
    fn drop(&mut self) {
        let _ = self.plugin.call(&Call::Close { session: self.id });
    }
}

/// Forgets an operation in the plugin however the driver ends (done, failed, or dropped).
struct Finish {
    plugin: Arc<LoadedPlugin>,
    operation: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let _ = self.plugin.call(&Call::Finish { operation: self.operation });
    }
}

/// Every way `settings` breaks the plugin's schema, each naming its setting.
fn settings_problems(
    plugin: &LoadedPlugin,
    settings: &Value,
    key: &str,
    redactor: &Redactor,
) -> Vec<String> {
    plugin
        .settings_validator()
        .iter_errors(settings)
        .map(|error| {
            let mut at = key.to_string();
            for segment in error.instance_path().as_str().split('/').skip(1) {
                at.push('.');
                at.push_str(&segment.replace("~1", "/").replace("~0", "~"));
            }
            redactor.text(&format!("{at}: {error}"))
        })
        .collect()
}

/// Names the setting in full: `token` becomes `psa.settings.token`; no field, the section.
fn setting_error(mut error: PluginError, settings_key: &str) -> PluginError {
    error.field = Some(match error.field.take() {
        Some(field) => format!("{settings_key}.{field}"),
        None => settings_key.to_string(),
    });
    error
}

fn redact_error(mut error: PluginError, redactor: &Redactor) -> PluginError {
    error.message = redactor.text(&error.message);
    error
}

fn unexpected(plugin: &LoadedPlugin, call: &'static str, expected: &str, got: &Reply) -> HostError {
    HostError::Malformed {
        plugin: plugin.name().to_string(),
        call,
        detail: format!("expected `{expected}`, got `{}`", reply_name(got)),
    }
}

fn min_some(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A short name for logs and messages: `probe`, `list companies`, `set_quantity line 7`.
pub fn describe(operation: &Operation) -> String {
    match operation {
        Operation::Probe => "probe".to_string(),
        Operation::List { stream, parent_id: Some(parent), .. } => {
            format!("list {stream} of {parent}")
        }
        Operation::List { stream, .. } => format!("list {stream}"),
        Operation::ReadLine { line } => format!("read_line {}", line.id),
        Operation::SetQuantity { line, .. } => format!("set_quantity line {}", line.id),
        Operation::CreateLine { agreement_id, .. } => {
            format!("create_line in agreement {agreement_id}")
        }
    }
}
