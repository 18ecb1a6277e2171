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
//!
//! Memory (DESIGN.md section 8): a refresh reads and writes in one write transaction and never
//! holds a whole table. Records stream through once; what stays is, per (C, P), its sums,
//! sources and a brief of its lines, and per active recurring agreement its company. Companies,
//! approvals and unmapped usage are read again as each card is built. Cards are built in key
//! order, each compared with the stored one, written if it changed and dropped, and the same
//! walk removes the stored cards that were not built again.

use std::collections::{BTreeMap, HashMap, HashSet};

use redb::WriteTransaction;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::config::{ApplyPolicy, Config};
use crate::journal::tables::{self, Lookup, Opened, SEP, key2};
use crate::journal::{Journal, JournalError, Read, Write};
use crate::model::{
    Account, Agreement, Approval, BillingLine, Card, CardStatus, Company, Decision, Mapping,
    Product, ProductRules, Rounding, Service, StreamState, Target, UsageCount, now_millis,
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

/// Recomputes every card as of `today` (`YYYY-MM-DD`). Reading and storing share one write
/// transaction, so the cards stored are exactly those the records it read give.
pub fn refresh_on(journal: &Journal, config: &Config, today: &str) -> anyhow::Result<Refresh> {
    let now = now_millis();
    journal.write(|tx| {
        let plan = Plan::read(tx, today)?;
        let mut stored = Stored::open(tx)?;
        let mut result = Refresh::default();
        plan.cards(tx, config, &mut |mut card| {
            result.cards += 1;
            let unchanged = stored.take(&card.key)?.is_some_and(|old| same_content(old, &card));
            if !unchanged {
                card.computed_at = now;
                stored.put(&card)?;
                result.changed += 1;
            }
            Ok(())
        })?;
        result.removed = stored.finish()?;
        Ok::<_, anyhow::Error>(result)
    })
}

/// Computes every card without storing anything, in key order.
pub fn compute(journal: &Journal, config: &Config, today: &str) -> anyhow::Result<Vec<Card>> {
    let tx = journal.read()?;
    let mut cards = Vec::new();
    Plan::read(&tx, today)?.cards(&tx, config, &mut |card| {
        cards.push(card);
        Ok(())
    })?;
    Ok(cards)
}

/// Whether a stored card says what a computed one says (when it was computed aside).
fn same_content(mut stored: Card, computed: &Card) -> bool {
    stored.computed_at = computed.computed_at;
    stored == *computed
}

/// The stored cards, walked in key order beside the cards being built, which must come in key
/// order too: a stored card whose key falls between two built ones was not built again, and
/// goes.
struct Stored<'t> {
    table: Opened<'t, Card>,
    /// The greatest key taken so far.
    passed: Option<String>,
    removed: usize,
}

impl<'t> Stored<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, JournalError> {
        Ok(Stored { table: Opened::open(tx, &tables::CARDS)?, passed: None, removed: 0 })
    }

    /// The stored card at `key`, once the stored cards between the previous key taken and this
    /// one are removed.
    fn take(&mut self, key: &str) -> Result<Option<Card>, JournalError> {
        if self.passed.as_deref().is_none_or(|passed| passed < key) {
            self.remove_before(Some(key))?;
            let passed = self.passed.get_or_insert_with(String::new);
            passed.clear();
            passed.push_str(key);
        }
        self.table.get(key)
    }

    fn put(&mut self, card: &Card) -> Result<(), JournalError> {
        self.table.put(&card.key, card)
    }

    /// Removes the stored cards after the last key taken, and says how many were removed in all.
    fn finish(mut self) -> Result<usize, JournalError> {
        self.remove_before(None)?;
        Ok(self.removed)
    }

    /// Removes the stored cards after the greatest key taken and before `before`.
    fn remove_before(&mut self, before: Option<&str>) -> Result<(), JournalError> {
        for key in self.table.keys_between(self.passed.as_deref(), before)? {
            self.table.delete(&key)?;
            self.removed += 1;
        }
        Ok(())
    }
}

