//! Storing listings in the journal: each page together with its checkpoint, and what a
//! finished listing may retire.
//!
//! This is where the journal invariants of a sync live. A page and the checkpoint that covers
//! it are committed in one write transaction, so a crash loses at most the page in flight. A
//! listing that did not finish never retires anything. A complete full listing retires what it
//! did not see, unless that would retire more than the guard's share of the stream, in which
//! case nothing is retired and the stream says why.
//!
//! Every commit is durable and costs the disk a few flushes, so a listing spends as few as it
//! can, and many listings share them. A listing's marker is not written when it begins but with
//! its first stored page, its end or its failure (a listing stopped before any of those has
//! nothing to resume). Its last page is stored together with its end, and the endings of
//! concurrent listings are committed together ([`GroupCommit`]): a one-page listing, such as
//! the billing lines of one agreement, costs a share of one commit instead of three commits.
//! Each listing still waits for its own end to be committed, so a crash loses at most the page
//! each listing had in flight, never a checkpoint without its records.

use std::collections::HashSet;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rust_decimal::Decimal;
use sha2::{Digest as _, Sha256};
use tally_plugin_sdk as sdk;

use crate::journal::codec;
use crate::journal::tables::{self, Opened, Table};
use crate::journal::{Journal, Read, Write};
use crate::model::{self, Listing, Millis, Seen, StreamState, now_millis};

/// Which rows a stream owns, for retiring: a whole table, or the lines of one agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Companies,
    Products,
    Agreements,
    LinesOf(String),
    /// Every billing line: for a PSA whose agreement listing carries the lines too.
    AllLines,
}

impl Scope {
    /// What a complete full listing of `stream` may retire. A plugin that lists no billing
    /// line stream of its own delivers lines inside its agreement listing (HaloPSA's recurring
    /// invoices carry their lines), so that listing owns every line as well.
    pub fn for_stream(
        stream: &sdk::StreamInfo,
        handshake: &sdk::Handshake,
        parent_id: Option<&str>,
    ) -> Vec<Scope> {
        let lines_elsewhere =
            handshake.streams.iter().any(|s| s.record == sdk::RecordKind::BillingLine);
        match (stream.record, parent_id) {
            (sdk::RecordKind::Company, _) => vec![Scope::Companies],
            (sdk::RecordKind::Product, _) => vec![Scope::Products],
            (sdk::RecordKind::Agreement, _) if !lines_elsewhere => {
                vec![Scope::Agreements, Scope::AllLines]
            }
            (sdk::RecordKind::Agreement, _) => vec![Scope::Agreements],
            (sdk::RecordKind::BillingLine, Some(parent)) => {
                vec![Scope::LinesOf(parent.to_string())]
            }
            (sdk::RecordKind::BillingLine, None) => vec![Scope::AllLines],
            _ => Vec::new(),
        }
    }
}

/// What storing a page did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageOutcome {
    pub records: u64,
    /// Records that were new or differed from the journal's copy.
    pub changed: u64,
}

/// What finishing a listing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Complete {
        retired: u64,
    },
    /// A full listing would have retired too much; nothing was retired.
    RetireHeld {
        would_retire: u64,
        of: u64,
    },
}

/// The stream's state, or a fresh one.
pub fn stream_state(journal: &Journal, stream: &str) -> anyhow::Result<StreamState> {
    Ok(journal.read()?.get(&tables::STREAMS, stream)?.unwrap_or_default())
}

/// Starts a listing, or returns the unfinished one to resume (its checkpoint holds the page
/// to resume from). The returned state's `listing` is the one to pass to the calls that store
/// the listing's pages and its end; a new listing is written only with the first of them.
pub fn begin_listing(journal: &Journal, stream: &str, full: bool) -> anyhow::Result<StreamState> {
    Ok(begin(stream_state(journal, stream)?, full))
}

/// [`begin_listing`] on a state already read.
pub fn begin(mut state: StreamState, full: bool) -> StreamState {
    if state.listing.is_none() {
        let mut from = state.checkpoint.clone();
        from.page_token = None;
        let listing = Listing { started_at: now_millis(), full, records: 0, pages: 0, from };
        mark_begun(&mut state, &listing);
    }
    state
}

/// Marks `listing` as under way in `state`, unless a listing already is.
fn mark_begun(state: &mut StreamState, listing: &Listing) {
    if state.listing.is_none() {
        state.listing = Some(listing.clone());
        if listing.full {
            // A full listing reads from the start; the cursor it ends with replaces the old one.
            state.checkpoint = sdk::Checkpoint::default();
        }
    }
}

/// Stores one page of `listing` and its checkpoint in one transaction.
pub fn store_page(
    journal: &Journal,
    stream: &str,
    listing: &Listing,
    page: &Page<'_>,
) -> anyhow::Result<PageOutcome> {
    journal.write(|tx| {
        let mut state: StreamState = tx.get(&tables::STREAMS, stream)?.unwrap_or_default();
        let outcome = store_page_in(tx, &mut state, listing, page, true, None)?;
        tx.put(&tables::STREAMS, stream, &state)?;
        Ok(outcome)
    })
}

/// One page of a listing, as the plugin handed it over.
pub struct Page<'a> {
    /// The record a child stream is listed for.
    pub parent_id: Option<&'a str>,
    pub records: &'a [sdk::Record],
    pub checkpoint: &'a sdk::Checkpoint,
    /// The response body the records' `raw_at` places refer to.
    pub source: Option<&'a str>,
}

/// The final page of a listing, kept until it is stored with the listing's end.
#[derive(Debug, Clone)]
pub struct LastPage {
    pub records: Vec<sdk::Record>,
    pub checkpoint: sdk::Checkpoint,
    pub source: Option<std::sync::Arc<str>>,
}

