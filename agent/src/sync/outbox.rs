//! The outbox: every write to a PSA, applied exactly once.
//!
//! The protocol (case C18): the intent (line, old and target quantity) is committed first; it
//! is marked `sent` in its own commit before the request leaves; the PSA's answer, the new
//! line, the audit row and `done` are committed together last. After a crash an entry left
//! `sent` is never resent blindly: the line is read back first, and the entry is done if the
//! PSA already holds the target, resent if it still holds the old quantity, and a conflict
//! otherwise. For PSAs whose writes are deltas (Autotask, case C13) the plugin itself reads the
//! units in force before computing a delta, so a resend cannot double a change.
//!
//! A line that someone changed in the PSA since the card was computed is not overwritten: the
//! entry becomes a conflict and the card is recomputed at the next sync.

use std::collections::HashSet;

use rust_decimal::Decimal;
use tally_plugin_sdk as sdk;

use super::psa::{Psa, PsaError};
use crate::journal::tables;
use crate::journal::{Journal, Read, Write};
use crate::model::{AuditEntry, Card, Decision, OutboxEntry, OutboxState, now_millis};
use crate::reconcile;

/// What processing the outbox did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub queued: usize,
    pub done: usize,
    pub failed: usize,
    pub conflicts: usize,
    /// Still open (outcome unknown); the next sync checks them.
    pub pending: usize,
}

/// Turns every card whose decision is `Apply` into an outbox intent, unless one is already
/// open for its line. Returns how many were queued.
pub fn queue(journal: &Journal) -> anyhow::Result<usize> {
    journal.write(|tx| {
        // Cards and entries are read one at a time: a large MSP has tens of thousands of cards
        // and the outbox keeps every entry it ever held.
        let mut busy: HashSet<(String, String)> = HashSet::new();
        tx.each(&tables::OUTBOX, "", &mut |_, entry: OutboxEntry| {
            if entry.state.is_open() {
                busy.insert((entry.company_id, entry.product_id));
            }
            Ok(())
        })?;
        let mut due: Vec<Due> = Vec::new();
        tx.each(&tables::CARDS, "", &mut |_, card: Card| {
            if card.decision != Decision::Apply {
                return Ok(());
            }
            if let (Some(target), Some(agreement_id)) = (card.target, card.agreement_id) {
                due.push(Due {
                    key: card.key,
                    company_id: card.company_id,
                    product_id: card.product_id,
                    agreement_id,
                    line_id: card.line_id.unwrap_or_default(),
                    psa_quantity: card.psa_quantity,
                    target,
                });
            }
            Ok(())
        })?;
        let mut queued = 0;
        for card in due {
            if !busy.insert((card.company_id.clone(), card.product_id.clone())) {
                continue;
            }
            let decided_by = match tx.get(&tables::APPROVALS, &card.key)? {
                Some(approval) if approval.target == card.target => approval.approved_by,
                _ => "policy".to_string(),
            };
            let now = now_millis();
            tx.append(&tables::OUTBOX, |id| OutboxEntry {
                id,
                company_id: card.company_id,
                product_id: card.product_id,
                agreement_id: card.agreement_id,
                line_id: card.line_id,
                old_quantity: card.psa_quantity,
                target_quantity: card.target,
                effective_date: reconcile::today(),
                decided_by,
                created_at: now,
                state: OutboxState::Intent,
                attempts: 0,
                last_error: None,
                updated_at: now,
            })?;
            queued += 1;
        }
        Ok::<_, anyhow::Error>(queued)
    })
}

/// What a card decided to apply needs to become an outbox intent.
struct Due {
    key: String,
    company_id: String,
    product_id: String,
    agreement_id: String,
    line_id: String,
    psa_quantity: Option<Decimal>,
    target: Decimal,
}

/// Applies every open entry, oldest first.
pub async fn process(journal: &Journal, psa: &impl Psa) -> anyhow::Result<Applied> {
    let mut open: Vec<OutboxEntry> = Vec::new();
    journal.read()?.each(&tables::OUTBOX, "", &mut |_, entry: OutboxEntry| {
        if entry.state.is_open() {
            open.push(entry);
        }
        Ok(())
    })?;
    let mut applied = Applied::default();
    for entry in open {
        let span = tracing::info_span!("outbox", id = entry.id, line = %entry.line_id);
        match tracing::Instrument::instrument(apply_one(journal, psa, entry), span).await? {
            OutboxState::Done => applied.done += 1,
            OutboxState::Failed => applied.failed += 1,
            OutboxState::Conflict => applied.conflicts += 1,
            OutboxState::Intent | OutboxState::Sent => applied.pending += 1,
        }
    }
    Ok(applied)
}