/// What the cards are built from: one pass over the usage and one over the billing lines.
struct Plan {
    context: Context,
    /// By card key, `company<SEP>product`.
    pairs: BTreeMap<Box<str>, Pair>,
    /// Usage that no pair takes: its card key and its own key, to read it again for its card.
    unmapped: Vec<(Box<str>, Box<str>)>,
}

/// What every card is built against. It grows with the mapping and the agreements, not with
/// the billing lines.
struct Context {
    /// Products some vendor service is mapped to: no line of another product can count.
    products: HashMap<String, Backed>,
    service_map: HashMap<String, Mapping>,
    agreements: Agreements,
    /// Streams whose last listing is unfinished or failed, their key parts joined by `/`.
    incomplete: Vec<String>,
    no_rules: ProductRules,
}

/// What a card needs of a product some vendor service is mapped to.
struct Backed {
    name: String,
    unit_price: Option<Decimal>,
    rules: ProductRules,
}

/// One company and product while the records are read: its sums, and a brief of what its card
/// says. Thousands of these are held at once, so the rarer parts are boxed.
#[derive(Default)]
struct Pair {
    /// Where the company id ends in the card key.
    company_len: u32,
    stable: bool,
    vendor: Option<Decimal>,
    psa: Option<Decimal>,
    sources: Vec<(String, Decimal)>,
    /// `None` until a line in force or a future line is read.
    lines: Option<Box<PairLines>>,
}

#[derive(Default)]
struct PairLines {
    in_force: InForce,
    /// A note for each line that starts after today, in journal order.
    future: Vec<String>,
}

/// The lines in force for one company and product, as far as their card needs them.
#[derive(Default)]
enum InForce {
    #[default]
    None,
    /// The one line in force: a change goes to it.
    One(OneLine),
    /// Several lines in force, and their names as the card lists them, in journal order:
    /// `id (quantity), id (quantity)`.
    Several(usize, String),
}

struct OneLine {
    id: Box<str>,
    agreement_id: Box<str>,
    unit_price: Option<Decimal>,
    quantity: Decimal,
}

impl Pair {
    fn add_source(&mut self, source: String, quantity: Decimal) {
        // Most pairs have one source; a plain push would leave room for four.
        self.sources.reserve_exact(1);
        self.sources.push((source, quantity));
    }

    fn lines(&mut self) -> &mut PairLines {
        self.lines.get_or_insert_default()
    }
}

impl InForce {
    fn add(&mut self, line: BillingLine) {
        *self = match std::mem::take(self) {
            InForce::None => InForce::One(OneLine {
                id: line.id.into(),
                agreement_id: line.agreement_id.into(),
                unit_price: line.unit_price,
                quantity: line.quantity,
            }),
            InForce::One(one) => InForce::Several(
                2,
                format!("{} ({}), {} ({})", one.id, one.quantity, line.id, line.quantity),
            ),
            InForce::Several(count, mut names) => {
                use std::fmt::Write as _;
                let _ = write!(names, ", {} ({})", line.id, line.quantity);
                InForce::Several(count + 1, names)
            }
        };
    }
}

/// The agreements a line can count on and a new line can go on: active, recurring, not
/// retired.
struct Agreements {
    /// The journal key, agreement id and company id of each, in key order.
    eligible: Vec<(Box<str>, Box<str>, Box<str>)>,
    /// Indexes into `eligible`, in company id order.
    by_company: Vec<usize>,
}

impl Agreements {
    fn read(tx: &impl Read) -> Result<Agreements, JournalError> {
        let mut eligible: Vec<(Box<str>, Box<str>, Box<str>)> = Vec::new();
        tx.each(&tables::AGREEMENTS, "", &mut |key, a: Agreement| {
            if a.active && a.recurring && a.seen.retired_at.is_none() {
                eligible.push((key.into(), a.id.into(), a.company_id.into()));
            }
            Ok(())
        })?;
        eligible.shrink_to_fit();
        let mut by_company: Vec<usize> = (0..eligible.len()).collect();
        by_company.sort_by(|&a, &b| eligible[a].2.cmp(&eligible[b].2));
        Ok(Agreements { eligible, by_company })
    }