/// Stores one page's records and moves `state` past it; the caller writes `state`.
///
/// A page that ends the listing of one agreement's lines (`lines_of`) without marking its
/// lines seen is first compared, by digest, with the last such page stored for the agreement:
/// if its lines are the same, the journal already holds every one of them and none is read.
fn store_page_in(
    tx: &redb::WriteTransaction,
    state: &mut StreamState,
    listing: &Listing,
    page: &Page<'_>,
    mark_seen: bool,
    lines_of: Option<&str>,
) -> anyhow::Result<PageOutcome> {
    let Page { parent_id, records, checkpoint, source } = *page;
    let now = now_millis();
    mark_begun(state, listing);
    let mark_seen = mark_seen && state.listing.as_ref().is_some_and(|l| l.full);
    let mut outcome = PageOutcome::default();
    let mut opened = RecordTables::new(tx);
    let digest = match lines_of {
        Some(agreement) if !mark_seen => {
            line_page_digest(&mut opened, records, agreement, parent_id)?
                .map(|digest| (agreement, digest))
        }
        _ => None,
    };
    let unchanged = match &digest {
        Some((agreement, digest)) => {
            let pages = opened_line_pages(&mut opened)?;
            pages.get(agreement)?.is_some_and(|stored| stored == *digest)
        }
        None => false,
    };
    if unchanged {
        outcome.records = records.len() as u64;
    } else {
        for record in records {
            outcome.records += 1;
            if upsert(&mut opened, record, parent_id, source, now, mark_seen)? {
                outcome.changed += 1;
            }
        }
        if let Some((agreement, digest)) = &digest {
            opened_line_pages(&mut opened)?.put(agreement, digest)?;
            opened.line_page_dropped = None;
        }
    }
    drop(opened);
    state.checkpoint = checkpoint.clone();
    state.records_read += outcome.records;
    state.pages_read += 1;
    if let Some(listing) = state.listing.as_mut() {
        listing.records += outcome.records;
        listing.pages += 1;
    }
    Ok(outcome)
}

/// How a listing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// It read everything it was asked for. A full listing retires, within `scopes`, what it
    /// did not see, subject to the guard (`guard_percent` of each scope's rows).
    Complete { scopes: Vec<Scope>, guard_percent: u32, confirm_retire: bool },
    /// It stopped part-way: its checkpoint stays at the last stored page, nothing is retired,
    /// and the next sync resumes it.
    Failed { error: String },
}

impl End {
    /// The agreement whose lines a complete listing delivered, if it listed one agreement's.
    fn lines_of(&self) -> Option<&str> {
        match self {
            End::Complete { scopes, .. } => scopes.iter().find_map(|scope| match scope {
                Scope::LinesOf(agreement) => Some(agreement.as_str()),
                _ => None,
            }),
            End::Failed { .. } => None,
        }
    }
}

/// The last writes of one listing, committed together: its final page, if it handed one over,
/// and its end.
#[derive(Debug, Clone)]
pub struct Ending {
    pub stream: String,
    pub listing: Listing,
    pub parent_id: Option<String>,
    /// The final page.
    pub page: Option<LastPage>,
    /// Ids of the billing lines every page of this listing held, for retiring within one
    /// agreement without reading every line.
    pub lines_seen: Vec<String>,
    pub end: End,
}

/// What committing an ending did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub page: PageOutcome,
    /// `None` for a failed listing.
    pub finish: Option<Finish>,
}

/// Commits the endings of concurrent listings together, on a thread of its own. A transaction
/// starts once `batch` endings wait (the caller keeps more listings going than that, so others
/// keep requests in flight meanwhile) or [`LINGER`] after the first one arrived, whichever
/// comes first. A batch that fails is retried one ending at a time, so each listing gets its
/// own answer and a failed ending never takes another's writes with it.
pub struct GroupCommit {
    queue: Arc<Queue>,
    worker: Option<JoinHandle<()>>,
}

/// The endings waiting for the commit thread. A sender wakes the thread only with the first
/// ending of a batch and with the one that fills it, not with each: a large MSP's full sync
/// queues thousands of endings, and a wake-up per ending cost more than the queueing.
struct Queue {
    state: Mutex<Waiting>,
    ready: Condvar,
    batch: usize,
}

#[derive(Default)]
struct Waiting {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        // A panic while holding the lock leaves only a queue of whole jobs behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) -> anyhow::Result<()> {
        let mut waiting = self.lock();
        if waiting.closed {
            anyhow::bail!("the journal's commit thread has stopped");
        }
        waiting.jobs.push_back(job);
        let queued = waiting.jobs.len();
        drop(waiting);
        if queued == 1 || queued == self.batch {
            self.ready.notify_one();
        }
        Ok(())
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next batch: waits for a first ending, then up to [`LINGER`] for the batch to fill;
    /// `None` once the queue is closed and empty.
    fn next_batch(&self) -> Option<Vec<Job>> {
        let mut waiting = self.lock();
        while waiting.jobs.is_empty() {
            if waiting.closed {
                return None;
            }
            waiting = self.ready.wait(waiting).unwrap_or_else(PoisonError::into_inner);
        }
        let until = Instant::now() + LINGER;
        while waiting.jobs.len() < self.batch && !waiting.closed {
            let wait = until.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            waiting =
                self.ready.wait_timeout(waiting, wait).unwrap_or_else(PoisonError::into_inner).0;
        }
        let take = waiting.jobs.len().min(self.batch);
        Some(waiting.jobs.drain(..take).collect())
    }
}

/// Closes the queue when the commit thread ends, even by a panic, and drops the endings still
/// queued: their listings hear that the thread stopped instead of waiting for it forever.
struct StopOnExit<'q>(&'q Queue);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.lock();
        waiting.closed = true;
        waiting.jobs.clear();
    }
}

struct Job {
    ending: Ending,
    reply: tokio::sync::oneshot::Sender<anyhow::Result<Ended>>,
}

/// The longest an ending waits for others to share its transaction. Every commit of a
/// multi-writer journal is durable and also rewrites the allocator's state, so its cost grows
/// with the journal; a large MSP's full sync spent a fifth of its CPU time committing endings
/// one or two at a time.
pub const LINGER: Duration = Duration::from_millis(50);

impl GroupCommit {
    /// Starts the commit thread; a transaction takes up to `batch` endings (at least one).
    pub fn start(journal: Journal, batch: usize) -> anyhow::Result<GroupCommit> {
        let queue = Arc::new(Queue {
            state: Mutex::new(Waiting::default()),
            ready: Condvar::new(),
            batch: batch.max(1),
        });
        let jobs = Arc::clone(&queue);
        let worker = std::thread::Builder::new()
            .name("journal-commit".to_string())
            .spawn(move || {
                let _stopped = StopOnExit(&jobs);
                commit_batches(&journal, &jobs);
            })
            .context("cannot start the journal's commit thread")?;
        Ok(GroupCommit { queue, worker: Some(worker) })
    }

