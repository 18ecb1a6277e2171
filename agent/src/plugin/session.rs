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
    BillingLine, Call, Checkpoint, HttpRequest, HttpResponse, OpResult, Operation, PluginError,
    RawJson, Record, Reply, Span, Step, StepInput,
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
    /// The response body the page was read from, when its records name their source JSON by
    /// place in it (`raw_at`); every such place was checked to lie within it.
    pub source: Option<Arc<str>>,
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
        // The body of the response the current step answers, for records that name their
        // source JSON by place in it.
        let mut body: Option<Arc<str>> = None;
        loop {
            step = match step {
                Step::Send { request } => {
                    let sent = self.send(&request, options, &name, probe).await?;
                    requests += sent.attempts;
                    previous = Some((request, sent.attempts));
                    let (step, answered) = self.answer(op, sent.response).await?;
                    body = Some(answered);
                    step
                }
                Step::Page { records, checkpoint, last } => {
                    pages += 1;
                    complete |= last;
                    tracing::debug!(page = pages, records = records.len(), last, "page");
                    let source = self.source_of(&records, body.as_ref())?;
                    on_page(Page { records, checkpoint, last, source }).map_err(|source| {
                        HostError::Page {
                            plugin: self.plugin.name().to_string(),
                            operation: name.clone(),
                            source,
                        }
                    })?;
                    previous = None;
                    body = None;
                    self.step(op, StepInput::Continue).await?
                }
                Step::Done { mut result } => {
                    tracing::debug!(requests, pages, "operation done");
                    if let OpResult::Line { line } = &mut result {
                        self.materialize(line, body.as_deref())?;
                    }
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
                    let (step, answered) = self.answer(op, sent.response).await?;
                    body = Some(answered);
                    step
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

    /// Hands the plugin a response, and keeps its body for the records that name their source
    /// JSON by place in it.
    async fn answer(
        &self,
        operation: u64,
        response: HttpResponse,
    ) -> Result<(Step, Arc<str>), HostError> {
        let call = Call::Step { operation, input: StepInput::Response { response } };
        let (reply, call) = self.plugin.call_back(call).await;
        let body = match call {
            Call::Step { input: StepInput::Response { response }, .. } => Arc::from(response.body),
            _ => Arc::from(""),
        };
        Ok((stepped(&self.plugin, reply?)?, body))
    }

    /// The body a page's `raw_at` places refer to, after checking that each lies within it.
    fn source_of(
        &self,
        records: &[Record],
        body: Option<&Arc<str>>,
    ) -> Result<Option<Arc<str>>, HostError> {
        match misplaced(records, body.map(|b| &**b)) {
            Some((record, span)) => Err(self.misplaced(record, span, body.map_or(0, |b| b.len()))),
            None if records.iter().any(|r| raw_at(r).is_some()) => Ok(body.cloned()),
            None => Ok(None),
        }
    }

    /// Copies the source JSON a line names by place into the line itself: a result outlives
    /// the body it was read from.
    fn materialize(&self, line: &mut BillingLine, body: Option<&str>) -> Result<(), HostError> {
        let Some(span) = line.raw_at.take() else { return Ok(()) };
        let text = body.and_then(|body| span.text(body));
        match text.map(RawJson::parse) {
            Some(Ok(raw)) => {
                line.raw = Some(raw);
                Ok(())
            }
            Some(Err(error)) => Err(HostError::Malformed {
                plugin: self.plugin.name().to_string(),
                call: "step",
                detail: format!(
                    "billing line {}: raw_at {}..{} is not one JSON value: {error}",
                    line.id, span.start, span.end
                ),
            }),
            None => {
                let record = Record::BillingLine(line.clone());
                Err(self.misplaced(&record, span, body.map_or(0, str::len)))
            }
        }
    }

    fn misplaced(&self, record: &Record, span: Span, body_len: usize) -> HostError {
        HostError::Malformed {
            plugin: self.plugin.name().to_string(),
            call: "step",
            detail: format!(
                "{} {}: raw_at {}..{} is not a part of the {body_len}-byte response body it \
                 answers",
                record_kind(record),
                record_id(record),
                span.start,
                span.end
            ),
        }
    }

    async fn step(&self, operation: u64, input: StepInput) -> Result<Step, HostError> {
        let reply = self.plugin.call_blocking(Call::Step { operation, input }).await?;
        stepped(&self.plugin, reply)
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
            // A key the schema does not know is the setting at fault, not its section: named,
            // a misspelling is found at its own line.
            if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
                error.kind()
                && let Some(first) = unexpected.first()
            {
                at.push('.');
                at.push_str(first);
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

/// The step a `step` call answered.
fn stepped(plugin: &LoadedPlugin, reply: Reply) -> Result<Step, HostError> {
    match reply {
        Reply::Stepped { step } => Ok(step),
        // The runtime could not step it (a panic, a lost operation): a final failure.
        Reply::Failed { error } => Ok(Step::Failed { error: error.retryable(false) }),
        other => Err(unexpected(plugin, "step", "stepped", &other)),
    }
}

/// The first record whose `raw_at` place does not lie within `body`.
fn misplaced<'r>(records: &'r [Record], body: Option<&str>) -> Option<(&'r Record, Span)> {
    records.iter().find_map(|record| {
        let span = raw_at(record)?;
        let within = body.is_some_and(|body| span.text(body).is_some());
        (!within).then_some((record, span))
    })
}

/// Where a record says its source JSON stands in the response body.
fn raw_at(record: &Record) -> Option<Span> {
    match record {
        Record::Company(c) => c.raw_at,
        Record::Product(p) => p.raw_at,
        Record::Agreement(a) => a.raw_at,
        Record::BillingLine(l) => l.raw_at,
        Record::Account(_) | Record::Service(_) | Record::Usage(_) => None,
    }
}

fn record_kind(record: &Record) -> &'static str {
    match record {
        Record::Company(_) => "company",
        Record::Product(_) => "product",
        Record::Agreement(_) => "agreement",
        Record::BillingLine(_) => "billing line",
        Record::Account(_) => "account",
        Record::Service(_) => "service",
        Record::Usage(_) => "usage",
    }
}

fn record_id(record: &Record) -> &str {
    match record {
        Record::Company(c) => &c.id,
        Record::Product(p) => &p.id,
        Record::Agreement(a) => &a.id,
        Record::BillingLine(l) => &l.id,
        Record::Account(a) => &a.id,
        Record::Service(s) => &s.id,
        Record::Usage(u) => &u.account_id,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, raw_at: Option<Span>) -> Record {
        Record::BillingLine(BillingLine {
            id: id.into(),
            agreement_id: "5001".into(),
            company_id: String::new(),
            product_id: "101".into(),
            quantity: tally_plugin_sdk::Quantity(1.into()),
            included_quantity: None,
            unit_price: None,
            effective_date: None,
            cancelled_date: None,
            updated_at: None,
            raw: None,
            raw_at,
        })
    }

    #[test]
    fn a_place_outside_the_body_or_without_one_is_found() {
        let body = r#"[{"id":1},{"id":2}]"#;
        let good = [line("1", Some(Span { start: 1, end: 9 })), line("2", None)];
        assert!(misplaced(&good, Some(body)).is_none());

        let past = [
            line("1", Some(Span { start: 1, end: 9 })),
            line("2", Some(Span { start: 10, end: 99 })),
        ];
        let (record, span) = misplaced(&past, Some(body)).unwrap();
        assert_eq!((record_id(record), span.end), ("2", 99));
        assert!(misplaced(&good[..1], None).is_some(), "a place needs a body to lie in");
    }
}