    /// The company of the agreement with this journal key, when its lines count.
    fn company(&self, key: &str) -> Option<&str> {
        let at = self.eligible.binary_search_by(|(k, _, _)| (**k).cmp(key)).ok()?;
        Some(&self.eligible[at].2)
    }

    /// The ids of the company's agreements, where a new line could go.
    fn of_company(&self, company: &str) -> Vec<&str> {
        let start = self.by_company.partition_point(|&i| *self.eligible[i].2 < *company);
        self.by_company[start..]
            .iter()
            .map(|&i| &self.eligible[i])
            .take_while(|(_, _, c)| **c == *company)
            .map(|(_, id, _)| &**id)
            .collect()
    }
}

/// The tables read again as each card is built.
struct Reads<'t> {
    companies: Lookup<'t, Company>,
    approvals: Lookup<'t, Approval>,
    usage: Lookup<'t, UsageCount>,
    account_map: Lookup<'t, Mapping>,
    accounts: Lookup<'t, Account>,
    services: Lookup<'t, Service>,
}

impl<'t> Reads<'t> {
    fn open(tx: &'t impl Read) -> Result<Reads<'t>, JournalError> {
        Ok(Reads {
            companies: tx.lookup(&tables::COMPANIES)?,
            approvals: tx.lookup(&tables::APPROVALS)?,
            usage: tx.lookup(&tables::USAGE)?,
            account_map: tx.lookup(&tables::ACCOUNT_MAPPINGS)?,
            accounts: tx.lookup(&tables::ACCOUNTS)?,
            services: tx.lookup(&tables::SERVICES)?,
        })
    }

    fn company_name(&self, id: &str) -> Result<String, JournalError> {
        Ok(self.companies.get(id)?.map_or_else(|| format!("company {id}"), |c| c.name))
    }
}

fn pair_of<'p>(
    pairs: &'p mut BTreeMap<Box<str>, Pair>,
    company: &str,
    product: &str,
) -> &'p mut Pair {
    pairs
        .entry(key2(company, product).into())
        .or_insert_with(|| Pair { company_len: company.len() as u32, ..Pair::default() })
}

impl Plan {
    fn read(tx: &impl Read, today: &str) -> Result<Plan, JournalError> {
        let mut incomplete = Vec::new();
        tx.each(&tables::STREAMS, "", &mut |name, s: StreamState| {
            if s.listing.is_some()
                || s.last_error_at.is_some_and(|e| s.last_complete_at.is_none_or(|c| e > c))
            {
                incomplete.push(name.replace(SEP, "/"));
            }
            Ok(())
        })?;
        let service_map: HashMap<String, Mapping> =
            tx.scan(&tables::SERVICE_MAPPINGS, "")?.into_iter().collect();
        let mut products = HashMap::new();
        for mapping in service_map.values() {
            if let Target::Id(id) = &mapping.target
                && !products.contains_key(id)
            {
                products.insert(id.clone(), Backed::read(tx, id)?);
            }
        }
        let context = Context {
            products,
            service_map,
            agreements: Agreements::read(tx)?,
            incomplete,
            no_rules: ProductRules::default(),
        };
        let mut pairs = BTreeMap::new();
        let mut unmapped: Vec<(Box<str>, Box<str>)> = Vec::new();

        // Vendor side.
        let account_map = tx.lookup(&tables::ACCOUNT_MAPPINGS)?;
        tx.each(&tables::USAGE, "", &mut |usage_key, usage: UsageCount| {
            let account = account_map.get(&key2(&usage.vendor, &usage.account_id))?;
            let service = context.service_map.get(&key2(&usage.vendor, &usage.service_id));
            match (account.map(|m| m.target), service.map(|m| &m.target)) {
                (Some(Target::Id(company)), Some(Target::Id(product))) => {
                    let pair = pair_of(&mut pairs, &company, product);
                    *pair.vendor.get_or_insert(Decimal::ZERO) += usage.quantity;
                    let source =
                        format!("{}/{}/{}", usage.vendor, usage.account_id, usage.service_id);
                    pair.add_source(source, usage.quantity);
                    let rules = context.rules(product);
                    let stable = is_stable(&usage, rules.require_stable_pulls);
                    pair.stable =
                        if pair.sources.len() == 1 { stable } else { pair.stable && stable };
                }
                _ => {
                    let key = unmapped_key(&usage);
                    unmapped.push((key.into(), usage_key.into()));
                }
            }
            Ok(())
        })?;
        drop(account_map);
        unmapped.sort_by(|a, b| a.0.cmp(&b.0));

        // PSA side: lines in force today on active recurring agreements of billable companies.
        let mut not_billable = HashSet::new();
        tx.each(&tables::COMPANIES, "", &mut |key, company: Company| {
            if !company.billable {
                not_billable.insert(key.to_string());
            }
            Ok(())
        })?;
        tx.each(&tables::BILLING_LINES, "", &mut |_, line: BillingLine| {
            if !context.products.contains_key(&line.product_id) {
                return Ok(());
            }
            let Some(agreement_company) = context.agreements.company(&line.agreement_id) else {
                return Ok(());
            };
            let company =
                if line.company_id.is_empty() { agreement_company } else { &line.company_id };
            if not_billable.contains(company) {
                return Ok(());
            }
            if line.in_force_on(today) {
                let pair = pair_of(&mut pairs, company, &line.product_id);
                *pair.psa.get_or_insert(Decimal::ZERO) += line.quantity;
                pair.lines().in_force.add(line);
            } else if line.is_future_on(today) {
                let note = format!(
                    "line {} ({}) starts {}: not counted yet",
                    line.id,
                    line.quantity,
                    line.effective_date.as_deref().unwrap_or("later")
                );
                pair_of(&mut pairs, company, &line.product_id).lines().future.push(note);
            }
            Ok(())
        })?;

        Ok(Plan { context, pairs, unmapped })
    }