    /// Commits `ending` with whatever other endings are queued, and waits for it.
    pub async fn end(&self, ending: Ending) -> anyhow::Result<Ended> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.push(Job { ending, reply })?;
        answer.await.context("the journal's commit thread stopped before answering")?
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered every queued ending.
        self.queue.close();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn commit_batches(journal: &Journal, jobs: &Queue) {
    while let Some(batch) = jobs.next_batch() {
        let together = journal.write(|tx| {
            batch.iter().map(|job| end_in(tx, &job.ending)).collect::<Result<Vec<_>, _>>()
        });
        match together {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::debug!(
                    error = %format!("{error:#}"),
                    endings = batch.len(),
                    "a batch of listing ends failed; committing them one by one"
                );
                for job in batch {
                    let result = journal.write(|tx| end_in(tx, &job.ending));
                    let _ = job.reply.send(result);
                }
            }
        }
    }
}

fn end_in(tx: &redb::WriteTransaction, ending: &Ending) -> anyhow::Result<Ended> {
    // A full listing of one agreement's lines retires by what it delivered (`lines_seen`), so
    // the lines of its last page, committed with its end, need not be rewritten to say they
    // were seen: only those that changed are written.
    let retires_by_seen = matches!(&ending.end, End::Complete { scopes, .. }
        if scopes.iter().any(|s| matches!(s, Scope::LinesOf(_))));
    // The stream's state is read once and written once, after the page and the end.
    let mut state: StreamState = tx.get(&tables::STREAMS, &ending.stream)?.unwrap_or_default();
    let page = match &ending.page {
        Some(last) => {
            let page = Page {
                parent_id: ending.parent_id.as_deref(),
                records: &last.records,
                checkpoint: &last.checkpoint,
                source: last.source.as_deref(),
            };
            let lines_of = ending.end.lines_of();
            store_page_in(tx, &mut state, &ending.listing, &page, !retires_by_seen, lines_of)?
        }
        None => PageOutcome::default(),
    };
    let finish = match &ending.end {
        End::Complete { scopes, guard_percent, confirm_retire } => {
            // The agreement's lines in the journal (this listing's pages included), less those
            // the listing delivered: only these may retire.
            let candidates = match scopes.iter().find(|s| matches!(s, Scope::LinesOf(_))) {
                Some(Scope::LinesOf(agreement)) if ending.listing.full => {
                    let seen: HashSet<&str> =
                        ending.lines_seen.iter().map(String::as_str).collect();
                    let index = Opened::open(tx, &tables::LINES_BY_AGREEMENT)?;
                    let prefix = tables::key2(agreement, "");
                    let unseen = index
                        .keys_with_prefix(&prefix)?
                        .into_iter()
                        .map(|key| key[prefix.len()..].to_string())
                        .filter(|line| !seen.contains(line.as_str()))
                        .collect();
                    Some(LineCandidates { unseen, seen: seen.len() as u64 })
                }
                _ => None,
            };
            let rules = Rules {
                guard_percent: *guard_percent,
                confirm: *confirm_retire,
                now: now_millis(),
                lines_of: candidates.as_ref(),
            };
            Some(finish_in(tx, &mut state, &ending.listing, scopes, &rules)?)
        }
        End::Failed { error } => {
            fail_in(&mut state, &ending.listing, error);
            None
        }
    };
    tx.put(&tables::STREAMS, &ending.stream, &state)?;
    Ok(Ended { page, finish })
}

/// How a finished listing retires.
struct Rules<'a> {
    guard_percent: u32,
    confirm: bool,
    now: Millis,
    /// For [`Scope::LinesOf`]: the agreement's lines as this listing left them. Without them
    /// (a listing that is not full), nothing of the agreement retires.
    lines_of: Option<&'a LineCandidates>,
}

/// The lines of one agreement at the end of its full listing.
struct LineCandidates {
    /// Keys of the agreement's lines that the listing did not deliver: only these can retire,
    /// and only these are read.
    unseen: Vec<String>,
    /// Lines the listing delivered, each written as seen by it.
    seen: u64,
}

/// Ends a complete listing in `state`, retiring what a full one did not see (within the
/// guard); the caller writes `state`.
fn finish_in(
    tx: &redb::WriteTransaction,
    state: &mut StreamState,
    begun: &Listing,
    scopes: &[Scope],
    rules: &Rules<'_>,
) -> anyhow::Result<Finish> {
    let (guard_percent, now) = (rules.guard_percent, rules.now);
    {
        mark_begun(state, begun);
        let Some(listing) = state.listing.take() else {
            return Ok(Finish::Complete { retired: 0 });
        };
        state.checkpoint.page_token = None;
        state.last_complete_at = Some(now);
        state.last_error = None;
        state.last_error_at = None;
        let mut finish = Finish::Complete { retired: 0 };
        if listing.full {
            state.last_full_at = Some(now);
            // Every scope is checked against the guard before any is retired.
            for scope in scopes {
                if let held @ Finish::RetireHeld { .. } =
                    retire(tx, scope, listing.started_at, rules, true)?
                {
                    finish = held;
                }
            }
            if finish == (Finish::Complete { retired: 0 }) {
                let mut total = 0;
                for scope in scopes {
                    if let Finish::Complete { retired } =
                        retire(tx, scope, listing.started_at, rules, false)?
                    {
                        total += retired;
                    }
                }
                finish = Finish::Complete { retired: total };
            }
            if let Finish::RetireHeld { would_retire, of } = finish {
                state.last_error = Some(format!(
                    "a full listing would retire {would_retire} of {of} records (more than \
                     {guard_percent} %); nothing was retired. If the PSA really lost them, run \
                     `tally sync --full --confirm-retire`"
                ));
                state.last_error_at = Some(now);
            }
        }
        Ok(finish)
    }
}

/// Marks a listing that stopped part-way in `state`: its checkpoint stays at the last stored
/// page, and nothing is retired. The next sync resumes it.
fn fail_in(state: &mut StreamState, begun: &Listing, error: &str) {
    mark_begun(state, begun);
    state.last_error = Some(error.to_string());
    state.last_error_at = Some(now_millis());
}

