//! The background agent (`tally run`): the sync schedule, the vendor intake API, the status
//! and metrics endpoints, and the mapping watcher, in one process.
//!
//! Signal handlers are installed before anything else. SIGTERM and SIGINT stop new work, give
//! the sync in progress a few seconds to commit its page, and exit 0; SIGHUP re-reads the
//! config and keeps the old one if the new one is invalid. One agent runs per journal: a second
//! one is refused with the first one's pid, and the lock dies with the process (case C21).
//! Everything but `/healthz` and the vendor API needs the local admin token.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::cli::Ctx;
use crate::config::Config;
use crate::journal::Journal;
use crate::plugin::PluginSession;
use crate::status::AgentInfo;
use crate::sync::engine::{self, SyncOptions, SyncReport};
use crate::sync::progress::Progress;

/// The lock file that proves an agent runs on a journal.
pub fn lock_path(journal: &Path) -> PathBuf {
    let mut name = journal.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    journal.with_file_name(name)
}

/// Where the admin token lives.
pub fn token_path(config: &Config) -> PathBuf {
    match &config.agent.admin_token_file {
        Some(path) => {
            let path = PathBuf::from(path);
            if path.is_absolute() {
                path
            } else {
                config.file.parent().unwrap_or(Path::new(".")).join(path)
            }
        }
        None => config.journal.with_file_name("tally.token"),
    }
}

/// Reads the admin token, creating it (readable only by this user) on first run.
pub fn admin_token(config: &Config) -> anyhow::Result<String> {
    let path = token_path(config);
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_string()),
        _ => {
            let mut secret = [0u8; 32];
            rand::fill(&mut secret);
            let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            crate::cli::write_private(&path, &format!("{token}\n"))?;
            tracing::info!(path = %path.display(), "created the local admin token");
            Ok(token)
        }
    }
}

/// Holds the agent lock for the life of the process.
struct AgentLock {
    _file: File,
}

fn take_lock(journal: &Path) -> anyhow::Result<AgentLock> {
    let path = lock_path(journal);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot create the agent lock {}", path.display()))?;
    if file.try_lock().is_err() {
        let holder = std::fs::read_to_string(crate::status::agent_info_path(journal))
            .ok()
            .and_then(|t| serde_json::from_str::<AgentInfo>(&t).ok());
        anyhow::bail!(
            "another tally agent{} is already running on the journal {}; stop it first (this one \
             exits without touching the journal)",
            holder
                .map(|h| format!(" (pid {}, listening on {})", h.pid, h.listen))
                .unwrap_or_default(),
            journal.display()
        );
    }
    Ok(AgentLock { _file: file })
}

#[derive(Default)]
struct Metrics {
    syncs_complete: AtomicU64,
    syncs_incomplete: AtomicU64,
    syncs_failed: AtomicU64,
    requests: AtomicU64,
    records: AtomicU64,
    applied: AtomicU64,
    mapping_reloads_ok: AtomicU64,
    mapping_reloads_failed: AtomicU64,
}

struct SyncRequest {
    full: bool,
    reply: Option<oneshot::Sender<Result<SyncReport, String>>>,
}

#[derive(Clone)]
struct AgentState {
    journal: Journal,
    config: Arc<RwLock<Config>>,
    token: Arc<String>,
    syncs: mpsc::Sender<SyncRequest>,
    metrics: Arc<Metrics>,
    started: Instant,
}

pub fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(ctx))
}

