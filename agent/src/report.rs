//! `tally report`: the cards as a table, JSON or CSV, filtered and sorted, with a one-line
//! summary; and the audit history of applied changes.
//!
//! It only reads the journal. Quantities print as the decimals they are; times print in UTC.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::cli::{Format, ReportArgs, UsageError};
use crate::journal::tables;
use crate::journal::{Journal, Read};
use crate::mapping::normalize::{level1, visible};
use crate::model::{AuditEntry, Card, CardStatus, Decision, format_millis};

/// One card as users and scripts see it.
#[derive(Debug, Serialize)]
pub struct CardRow {
    pub card: String,
    pub company_id: String,
    pub company: String,
    pub product_id: String,
    pub product: String,
    pub status: &'static str,
    pub vendor_quantity: Option<String>,
    pub psa_quantity: Option<String>,
    pub difference: Option<String>,
    pub target: Option<String>,
    pub action: String,
    pub reason: Option<String>,
    /// (target − PSA quantity) × unit price, per month, where the price is known.
    pub money_per_month: Option<String>,
    pub line_id: Option<String>,
    pub agreement_id: Option<String>,
    pub sources: Vec<String>,
    pub notes: Vec<String>,
    pub computed_at: String,
}

fn difference(card: &Card) -> Option<Decimal> {
    match (card.vendor_quantity, card.psa_quantity) {
        (Some(v), Some(p)) => Some(v - p),
        (Some(v), None) => Some(v),
        (None, Some(p)) => Some(-p),
        (None, None) => None,
    }
}

fn money(card: &Card) -> Option<Decimal> {
    let target = card.target?;
    let price = card.unit_price?;
    Some(cents((target - card.psa_quantity.unwrap_or_default()) * price))
}

/// `amount` rounded to cents and written with exactly two decimals (`14830.80`, not
/// `14830.8`), so a column of money reads and sorts alike in every row.
fn cents(amount: Decimal) -> Decimal {
    let mut rounded = amount.round_dp(2);
    rounded.rescale(2);
    rounded
}

pub fn action(decision: &Decision) -> (String, Option<String>) {
    match decision {
        Decision::None => ("-".into(), None),
        Decision::ReportOnly => ("report".into(), Some("apply = \"none\"".into())),
        Decision::Held(why) => ("held".into(), Some(why.clone())),
        Decision::Apply => ("apply".into(), None),
        Decision::Blocked(why) => ("review".into(), Some(why.clone())),
    }
}

pub fn row(card: &Card) -> CardRow {
    let (action, reason) = action(&card.decision);
    CardRow {
        card: card.id.clone(),
        company_id: card.company_id.clone(),
        company: card.company_name.clone(),
        product_id: card.product_id.clone(),
        product: card.product_name.clone(),
        status: card.status.as_str(),
        vendor_quantity: card.vendor_quantity.map(|q| q.normalize().to_string()),
        psa_quantity: card.psa_quantity.map(|q| q.normalize().to_string()),
        difference: difference(card).map(|q| q.normalize().to_string()),
        target: card.target.map(|q| q.normalize().to_string()),
        action,
        reason,
        money_per_month: money(card).map(|m| m.to_string()),
        line_id: card.line_id.clone(),
        agreement_id: card.agreement_id.clone(),
        sources: card.sources.iter().map(|(s, q)| format!("{s} = {}", q.normalize())).collect(),
        notes: card.notes.clone(),
        computed_at: format_millis(card.computed_at),
    }
}

/// Cards by status, and money at stake per month.
#[derive(Debug, Serialize, Default)]
pub struct Summary {
    pub cards: usize,
    pub by_status: BTreeMap<&'static str, usize>,
    pub money_at_stake_per_month: String,
    pub held: usize,
    pub to_apply: usize,
}

pub fn summarize(cards: &[Card]) -> Summary {
    let mut tally = Tally::new();
    cards.iter().for_each(|card| tally.add(card));
    tally.summary()
}

