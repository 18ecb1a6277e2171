//! Storing listings in the journal: each page together with its checkpoint, and what a
//! finished listing may retire.
//!
//! This is where the journal invariants of a sync live. A page and the checkpoint that covers
//! it are committed in one write transaction, so a crash loses at most the page in flight. A
//! listing that did not finish never retires anything. A complete full listing retires what it
//! did not see, unless that would retire more than the guard's share of the stream, in which
//! case nothing is retired and the stream says why.

use rust_decimal::Decimal;
use tally_plugin_sdk as sdk;

use crate::journal::tables::{self, Table};
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
/// to resume from).
pub fn begin_listing(journal: &Journal, stream: &str, full: bool) -> anyhow::Result<StreamState> {
    journal.write(|tx| {
        let mut state = tx.get(&tables::STREAMS, stream)?.unwrap_or_default();
        if state.listing.is_none() {
            let mut from = state.checkpoint.clone();
            from.page_token = None;
            state.listing =
                Some(Listing { started_at: now_millis(), full, records: 0, pages: 0, from });
            if full {
                // A full listing reads from the start; the cursor it ends with replaces the old one.
                state.checkpoint = sdk::Checkpoint::default();
            }
            tx.put(&tables::STREAMS, stream, &state)?;
        }
        Ok(state)
    })
}

/// Stores one page and its checkpoint in one transaction.
pub fn store_page(
    journal: &Journal,
    stream: &str,
    parent_id: Option<&str>,
    records: &[sdk::Record],
    checkpoint: &sdk::Checkpoint,
) -> anyhow::Result<PageOutcome> {
    let now = now_millis();
    journal.write(|tx| {
        let mut state: StreamState = tx.get(&tables::STREAMS, stream)?.unwrap_or_default();
        let full = state.listing.as_ref().is_some_and(|l| l.full);
        let mut outcome = PageOutcome::default();
        for record in records {
            outcome.records += 1;
            if upsert(tx, record, parent_id, now, full)? {
                outcome.changed += 1;
            }
        }
        state.checkpoint = checkpoint.clone();
        state.records_read += outcome.records;
        state.pages_read += 1;
        if let Some(listing) = state.listing.as_mut() {
            listing.records += outcome.records;
            listing.pages += 1;
        }
        tx.put(&tables::STREAMS, stream, &state)?;
        Ok(outcome)
    })
}

