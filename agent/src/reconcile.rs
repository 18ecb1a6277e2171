//! Reconciliation: from the journal's usage, mappings and billing lines to cards.
//!
//! For each PSA company C and product P (DESIGN.md section 7): the vendor quantity is the sum
//! of the latest usage of every (account, service) mapped to (C, P); the PSA quantity is the
//! sum of the lines in force today on active, recurring agreements of billable companies. The
//! apply policy and the product's guardrails then decide what may be written.
//!
//! This module only computes and stores cards; it never talks to a PSA. It takes no decision
//! while a PSA listing is incomplete (case C04): cards are still shown, but nothing applies.
//!
//! Line choice: a card writes to the one line in force for (C, P). With no line in force, a new
//! line goes on the company's only active recurring agreement. Several lines in force, or
//! several candidate agreements, are ambiguous: the card is blocked for review (case C32).

use std::collections::{BTreeSet, HashMap};

use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::config::{ApplyPolicy, Config};
use crate::journal::tables::{self, SEP, key2};
use crate::journal::{Journal, Read, Write};
use crate::model::{
    Card, CardStatus, Decision, Mapping, ProductRules, Rounding, Target, UsageCount, now_millis,
};

/// What a refresh changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub cards: usize,
    pub changed: usize,
    pub removed: usize,
}

/// Recomputes every card as of today (UTC). Called after a sync, a push, an import or a
/// mapping change; only cards whose content changed are rewritten.
pub fn refresh(journal: &Journal, config: &Config) -> anyhow::Result<Refresh> {
    refresh_on(journal, config, &today())
}

/// After new vendor data (a push or an import): new accounts and services may complete
/// automatic matches, so the mapping is applied first (a bad mapping file keeps the last good
/// mapping and is reported in `tally status`), then the cards are recomputed.
pub fn after_vendor_change(journal: &Journal, config: &Config) -> anyhow::Result<Refresh> {
    if let Err(e) = crate::mapping::apply(journal, config) {
        tracing::warn!(error = %e, "mapping file not applied; the previous mapping stays in force");
    }
    refresh(journal, config)
}

/// Today's date in UTC, `YYYY-MM-DD`.
pub fn today() -> String {
    let now = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}-{:02}", now.year(), u8::from(now.month()), now.day())
}

/// The short id users type for a card key.
pub fn card_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("c-{:02x}{:02x}{:02x}{:02x}", digest[0], digest[1], digest[2], digest[3])
}

/// Recomputes every card as of `today` (`YYYY-MM-DD`).
pub fn refresh_on(journal: &Journal, config: &Config, today: &str) -> anyhow::Result<Refresh> {
    let cards = compute(journal, config, today)?;
    let now = now_millis();
    journal.write(|tx| {
        let mut result = Refresh { cards: cards.len(), ..Refresh::default() };
        // Stored cards are compared one by one rather than all loaded at once: with thousands
        // of cards, a second copy of them all doubled the memory a refresh needs.
        for card in &cards {
            let unchanged =
                tx.get(&tables::CARDS, &card.key)?.is_some_and(|old| same_content(old, card));
            if !unchanged {
                let mut card = card.clone();
                card.computed_at = now;
                tx.put(&tables::CARDS, &card.key, &card)?;
                result.changed += 1;
            }
        }
        let keep: BTreeSet<&str> = cards.iter().map(|c| c.key.as_str()).collect();
        let mut gone = Vec::new();
        tx.each(&tables::CARDS, "", &mut |key, _: Card| {
            if !keep.contains(key) {
                gone.push(key.to_string());
            }
            Ok(())
        })?;
        for key in gone {
            tx.delete(&tables::CARDS, &key)?;
            result.removed += 1;
        }
        Ok::<_, anyhow::Error>(result)
    })
}

/// Whether a stored card says what a computed one says (when it was computed aside).
fn same_content(mut stored: Card, computed: &Card) -> bool {
    stored.computed_at = computed.computed_at;
    stored == *computed
}

