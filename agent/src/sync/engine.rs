//! One sync of the PSA side: every stream listed, each page stored with its checkpoint, then
//! the cards recomputed and the outbox applied.
//!
//! Streams are independent: one that fails is marked incomplete (its checkpoint stays at its
//! last stored page, nothing is retired) and the others carry on. A sync that was stopped or
//! killed resumes each unfinished listing from its last stored page. Child streams (billing
//! lines per agreement) are listed with bounded concurrency after their parent stream.
//!
//! The plugin's concurrency limit bounds the requests in flight (the HTTP executor holds it);
//! the engine keeps more listings going than that, so that listings waiting for their last page
//! to be committed (see `store::GroupCommit`) never leave a request slot idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use tally_plugin_sdk as sdk;

use super::outbox::{self, Applied};
use super::progress::Progress;
use super::psa::{Psa, PsaError};
use super::store::{self, End, Ending, Finish, GroupCommit, Scope};
use crate::config::Config;
use crate::journal::tables::{self, key2};
use crate::journal::{Journal, Read, Write};
use crate::model::{StreamState, SyncRun, now_millis};

/// How to run a sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub full: bool,
    pub confirm_retire: bool,
    pub trigger: String,
    /// Apply the outbox after reconciling (false: report only, whatever the policy).
    pub apply: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub run_id: u64,
    pub full: bool,
    pub streams_complete: u32,
    pub streams_incomplete: u32,
    pub records: u64,
    pub changed: u64,
    pub retired: u64,
    pub requests: u64,
    pub errors: Vec<String>,
    pub cards: usize,
    pub queued: usize,
    pub applied: usize,
    pub failed: usize,
    pub conflicts: usize,
    pub pending: usize,
}

struct Counters {
    records: AtomicU64,
    changed: AtomicU64,
    retired: AtomicU64,
    /// Set when a listing got no definite answer from the PSA after the host's retries.
    unanswered: AtomicBool,
}

/// The key of a stream's state: its name, or `name<SEP>parent` for a child stream.
pub fn stream_key(stream: &str, parent: Option<&str>) -> String {
    match parent {
        Some(parent) => key2(stream, parent),
        None => stream.to_string(),
    }
}

/// Runs one sync against `psa`.
pub async fn sync(
    journal: &Journal,
    config: &Config,
    psa: &impl Psa,
    options: &SyncOptions,
    progress: &Progress,
) -> anyhow::Result<SyncReport> {
    let run_id = journal.write(|tx| {
        tx.append(&tables::SYNC_RUNS, |id| SyncRun {
            id,
            full: options.full,
            trigger: options.trigger.clone(),
            started_at: now_millis(),
            finished_at: None,
            streams_complete: 0,
            streams_incomplete: 0,
            records: 0,
            requests: 0,
            outcome: None,
            pid: std::process::id(),
        })
    })?;
    let span = tracing::info_span!("sync", run = run_id, full = options.full);
    tracing::Instrument::instrument(
        run_streams(journal, config, psa, options, progress, run_id),
        span,
    )
    .await
}