/// The summary of every card in the journal, read one card at a time.
pub fn summarize_journal(tx: &impl Read) -> Result<Summary, crate::journal::JournalError> {
    let mut tally = Tally::new();
    tx.each(&tables::CARDS, "", &mut |_, card: Card| {
        tally.add(&card);
        Ok(())
    })?;
    Ok(tally.summary())
}

/// A summary being counted.
struct Tally {
    summary: Summary,
    stake: Decimal,
}

impl Tally {
    fn new() -> Tally {
        let mut summary = Summary::default();
        for status in CardStatus::ALL {
            summary.by_status.insert(status.as_str(), 0);
        }
        Tally { summary, stake: Decimal::ZERO }
    }

    fn add(&mut self, card: &Card) {
        let summary = &mut self.summary;
        summary.cards += 1;
        *summary.by_status.entry(card.status.as_str()).or_default() += 1;
        if let Some(m) = money(card) {
            self.stake += m.abs();
        }
        match card.decision {
            Decision::Held(_) => summary.held += 1,
            Decision::Apply => summary.to_apply += 1,
            _ => {}
        }
    }

    fn summary(mut self) -> Summary {
        self.summary.money_at_stake_per_month = cents(self.stake).to_string();
        self.summary
    }
}

impl Summary {
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .by_status
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        format!(
            "{} cards: {}; {} held for approval; {} to apply; money at stake {} per month",
            self.cards,
            if parts.is_empty() { "none".to_string() } else { parts.join(", ") },
            self.held,
            self.to_apply,
            self.money_at_stake_per_month
        )
    }
}

/// The cards selected by the report's filters, sorted.
pub fn select(journal: &Journal, args: &ReportArgs) -> anyhow::Result<Vec<Card>> {
    let mut statuses = Vec::new();
    for word in args.status.iter().flat_map(|s| s.split(',')) {
        let word = word.trim();
        match CardStatus::parse(word) {
            Some(status) => statuses.push(status),
            None => {
                return Err(UsageError(format!(
                    "--status {word}: not a card status; use match, reconcile, new, stale, \
                     unmapped or excluded"
                ))
                .into());
            }
        }
    }
    // Names compare in their level-1 form, case aside: a non-breaking or doubled space, or a
    // zero-width character, in the PSA's name does not hide a company from `--company`.
    let folded = |name: &str| level1(name).to_lowercase();
    let needle = args.company.as_deref().map(folded);
    if needle.as_deref() == Some("") {
        return Err(UsageError(
            "--company needs a name or id to look for; leave it out to see every company".into(),
        )
        .into());
    }
    let mut cards: Vec<Card> = journal
        .read()?
        .values(&tables::CARDS, "")?
        .into_iter()
        .filter(|c| statuses.is_empty() || statuses.contains(&c.status))
        .filter(|c| {
            needle.as_deref().is_none_or(|n| {
                folded(&c.company_name).contains(n) || c.company_id.to_lowercase() == n
            })
        })
        .collect();
    let key = args.sort.as_str();
    match key {
        "company" => {
            cards.sort_by_cached_key(|c| (folded(&c.company_name), c.product_name.clone()))
        }
        "product" => cards.sort_by(|a, b| {
            (&a.product_name, &a.company_name).cmp(&(&b.product_name, &b.company_name))
        }),
        "status" => {
            cards.sort_by(|a, b| (a.status, &a.company_name).cmp(&(b.status, &b.company_name)))
        }
        "vendor" => cards.sort_by_key(|c| std::cmp::Reverse(c.vendor_quantity)),
        "psa" => cards.sort_by_key(|c| std::cmp::Reverse(c.psa_quantity)),
        "difference" => cards.sort_by_key(|c| std::cmp::Reverse(difference(c).map(|d| d.abs()))),
        "money" => cards.sort_by_key(|c| std::cmp::Reverse(money(c).map(|d| d.abs()))),
        other => {
            return Err(UsageError(format!(
                "--sort {other}: use company, product, status, vendor, psa, difference or money"
            ))
            .into());
        }
    }
    Ok(cards)
}

