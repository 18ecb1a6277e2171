//! Suggestions: likely PSA companies for unmapped vendor accounts and likely PSA products for
//! unmapped vendor services, ranked, each with the reason it was suggested.
//!
//! A suggestion is only ever shown (or printed as a mapping-file entry to paste); this module
//! never writes a mapping. Names that are equal at level 1 are automatic matches, not
//! suggestions, except when several PSA records share the name: then every candidate is listed.

use serde::Serialize;

use super::index::{NameIndex, Named};
use super::normalize::{folds_needed, level1};
use crate::model::{Account, Service};

/// The most candidates shown for one account or service.
pub const MAX_CANDIDATES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Account,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Account => "account",
            Kind::Service => "service",
        }
    }

    /// The PSA side's word: company or product.
    pub fn target(self) -> &'static str {
        match self {
            Kind::Account => "company",
            Kind::Service => "product",
        }
    }

    /// The PSA side's word, plural.
    pub fn targets(self) -> &'static str {
        match self {
            Kind::Account => "companies",
            Kind::Service => "products",
        }
    }
}

/// One PSA record suggested for an account or service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub id: String,
    pub name: String,
    pub reasons: Vec<String>,
    /// 0–100; higher is likelier.
    pub score: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub kind: Kind,
    pub vendor: String,
    pub id: String,
    pub name: String,
    /// Best first.
    pub candidates: Vec<Candidate>,
    /// The best candidates tie: the user must choose.
    pub ambiguous: bool,
}

/// Every suggestion, and how many index entries were compared to find them.
#[derive(Debug, Clone, Default)]
pub struct Suggestions {
    pub items: Vec<Suggestion>,
    pub compared: u64,
}

/// Candidates for one name, best first. `targets` names the PSA records in messages
/// ("companies").
pub fn candidates(
    index: &NameIndex,
    name: &str,
    targets: &str,
    compared: &mut u64,
) -> Vec<Candidate> {
    let mut found: Vec<Candidate> = Vec::new();
    let mut add = |entry: &Named, reasons: Vec<String>, score: u32| match found
        .iter_mut()
        .find(|c| c.id == entry.target_id)
    {
        Some(c) if c.score >= score => {}
        Some(c) => {
            c.reasons = reasons;
            c.score = score;
        }
        None => found.push(Candidate {
            id: entry.target_id.clone(),
            name: entry.display.clone(),
            reasons,
            score,
        }),
    };

    let exact = index.exact(name);
    if exact.len() > 1 {
        for entry in &exact {
            let reason = format!("same name as {} {targets}; choose one", exact.len());
            add(entry, vec![reason], 100);
        }
    }
    let name1 = level1(name);
    for entry in index.same_key(name) {
        *compared += 1;
        if level1(&entry.name) == name1 {
            continue;
        }
        let folds = folds_needed(name, &entry.name);
        let mut reasons: Vec<String> = folds.iter().map(|f| f.reason().to_string()).collect();
        if entry.name != entry.display {
            reasons.push(format!("matches the identifier \"{}\"", entry.name));
        }
        add(entry, reasons, 100 - 5 * folds.len() as u32);
    }
    for overlap in index.overlapping(name, compared) {
        let entry = index.entry(overlap.entry);
        let pct = 100 * overlap.shared / overlap.union;
        let reason =
            format!("token overlap: {} of {} words shared ({pct}%)", overlap.shared, overlap.union);
        add(entry, vec![reason], (80 * overlap.shared / overlap.union) as u32);
    }

    found.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    found.truncate(MAX_CANDIDATES);
    found
}

fn suggestion(
    kind: Kind,
    vendor: &str,
    id: &str,
    name: &str,
    index: &NameIndex,
    compared: &mut u64,
) -> Option<Suggestion> {
    let candidates = candidates(index, name, kind.targets(), compared);
    let best = candidates.first()?.score;
    let ambiguous = candidates.iter().filter(|c| c.score == best).count() > 1;
    Some(Suggestion {
        kind,
        vendor: vendor.to_string(),
        id: id.to_string(),
        name: name.to_string(),
        candidates,
        ambiguous,
    })
}

/// Suggestions for the given (unmapped) accounts and services.
pub fn suggest<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    services: impl IntoIterator<Item = &'a Service>,
    companies: &NameIndex,
    products: &NameIndex,
) -> Suggestions {
    let mut out = Suggestions::default();
    for a in accounts {
        if let Some(s) =
            suggestion(Kind::Account, &a.vendor, &a.id, &a.name, companies, &mut out.compared)
        {
            out.items.push(s);
        }
    }
    for s in services {
        if let Some(s) =
            suggestion(Kind::Service, &s.vendor, &s.id, &s.name, products, &mut out.compared)
        {
            out.items.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::index::Lookups;
    use crate::model::{Company, Seen};

    fn company(id: &str, name: &str) -> Company {
        Company {
            id: id.to_string(),
            name: name.to_string(),
            identifier: None,
            active: true,
            deleted: false,
            billable: true,
            updated_at: None,
            seen: Seen { seen_at: 0, retired_at: None },
        }
    }

    fn best(index: &NameIndex, name: &str) -> Vec<(String, Vec<String>)> {
        candidates(index, name, "companies", &mut 0)
            .into_iter()
            .map(|c| (c.id, c.reasons))
            .collect()
    }

    #[test]
    fn ambiguous_same_name_lists_every_candidate() {
        let companies = [company("7", "Contoso"), company("9", "Contoso"), company("3", "Other")];
        let index = NameIndex::companies(&companies, Lookups::Suggest);
        let found = candidates(&index, "Contoso", "companies", &mut 0);
        assert_eq!(found.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["7", "9"]);
        assert_eq!(found[0].reasons, ["same name as 2 companies; choose one"]);
    }

    #[test]
    fn token_overlap_needs_two_thirds_of_the_words() {
        let companies = [company("1", "Northwind Traders Group"), company("2", "Northwind Bank")];
        let index = NameIndex::companies(&companies, Lookups::Suggest);
        let found = best(&index, "Northwind Traders");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "1");
        assert!(found[0].1[0].starts_with("token overlap: 2 of 3 words"), "{found:?}");
    }

    #[test]
    fn one_word_names_get_no_overlap_suggestions() {
        let companies = [company("4", "Acme Holdings Inc.")];
        let index = NameIndex::companies(&companies, Lookups::Suggest);
        assert!(best(&index, "Acme Inc.").is_empty());
    }
}