async fn run_streams(
    journal: &Journal,
    config: &Config,
    psa: &impl Psa,
    options: &SyncOptions,
    progress: &Progress,
    run_id: u64,
) -> anyhow::Result<SyncReport> {
    let requests_before = psa.requests();
    let mut report = SyncReport { run_id, full: options.full, ..SyncReport::default() };
    let counters = Counters {
        records: AtomicU64::new(0),
        changed: AtomicU64::new(0),
        retired: AtomicU64::new(0),
        unanswered: AtomicBool::new(false),
    };

    let handshake = psa.handshake().clone();
    let top: Vec<&sdk::StreamInfo> =
        handshake.streams.iter().filter(|s| s.parent.is_none()).collect();
    let children: Vec<&sdk::StreamInfo> =
        handshake.streams.iter().filter(|s| s.parent.is_some()).collect();
    let lookback = config.lookback.as_secs();
    let concurrency = listing_concurrency(&handshake, config);
    let listings = concurrency * LISTINGS_PER_REQUEST_SLOT;
    // A transaction takes the endings of half the listings going; the other half keep the
    // request slots busy meanwhile.
    let commits = GroupCommit::start(journal.clone(), listings / 2)?;
    let ctx = StreamCtx { journal, config, psa, options, lookback, counters: &counters, progress };

    progress.streams(top.len() as u64);
    // The first listing goes alone: a plugin can learn something for the whole session from its
    // first answer (ConnectWise's codebase), which the other listings then reuse instead of each
    // asking for it at the same moment.
    let (first, rest) = top.split_at(top.len().min(1));
    let mut results = Vec::new();
    for stream in first {
        results.push(list_stream(&ctx, &commits, stream, None).await);
    }
    // A PSA that gives the first listing no usable answer, after the retries, is down, in
    // maintenance or out of reach: asking again for every other listing (thousands, for a
    // large MSP) would only take minutes and say the same thing thousands of times.
    if counters.unanswered.load(Ordering::Relaxed) {
        tally(&mut report, results);
        report.streams_incomplete += rest.len() as u32;
        let why = format!(
            "the PSA gave the first listing no usable answer, so no other listing was tried: \
             check that the PSA is up and reachable from this server (its address is in \
             [psa.settings] of {}), then sync again",
            config.file.display()
        );
        tracing::warn!(skipped = rest.len(), "{why}");
        report.errors.push(why);
        drop(commits);
        return finish_run(&ctx, report, requests_before).await;
    }
    results.extend(
        futures_util::stream::iter(
            rest.iter().map(|stream| list_stream(&ctx, &commits, stream, None)),
        )
        .buffer_unordered(listings)
        .collect::<Vec<_>>()
        .await,
    );
    tally(&mut report, results);
    // The top-level pages are the largest (a thousand rows each); what decoding them freed is
    // not needed by the many small pages of the child listings.
    release_freed_memory();

    for child in children {
        let parent = child.parent.as_deref().unwrap_or_default();
        let Some(parent_kind) =
            handshake.streams.iter().find(|s| s.name == parent).map(|s| s.record)
        else {
            report.errors.push(format!("stream {} names an unknown parent {parent}", child.name));
            continue;
        };
        let parents = parent_ids(journal, parent_kind)?;
        progress.streams(parents.len() as u64);
        // One read for the states of all the child listings instead of one each.
        let states = child_states(journal, &child.name, &parents)?;
        let (ctx, commits) = (&ctx, &commits);
        let results = futures_util::stream::iter(parents.iter().zip(states).map(|(id, state)| {
            let parent = Some(id.as_str());
            async move {
                match state {
                    Ok(state) => list_stream_from(ctx, commits, child, parent, state).await,
                    Err(e) => stream_unreadable(ctx, &stream_key(&child.name, parent), e),
                }
            }
        }))
        .buffer_unordered(listings)
        .collect::<Vec<_>>()
        .await;
        tally(&mut report, results);
    }
    drop(commits);
    release_freed_memory();
    finish_run(&ctx, report, requests_before).await
}