pub fn print_cards(
    cards: &[Card],
    format: Format,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let summary = summarize(cards);
    let rows: Vec<CardRow> = cards.iter().map(row).collect();
    match format {
        Format::Json => {
            let doc = serde_json::json!({ "summary": summary, "cards": rows });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "card",
                "company_id",
                "company",
                "product_id",
                "product",
                "status",
                "vendor_quantity",
                "psa_quantity",
                "difference",
                "target",
                "action",
                "reason",
                "money_per_month",
                "line_id",
                "agreement_id",
            ])?;
            for r in &rows {
                let opt = |o: &Option<String>| o.clone().unwrap_or_default();
                w.write_record([
                    r.card.clone(),
                    r.company_id.clone(),
                    r.company.clone(),
                    r.product_id.clone(),
                    r.product.clone(),
                    r.status.to_string(),
                    opt(&r.vendor_quantity),
                    opt(&r.psa_quantity),
                    opt(&r.difference),
                    opt(&r.target),
                    r.action.clone(),
                    opt(&r.reason),
                    opt(&r.money_per_month),
                    opt(&r.line_id),
                    opt(&r.agreement_id),
                ])?;
            }
            w.flush()?;
        }
        Format::Table | Format::Toml => {
            let header = [
                "CARD", "COMPANY", "PRODUCT", "VENDOR", "PSA", "DIFF", "MONEY/MO", "STATUS",
                "ACTION",
            ];
            let cells: Vec<[String; 9]> = rows
                .iter()
                .map(|r| {
                    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
                    [
                        r.card.clone(),
                        r.company.clone(),
                        r.product.clone(),
                        dash(&r.vendor_quantity),
                        dash(&r.psa_quantity),
                        dash(&r.difference),
                        dash(&r.money_per_month),
                        r.status.to_string(),
                        match &r.reason {
                            Some(reason) if r.action != "report" => {
                                format!("{}: {reason}", r.action)
                            }
                            _ => r.action.clone(),
                        },
                    ]
                })
                .collect();
            print_table(out, &header, &cells)?;
            writeln!(out)?;
            writeln!(out, "{}", summary.line())?;
        }
    }
    Ok(())
}

/// A plain aligned text table; the last column is not padded. Invisible code points (a
/// zero-width or non-breaking space in a PSA name) are written as `<U+200B>`, so they neither
/// hide in a name nor push the columns out of line.
pub fn print_table<const N: usize>(
    out: &mut dyn std::io::Write,
    header: &[&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let rows: Vec<[String; N]> = rows.iter().map(|row| row.clone().map(|c| visible(&c))).collect();
    let rows = rows.as_slice();
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count().min(40));
        }
    }
    let line = |cells: Vec<String>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell: String = if i + 1 < N && cell.chars().count() > 40 {
                cell.chars().take(39).chain(['…']).collect()
            } else {
                cell.clone()
            };
            if i + 1 == N {
                text.push_str(&cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.iter().map(|h| h.to_string()).collect()))?;
    for row in rows {
        writeln!(out, "{}", line(row.to_vec()))?;
    }
    Ok(())
}

#[derive(Serialize)]
struct HistoryRow {
    id: u64,
    at: String,
    company_id: String,
    product_id: String,
    line_id: String,
    old_quantity: Option<String>,
    new_quantity: String,
    decided_by: String,
    outcome: String,
    psa_answer: String,
}