    /// Builds the cards in key order, handing each to `emit` and dropping what it was built
    /// from as it goes.
    fn cards(
        self,
        tx: &impl Read,
        config: &Config,
        emit: &mut dyn FnMut(Card) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Plan { context, pairs, unmapped } = self;
        let reads = Reads::open(tx)?;
        let mut unmapped = unmapped.into_iter().peekable();
        for (key, pair) in pairs {
            // Keys are equal only when ids hold the key separator; the unmapped card goes first.
            while let Some((_, usage_key)) = unmapped.next_if(|(k, _)| **k <= *key) {
                if let Some(card) = context.unmapped_card(&reads, &usage_key)? {
                    emit(card)?;
                }
            }
            if pair.vendor.is_none() && pair.psa.is_none() {
                continue;
            }
            emit(context.card_for(&reads, config, key, pair)?)?;
        }
        for (_, usage_key) in unmapped {
            if let Some(card) = context.unmapped_card(&reads, &usage_key)? {
                emit(card)?;
            }
        }
        Ok(())
    }
}

impl Backed {
    fn read(tx: &impl Read, id: &str) -> Result<Backed, JournalError> {
        let product: Option<Product> = tx.get(&tables::PRODUCTS, id)?;
        Ok(Backed {
            name: product.as_ref().map_or_else(
                || format!("product {id}"),
                |p| match &p.identifier {
                    Some(ident) if !ident.is_empty() => ident.clone(),
                    _ => p.description.clone(),
                },
            ),
            unit_price: product.and_then(|p| p.unit_price),
            rules: tx.get(&tables::PRODUCT_RULES, id)?.unwrap_or_default(),
        })
    }
}

/// The card key of usage that no company and product take.
fn unmapped_key(usage: &UsageCount) -> String {
    format!("~{}", tables::key3(&usage.vendor, &usage.account_id, &usage.service_id))
}