async fn serve(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    // Signals first: a stop that arrives during start-up still stops cleanly.
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let stop = Arc::new(Notify::new());

    let config = ctx.config.clone();
    let _lock = take_lock(&config.journal)?;
    let journal = ctx.journal()?;
    let token = admin_token(&config)?;
    let psa = match &config.psa {
        Some(_) => Some(Arc::new(crate::psa::open(&config)?)),
        None => {
            tracing::warn!("no [psa] section: the agent takes vendor data but syncs no PSA");
            None
        }
    };

    let listener = tokio::net::TcpListener::bind(&config.agent.listen)
        .await
        .with_context(|| format!("cannot listen on {} (agent.listen)", config.agent.listen))?;
    let address = listener.local_addr()?;
    let info = AgentInfo {
        pid: std::process::id(),
        listen: address.to_string(),
        started_at: crate::model::format_millis(crate::model::now_millis()),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    std::fs::write(crate::status::agent_info_path(&config.journal), serde_json::to_string(&info)?)
        .context("cannot write the agent's description next to the journal")?;
    if !address.ip().is_loopback() {
        tracing::warn!(%address, "listening beyond loopback: keep the admin token secret");
    }

    let metrics = Arc::new(Metrics::default());
    let watcher_metrics = metrics.clone();
    let _watcher =
        crate::mapping::watcher::spawn_watcher(journal.clone(), config.clone(), move |result| {
            match result {
                Ok(_) => watcher_metrics.mapping_reloads_ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => watcher_metrics.mapping_reloads_failed.fetch_add(1, Ordering::Relaxed),
            };
        })?;

    let (sync_tx, sync_rx) = mpsc::channel(16);
    let shared = Arc::new(RwLock::new(config.clone()));
    let state = AgentState {
        journal: journal.clone(),
        config: shared.clone(),
        token: Arc::new(token),
        syncs: sync_tx,
        metrics: metrics.clone(),
        started: Instant::now(),
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/sync", post(trigger_sync))
        .with_state(state)
        .merge(crate::intake::api::router(crate::intake::api::IntakeState::new(
            journal.clone(),
            config.clone(),
        )));
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { server_stop.notified().await })
            .await
    });
    tracing::info!(%address, pid = info.pid, "tally agent running");

    // The scheduler runs on this task (its futures borrow the session); signals are polled
    // beside it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = schedule(journal.clone(), shared.clone(), psa, sync_rx, metrics, stop_rx);
    tokio::pin!(scheduler);
    let mut scheduler_done = false;
    loop {
        tokio::select! {
            _ = &mut scheduler, if !scheduler_done => scheduler_done = true,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&shared),
        }
    }
    tracing::info!("stopping: no new work; the page in flight may commit");
    let _ = stop_tx.send(true);
    stop.notify_waiters();
    if !scheduler_done {
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut scheduler).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    let _ = std::fs::remove_file(crate::status::agent_info_path(&config.journal));
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn reload(shared: &Arc<RwLock<Config>>) {
    let file = shared.read().map(|c| c.file.clone()).unwrap_or_default();
    match Config::load(&file, true) {
        Ok(mut new) => {
            let mut config = shared.write().unwrap_or_else(|p| p.into_inner());
            // The journal and the listener cannot move under a running agent.
            new.journal = config.journal.clone();
            new.agent.listen = config.agent.listen.clone();
            *config = new;
            tracing::info!(file = %file.display(), "config reloaded");
        }
        Err(e) => {
            tracing::error!(error = %e, "config not reloaded; the previous one stays in force")
        }
    }
}

async fn schedule(
    journal: Journal,
    config: Arc<RwLock<Config>>,
    psa: Option<Arc<PluginSession>>,
    mut requests: mpsc::Receiver<SyncRequest>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_quick = Instant::now();
    let mut last_full = Instant::now();
    let mut first = true;
    loop {
        let (quick_every, full_every) = {
            let c = config.read().unwrap_or_else(|p| p.into_inner());
            (c.quick_sync_every, c.full_sync_every)
        };
        let due_quick = last_quick + quick_every;
        let due_full = last_full + full_every;
        let next = due_quick.min(due_full);
        let request = if first {
            first = false;
            Some(SyncRequest { full: false, reply: None })
        } else {
            tokio::select! {
                _ = stop.changed() => return,
                request = requests.recv() => match request {
                    Some(request) => Some(request),
                    None => return,
                },
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(next)) => {
                    Some(SyncRequest { full: Instant::now() >= due_full, reply: None })
                }
            }
        };
        let Some(request) = request else { continue };
        let config_now = config.read().unwrap_or_else(|p| p.into_inner()).clone();
        let result = match &psa {
            Some(psa) => {
                let options = SyncOptions {
                    full: request.full,
                    confirm_retire: false,
                    trigger: if request.reply.is_some() { "api".into() } else { "schedule".into() },
                    apply: true,
                };
                let progress = Progress::hidden();
                tokio::select! {
                    result = engine::sync(&journal, &config_now, psa.as_ref(), &options, &progress) => {
                        result.map_err(|e| format!("{e:#}"))
                    }
                    _ = stop.changed() => {
                        // The page in flight has committed or not at all; a later run resumes.
                        return;
                    }
                }
            }
            None => crate::reconcile::refresh(&journal, &config_now)
                .map(|r| SyncReport { cards: r.cards, ..SyncReport::default() })
                .map_err(|e| format!("{e:#}")),
        };
        last_quick = Instant::now();
        if request.full {
            last_full = Instant::now();
        }
        match &result {
            Ok(report) => {
                let counter = if report.streams_incomplete == 0 {
                    &metrics.syncs_complete
                } else {
                    &metrics.syncs_incomplete
                };
                counter.fetch_add(1, Ordering::Relaxed);
                metrics.requests.fetch_add(report.requests, Ordering::Relaxed);
                metrics.records.fetch_add(report.records, Ordering::Relaxed);
                metrics.applied.fetch_add(report.applied as u64, Ordering::Relaxed);
            }
            Err(e) => {
                metrics.syncs_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "sync failed");
            }
        }
        if let Some(reply) = request.reply {
            let _ = reply.send(result);
        }
    }
}

fn authorized(state: &AgentState, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    subtle::ConstantTimeEq::ct_eq(given.as_bytes(), state.token.as_bytes()).into()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({
            "error": "missing or wrong admin token: send `Authorization: Bearer <token>` with the \
                      token from the agent's token file (tally.token next to the journal)"
        })),
    )
        .into_response()
}

async fn healthz(State(state): State<AgentState>) -> Response {
    Json(json!({ "status": "ok", "uptime_seconds": state.started.elapsed().as_secs() }))
        .into_response()
}