/// Retires what `scope` holds that the listing did not see, or with `dry_run` only checks
/// the guard.
fn retire(
    tx: &redb::WriteTransaction,
    scope: &Scope,
    started_at: Millis,
    rules: &Rules<'_>,
    dry_run: bool,
) -> anyhow::Result<Finish> {
    let (guard_percent, confirm, now) = (rules.guard_percent, rules.confirm, rules.now);
    fn stale<V: serde::de::DeserializeOwned + serde::Serialize + Clone>(
        tx: &redb::WriteTransaction,
        table: &Table<V>,
        seen: impl Fn(&V) -> &Seen,
        keep: impl Fn(&V) -> bool,
        started_at: Millis,
    ) -> anyhow::Result<(Vec<(String, V)>, u64)> {
        let mut active = 0;
        let mut unseen = Vec::new();
        tx.each(table, "", &mut |key, value: V| {
            if !keep(&value) || seen(&value).retired_at.is_some() {
                return Ok(());
            }
            active += 1;
            if seen(&value).seen_at < started_at {
                unseen.push((key.to_string(), value));
            }
            Ok(())
        })?;
        Ok((unseen, active))
    }
    fn apply<V: serde::Serialize>(
        tx: &redb::WriteTransaction,
        table: &Table<V>,
        rows: Vec<(String, V)>,
        mark: impl Fn(&mut V),
    ) -> anyhow::Result<()> {
        for (key, mut value) in rows {
            mark(&mut value);
            tx.put(table, &key, &value)?;
        }
        Ok(())
    }
    let held = |unseen: usize, active: u64| {
        let over = (unseen as u64) * 100 > active * guard_percent as u64;
        !confirm && unseen > 0 && over
    };
    macro_rules! retire_in {
        ($table:expr, $keep:expr) => {{
            let (unseen, active) = stale(tx, &$table, |v| &v.seen, $keep, started_at)?;
            retire_in!($table, unseen, active)
        }};
        ($table:expr, $unseen:expr, $active:expr) => {{
            let (unseen, active) = ($unseen, $active);
            if held(unseen.len(), active) {
                return Ok(Finish::RetireHeld { would_retire: unseen.len() as u64, of: active });
            }
            let retired = unseen.len() as u64;
            if dry_run {
                return Ok(Finish::Complete { retired });
            }
            apply(tx, &$table, unseen, |v| v.seen.retired_at = Some(now))?;
            Ok(Finish::Complete { retired })
        }};
    }
    match scope {
        Scope::Companies => retire_in!(tables::COMPANIES, |_| true),
        Scope::Products => retire_in!(tables::PRODUCTS, |_| true),
        Scope::Agreements => retire_in!(tables::AGREEMENTS, |_| true),
        Scope::AllLines => {
            let finish: anyhow::Result<Finish> = retire_in!(tables::BILLING_LINES, |_| true);
            let finish = finish?;
            if matches!(finish, Finish::Complete { retired } if retired > 0) {
                // Lines retired here may stand in any agreement's last page.
                let mut pages = Opened::open(tx, &tables::LINE_PAGES)?;
                for agreement in pages.keys_with_prefix("")? {
                    pages.delete(&agreement)?;
                }
            }
            Ok(finish)
        }
        Scope::LinesOf(agreement) => match rules.lines_of {
            Some(candidates) => {
                let (mut unseen, mut active) = (Vec::new(), candidates.seen);
                for key in &candidates.unseen {
                    let Some(line) = tx.get(&tables::BILLING_LINES, key)? else { continue };
                    if line.agreement_id != *agreement || line.seen.retired_at.is_some() {
                        continue;
                    }
                    active += 1;
                    if line.seen.seen_at < started_at {
                        unseen.push((key.clone(), line));
                    }
                }
                if !dry_run && !unseen.is_empty() && !held(unseen.len(), active) {
                    // Retired lines may stand in the agreement's last page.
                    Opened::open(tx, &tables::LINE_PAGES)?.delete(agreement)?;
                }
                retire_in!(tables::BILLING_LINES, unseen, active)
            }
            None => Ok(Finish::Complete { retired: 0 }),
        },
    }
}

fn seen(now: Millis) -> Seen {
    Seen { seen_at: now, retired_at: None }
}

/// The record tables of one transaction, each opened when a record first needs it and kept
/// open for the rest of the page.
struct RecordTables<'t> {
    tx: &'t redb::WriteTransaction,
    companies: Option<Opened<'t, model::Company>>,
    products: Option<Opened<'t, model::Product>>,
    agreements: Option<Opened<'t, model::Agreement>>,
    lines: Option<Opened<'t, model::BillingLine>>,
    lines_by_agreement: Option<Opened<'t, ()>>,
    raw: Option<Opened<'t, String>>,
    line_pages: Option<Opened<'t, Vec<u8>>>,
    /// The agreement whose page digest this page last dropped.
    line_page_dropped: Option<String>,
    /// The company of the agreement last looked up: a page of lines is one agreement's.
    agreement_company: Option<(String, String)>,
}

impl<'t> RecordTables<'t> {
    fn new(tx: &'t redb::WriteTransaction) -> Self {
        RecordTables {
            tx,
            companies: None,
            products: None,
            agreements: None,
            lines: None,
            lines_by_agreement: None,
            raw: None,
            line_pages: None,
            line_page_dropped: None,
            agreement_company: None,
        }
    }
}

/// The table in `slot`, opened first if it is not yet.
fn opened<'a, 't, V>(
    slot: &'a mut Option<Opened<'t, V>>,
    tx: &'t redb::WriteTransaction,
    table: &Table<V>,
) -> anyhow::Result<&'a mut Opened<'t, V>>
where
    V: serde::de::DeserializeOwned + serde::Serialize,
{
    if slot.is_none() {
        *slot = Some(Opened::open(tx, table)?);
    }
    Ok(slot.as_mut().expect("the table was just opened"))
}

/// Keeps the source's JSON of a record beside it, when the plugin sent it or named its place
/// in `source`. A place whose text is not one JSON value is refused, naming the record.
fn put_raw(
    rows: &mut RecordTables<'_>,
    kind: &str,
    id: &str,
    (raw, raw_at): (&Option<sdk::RawJson>, Option<sdk::Span>),
    source: Option<&str>,
) -> anyhow::Result<()> {
    let text = match (raw, raw_at) {
        (Some(raw), _) => raw.get().to_string(),
        (None, Some(span)) => {
            let Some(text) = source.and_then(|body| span.text(body)) else {
                anyhow::bail!(
                    "{kind} {id}: its source JSON is said to stand at bytes {}..{} of a response \
                     body that does not hold them",
                    span.start,
                    span.end
                );
            };
            match sdk::RawJson::parse(text) {
                Ok(_) => text.to_string(),
                Err(error) => anyhow::bail!(
                    "{kind} {id}: bytes {}..{} of the response body are not one JSON value \
                     ({error}); the plugin named the wrong place for its source JSON",
                    span.start,
                    span.end
                ),
            }
        }
        (None, None) => return Ok(()),
    };
    let table = opened(&mut rows.raw, rows.tx, &tables::RAW)?;
    table.put(&tables::key2(kind, id), &text)?;
    Ok(())
}