pub fn print_history(
    journal: &Journal,
    format: Format,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let entries: Vec<AuditEntry> = journal.read()?.values(&tables::AUDIT, "")?;
    let rows: Vec<HistoryRow> = entries
        .into_iter()
        .map(|e| HistoryRow {
            id: e.id,
            at: format_millis(e.at),
            company_id: e.company_id,
            product_id: e.product_id,
            line_id: e.line_id,
            old_quantity: e.old_quantity.map(|q| q.normalize().to_string()),
            new_quantity: e.new_quantity.normalize().to_string(),
            decided_by: e.decided_by,
            outcome: e.outcome,
            psa_answer: e.psa_answer,
        })
        .collect();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?,
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for r in &rows {
                w.serialize(r)?;
            }
            w.flush()?;
        }
        Format::Table | Format::Toml => {
            let tx = journal.read()?;
            let mut named = Vec::with_capacity(rows.len());
            for r in &rows {
                let company = tx.get(&tables::COMPANIES, &r.company_id)?.map(|c| c.name);
                let product = tx
                    .get(&tables::PRODUCTS, &r.product_id)?
                    .map(|p| p.identifier.filter(|i| !i.is_empty()).unwrap_or(p.description));
                named.push((
                    company.unwrap_or_else(|| r.company_id.clone()),
                    product.unwrap_or_else(|| r.product_id.clone()),
                ));
            }
            let header =
                ["ID", "AT (UTC)", "COMPANY", "PRODUCT", "LINE", "OLD", "NEW", "BY", "OUTCOME"];
            let cells: Vec<[String; 9]> = rows
                .iter()
                .zip(&named)
                .map(|(r, (company, product))| {
                    [
                        r.id.to_string(),
                        r.at.clone(),
                        company.clone(),
                        product.clone(),
                        r.line_id.clone(),
                        r.old_quantity.clone().unwrap_or_else(|| "-".into()),
                        r.new_quantity.clone(),
                        r.decided_by.clone(),
                        format!("{}: {}", r.outcome, r.psa_answer),
                    ]
                })
                .collect();
            print_table(out, &header, &cells)?;
            if rows.is_empty() {
                writeln!(out, "no changes applied yet")?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, company: &str) -> Card {
        Card {
            company_id: id.to_string(),
            company_name: company.to_string(),
            product_id: "9".into(),
            product_name: "SafeDNS seat".into(),
            ..Card::blank(&tables::key2(id, "9"))
        }
    }

    #[test]
    fn company_names_are_found_and_sorted_in_their_level_1_form() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(&dir.path().join("j.redb"), None).unwrap();
        let cards = [
            card("1", "Crescent Studio Inc."),
            card("2", "Crescent\u{a0}Point Group"),
            card("3", "crescent  point\u{200b} east"),
        ];
        journal
            .write(|tx| {
                cards
                    .iter()
                    .try_for_each(|c| crate::journal::Write::put(tx, &tables::CARDS, &c.key, c))
            })
            .unwrap();
        let select = |company: Option<&str>| {
            let args = ReportArgs {
                status: Vec::new(),
                company: company.map(str::to_string),
                sort: "company".into(),
                history: false,
            };
            super::select(&journal, &args)
                .unwrap()
                .into_iter()
                .map(|c| c.company_id)
                .collect::<Vec<_>>()
        };
        // "crescent point east" before "crescent point group", both before "crescent studio".
        assert_eq!(select(Some("Crescent Point")), ["3", "2"]);
        assert_eq!(select(Some("crescent\u{a0}\u{a0}point")), ["3", "2"]);
        assert_eq!(select(None), ["3", "2", "1"]);
        let args = ReportArgs {
            status: Vec::new(),
            company: Some(" \u{a0}".into()),
            sort: "company".into(),
            history: false,
        };
        let error = super::select(&journal, &args).unwrap_err().to_string();
        assert!(error.contains("--company needs a name or id"), "{error}");
    }

    #[test]
    fn a_table_shows_invisible_code_points_and_keeps_its_columns_in_line() {
        let rows = [
            ["Contoso\u{200b}".to_string(), "42".to_string()],
            ["Crescent\u{a0}Point".to_string(), "7".to_string()],
            ["Fabrikam".to_string(), "3".to_string()],
        ];
        let mut out = Vec::new();
        print_table(&mut out, &["COMPANY", "QTY"], &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Contoso<U+200B>") && text.contains("Crescent<U+00A0>Point"));
        let columns: Vec<usize> =
            text.lines().map(|l| l.char_indices().rfind(|(_, c)| *c == ' ').unwrap().0).collect();
        assert!(columns.windows(2).all(|w| w[0] == w[1]), "{text}");
    }

    #[test]
    fn money_is_written_to_the_cent() {
        let written = |text: &str| cents(text.parse().unwrap()).to_string();
        assert_eq!(written("14830.8"), "14830.80");
        assert_eq!(written("7"), "7.00");
        assert_eq!(written("-3.456"), "-3.46");
        assert_eq!(written("0.004"), "0.00");
    }
}