async fn status(State(state): State<AgentState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let config = state.config.read().unwrap_or_else(|p| p.into_inner()).clone();
    let journal = state.journal.clone();
    match tokio::task::spawn_blocking(move || crate::status::document(&journal, &config)).await {
        Ok(Ok(doc)) => Json(doc).into_response(),
        Ok(Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": format!("{e:#}") })))
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e.to_string() })))
            .into_response(),
    }
}

#[derive(serde::Deserialize, Default)]
struct SyncQuery {
    #[serde(default)]
    full: bool,
    #[serde(default)]
    wait: bool,
}

async fn trigger_sync(
    State(state): State<AgentState>,
    headers: HeaderMap,
    Query(query): Query<SyncQuery>,
) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let (reply, answer) = oneshot::channel();
    let request = SyncRequest { full: query.full, reply: Some(reply) };
    if state.syncs.try_send(request).is_err() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "30")],
            Json(json!({ "error": "syncs are already queued; try again shortly" })),
        )
            .into_response();
    }
    if !query.wait {
        return (StatusCode::ACCEPTED, Json(json!({ "queued": true, "full": query.full })))
            .into_response();
    }
    match answer.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => (StatusCode::BAD_GATEWAY, Json(json!({ "error": e }))).into_response(),
        Err(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "the agent is stopping" })))
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<AgentState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return unauthorized();
    }
    let journal = state.journal.clone();
    let metrics = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || render_metrics(&journal, &metrics)).await;
    match text {
        Ok(Ok(text)) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn render_metrics(journal: &Journal, metrics: &Metrics) -> anyhow::Result<String> {
    use crate::journal::Read;
    use crate::journal::tables;
    use std::fmt::Write as _;

    let mut out = String::new();
    let counter = |out: &mut String, name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    counter(
        &mut out,
        "tally_syncs_total",
        "Syncs run by this agent, by outcome.",
        &[
            ("{outcome=\"complete\"}".into(), load(&metrics.syncs_complete)),
            ("{outcome=\"incomplete\"}".into(), load(&metrics.syncs_incomplete)),
            ("{outcome=\"failed\"}".into(), load(&metrics.syncs_failed)),
        ],
    );
    counter(
        &mut out,
        "tally_psa_requests_total",
        "HTTP requests sent to the PSA, retries included.",
        &[(String::new(), load(&metrics.requests))],
    );
    counter(
        &mut out,
        "tally_changes_applied_total",
        "Quantity changes the PSA confirmed.",
        &[(String::new(), load(&metrics.applied))],
    );
    counter(
        &mut out,
        "tally_mapping_reloads_total",
        "Mapping file reloads, by result.",
        &[
            ("{result=\"ok\"}".into(), load(&metrics.mapping_reloads_ok)),
            ("{result=\"error\"}".into(), load(&metrics.mapping_reloads_failed)),
        ],
    );

    let tx = journal.read()?;
    let mut records = Vec::new();
    let mut success = Vec::new();
    let mut incomplete = Vec::new();
    let mut children: std::collections::BTreeMap<String, (u64, u64, i64)> = Default::default();
    for (key, state) in tx.scan(&tables::STREAMS, "")? {
        let bad = u64::from(state.last_error.is_some());
        match key.split_once(tables::SEP) {
            None => {
                let label = format!("{{stream=\"{}\"}}", escape(&key));
                records.push((label.clone(), state.records_read));
                incomplete.push((label.clone(), bad));
                if let Some(at) = state.last_complete_at {
                    success.push((label, (at / 1000) as u64));
                }
            }
            Some((name, _)) => {
                let entry = children.entry(name.to_string()).or_default();
                entry.0 += state.records_read;
                entry.1 += bad;
                entry.2 = entry.2.max(state.last_complete_at.unwrap_or(0));
            }
        }
    }
    for (name, (read, bad, at)) in children {
        let label = format!("{{stream=\"{}\"}}", escape(&name));
        records.push((label.clone(), read));
        incomplete.push((label.clone(), bad));
        if at > 0 {
            success.push((label, (at / 1000) as u64));
        }
    }
    counter(&mut out, "tally_stream_records_read_total", "Records read per stream.", &records);
    let gauge = |out: &mut String, name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    gauge(
        &mut out,
        "tally_stream_last_success_timestamp_seconds",
        "When each stream last completed a listing.",
        &success,
    );
    gauge(
        &mut out,
        "tally_stream_incomplete",
        "1 while a stream's last listing is incomplete.",
        &incomplete,
    );
    let mut open = 0;
    tx.each(&tables::OUTBOX, "", &mut |_, entry: crate::model::OutboxEntry| {
        open += u64::from(entry.state.is_open());
        Ok(())
    })?;
    gauge(
        &mut out,
        "tally_outbox_depth",
        "Writes decided but not yet confirmed by the PSA.",
        &[(String::new(), open)],
    );
    let summary = crate::report::summarize_journal(&tx)?;
    let by_status: Vec<(String, u64)> = summary
        .by_status
        .iter()
        .map(|(status, n)| (format!("{{status=\"{status}\"}}"), *n as u64))
        .collect();
    gauge(&mut out, "tally_cards", "Reconciliation cards by status.", &by_status);
    Ok(out)
}