fn can_read(psa: &impl Psa) -> bool {
    psa.handshake().capabilities.contains(&sdk::Capability::ReadLine)
}

/// Reads the line's current quantity in the PSA, if the plugin can.
async fn current(
    psa: &impl Psa,
    entry: &OutboxEntry,
) -> Result<Option<sdk::BillingLine>, PsaError> {
    if entry.line_id.is_empty() || !can_read(psa) {
        return Ok(None);
    }
    let op = sdk::Operation::ReadLine {
        line: sdk::LineRef { id: entry.line_id.clone(), agreement_id: entry.agreement_id.clone() },
    };
    match psa.run(op, &mut |_| Ok(())).await? {
        sdk::OpResult::Line { line } => Ok(Some(line)),
        other => Err(PsaError::Host(format!("read_line answered {other:?}"))),
    }
}

/// Looks for a line the PSA already created for this entry (recovery of a `create_line`).
async fn created(
    journal: &Journal,
    psa: &impl Psa,
    entry: &OutboxEntry,
) -> Result<Option<sdk::BillingLine>, PsaError> {
    let Some(stream) =
        psa.handshake().streams.iter().find(|s| s.record == sdk::RecordKind::BillingLine)
    else {
        return Ok(None);
    };
    let known: std::collections::HashSet<String> = journal
        .read()
        .and_then(|tx| tx.values(&tables::BILLING_LINES, ""))
        .map_err(|e| PsaError::Host(e.to_string()))?
        .into_iter()
        .map(|l| l.id)
        .collect();
    let mut found = None;
    let op = sdk::Operation::List {
        stream: stream.name.clone(),
        mode: sdk::ListMode::Full,
        checkpoint: None,
        parent_id: Some(entry.agreement_id.clone()),
        lookback_seconds: 0,
    };
    psa.run(op, &mut |page| {
        for record in page.records {
            if let sdk::Record::BillingLine(line) = record
                && line.product_id == entry.product_id
                && line.quantity.0 == entry.target_quantity
                && !known.contains(&line.id)
            {
                found = Some(line);
            }
        }
        Ok(())
    })
    .await?;
    Ok(found)
}

fn set_state(
    journal: &Journal,
    id: u64,
    state: OutboxState,
    error: Option<String>,
) -> anyhow::Result<OutboxEntry> {
    journal.write(|tx| {
        let key = tables::seq_key(id);
        let mut entry: OutboxEntry = tx
            .get(&tables::OUTBOX, &key)?
            .ok_or_else(|| anyhow::anyhow!("outbox entry {id} vanished"))?;
        if state == OutboxState::Sent && entry.state != OutboxState::Sent {
            entry.attempts += 1;
        }
        entry.state = state;
        entry.last_error = error;
        entry.updated_at = now_millis();
        tx.put(&tables::OUTBOX, &key, &entry)?;
        Ok(entry)
    })
}

/// Records the end of an entry: its state, the line as the PSA now holds it, and one audit row,
/// in one transaction.
fn finish(
    journal: &Journal,
    entry: &OutboxEntry,
    state: OutboxState,
    line: Option<&sdk::BillingLine>,
    outcome: &str,
    answer: String,
) -> anyhow::Result<OutboxState> {
    journal.write(|tx| {
        let key = tables::seq_key(entry.id);
        let mut stored: OutboxEntry =
            tx.get(&tables::OUTBOX, &key)?.unwrap_or_else(|| entry.clone());
        if !stored.state.is_open() {
            return Ok(stored.state);
        }
        stored.state = state;
        stored.updated_at = now_millis();
        if state != OutboxState::Done {
            stored.last_error = Some(answer.clone());
        }
        if let Some(line) = line {
            if stored.line_id.is_empty() {
                stored.line_id = line.id.clone();
            }
            super::store::put_line(tx, line, Some(&entry.agreement_id), now_millis())?;
        }
        tx.put(&tables::OUTBOX, &key, &stored)?;
        let card_key = tables::key2(&entry.company_id, &entry.product_id);
        if state == OutboxState::Done {
            tx.delete(&tables::APPROVALS, &card_key)?;
        }
        tx.append(&tables::AUDIT, |id| AuditEntry {
            id,
            at: now_millis(),
            outbox_id: entry.id,
            company_id: entry.company_id.clone(),
            product_id: entry.product_id.clone(),
            line_id: stored.line_id.clone(),
            old_quantity: entry.old_quantity,
            new_quantity: entry.target_quantity,
            decided_by: entry.decided_by.clone(),
            outcome: outcome.to_string(),
            psa_answer: answer,
        })?;
        Ok(state)
    })
}