/// Writes one record unless the journal already holds the same content; returns whether it
/// changed. With `mark_seen` (a full listing) the record is always rewritten, to mark it seen.
fn upsert(
    rows: &mut RecordTables<'_>,
    record: &sdk::Record,
    parent_id: Option<&str>,
    source: Option<&str>,
    now: Millis,
    mark_seen: bool,
) -> anyhow::Result<bool> {
    /// Whether the record changed, and the journal's copy before this write (with the new
    /// seen time).
    fn put<V: serde::de::DeserializeOwned + serde::Serialize + PartialEq>(
        table: &mut Opened<'_, V>,
        key: &str,
        mut value: V,
        seen_of: impl Fn(&mut V) -> &mut Seen,
        mark_seen: bool,
    ) -> anyhow::Result<(bool, Option<V>)> {
        let mut old = table.get(key)?;
        let changed = match old.as_mut() {
            Some(old) => {
                // Compare everything but when it was seen; a retired record seen again changes.
                seen_of(old).seen_at = seen_of(&mut value).seen_at;
                *old != value
            }
            None => true,
        };
        if changed || mark_seen {
            table.put(key, &value)?;
        }
        Ok((changed, old))
    }
    let quantity = |q: &sdk::Quantity| -> Decimal { q.0 };
    let tx = rows.tx;
    let changed = match record {
        sdk::Record::Company(c) => put(
            opened(&mut rows.companies, tx, &tables::COMPANIES)?,
            &c.id,
            model::Company {
                id: c.id.clone(),
                name: c.name.clone(),
                identifier: c.identifier.clone(),
                active: c.active,
                deleted: c.deleted,
                billable: c.billable,
                updated_at: c.updated_at.clone(),
                seen: seen(now),
            },
            |v| &mut v.seen,
            mark_seen,
        )
        .map(|(changed, _)| changed),
        sdk::Record::Product(p) => put(
            opened(&mut rows.products, tx, &tables::PRODUCTS)?,
            &p.id,
            model::Product {
                id: p.id.clone(),
                identifier: p.identifier.clone(),
                description: p.description.clone(),
                active: p.active,
                unit_price: p.unit_price.as_ref().map(quantity),
                updated_at: p.updated_at.clone(),
                seen: seen(now),
            },
            |v| &mut v.seen,
            mark_seen,
        )
        .map(|(changed, _)| changed),
        sdk::Record::Agreement(a) => put(
            opened(&mut rows.agreements, tx, &tables::AGREEMENTS)?,
            &a.id,
            model::Agreement {
                id: a.id.clone(),
                company_id: a.company_id.clone(),
                name: a.name.clone(),
                active: a.active,
                recurring: a.recurring,
                updated_at: a.updated_at.clone(),
                seen: seen(now),
            },
            |v| &mut v.seen,
            mark_seen,
        )
        .map(|(changed, _)| changed),
        sdk::Record::BillingLine(l) => {
            let value = line_value(rows, l, parent_id, now)?;
            let index_key = tables::key2(&value.agreement_id, &l.id);
            let agreement_id = value.agreement_id.clone();
            let (changed, old) = put(
                opened(&mut rows.lines, tx, &tables::BILLING_LINES)?,
                &l.id,
                value,
                |v| &mut v.seen,
                mark_seen,
            )?;
            // A changed line voids the digest of its agreement's last page, and of the
            // agreement it left: neither page is what the journal holds any more.
            if changed {
                drop_line_page(rows, &agreement_id)?;
            }
            // Keep the line listed under the agreement it is on now.
            let moved = old.as_ref().map(|old| old.agreement_id != agreement_id);
            if moved != Some(false) {
                let index = opened(&mut rows.lines_by_agreement, tx, &tables::LINES_BY_AGREEMENT)?;
                if let Some(old) = &old {
                    index.delete(&tables::key2(&old.agreement_id, &l.id))?;
                }
                index.put(&index_key, &())?;
                if let Some(old) = &old {
                    drop_line_page(rows, &old.agreement_id)?;
                }
            }
            Ok(changed)
        }
        // Vendor records arrive through intake, not through PSA streams.
        sdk::Record::Account(_) | sdk::Record::Service(_) | sdk::Record::Usage(_) => Ok(false),
    }?;
    if changed {
        match record {
            sdk::Record::Company(c) => put_raw(rows, "company", &c.id, (&c.raw, c.raw_at), source)?,
            sdk::Record::Product(p) => put_raw(rows, "product", &p.id, (&p.raw, p.raw_at), source)?,
            sdk::Record::Agreement(a) => {
                put_raw(rows, "agreement", &a.id, (&a.raw, a.raw_at), source)?
            }
            sdk::Record::BillingLine(l) => {
                put_raw(rows, "billing_line", &l.id, (&l.raw, l.raw_at), source)?
            }
            _ => {}
        }
    }
    Ok(changed)
}

/// The line as the journal stores it: its agreement from the page's parent when the PSA did
/// not say, and its company from the agreement's when the PSA did not say.
fn line_value(
    rows: &mut RecordTables<'_>,
    l: &sdk::BillingLine,
    parent_id: Option<&str>,
    now: Millis,
) -> anyhow::Result<model::BillingLine> {
    let agreement_id = if l.agreement_id.is_empty() {
        parent_id.unwrap_or_default().to_string()
    } else {
        l.agreement_id.clone()
    };
    let company_id = if l.company_id.is_empty() {
        match &rows.agreement_company {
            Some((agreement, company)) if *agreement == agreement_id => company.clone(),
            _ => {
                let company = opened(&mut rows.agreements, rows.tx, &tables::AGREEMENTS)?
                    .get(&agreement_id)?
                    .map(|a| a.company_id)
                    .unwrap_or_default();
                rows.agreement_company = Some((agreement_id.clone(), company.clone()));
                company
            }
        }
    } else {
        l.company_id.clone()
    };
    Ok(model::BillingLine {
        id: l.id.clone(),
        agreement_id,
        company_id,
        product_id: l.product_id.clone(),
        quantity: l.quantity.0,
        included_quantity: l.included_quantity.as_ref().map(|q| q.0),
        unit_price: l.unit_price.as_ref().map(|q| q.0),
        effective_date: l.effective_date.clone(),
        cancelled_date: l.cancelled_date.clone(),
        updated_at: l.updated_at.clone(),
        seen: seen(now),
    })
}