/// What follows the listings: the counts, the mapping, the cards, the applies and the run's
/// record.
async fn finish_run<P: Psa>(
    ctx: &StreamCtx<'_, P>,
    mut report: SyncReport,
    requests_before: u64,
) -> anyhow::Result<SyncReport> {
    let StreamCtx { journal, config, psa, options, counters, .. } = *ctx;
    let run_id = report.run_id;
    report.records = counters.records.load(Ordering::Relaxed);
    report.changed = counters.changed.load(Ordering::Relaxed);
    report.retired = counters.retired.load(Ordering::Relaxed);

    // New PSA records may complete automatic matches; a bad mapping file keeps the last good
    // mapping in force and is reported in `tally status`.
    if let Err(e) = crate::mapping::resolve::apply(journal, config) {
        tracing::warn!(error = %e, "mapping file not applied; the previous mapping stays in force");
    }
    let refreshed = crate::reconcile::refresh(journal, config)?;
    report.cards = refreshed.cards;
    if options.apply {
        let applied = apply(journal, config, psa).await?;
        report.queued = applied.queued;
        report.applied = applied.done;
        report.failed = applied.failed;
        report.conflicts = applied.conflicts;
        report.pending = applied.pending;
    }
    report.requests = psa.requests() - requests_before;

    let outcome = if report.streams_incomplete == 0 { "complete" } else { "incomplete" };
    journal.write(|tx| {
        let key = tables::seq_key(run_id);
        if let Some(mut run) = tx.get(&tables::SYNC_RUNS, &key)? {
            run.finished_at = Some(now_millis());
            run.streams_complete = report.streams_complete;
            run.streams_incomplete = report.streams_incomplete;
            run.records = report.records;
            run.requests = report.requests;
            run.outcome = Some(outcome.to_string());
            tx.put(&tables::SYNC_RUNS, &key, &run)?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    tracing::info!(
        records = report.records,
        changed = report.changed,
        requests = report.requests,
        incomplete = report.streams_incomplete,
        "sync finished"
    );
    Ok(report)
}

/// Queues the changes the policy allows and applies every open outbox entry.
pub async fn apply(journal: &Journal, config: &Config, psa: &impl Psa) -> anyhow::Result<Applied> {
    let queued = outbox::queue(journal)?;
    let mut applied = outbox::process(journal, psa).await?;
    applied.queued = queued;
    if applied.done + applied.conflicts + applied.failed > 0 {
        crate::reconcile::refresh(journal, config)?;
    }
    Ok(applied)
}

/// Listings kept going per request the PSA allows in flight: while some wait for their end to
/// be committed together, others have requests out.
const LISTINGS_PER_REQUEST_SLOT: usize = 4;

/// Hands memory freed by the listings back to the system between phases, so that what the
/// top-level pages needed (up to a thousand rows each, several in flight) is not still held
/// while the child listings and reconciliation run. Where the allocator was left with one
/// arena per thread (`MALLOC_ARENA_MAX`, see the binary), this also frees what each thread's
/// arena kept.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn listing_concurrency(handshake: &sdk::Handshake, config: &Config) -> usize {
    let hint = handshake.limits.max_concurrency.max(1);
    let configured = config.psa.as_ref().and_then(|p| p.max_concurrency).unwrap_or(hint);
    hint.min(configured).max(1) as usize
}

fn tally(report: &mut SyncReport, results: Vec<Result<(), String>>) {
    for result in results {
        match result {
            Ok(()) => report.streams_complete += 1,
            Err(e) => {
                report.streams_incomplete += 1;
                if report.errors.len() < 20 {
                    report.errors.push(e);
                }
            }
        }
    }
}

/// The ids a child stream is listed for: every record of the parent kind not retired.
fn parent_ids(journal: &Journal, kind: sdk::RecordKind) -> anyhow::Result<Vec<String>> {
    let tx = journal.read()?;
    let mut ids = Vec::new();
    match kind {
        sdk::RecordKind::Agreement => {
            tx.each(&tables::AGREEMENTS, "", &mut |_, a: crate::model::Agreement| {
                if a.seen.retired_at.is_none() {
                    ids.push(a.id);
                }
                Ok(())
            })?
        }
        sdk::RecordKind::Company => {
            tx.each(&tables::COMPANIES, "", &mut |_, c: crate::model::Company| {
                if c.seen.retired_at.is_none() {
                    ids.push(c.id);
                }
                Ok(())
            })?
        }
        _ => {}
    }
    Ok(ids)
}

/// The states of `stream`'s listings under each of `parents`, in their order, read in one
/// transaction. A state that cannot be read stays that listing's error: the others go on.
fn child_states(
    journal: &Journal,
    stream: &str,
    parents: &[String],
) -> anyhow::Result<Vec<Result<StreamState, String>>> {
    let read = journal.read()?;
    let states = read.lookup(&tables::STREAMS)?;
    Ok(parents
        .iter()
        .map(|parent| {
            let key = stream_key(stream, Some(parent));
            states.get(&key).map(Option::unwrap_or_default).map_err(|e| e.to_string())
        })
        .collect())
}

/// What every listing of one sync shares.
struct StreamCtx<'a, P> {
    journal: &'a Journal,
    config: &'a Config,
    psa: &'a P,
    options: &'a SyncOptions,
    lookback: u64,
    counters: &'a Counters,
    progress: &'a Progress,
}

async fn list_stream<P: Psa>(
    ctx: &StreamCtx<'_, P>,
    commits: &GroupCommit,
    stream: &sdk::StreamInfo,
    parent: Option<&str>,
) -> Result<(), String> {
    let key = stream_key(&stream.name, parent);
    match store::stream_state(ctx.journal, &key) {
        Ok(state) => list_stream_from(ctx, commits, stream, parent, state).await,
        Err(e) => stream_unreadable(ctx, &key, e.to_string()),
    }
}

/// A listing whose stored state cannot be read: it is not listed, and the sync goes on.
fn stream_unreadable<P>(ctx: &StreamCtx<'_, P>, key: &str, error: String) -> Result<(), String> {
    ctx.progress.stream_done();
    tracing::warn!(stream = %key, error = %error, "stream incomplete");
    Err(error)
}

/// Lists one stream from its `state` as last read from the journal.
async fn list_stream_from<P: Psa>(
    ctx: &StreamCtx<'_, P>,
    commits: &GroupCommit,
    stream: &sdk::StreamInfo,
    parent: Option<&str>,
    state: StreamState,
) -> Result<(), String> {
    let StreamCtx { journal, config, psa, options, lookback, counters, progress } = *ctx;
    let key = stream_key(&stream.name, parent);
    let shown = match parent {
        Some(p) => format!("{} of {p}", stream.name),
        None => stream.name.clone(),
    };
    let span = tracing::info_span!("stream", stream = %stream.name, parent = parent.unwrap_or(""));
    let result = tracing::Instrument::instrument(
        async {
            // A full listing is forced when the stream cannot read increments or has never
            // finished one; an unfinished listing resumes as it began.
            let full = match &state.listing {
                Some(listing) => listing.full,
                None => options.full || !stream.incremental || state.last_complete_at.is_none(),
            };
            let state = store::begin(state, full);
            let listing = state
                .listing
                .clone()
                .ok_or_else(|| anyhow::anyhow!("{shown}: the listing did not begin"))?;
            let checkpoint = state.checkpoint.clone();
            let resumed = checkpoint.page_token.is_some();
            if resumed {
                tracing::info!(stream = %shown, "resuming an unfinished listing");
            }
            let operation = sdk::Operation::List {
                stream: stream.name.clone(),
                mode: if full { sdk::ListMode::Full } else { sdk::ListMode::Incremental },
                checkpoint: (checkpoint != sdk::Checkpoint::default()).then_some(checkpoint),
                parent_id: parent.map(str::to_string),
                lookback_seconds: lookback,
            };
            let count = |outcome: store::PageOutcome| {
                counters.records.fetch_add(outcome.records, Ordering::Relaxed);
                counters.changed.fetch_add(outcome.changed, Ordering::Relaxed);
                progress.page(outcome.records);
            };
            let mut last_page = None;
            let mut lines_seen = Vec::new();
            let result = psa
                .run(operation, &mut |page| {
                    lines_seen.extend(page.records.iter().filter_map(|record| match record {
                        sdk::Record::BillingLine(line) => Some(line.id.clone()),
                        _ => None,
                    }));
                    if page.last {
                        // Stored with the listing's end, in a commit shared with other listings.
                        last_page = Some(store::LastPage {
                            records: page.records,
                            checkpoint: page.checkpoint,
                            source: page.source,
                        });
                        return Ok(());
                    }
                    let page = store::Page {
                        parent_id: parent,
                        records: &page.records,
                        checkpoint: &page.checkpoint,
                        source: page.source.as_deref(),
                    };
                    let outcome = store::store_page(journal, &key, &listing, &page)?;
                    count(outcome);
                    Ok(())
                })
                .await;
            // Only a listing that handed over its last page proves it saw everything.
            let end = match &result {
                Ok(_) => End::Complete {
                    scopes: match last_page {
                        Some(_) => Scope::for_stream(stream, psa.handshake(), parent),
                        None => Vec::new(),
                    },
                    guard_percent: config.agent.retire_guard_percent,
                    confirm_retire: options.confirm_retire,
                },
                Err(error) => End::Failed { error: describe(&shown, error) },
            };
            let ended = commits
                .end(Ending {
                    stream: key.clone(),
                    listing,
                    parent_id: parent.map(str::to_string),
                    page: last_page,
                    lines_seen,
                    end,
                })
                .await?;
            count(ended.page);
            match (result, ended.finish) {
                (Err(error), _) => {
                    if error.unanswered() {
                        counters.unanswered.store(true, Ordering::Relaxed);
                    }
                    Err(anyhow::anyhow!(describe(&shown, &error)))
                }
                (Ok(_), Some(Finish::RetireHeld { would_retire, of })) => Err(anyhow::anyhow!(
                    "{shown}: a full listing would retire {would_retire} of {of} records; nothing \
                     was retired (run `tally sync --full --confirm-retire` if the PSA really lost \
                     them)"
                )),
                (Ok(_), Some(Finish::Complete { retired })) => {
                    counters.retired.fetch_add(retired, Ordering::Relaxed);
                    Ok(())
                }
                (Ok(_), None) => Ok(()),
            }
        },
        span,
    )
    .await;
    progress.stream_done();
    result.map_err(|e: anyhow::Error| {
        tracing::warn!(stream = %shown, error = %e, "stream incomplete");
        e.to_string()
    })
}

fn describe(stream: &str, error: &PsaError) -> String {
    format!("{stream}: listing incomplete: {error}; its checkpoint stays at the last stored page")
}

/// Probes the PSA once: a cheap authenticated request. A failure is a configuration error
/// (case C10): it is reported, not retried.
pub async fn probe(psa: &impl Psa) -> Result<String, PsaError> {
    match psa.run(sdk::Operation::Probe, &mut |_| Ok(())).await? {
        sdk::OpResult::Probed { detail } => Ok(detail),
        other => Ok(format!("{other:?}")),
    }
}

/// Whether any stream has ever completed (a new journal needs a probe first).
pub fn has_synced(journal: &Journal) -> anyhow::Result<bool> {
    Ok(journal.read()?.values(&tables::STREAMS, "")?.iter().any(|s| s.last_complete_at.is_some()))
}

/// Waits out `Duration` unless `stop` fires first; returns whether it stopped.
pub async fn pause(duration: Duration, stop: &Arc<tokio::sync::Notify>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = stop.notified() => true,
    }
}
