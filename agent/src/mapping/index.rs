//! A name index over PSA companies or products: level-1 lookups for automatic matches, and
//! level-2 keys plus an inverted token index for suggestions.
//!
//! Lookups cost the size of the answer, not the size of the catalog: suggestions for thousands
//! of accounts against thousands of companies never compare all pairs. The index holds only
//! records that may be matched (active, not deleted, not retired); it decides nothing.

use std::collections::HashMap;

use super::normalize::{level1, level2, tokens};
use crate::model::{Company, Product};

/// One name a target is known by (a product has a description and an identifier).
#[derive(Debug, Clone)]
pub struct Named {
    pub target_id: String,
    /// The target's display name (company name, product description).
    pub display: String,
    /// The name this entry indexes.
    pub name: String,
    key2: String,
    tokens: Vec<String>,
}

/// The index.
#[derive(Debug, Default)]
pub struct NameIndex {
    entries: Vec<Named>,
    by_level1: HashMap<String, Vec<usize>>,
    by_level2: HashMap<String, Vec<usize>>,
    by_token: HashMap<String, Vec<usize>>,
}

/// A target found through the token index, with its overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub entry: usize,
    pub shared: usize,
    pub union: usize,
}

/// What an index answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookups {
    /// Level-1 lookups only (automatic matches); the cheap one.
    Exact,
    /// Level-1, level-2 and token lookups (suggestions).
    Suggest,
}

impl NameIndex {
    /// Companies that may be matched: active, not deleted, not retired.
    pub fn companies<'a>(
        companies: impl IntoIterator<Item = &'a Company>,
        lookups: Lookups,
    ) -> Self {
        let mut index = NameIndex::default();
        for c in companies {
            if c.active && !c.deleted && c.seen.retired_at.is_none() {
                index.add(&c.id, &c.name, &c.name, lookups);
            }
        }
        index
    }

    /// Products that may be matched (active, not retired), by description and identifier.
    pub fn products<'a>(products: impl IntoIterator<Item = &'a Product>, lookups: Lookups) -> Self {
        let mut index = NameIndex::default();
        for p in products {
            if p.active && p.seen.retired_at.is_none() {
                index.add(&p.id, &p.description, &p.description, lookups);
                if let Some(identifier) = p.identifier.as_deref().filter(|i| !i.trim().is_empty()) {
                    index.add(&p.id, &p.description, identifier, lookups);
                }
            }
        }
        index
    }

    fn add(&mut self, target_id: &str, display: &str, name: &str, lookups: Lookups) {
        let key1 = level1(name);
        if key1.is_empty() {
            return;
        }
        let n = self.entries.len();
        self.by_level1.entry(key1).or_default().push(n);
        let (key2, toks) = match lookups {
            Lookups::Exact => (String::new(), Vec::new()),
            Lookups::Suggest => {
                let key2 = level2(name);
                let toks: Vec<String> = tokens(&key2).into_iter().map(str::to_string).collect();
                self.by_level2.entry(key2.clone()).or_default().push(n);
                for t in &toks {
                    self.by_token.entry(t.clone()).or_default().push(n);
                }
                (key2, toks)
            }
        };
        self.entries.push(Named {
            target_id: target_id.to_string(),
            display: display.to_string(),
            name: name.to_string(),
            key2,
            tokens: toks,
        });
    }

    pub fn entry(&self, n: usize) -> &Named {
        &self.entries[n]
    }

    /// Distinct target ids whose name equals `name` at level 1, in index order.
    pub fn exact(&self, name: &str) -> Vec<&Named> {
        self.distinct(self.by_level1.get(&level1(name)))
    }

    /// Entries whose level-2 key equals `name`'s.
    pub fn same_key(&self, name: &str) -> Vec<&Named> {
        self.by_level2.get(&level2(name)).into_iter().flatten().map(|&n| &self.entries[n]).collect()
    }

    fn distinct(&self, hits: Option<&Vec<usize>>) -> Vec<&Named> {
        let mut out: Vec<&Named> = Vec::new();
        for &n in hits.into_iter().flatten() {
            let e = &self.entries[n];
            if !out.iter().any(|o| o.target_id == e.target_id) {
                out.push(e);
            }
        }
        out
    }

    /// Entries sharing at least two thirds of the combined level-2 words with `name` (and at
    /// least two words). Uses prefix filtering: a qualifying entry must hold one of `name`'s
    /// rarest words, so only those words' postings are read. `compared` counts the entries
    /// verified.
    pub fn overlapping(&self, name: &str, compared: &mut u64) -> Vec<Overlap> {
        let key2 = level2(name);
        let mut mine = tokens(&key2);
        if mine.len() < 2 {
            return Vec::new();
        }
        // |A ∩ B| ≥ ⅔·|A ∪ B| ≥ ⅔·|A|.
        let min_shared = (2 * mine.len()).div_ceil(3).max(2);
        mine.sort_by_key(|t| self.by_token.get(*t).map_or(0, Vec::len));
        let probe = mine.len() - min_shared + 1;

        let mut candidates: Vec<usize> = mine[..probe]
            .iter()
            .flat_map(|t| self.by_token.get(*t).into_iter().flatten().copied())
            .collect();
        candidates.sort_unstable();
        candidates.dedup();

        let mut out = Vec::new();
        for n in candidates {
            *compared += 1;
            let theirs = &self.entries[n].tokens;
            let shared = mine.iter().filter(|t| theirs.iter().any(|o| o == *t)).count();
            let union = mine.len() + theirs.len() - shared;
            if shared >= 2 && 3 * shared >= 2 * union && self.entries[n].key2 != key2 {
                out.push(Overlap { entry: n, shared, union });
            }
        }
        out
    }
}