fn is_stable(usage: &UsageCount, required: u32) -> bool {
    if required <= 1 {
        return true;
    }
    let needed = required as usize - 1;
    usage.previous.len() >= needed
        && usage.previous[..needed].iter().all(|(q, _)| *q == usage.quantity)
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

impl Context {
    fn rules(&self, product: &str) -> &ProductRules {
        self.products.get(product).map_or(&self.no_rules, |p| &p.rules)
    }

    fn product_name(&self, id: &str) -> String {
        self.products.get(id).map_or_else(|| format!("product {id}"), |p| p.name.clone())
    }

    /// The card of usage that no company and product take: its account or its service is not
    /// mapped, or is excluded. `None` when the usage is gone.
    fn unmapped_card(&self, reads: &Reads, usage_key: &str) -> Result<Option<Card>, JournalError> {
        let Some(usage) = reads.usage.get(usage_key)? else { return Ok(None) };
        let account_key = key2(&usage.vendor, &usage.account_id);
        let service_key = key2(&usage.vendor, &usage.service_id);
        let source = format!("{}/{}/{}", usage.vendor, usage.account_id, usage.service_id);
        let account = reads.account_map.get(&account_key)?.map(|m| m.target);
        let service = self.service_map.get(&service_key).map(|m| &m.target);
        let excluded =
            matches!(account, Some(Target::Excluded)) || matches!(service, Some(Target::Excluded));
        let key = unmapped_key(&usage);
        let account_name =
            reads.accounts.get(&account_key)?.map_or_else(|| usage.account_id.clone(), |a| a.name);
        let service_name =
            reads.services.get(&service_key)?.map_or_else(|| usage.service_id.clone(), |s| s.name);
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
            Some(Target::Id(c)) => {
                let name = reads.company_name(&c)?;
                (c, name)
            }
            _ => (String::new(), format!("{} (vendor {})", account_name, usage.vendor)),
        };
        let (product_id, product_name) = match service {
            Some(Target::Id(p)) => (p.clone(), self.product_name(p)),
            _ => (String::new(), format!("{service_name} (vendor {})", usage.vendor)),
        };
        Ok(Some(Card {
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
        }))
    }

    fn card_for(
        &self,
        reads: &Reads,
        config: &Config,
        key: Box<str>,
        pair: Pair,
    ) -> Result<Card, JournalError> {
        let key = key.into_string();
        let company_len = pair.company_len as usize;
        let company_id = key[..company_len].to_string();
        let product_id = key[company_len + SEP.len_utf8()..].to_string();
        let rules = self.rules(&product_id);
        let PairLines { in_force, future } = pair.lines.map(|l| *l).unwrap_or_default();
        let mut notes = future;
        let company = reads.companies.get(&company_id)?;
        let status = match (pair.vendor, pair.psa) {
            (Some(v), Some(p)) => match round(v, rules) {
                Ok(t) if t == p => CardStatus::Match,
                _ => CardStatus::Reconcile,
            },
            (Some(_), None) => CardStatus::New,
            (None, Some(_)) => CardStatus::Stale,
            (None, None) => CardStatus::Match,
        };

        // Which line a change would go to.
        let mut line_id = None;
        let mut agreement_id = None;
        let mut unit_price = self.products.get(&product_id).and_then(|p| p.unit_price);
        let mut blocked: Option<String> = None;
        match in_force {
            InForce::One(line) => {
                line_id = Some(line.id.into_string());
                agreement_id = Some(line.agreement_id.into_string());
                unit_price = line.unit_price.or(unit_price);
            }
            InForce::None => match self.agreements.of_company(&company_id).as_slice() {
                [agreement] => agreement_id = Some(agreement.to_string()),
                [] => {
                    blocked = Some(
                        "the company has no active recurring agreement to add a line to".into(),
                    )
                }
                several => {
                    let mut ids = several.to_vec();
                    ids.sort();
                    blocked = Some(format!(
                        "the company has {} active recurring agreements ({}); add the line in the \
                         PSA on the right one",
                        several.len(),
                        ids.join(", ")
                    ))
                }
            },
            InForce::Several(count, names) => {
                blocked = Some(format!(
                    "ambiguous: {count} lines are in force for this product ({names}); review them \
                     in the PSA"
                ));
            }
        }
        if let Some(company) = &company
            && (company.deleted || company.seen.retired_at.is_some())
        {
            blocked = Some(format!(
                "company {} is deleted or merged in the PSA; map its vendor accounts to the \
                 surviving company",
                company.id
            ));
        }
        if company.is_none() && !company_id.is_empty() {
            blocked = Some(format!("company {company_id} is not in the journal yet; run a sync"));
        }
        if !self.incomplete.is_empty() {
            blocked = Some(format!(
                "no change is decided while a PSA listing is incomplete ({}); run a sync",
                self.incomplete.join(", ")
            ));
        }

        let target = match status {
            CardStatus::Reconcile | CardStatus::New => match pair.vendor.map(|v| round(v, rules)) {
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
                None => {
                    let approval = reads.approvals.get(&key)?;
                    let psa = pair.psa;
                    decide(config, rules, status, target, psa, pair.stable, approval.as_ref())
                }
            },
        };
        if status == CardStatus::Stale {
            notes.push("billed in the PSA, but no mapped vendor reports usage".to_string());
        }

        Ok(Card {
            id: card_id(&key),
            key,
            company_name: company.map_or_else(|| format!("company {company_id}"), |c| c.name),
            product_name: self.product_name(&product_id),
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
        })
    }
}