/// The digest of a page of `agreement`'s billing lines as the journal would store them (when
/// each was seen aside), or `None` when the page holds anything else, such as a line of
/// another agreement.
fn line_page_digest(
    rows: &mut RecordTables<'_>,
    records: &[sdk::Record],
    agreement: &str,
    parent_id: Option<&str>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut hasher = Sha256::new();
    hasher.update(codec::RECORD_ENCODING.to_le_bytes());
    for record in records {
        let sdk::Record::BillingLine(line) = record else { return Ok(None) };
        let value = line_value(rows, line, parent_id, 0)?;
        if value.agreement_id != agreement {
            return Ok(None);
        }
        let bytes = codec::encode(&value);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(Some(hasher.finalize().to_vec()))
}

fn opened_line_pages<'a, 't>(
    rows: &'a mut RecordTables<'t>,
) -> anyhow::Result<&'a mut Opened<'t, Vec<u8>>> {
    opened(&mut rows.line_pages, rows.tx, &tables::LINE_PAGES)
}

/// Forgets the digest of `agreement`'s last page (once per page of records).
fn drop_line_page(rows: &mut RecordTables<'_>, agreement: &str) -> anyhow::Result<()> {
    if rows.line_page_dropped.as_deref() != Some(agreement) {
        opened_line_pages(rows)?.delete(agreement)?;
        rows.line_page_dropped = Some(agreement.to_string());
    }
    Ok(())
}

/// Stores one billing line as the PSA returned it after a write or a read.
pub fn put_line(
    tx: &redb::WriteTransaction,
    line: &sdk::BillingLine,
    agreement_id: Option<&str>,
    now: Millis,
) -> anyhow::Result<bool> {
    let mut rows = RecordTables::new(tx);
    upsert(&mut rows, &sdk::Record::BillingLine(line.clone()), agreement_id, None, now, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, agreement: &str) -> sdk::Record {
        sdk::Record::BillingLine(sdk::BillingLine {
            id: id.to_string(),
            agreement_id: agreement.to_string(),
            company_id: "7".to_string(),
            product_id: "101".to_string(),
            quantity: sdk::Quantity(Decimal::ONE),
            included_quantity: None,
            unit_price: None,
            effective_date: None,
            cancelled_date: None,
            updated_at: None,
            raw: None,
            raw_at: None,
        })
    }

    fn key(agreement: &str) -> String {
        tables::key2("billing_lines", agreement)
    }

    /// Lists the lines of `agreement` in one page, fully, and ends the listing through `commits`.
    async fn full_listing(
        journal: &Journal,
        commits: &GroupCommit,
        agreement: &str,
        ids: &[&str],
    ) -> Ended {
        let records: Vec<sdk::Record> = ids.iter().map(|id| line(id, agreement)).collect();
        list_lines(journal, commits, agreement, records).await
    }

    /// Lists `records` as the one page of `agreement`'s lines, fully.
    async fn list_lines(
        journal: &Journal,
        commits: &GroupCommit,
        agreement: &str,
        records: Vec<sdk::Record>,
    ) -> Ended {
        let end = End::Complete {
            scopes: vec![Scope::LinesOf(agreement.to_string())],
            guard_percent: 50,
            confirm_retire: false,
        };
        end_listing(journal, commits, &key(agreement), Some(agreement), Some(records), end).await
    }

    /// Begins a full listing of `stream` and ends it as `end`, with `records` as its last page.
    async fn end_listing(
        journal: &Journal,
        commits: &GroupCommit,
        stream: &str,
        parent_id: Option<&str>,
        records: Option<Vec<sdk::Record>>,
        end: End,
    ) -> Ended {
        let state = begin_listing(journal, stream, true).unwrap();
        let lines_seen = records
            .iter()
            .flatten()
            .filter_map(|record| match record {
                sdk::Record::BillingLine(line) => Some(line.id.clone()),
                _ => None,
            })
            .collect();
        let page = records.map(|records| LastPage {
            records,
            checkpoint: sdk::Checkpoint::default(),
            source: None,
        });
        commits
            .end(Ending {
                stream: stream.to_string(),
                listing: state.listing.unwrap(),
                parent_id: parent_id.map(str::to_string),
                page,
                lines_seen,
                end,
            })
            .await
            .unwrap()
    }

    fn stored_line(journal: &Journal, id: &str) -> model::BillingLine {
        journal.read().unwrap().get(&tables::BILLING_LINES, id).unwrap().unwrap()
    }

    fn with_quantity(record: sdk::Record, quantity: i64) -> sdk::Record {
        match record {
            sdk::Record::BillingLine(mut l) => {
                l.quantity = sdk::Quantity(Decimal::from(quantity));
                sdk::Record::BillingLine(l)
            }
            other => other,
        }
    }

    #[test]
    fn more_endings_than_a_batch_all_commit_and_each_hears_its_own_answer() {
        let (_dir, journal, runtime) = scratch();
        let agreements: Vec<String> = (1..=10).map(|n| format!("{}", 100 + n)).collect();
        let ended = runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            let listings = agreements.iter().enumerate().map(|(n, agreement)| {
                let ids: Vec<String> = (0..=n).map(|i| format!("{agreement}-{i}")).collect();
                let commits = &commits;
                let journal = &journal;
                async move {
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    full_listing(journal, commits, agreement, &ids).await
                }
            });
            futures_util::future::join_all(listings).await
        });
        for (n, ended) in ended.iter().enumerate() {
            assert_eq!((ended.page.records, ended.page.changed), (n as u64 + 1, n as u64 + 1));
            assert_eq!(ended.finish, Some(Finish::Complete { retired: 0 }));
        }
        assert_eq!(stored_line(&journal, "110-9").agreement_id, "110");
    }

    #[test]
    fn an_ending_sent_after_the_commit_thread_stopped_hears_so() {
        let (_dir, journal, runtime) = scratch();
        let commits = GroupCommit::start(journal.clone(), 4).unwrap();
        // What the commit thread does as it ends, by a panic or otherwise.
        drop(StopOnExit(&commits.queue));
        let state = begin_listing(&journal, "companies", true).unwrap();
        let ending = Ending {
            stream: "companies".to_string(),
            listing: state.listing.unwrap(),
            parent_id: None,
            page: None,
            lines_seen: Vec::new(),
            end: End::Failed { error: "the PSA timed out".to_string() },
        };
        let error = runtime.block_on(commits.end(ending)).unwrap_err();
        assert_eq!(error.to_string(), "the journal's commit thread has stopped");
    }

    #[test]
    fn a_page_of_lines_the_journal_already_holds_is_not_read_again() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            let first = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!((first.page.records, first.page.changed), (2, 2));
            // Change line 1 behind the store's back: the same page again does not look.
            let mut behind = stored_line(&journal, "1");
            behind.quantity = Decimal::from(99);
            journal.write(|tx| tx.put(&tables::BILLING_LINES, "1", &behind)).unwrap();
            let again = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!((again.page.records, again.page.changed), (2, 0));
            assert_eq!(again.finish, Some(Finish::Complete { retired: 0 }));
            assert_eq!(stored_line(&journal, "1").quantity, Decimal::from(99));
            // A page that differs is read line by line.
            let records = vec![with_quantity(line("1", "10"), 1), line("3", "10")];
            let changed = list_lines(&journal, &commits, "10", records).await;
            assert_eq!((changed.page.records, changed.page.changed), (2, 2));
            assert_eq!(changed.finish, Some(Finish::Complete { retired: 1 }));
        });
        assert_eq!(stored_line(&journal, "1").quantity, Decimal::ONE);
        assert!(retired(&journal, "2"));
    }

    #[test]
    fn a_line_written_back_by_an_apply_is_read_again_from_the_next_page() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            // The apply read back quantity 5; someone set it back to 1 in the PSA since.
            let sdk::Record::BillingLine(applied) = with_quantity(line("1", "10"), 5) else {
                unreachable!()
            };
            journal.write(|tx| put_line(tx, &applied, Some("10"), now_millis())).unwrap();
            assert_eq!(stored_line(&journal, "1").quantity, Decimal::from(5));
            let again = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "1").quantity, Decimal::ONE);
    }

    #[test]
    fn a_line_that_moved_away_and_back_is_on_its_first_agreement_again() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            full_listing(&journal, &commits, "20", &["2"]).await;
            assert_eq!(stored_line(&journal, "2").agreement_id, "20");
            let back = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!(back.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "2").agreement_id, "10");
    }

    #[test]
    fn a_page_that_holds_another_agreement_s_line_is_always_read() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            // Agreement 10's listing says line 2 is agreement 20's; then 20's listing changes it.
            list_lines(&journal, &commits, "10", vec![line("1", "10"), line("2", "20")]).await;
            list_lines(&journal, &commits, "20", vec![with_quantity(line("2", "20"), 4)]).await;
            assert_eq!(stored_line(&journal, "2").quantity, Decimal::from(4));
            let again =
                list_lines(&journal, &commits, "10", vec![line("1", "10"), line("2", "20")]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "2").quantity, Decimal::ONE);
    }

    #[test]
    fn a_page_that_changed_lines_without_a_digest_of_its_own_voids_the_old_one() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            // Line 1 is now 5, line 2 is gone, and the page carries a line of agreement 20.
            let mixed = vec![with_quantity(line("1", "10"), 5), line("3", "20")];
            let ended = list_lines(&journal, &commits, "10", mixed).await;
            assert_eq!(ended.finish, Some(Finish::Complete { retired: 1 }));
            // The PSA lists the first page again.
            let again = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!(again.page.changed, 2);
        });
        assert_eq!(stored_line(&journal, "1").quantity, Decimal::ONE);
        assert!(!retired(&journal, "2"));
    }

    #[test]
    fn lines_retired_from_an_agreement_come_back_with_its_page() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            // Line 2 is gone; line 1 is unchanged; the page carries a line of agreement 20.
            let mixed = vec![line("1", "10"), line("3", "20")];
            let ended = list_lines(&journal, &commits, "10", mixed).await;
            assert_eq!(ended.finish, Some(Finish::Complete { retired: 1 }));
            let again = full_listing(&journal, &commits, "10", &["1", "2"]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert!(!retired(&journal, "2"));
    }

    #[test]
    fn a_listing_that_failed_after_its_last_page_voids_the_old_digest() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1"]).await;
            let records = vec![with_quantity(line("1", "10"), 5)];
            let failed = End::Failed { error: "the plugin failed after its last page".into() };
            end_listing(&journal, &commits, &key("10"), Some("10"), Some(records), failed).await;
            assert_eq!(stored_line(&journal, "1").quantity, Decimal::from(5));
            let again = full_listing(&journal, &commits, "10", &["1"]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "1").quantity, Decimal::ONE);
    }

    #[test]
    fn an_earlier_page_of_a_listing_that_changed_a_line_voids_the_old_digest() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1"]).await;
            // The next listing stores a first page with line 1 at 5, then stops; when it
            // resumes, its last page holds line 1 at 1 again.
            let stream = key("10");
            let listing = begin_listing(&journal, &stream, true).unwrap().listing.unwrap();
            let records = vec![with_quantity(line("1", "10"), 5)];
            let checkpoint =
                sdk::Checkpoint { page_token: Some("2".to_string()), ..Default::default() };
            let page = Page {
                parent_id: Some("10"),
                records: &records,
                checkpoint: &checkpoint,
                source: None,
            };
            store_page(&journal, &stream, &listing, &page).unwrap();
            let again = full_listing(&journal, &commits, "10", &["1"]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "1").quantity, Decimal::ONE);
    }

    #[test]
    fn lines_retired_across_every_agreement_come_back_with_their_page() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            let end = End::Complete {
                scopes: vec![Scope::AllLines],
                guard_percent: 50,
                confirm_retire: true,
            };
            let ended = end_listing(&journal, &commits, "agreements", None, None, end).await;
            assert_eq!(ended.finish, Some(Finish::Complete { retired: 1 }));
            assert!(retired(&journal, "1"));
            let again = full_listing(&journal, &commits, "10", &["1"]).await;
            assert_eq!(again.page.changed, 1);
        });
        assert!(!retired(&journal, "1"));
    }

    #[test]
    fn lines_take_their_agreement_s_new_company_though_their_page_is_the_same() {
        let (_dir, journal, runtime) = scratch();
        let companyless = |company: &str| {
            let agreement = sdk::Record::Agreement(sdk::Agreement {
                id: "10".to_string(),
                company_id: company.to_string(),
                name: "Managed services".to_string(),
                active: true,
                recurring: true,
                updated_at: None,
                raw: None,
                raw_at: None,
            });
            let checkpoint = sdk::Checkpoint::default();
            let listing = begin_listing(&journal, "agreements", false).unwrap().listing.unwrap();
            let page = Page {
                parent_id: None,
                records: &[agreement],
                checkpoint: &checkpoint,
                source: None,
            };
            store_page(&journal, "agreements", &listing, &page).unwrap();
        };
        let page = || match line("1", "10") {
            sdk::Record::BillingLine(mut l) => {
                l.company_id = String::new();
                vec![sdk::Record::BillingLine(l)]
            }
            other => vec![other],
        };
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            companyless("7");
            list_lines(&journal, &commits, "10", page()).await;
            assert_eq!(stored_line(&journal, "1").company_id, "7");
            companyless("8");
            let again = list_lines(&journal, &commits, "10", page()).await;
            assert_eq!(again.page.changed, 1);
        });
        assert_eq!(stored_line(&journal, "1").company_id, "8");
    }

    /// A new journal in a temporary directory, and a runtime to drive listings on.
    fn scratch() -> (tempfile::TempDir, Journal, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        (dir, journal, runtime)
    }

    fn retired(journal: &Journal, id: &str) -> bool {
        let line = journal.read().unwrap().get(&tables::BILLING_LINES, id).unwrap().unwrap();
        line.seen.retired_at.is_some()
    }

    #[test]
    fn grouped_endings_retire_only_the_lines_their_agreement_lost() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            let (a, b) = futures_util::join!(
                full_listing(&journal, &commits, "10", &["1", "2", "3"]),
                full_listing(&journal, &commits, "20", &["4", "5"]),
            );
            assert_eq!(a.page.records + b.page.records, 5);
            std::thread::sleep(std::time::Duration::from_millis(5));

            // Agreement 10 lost line 3 and gained 6 and 7; agreement 20 is as it was.
            let again = full_listing(&journal, &commits, "10", &["1", "2", "6", "7"]).await;
            assert_eq!(again.finish, Some(Finish::Complete { retired: 1 }));
            let b_again = full_listing(&journal, &commits, "20", &["4", "5"]).await;
            assert_eq!(b_again.finish, Some(Finish::Complete { retired: 0 }));
        });
        assert!(retired(&journal, "3"));
        for id in ["1", "2", "4", "5", "6", "7"] {
            assert!(!retired(&journal, id), "line {id} was retired");
        }
        let state = stream_state(&journal, &key("10")).unwrap();
        assert!(state.listing.is_none() && state.last_full_at.is_some());
    }

    #[test]
    fn a_line_that_moved_to_another_agreement_retires_with_neither() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            full_listing(&journal, &commits, "20", &["3"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            // Line 2 now shows under agreement 20, so agreement 10 no longer owns it.
            full_listing(&journal, &commits, "20", &["3", "2"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            let ten = full_listing(&journal, &commits, "10", &["1"]).await;
            assert_eq!(ten.finish, Some(Finish::Complete { retired: 0 }));
        });
        let tx = journal.read().unwrap();
        let index: Vec<String> = tx
            .scan(&tables::LINES_BY_AGREEMENT, "")
            .unwrap()
            .into_iter()
            .map(|(k, ())| k)
            .collect();
        let expected: Vec<String> = [("10", "1"), ("20", "2"), ("20", "3")]
            .iter()
            .map(|(a, l)| tables::key2(a, l))
            .collect();
        assert_eq!(index, expected);
        for id in ["1", "2", "3"] {
            assert!(!retired(&journal, id), "line {id} was retired");
        }
    }

    #[test]
    fn a_source_place_that_is_not_json_refuses_the_page_and_stores_none_of_it() {
        let (_dir, journal, _runtime) = scratch();
        let body = r#"[{"id":1},{"id":2}]"#;
        let placed = |id: &str, start: u64, end: u64| match line(id, "10") {
            sdk::Record::BillingLine(mut l) => {
                l.raw_at = Some(sdk::Span { start, end });
                sdk::Record::BillingLine(l)
            }
            other => other,
        };
        let stream = key("10");
        let listing = begin_listing(&journal, &stream, true).unwrap().listing.unwrap();
        let store = |records: &[sdk::Record]| {
            let checkpoint = sdk::Checkpoint::default();
            let page = Page {
                parent_id: Some("10"),
                records,
                checkpoint: &checkpoint,
                source: Some(body),
            };
            store_page(&journal, &stream, &listing, &page)
        };

        let error = store(&[placed("1", 1, 9), placed("2", 9, 12)]).unwrap_err().to_string();
        assert!(
            error.contains("billing_line 2") && error.contains("not one JSON value"),
            "{error}"
        );
        let past = store(&[placed("1", 1, 9), placed("2", 10, 99)]).unwrap_err().to_string();
        assert!(past.contains("billing_line 2") && past.contains("10..99"), "{past}");
        let tx = journal.read().unwrap();
        assert_eq!(tx.count(&tables::BILLING_LINES).unwrap(), 0, "a refused page stored lines");
        assert_eq!(stream_state(&journal, &stream).unwrap(), StreamState::default());
        drop(tx);

        store(&[placed("1", 1, 9), placed("2", 10, 18)]).unwrap();
        let tx = journal.read().unwrap();
        let raw = tx.get(&tables::RAW, &tables::key2("billing_line", "2")).unwrap();
        assert_eq!(raw.as_deref(), Some(r#"{"id":2}"#));
    }

    #[test]
    fn the_guard_counts_the_lines_the_listing_stored_as_well() {
        let (_dir, journal, runtime) = scratch();
        runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            full_listing(&journal, &commits, "10", &["1", "2"]).await;
            std::thread::sleep(std::time::Duration::from_millis(5));
            // Both old lines are gone, but six new ones came: 2 of 8 is under the 50 % guard.
            let ended =
                full_listing(&journal, &commits, "10", &["3", "4", "5", "6", "7", "8"]).await;
            assert_eq!(ended.finish, Some(Finish::Complete { retired: 2 }));
            // Now every line is gone at once: held.
            std::thread::sleep(std::time::Duration::from_millis(5));
            let held = full_listing(&journal, &commits, "10", &["9"]).await;
            assert_eq!(held.finish, Some(Finish::RetireHeld { would_retire: 6, of: 7 }));
        });
        assert!(!retired(&journal, "8"), "a held retirement retired something");
    }

    #[test]
    fn a_listing_that_never_stored_a_page_leaves_no_trace_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        let state = begin_listing(&journal, "companies", true).unwrap();
        assert!(state.listing.is_some());
        assert_eq!(stream_state(&journal, "companies").unwrap(), StreamState::default());

        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let ended = runtime.block_on(async {
            let commits = GroupCommit::start(journal.clone(), 4).unwrap();
            commits
                .end(Ending {
                    stream: "companies".to_string(),
                    listing: state.listing.clone().unwrap(),
                    parent_id: None,
                    page: None,
                    lines_seen: Vec::new(),
                    end: End::Failed { error: "companies: listing incomplete".to_string() },
                })
                .await
                .unwrap()
        });
        assert_eq!(ended.finish, None);
        let stored = stream_state(&journal, "companies").unwrap();
        assert_eq!(stored.listing, state.listing, "a failed listing is kept to resume");
        assert!(stored.last_error.is_some_and(|e| e.contains("incomplete")));
    }
}