struct Snapshot {
    companies: HashMap<String, crate::model::Company>,
    products: HashMap<String, crate::model::Product>,
    agreements: HashMap<String, crate::model::Agreement>,
    /// Ids of each company's active recurring agreements, where a new line could go.
    recurring_agreements: HashMap<String, Vec<String>>,
    /// Lines of products some vendor service is mapped to: no other line can count.
    lines: Vec<crate::model::BillingLine>,
    usage: Vec<UsageCount>,
    account_map: HashMap<String, Mapping>,
    service_map: HashMap<String, Mapping>,
    rules: HashMap<String, ProductRules>,
    approvals: HashMap<String, crate::model::Approval>,
    account_names: HashMap<String, String>,
    service_names: HashMap<String, String>,
    incomplete: Vec<String>,
}

fn snapshot(journal: &Journal) -> anyhow::Result<Snapshot> {
    let tx = journal.read()?;
    let incomplete = tx
        .scan(&tables::STREAMS, "")?
        .into_iter()
        .filter(|(_, s)| {
            s.listing.is_some()
                || s.last_error_at.is_some_and(|e| s.last_complete_at.is_none_or(|c| e > c))
        })
        .map(|(name, _)| name.replace(SEP, "/"))
        .collect();
    let service_map: HashMap<String, Mapping> =
        tx.scan(&tables::SERVICE_MAPPINGS, "")?.into_iter().collect();
    let backed: BTreeSet<&str> = service_map
        .values()
        .filter_map(|m| match &m.target {
            Target::Id(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    let mut lines = Vec::new();
    tx.each(&tables::BILLING_LINES, "", &mut |_, line: crate::model::BillingLine| {
        if backed.contains(line.product_id.as_str()) {
            lines.push(line);
        }
        Ok(())
    })?;
    let agreements: HashMap<String, crate::model::Agreement> =
        tx.scan(&tables::AGREEMENTS, "")?.into_iter().collect();
    let mut recurring_agreements: HashMap<String, Vec<String>> = HashMap::new();
    for a in agreements.values() {
        if a.active && a.recurring && a.seen.retired_at.is_none() {
            recurring_agreements.entry(a.company_id.clone()).or_default().push(a.id.clone());
        }
    }
    Ok(Snapshot {
        companies: tx.scan(&tables::COMPANIES, "")?.into_iter().collect(),
        products: tx.scan(&tables::PRODUCTS, "")?.into_iter().collect(),
        agreements,
        recurring_agreements,
        lines,
        usage: tx.values(&tables::USAGE, "")?,
        account_map: tx.scan(&tables::ACCOUNT_MAPPINGS, "")?.into_iter().collect(),
        service_map,
        rules: tx.scan(&tables::PRODUCT_RULES, "")?.into_iter().collect(),
        approvals: tx.scan(&tables::APPROVALS, "")?.into_iter().collect(),
        account_names: tx
            .values(&tables::ACCOUNTS, "")?
            .into_iter()
            .map(|a| (key2(&a.vendor, &a.id), a.name))
            .collect(),
        service_names: tx
            .values(&tables::SERVICES, "")?
            .into_iter()
            .map(|s| (key2(&s.vendor, &s.id), s.name))
            .collect(),
        incomplete,
    })
}

#[derive(Default)]
struct Pair {
    vendor: Option<Decimal>,
    sources: Vec<(String, Decimal)>,
    stable: bool,
    psa: Option<Decimal>,
    lines: Vec<crate::model::BillingLine>,
    future: Vec<crate::model::BillingLine>,
}

/// Computes every card without storing anything.
pub fn compute(journal: &Journal, config: &Config, today: &str) -> anyhow::Result<Vec<Card>> {
    let mut snap = snapshot(journal)?;
    // Hashed, not ordered: the cards are sorted once at the end, and ordered lookups by two
    // strings were a fifth of a large MSP's reconciliation.
    let mut pairs: HashMap<(String, String), Pair> = HashMap::new();
    let mut cards = Vec::new();

    // Vendor side.
    for usage in &snap.usage {
        let account_key = key2(&usage.vendor, &usage.account_id);
        let service_key = key2(&usage.vendor, &usage.service_id);
        let source = format!("{}/{}/{}", usage.vendor, usage.account_id, usage.service_id);
        let account = snap.account_map.get(&account_key).map(|m| &m.target);
        let service = snap.service_map.get(&service_key).map(|m| &m.target);
        match (account, service) {
            (Some(Target::Id(company)), Some(Target::Id(product))) => {
                let pair = pairs.entry((company.clone(), product.clone())).or_default();
                *pair.vendor.get_or_insert(Decimal::ZERO) += usage.quantity;
                pair.sources.push((source, usage.quantity));
                let rules = snap.rules.get(product).cloned().unwrap_or_default();
                let stable = is_stable(usage, rules.require_stable_pulls);
                pair.stable = if pair.sources.len() == 1 { stable } else { pair.stable && stable };
            }
            (account, service) => {
                let excluded = matches!(account, Some(Target::Excluded))
                    || matches!(service, Some(Target::Excluded));
                let key = format!(
                    "~{}",
                    tables::key3(&usage.vendor, &usage.account_id, &usage.service_id)
                );
                let account_name = snap
                    .account_names
                    .get(&account_key)
                    .cloned()
                    .unwrap_or(usage.account_id.clone());
                let service_name = snap
                    .service_names
                    .get(&service_key)
                    .cloned()
                    .unwrap_or(usage.service_id.clone());
                let mut notes = Vec::new();
                if !excluded {
                    if !matches!(account, Some(Target::Id(_))) {
                        notes.push(format!(
                            "vendor account \"{account_name}\" ({}) is not mapped to a company",
                            usage.account_id
                        ));
                    }
                    if !matches!(service, Some(Target::Id(_))) {
                        notes.push(format!(
                            "vendor service \"{service_name}\" ({}) is not mapped to a product",
                            usage.service_id
                        ));
                    }
                }
                let (company_id, company_name) = match account {
                    Some(Target::Id(c)) => (c.clone(), company_name(&snap, c)),
                    _ => (String::new(), format!("{} (vendor {})", account_name, usage.vendor)),
                };
                let (product_id, product_name) = match service {
                    Some(Target::Id(p)) => (p.clone(), product_name(&snap, p)),
                    _ => (String::new(), format!("{service_name} (vendor {})", usage.vendor)),
                };
                cards.push(Card {
                    id: card_id(&key),
                    key,
                    company_id,
                    company_name,
                    product_id,
                    product_name,
                    vendor_quantity: Some(usage.quantity),
                    psa_quantity: None,
                    target: None,
                    status: if excluded { CardStatus::Excluded } else { CardStatus::Unmapped },
                    line_id: None,
                    agreement_id: None,
                    unit_price: None,
                    sources: vec![(source, usage.quantity)],
                    notes,
                    decision: Decision::None,
                    computed_at: 0,
                });
            }
        }
    }

    // PSA side: lines in force today on active recurring agreements of billable companies.
    let backed: BTreeSet<&str> = snap
        .service_map
        .values()
        .filter_map(|m| match &m.target {
            Target::Id(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    for line in std::mem::take(&mut snap.lines) {
        let Some(agreement) = snap.agreements.get(&line.agreement_id) else { continue };
        let company_id =
            if line.company_id.is_empty() { &agreement.company_id } else { &line.company_id };
        if !agreement.active || !agreement.recurring || agreement.seen.retired_at.is_some() {
            continue;
        }
        if snap.companies.get(company_id).is_some_and(|c| !c.billable) {
            continue;
        }
        let key = (company_id.clone(), line.product_id.clone());
        let interesting = pairs.contains_key(&key) || backed.contains(line.product_id.as_str());
        if !interesting {
            continue;
        }
        if line.in_force_on(today) {
            let pair = pairs.entry(key).or_default();
            *pair.psa.get_or_insert(Decimal::ZERO) += line.quantity;
            pair.lines.push(line);
        } else if line.is_future_on(today) {
            pairs.entry(key).or_default().future.push(line);
        }
    }

    for ((company_id, product_id), pair) in pairs {
        if pair.vendor.is_none() && pair.psa.is_none() {
            continue;
        }
        cards.push(card_for(&snap, config, company_id, product_id, pair));
    }
    cards.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(cards)
}

fn is_stable(usage: &UsageCount, required: u32) -> bool {
    if required <= 1 {
        return true;
    }
    let needed = required as usize - 1;
    usage.previous.len() >= needed
        && usage.previous[..needed].iter().all(|(q, _)| *q == usage.quantity)
}

fn company_name(snap: &Snapshot, id: &str) -> String {
    snap.companies.get(id).map(|c| c.name.clone()).unwrap_or_else(|| format!("company {id}"))
}

fn product_name(snap: &Snapshot, id: &str) -> String {
    snap.products
        .get(id)
        .map(|p| match &p.identifier {
            Some(ident) if !ident.is_empty() => ident.clone(),
            _ => p.description.clone(),
        })
        .unwrap_or_else(|| format!("product {id}"))
}

/// The quantity a write would set, or why none can be set (case C15).
pub fn round(quantity: Decimal, rules: &ProductRules) -> Result<Decimal, String> {
    let rounded = match rules.rounding {
        Rounding::Exact => quantity,
        Rounding::Ceil => quantity.ceil(),
        Rounding::Round => {
            quantity.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        }
    };
    if rules.whole_units && rounded.fract() != Decimal::ZERO {
        return Err(format!(
            "vendor quantity {quantity} is not a whole number and this product takes whole units \
             only; set `rounding = \"ceil\"` or `\"round\"` for it in the mapping file"
        ));
    }
    Ok(rounded.normalize())
}

fn card_for(
    snap: &Snapshot,
    config: &Config,
    company_id: String,
    product_id: String,
    pair: Pair,
) -> Card {
    let key = key2(&company_id, &product_id);
    let rules = snap.rules.get(&product_id).cloned().unwrap_or_default();
    let mut notes = Vec::new();
    let company = snap.companies.get(&company_id);
    let status = match (pair.vendor, pair.psa) {
        (Some(v), Some(p)) => match round(v, &rules) {
            Ok(t) if t == p => CardStatus::Match,
            _ => CardStatus::Reconcile,
        },
        (Some(_), None) => CardStatus::New,
        (None, Some(_)) => CardStatus::Stale,
        (None, None) => CardStatus::Match,
    };
    for future in &pair.future {
        notes.push(format!(
            "line {} ({}) starts {}: not counted yet",
            future.id,
            future.quantity,
            future.effective_date.as_deref().unwrap_or("later")
        ));
    }

    // Which line a change would go to.
    let mut line_id = None;
    let mut agreement_id = None;
    let mut unit_price = snap.products.get(&product_id).and_then(|p| p.unit_price);
    let mut blocked: Option<String> = None;
    match pair.lines.as_slice() {
        [line] => {
            line_id = Some(line.id.clone());
            agreement_id = Some(line.agreement_id.clone());
            unit_price = line.unit_price.or(unit_price);
        }
        [] => {
            let candidates: &[String] =
                snap.recurring_agreements.get(&company_id).map_or(&[], Vec::as_slice);
            match candidates {
                [agreement] => agreement_id = Some(agreement.clone()),
                [] => {
                    blocked = Some(
                        "the company has no active recurring agreement to add a line to".into(),
                    )
                }
                several => {
                    let mut ids: Vec<&str> = several.iter().map(String::as_str).collect();
                    ids.sort();
                    blocked = Some(format!(
                        "the company has {} active recurring agreements ({}); add the line in the \
                         PSA on the right one",
                        several.len(),
                        ids.join(", ")
                    ))
                }
            }
        }
        several => {
            let ids: Vec<String> =
                several.iter().map(|l| format!("{} ({})", l.id, l.quantity)).collect();
            blocked = Some(format!(
                "ambiguous: {} lines are in force for this product ({}); review them in the PSA",
                several.len(),
                ids.join(", ")
            ));
        }
    }
    if let Some(company) = company
        && (company.deleted || company.seen.retired_at.is_some())
    {
        blocked = Some(format!(
            "company {} is deleted or merged in the PSA; map its vendor accounts to the surviving \
             company",
            company.id
        ));
    }
    if company.is_none() && !company_id.is_empty() {
        blocked = Some(format!("company {company_id} is not in the journal yet; run a sync"));
    }
    if !snap.incomplete.is_empty() {
        blocked = Some(format!(
            "no change is decided while a PSA listing is incomplete ({}); run a sync",
            snap.incomplete.join(", ")
        ));
    }

    let target = match status {
        CardStatus::Reconcile | CardStatus::New => match pair.vendor.map(|v| round(v, &rules)) {
            Some(Ok(t)) => Some(t),
            Some(Err(reason)) => {
                blocked = blocked.or(Some(reason));
                None
            }
            None => None,
        },
        CardStatus::Stale => Some(Decimal::ZERO),
        _ => None,
    };

    let decision = match (status, target) {
        (CardStatus::Match, _) | (_, None) => {
            if let Some(reason) = blocked.filter(|_| status != CardStatus::Match) {
                Decision::Blocked(reason)
            } else {
                Decision::None
            }
        }
        (_, Some(target)) => match blocked {
            Some(reason) => Decision::Blocked(reason),
            None => decide(config, &rules, &key, status, target, pair.psa, pair.stable, snap),
        },
    };
    if status == CardStatus::Stale {
        notes.push("billed in the PSA, but no mapped vendor reports usage".to_string());
    }

    Card {
        id: card_id(&key),
        key,
        company_name: company_name(snap, &company_id),
        product_name: product_name(snap, &product_id),
        company_id,
        product_id,
        vendor_quantity: pair.vendor,
        psa_quantity: pair.psa,
        target,
        status,
        line_id,
        agreement_id,
        unit_price,
        sources: pair.sources,
        notes,
        decision,
        computed_at: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn decide(
    config: &Config,
    rules: &ProductRules,
    key: &str,
    status: CardStatus,
    target: Decimal,
    psa: Option<Decimal>,
    stable: bool,
    snap: &Snapshot,
) -> Decision {
    if let Some(approval) = snap.approvals.get(key) {
        if approval.target == target && approval.from == psa {
            return Decision::Apply;
        }
        if approval.target == target {
            return Decision::Held(format!(
                "approved against a PSA quantity of {}, but the line changed since; approve again",
                approval.from.map(|q| q.normalize().to_string()).unwrap_or_else(|| "none".into())
            ));
        }
    }
    let policy = match rules.apply.as_deref() {
        Some("none") => ApplyPolicy::None,
        Some("increases") => ApplyPolicy::Increases,
        Some("all") => ApplyPolicy::All,
        _ => config.psa.as_ref().map(|p| p.apply).unwrap_or_default(),
    };
    if policy == ApplyPolicy::None {
        return Decision::ReportOnly;
    }
    let current = psa.unwrap_or(Decimal::ZERO);
    let change = target - current;
    let reduction = change < Decimal::ZERO;
    if status == CardStatus::Stale {
        return Decision::Held("no vendor usage: removing billing waits for approval".to_string());
    }
    if rules.never_auto_zero && target.is_zero() {
        return Decision::Held(
            "the vendor reports zero; this product never drops to zero by itself".into(),
        );
    }
    if !stable {
        return Decision::Held(format!(
            "waiting for {} equal vendor reports before applying",
            rules.require_stable_pulls
        ));
    }
    if let Some(max) = rules.max_auto_change_abs
        && change.abs() > max
    {
        return Decision::Held(format!(
            "change of {} exceeds the product's limit of {max}",
            change.abs()
        ));
    }
    if let Some(max) = rules.max_auto_change_pct
        && !current.is_zero()
        && (change.abs() * Decimal::from(100) / current) > max
    {
        return Decision::Held(format!("change exceeds the product's limit of {max} %"));
    }
    if reduction {
        match policy {
            ApplyPolicy::Increases => {
                return Decision::Held(
                    "reductions wait for approval (apply = \"increases\")".into(),
                );
            }
            ApplyPolicy::All => {
                let threshold = config
                    .psa
                    .as_ref()
                    .map(|p| p.hold_reductions_over)
                    .unwrap_or(Decimal::from(20));
                if !current.is_zero() && (-change * Decimal::from(100) / current) > threshold {
                    return Decision::Held(format!(
                        "reduction of {} % exceeds hold_reductions_over = {threshold}",
                        (-change * Decimal::from(100) / current).round_dp(1)
                    ));
                }
            }
            ApplyPolicy::None => unreachable!("handled above"),
        }
    }
    Decision::Apply
}

/// Records approvals for the given card ids (or every held card), as of their current target.
pub fn approve(
    journal: &Journal,
    ids: &[String],
    all: bool,
    by: &str,
) -> anyhow::Result<Vec<Card>> {
    journal.write(|tx| {
        let cards = tx.values(&tables::CARDS, "")?;
        let mut approved = Vec::new();
        let mut unknown: Vec<&String> =
            ids.iter().filter(|id| !cards.iter().any(|c| &c.id == *id)).collect();
        unknown.sort();
        if let Some(id) = unknown.first() {
            anyhow::bail!(crate::cli::UsageError(format!(
                "no card {id}; `tally report` lists card ids"
            )));
        }
        for card in cards {
            let wanted = all || ids.contains(&card.id);
            if !wanted {
                continue;
            }
            let Some(target) = card.target else {
                if !all {
                    anyhow::bail!(crate::cli::UsageError(format!(
                        "card {} ({} / {}) has no change to approve",
                        card.id, card.company_name, card.product_name
                    )));
                }
                continue;
            };
            if all && !matches!(card.decision, Decision::Held(_)) {
                continue;
            }
            if let Decision::Blocked(reason) = &card.decision {
                anyhow::bail!(crate::cli::UsageError(format!(
                    "card {} cannot be applied: {reason}",
                    card.id
                )));
            }
            tx.put(
                &tables::APPROVALS,
                &card.key,
                &crate::model::Approval {
                    card_key: card.key.clone(),
                    from: card.psa_quantity,
                    target,
                    approved_at: now_millis(),
                    approved_by: by.to_string(),
                },
            )?;
            approved.push(card);
        }
        Ok(approved)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalError;
    use crate::model::{Agreement, Company, Origin, Seen};

    fn seen() -> Seen {
        Seen { seen_at: 1, retired_at: None }
    }

    fn blocked(card: &Card) -> &str {
        match &card.decision {
            Decision::Blocked(reason) => reason,
            other => panic!("card {} is not blocked: {other:?}", card.key),
        }
    }

    #[test]
    fn a_new_line_goes_on_the_only_recurring_agreement_and_several_block_the_card() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "journal = \"j.redb\"\n").unwrap();
        let config = Config::load(&file, true).unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        journal
            .write(|tx| {
                let file_map =
                    |id: &str| Mapping { target: Target::Id(id.into()), origin: Origin::File };
                tx.put(&tables::SERVICE_MAPPINGS, &key2("v", "s"), &file_map("101"))?;
                for company in ["1", "2", "3"] {
                    let account = format!("a{company}");
                    let record = Company {
                        id: company.into(),
                        name: format!("Company {company}"),
                        identifier: None,
                        active: true,
                        deleted: false,
                        billable: true,
                        updated_at: None,
                        seen: seen(),
                    };
                    tx.put(&tables::COMPANIES, company, &record)?;
                    tx.put(&tables::ACCOUNT_MAPPINGS, &key2("v", &account), &file_map(company))?;
                    let usage = UsageCount {
                        vendor: "v".into(),
                        account_id: account.clone(),
                        service_id: "s".into(),
                        quantity: Decimal::from(5),
                        received_at: 1,
                        previous: Vec::new(),
                    };
                    tx.put(&tables::USAGE, &tables::key3("v", "s", &account), &usage)?;
                }
                // Company 1: one recurring agreement beside a one-time one; company 2: two
                // recurring ones; company 3: none.
                for (id, company, recurring) in
                    [("10", "1", true), ("11", "1", false), ("20", "2", true), ("21", "2", true)]
                {
                    let agreement = Agreement {
                        id: id.into(),
                        company_id: company.into(),
                        name: "Managed Services".into(),
                        active: true,
                        recurring,
                        updated_at: None,
                        seen: seen(),
                    };
                    tx.put(&tables::AGREEMENTS, id, &agreement)?;
                }
                Ok::<_, JournalError>(())
            })
            .unwrap();

        let cards = compute(&journal, &config, "2026-01-01").unwrap();
        let card = |company: &str| cards.iter().find(|c| c.company_id == company).unwrap();
        assert_eq!(card("1").status, CardStatus::New);
        assert_eq!(card("1").agreement_id.as_deref(), Some("10"));
        assert!(blocked(card("2")).contains("2 active recurring agreements (20, 21)"));
        assert!(blocked(card("3")).contains("no active recurring agreement"));
    }
}