/// Ends a listing that read everything it was asked for. A full listing retires, within
/// `scope`, what it did not see, subject to the guard (`guard_percent` of the scope's rows).
pub fn finish_listing(
    journal: &Journal,
    stream: &str,
    scopes: &[Scope],
    guard_percent: u32,
    confirm_retire: bool,
) -> anyhow::Result<Finish> {
    let now = now_millis();
    journal.write(|tx| {
        let mut state: StreamState = tx.get(&tables::STREAMS, stream)?.unwrap_or_default();
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
                    retire(tx, scope, listing.started_at, guard_percent, confirm_retire, now, true)?
                {
                    finish = held;
                }
            }
            if finish == (Finish::Complete { retired: 0 }) {
                let mut total = 0;
                for scope in scopes {
                    if let Finish::Complete { retired } = retire(
                        tx,
                        scope,
                        listing.started_at,
                        guard_percent,
                        confirm_retire,
                        now,
                        false,
                    )? {
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
        tx.put(&tables::STREAMS, stream, &state)?;
        Ok(finish)
    })
}

/// Marks a listing that stopped part-way: its checkpoint stays at the last stored page, and
/// nothing is retired. The next sync resumes it.
pub fn fail_listing(journal: &Journal, stream: &str, error: &str) -> anyhow::Result<()> {
    journal.write(|tx| {
        let mut state: StreamState = tx.get(&tables::STREAMS, stream)?.unwrap_or_default();
        state.last_error = Some(error.to_string());
        state.last_error_at = Some(now_millis());
        tx.put(&tables::STREAMS, stream, &state)?;
        Ok(())
    })
}

/// Retires what `scope` holds that the listing did not see, or with `dry_run` only checks
/// the guard.
fn retire(
    tx: &redb::WriteTransaction,
    scope: &Scope,
    started_at: Millis,
    guard_percent: u32,
    confirm: bool,
    now: Millis,
    dry_run: bool,
) -> anyhow::Result<Finish> {
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
        Scope::AllLines => retire_in!(tables::BILLING_LINES, |_| true),
        Scope::LinesOf(agreement) => {
            let agreement = agreement.clone();
            retire_in!(tables::BILLING_LINES, move |l: &model::BillingLine| l.agreement_id
                == agreement)
        }
    }
}

fn seen(now: Millis) -> Seen {
    Seen { seen_at: now, retired_at: None }
}

/// Keeps the source's JSON of a record beside it, when the plugin sent one.
fn put_raw(
    tx: &redb::WriteTransaction,
    kind: &str,
    id: &str,
    raw: &Option<serde_json::Value>,
) -> anyhow::Result<()> {
    if let Some(raw) = raw {
        tx.put(&tables::RAW, &tables::key2(kind, id), &raw.to_string())?;
    }
    Ok(())
}

/// Writes one record unless the journal already holds the same content; returns whether it
/// changed. In a full listing the record is always rewritten, to mark it seen.
fn upsert(
    tx: &redb::WriteTransaction,
    record: &sdk::Record,
    parent_id: Option<&str>,
    now: Millis,
    full: bool,
) -> anyhow::Result<bool> {
    fn put<V: serde::de::DeserializeOwned + serde::Serialize + PartialEq + Clone>(
        tx: &redb::WriteTransaction,
        table: &Table<V>,
        key: &str,
        mut value: V,
        seen_of: impl Fn(&mut V) -> &mut Seen,
        full: bool,
    ) -> anyhow::Result<bool> {
        let changed = match tx.get(table, key)? {
            Some(mut old) => {
                // Compare everything but when it was seen; a retired record seen again changes.
                let seen_now = seen_of(&mut value).clone();
                seen_of(&mut old).seen_at = seen_now.seen_at;
                old != value
            }
            None => true,
        };
        if changed || full {
            tx.put(table, key, &value)?;
        }
        Ok(changed)
    }
    let quantity = |q: &sdk::Quantity| -> Decimal { q.0 };
    let changed = match record {
        sdk::Record::Company(c) => put(
            tx,
            &tables::COMPANIES,
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
            full,
        ),
        sdk::Record::Product(p) => put(
            tx,
            &tables::PRODUCTS,
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
            full,
        ),
        sdk::Record::Agreement(a) => put(
            tx,
            &tables::AGREEMENTS,
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
            full,
        ),
        sdk::Record::BillingLine(l) => {
            let agreement_id = if l.agreement_id.is_empty() {
                parent_id.unwrap_or_default().to_string()
            } else {
                l.agreement_id.clone()
            };
            let company_id = if l.company_id.is_empty() {
                tx.get(&tables::AGREEMENTS, &agreement_id)?
                    .map(|a| a.company_id)
                    .unwrap_or_default()
            } else {
                l.company_id.clone()
            };
            put(
                tx,
                &tables::BILLING_LINES,
                &l.id,
                model::BillingLine {
                    id: l.id.clone(),
                    agreement_id,
                    company_id,
                    product_id: l.product_id.clone(),
                    quantity: l.quantity.0,
                    included_quantity: l.included_quantity.as_ref().map(quantity),
                    unit_price: l.unit_price.as_ref().map(quantity),
                    effective_date: l.effective_date.clone(),
                    cancelled_date: l.cancelled_date.clone(),
                    updated_at: l.updated_at.clone(),
                    seen: seen(now),
                },
                |v| &mut v.seen,
                full,
            )
        }
        // Vendor records arrive through intake, not through PSA streams.
        sdk::Record::Account(_) | sdk::Record::Service(_) | sdk::Record::Usage(_) => Ok(false),
    }?;
    if changed {
        match record {
            sdk::Record::Company(c) => put_raw(tx, "company", &c.id, &c.raw)?,
            sdk::Record::Product(p) => put_raw(tx, "product", &p.id, &p.raw)?,
            sdk::Record::Agreement(a) => put_raw(tx, "agreement", &a.id, &a.raw)?,
            sdk::Record::BillingLine(l) => put_raw(tx, "billing_line", &l.id, &l.raw)?,
            _ => {}
        }
    }
    Ok(changed)
}

/// Stores one billing line as the PSA returned it after a write or a read.
pub fn put_line(
    tx: &redb::WriteTransaction,
    line: &sdk::BillingLine,
    agreement_id: Option<&str>,
    now: Millis,
) -> anyhow::Result<bool> {
    upsert(tx, &sdk::Record::BillingLine(line.clone()), agreement_id, now, false)
}