fn decide(
    config: &Config,
    rules: &ProductRules,
    status: CardStatus,
    target: Decimal,
    psa: Option<Decimal>,
    stable: bool,
    approval: Option<&Approval>,
) -> Decision {
    if let Some(approval) = approval {
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

    /// A default config and a new journal in a temporary directory.
    fn scratch() -> (tempfile::TempDir, Config, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tally.toml");
        std::fs::write(&file, "journal = \"j.redb\"\n").unwrap();
        let config = Config::load(&file, true).unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        (dir, config, journal)
    }

    fn blocked(card: &Card) -> &str {
        match &card.decision {
            Decision::Blocked(reason) => reason,
            other => panic!("card {} is not blocked: {other:?}", card.key),
        }
    }

    #[test]
    fn a_new_line_goes_on_the_only_recurring_agreement_and_several_block_the_card() {
        let (_dir, config, journal) = scratch();
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

    fn card(key: &str) -> Card {
        Card::blank(key)
    }

    fn stored_keys(journal: &Journal) -> Vec<String> {
        let tx = journal.read().unwrap();
        tx.scan(&tables::CARDS, "").unwrap().into_iter().map(|(key, _)| key).collect()
    }

    #[test]
    fn the_walk_over_stored_cards_removes_those_not_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        journal
            .write(|tx| {
                for key in ["a", "b", "c", "d", "e"] {
                    tx.put(&tables::CARDS, key, &card(key))?;
                }
                Ok::<_, JournalError>(())
            })
            .unwrap();

        let removed = journal
            .write(|tx| {
                let mut stored = Stored::open(tx)?;
                assert_eq!(stored.take("b")?.map(|c| c.key).as_deref(), Some("b"));
                assert!(stored.take("bb")?.is_none(), "bb was never stored");
                stored.put(&card("bb"))?;
                // The same key again, then one before it, remove nothing more.
                assert!(stored.take("bb")?.is_some());
                assert!(stored.take("b")?.is_some());
                assert!(stored.take("d")?.is_some());
                stored.finish()
            })
            .unwrap();

        assert_eq!(removed, 3, "a, c and e were not built again");
        assert_eq!(stored_keys(&journal), ["b", "bb", "d"]);
    }

    #[test]
    fn a_refresh_rewrites_only_changed_cards_and_removes_those_no_longer_computed() {
        let (_dir, config, journal) = scratch();
        let usage = |account: &str, quantity: i64| UsageCount {
            vendor: "v".into(),
            account_id: account.into(),
            service_id: "s".into(),
            quantity: Decimal::from(quantity),
            received_at: 1,
            previous: Vec::new(),
        };
        journal
            .write(|tx| {
                let map =
                    |id: &str| Mapping { target: Target::Id(id.into()), origin: Origin::File };
                tx.put(&tables::SERVICE_MAPPINGS, &key2("v", "s"), &map("101"))?;
                tx.put(&tables::ACCOUNT_MAPPINGS, &key2("v", "a1"), &map("1"))?;
                tx.put(&tables::USAGE, &tables::key3("v", "s", "a1"), &usage("a1", 5))?;
                // Not mapped: a card of its own.
                tx.put(&tables::USAGE, &tables::key3("v", "s", "a2"), &usage("a2", 3))?;
                // Left by an earlier mapping: no longer computed.
                tx.put(&tables::CARDS, &key2("9", "101"), &card(&key2("9", "101")))?;
                Ok::<_, JournalError>(())
            })
            .unwrap();

        let first = refresh_on(&journal, &config, "2026-01-01").unwrap();
        assert_eq!(first, Refresh { cards: 2, changed: 2, removed: 1 });
        let unmapped = format!("~{}", tables::key3("v", "a2", "s"));
        assert_eq!(stored_keys(&journal), [key2("1", "101"), unmapped.clone()]);

        let again = refresh_on(&journal, &config, "2026-01-01").unwrap();
        assert_eq!(again, Refresh { cards: 2, changed: 0, removed: 0 });

        journal
            .write(|tx| {
                tx.put(&tables::USAGE, &tables::key3("v", "s", "a1"), &usage("a1", 6))?;
                tx.delete(&tables::USAGE, &tables::key3("v", "s", "a2"))?;
                Ok::<_, JournalError>(())
            })
            .unwrap();
        let changed = refresh_on(&journal, &config, "2026-01-01").unwrap();
        assert_eq!(changed, Refresh { cards: 1, changed: 1, removed: 1 });
        assert_eq!(stored_keys(&journal), [key2("1", "101")]);
    }

    #[test]
    fn several_lines_in_force_are_named_on_the_card_and_future_lines_noted() {
        let (_dir, config, journal) = scratch();
        let line = |id: &str, product: &str, quantity: i64, effective: Option<&str>| BillingLine {
            id: id.into(),
            agreement_id: "10".into(),
            company_id: String::new(),
            product_id: product.into(),
            quantity: Decimal::from(quantity),
            included_quantity: None,
            unit_price: Some(Decimal::from(2)),
            effective_date: effective.map(str::to_string),
            cancelled_date: None,
            updated_at: None,
            seen: seen(),
        };
        journal
            .write(|tx| {
                for product in ["101", "102"] {
                    let map = Mapping { target: Target::Id(product.into()), origin: Origin::File };
                    tx.put(&tables::SERVICE_MAPPINGS, &key2("v", product), &map)?;
                }
                let agreement = Agreement {
                    id: "10".into(),
                    company_id: "1".into(),
                    name: "Managed Services".into(),
                    active: true,
                    recurring: true,
                    updated_at: None,
                    seen: seen(),
                };
                tx.put(&tables::AGREEMENTS, "10", &agreement)?;
                let company = Company {
                    id: "1".into(),
                    name: "Company 1".into(),
                    identifier: None,
                    active: true,
                    deleted: false,
                    billable: true,
                    updated_at: None,
                    seen: seen(),
                };
                tx.put(&tables::COMPANIES, "1", &company)?;
                // Product 101: three lines in force and one that starts later; 102: one line.
                for (id, product, quantity, effective) in [
                    ("l1", "101", 4, None),
                    ("l2", "101", 5, Some("2025-06-01")),
                    ("l3", "101", 6, Some("2026-02-01")),
                    ("l4", "101", 7, None),
                    ("l5", "102", 8, None),
                ] {
                    tx.put(&tables::BILLING_LINES, id, &line(id, product, quantity, effective))?;
                }
                Ok::<_, JournalError>(())
            })
            .unwrap();

        let cards = compute(&journal, &config, "2026-01-01").unwrap();
        let keys: Vec<&str> = cards.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, [key2("1", "101"), key2("1", "102")]);
        let several = &cards[0];
        assert_eq!(several.psa_quantity, Some(Decimal::from(16)));
        assert_eq!(several.line_id, None);
        assert_eq!(
            blocked(several),
            "ambiguous: 3 lines are in force for this product (l1 (4), l2 (5), l4 (7)); review \
             them in the PSA"
        );
        assert_eq!(several.notes[0], "line l3 (6) starts 2026-02-01: not counted yet");
        let one = &cards[1];
        assert_eq!(one.line_id.as_deref(), Some("l5"));
        assert_eq!(one.agreement_id.as_deref(), Some("10"));
        assert_eq!(one.unit_price, Some(Decimal::from(2)));
    }
}