fn quantity_text(q: Option<Decimal>) -> String {
    q.map(|q| q.normalize().to_string()).unwrap_or_else(|| "none".into())
}

async fn apply_one(
    journal: &Journal,
    psa: &impl Psa,
    entry: OutboxEntry,
) -> anyhow::Result<OutboxState> {
    // Before any send: where does the PSA stand now?
    let creating = entry.line_id.is_empty();
    if entry.state == OutboxState::Sent && creating {
        match created(journal, psa, &entry).await {
            Ok(Some(line)) => {
                let answer = format!("line {} already created with {}", line.id, line.quantity.0);
                return finish(
                    journal,
                    &entry,
                    OutboxState::Done,
                    Some(&line),
                    "confirmed",
                    answer,
                );
            }
            Ok(None) => {}
            Err(e) => return keep_open(journal, &entry, e),
        }
    }
    if !creating {
        match current(psa, &entry).await {
            Ok(Some(line)) => {
                let now = line.quantity.0;
                if now == entry.target_quantity {
                    let answer = format!("the PSA already holds {}", now.normalize());
                    return finish(
                        journal,
                        &entry,
                        OutboxState::Done,
                        Some(&line),
                        "confirmed",
                        answer,
                    );
                }
                if Some(now) != entry.old_quantity {
                    let answer = format!(
                        "the line changed in the PSA since the card was computed (expected {}, \
                         found {}); not overwritten",
                        quantity_text(entry.old_quantity),
                        now.normalize()
                    );
                    return finish(
                        journal,
                        &entry,
                        OutboxState::Conflict,
                        Some(&line),
                        "conflict",
                        answer,
                    );
                }
            }
            Ok(None) => {}
            Err(PsaError::Plugin(e)) if e.kind == sdk::ErrorKind::NotFound => {
                let answer = format!("the line no longer exists in the PSA: {e}");
                return finish(journal, &entry, OutboxState::Conflict, None, "conflict", answer);
            }
            Err(e) => return keep_open(journal, &entry, e),
        }
    }

    set_state(journal, entry.id, OutboxState::Sent, None)?;
    let quantity = sdk::Quantity(entry.target_quantity);
    let op = if creating {
        sdk::Operation::CreateLine {
            company_id: entry.company_id.clone(),
            agreement_id: entry.agreement_id.clone(),
            product_id: entry.product_id.clone(),
            quantity,
            effective_date: entry.effective_date.clone(),
        }
    } else {
        sdk::Operation::SetQuantity {
            line: sdk::LineRef {
                id: entry.line_id.clone(),
                agreement_id: entry.agreement_id.clone(),
            },
            quantity,
            effective_date: entry.effective_date.clone(),
        }
    };
    match psa.run(op, &mut |_| Ok(())).await {
        Ok(sdk::OpResult::Line { line }) => {
            let answer =
                format!("{} -> {}", quantity_text(entry.old_quantity), line.quantity.0.normalize());
            tracing::info!(line = %line.id, quantity = %line.quantity.0, "applied");
            finish(journal, &entry, OutboxState::Done, Some(&line), "applied", answer)
        }
        Ok(other) => finish(
            journal,
            &entry,
            OutboxState::Failed,
            None,
            "failed",
            format!("the plugin answered {other:?} to a write"),
        ),
        Err(e) if e.outcome_unknown() => {
            // The answer was lost: the line itself says whether the write landed.
            match current(psa, &entry).await {
                Ok(Some(line)) if line.quantity.0 == entry.target_quantity => {
                    let answer = format!(
                        "{} -> {} (confirmed by reading the line after: {e})",
                        quantity_text(entry.old_quantity),
                        line.quantity.0.normalize()
                    );
                    finish(journal, &entry, OutboxState::Done, Some(&line), "applied", answer)
                }
                _ => keep_open(journal, &entry, e),
            }
        }
        Err(e) => finish(journal, &entry, OutboxState::Failed, None, "failed", e.to_string()),
    }
}

/// The outcome is unknown: the entry stays `sent` (or its state) and the next run checks it.
fn keep_open(
    journal: &Journal,
    entry: &OutboxEntry,
    error: PsaError,
) -> anyhow::Result<OutboxState> {
    tracing::warn!(error = %error, "write outcome unknown; it will be checked before any resend");
    let state =
        if entry.state == OutboxState::Intent { OutboxState::Intent } else { OutboxState::Sent };
    let stored = journal.read()?.get(&tables::OUTBOX, &tables::seq_key(entry.id))?;
    let state = stored.map(|e: OutboxEntry| e.state).unwrap_or(state);
    set_state(journal, entry.id, state, Some(error.to_string()))?;
    Ok(state)
}
