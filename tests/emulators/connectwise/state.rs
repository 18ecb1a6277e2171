//! The emulator's data: every record indexed by id (additions by agreement and id, so that one
//! agreement's lines are a range scan), and the writes the API has applied. It owns the rule
//! that a write moves `_info.lastUpdated` forward; test-side changes that must not move it (a
//! merge setting `deletedFlag`, an explicit stamp) are separate operations. It knows nothing of
//! HTTP.

use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use super::fixtures::CwData;
use super::model::{Addition, Agreement, CatalogItem, Company};
use super::timestamps::{next_stamp, truncate_to_millis};

/// Names one record, for operations that apply to every kind (such as setting `lastUpdated`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordRef {
    Company(i64),
    CatalogItem(i64),
    Agreement(i64),
    Addition { agreement_id: i64, id: i64 },
}

/// How many writes the API has applied, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts {
    pub patches: usize,
    pub posts: usize,
}

impl WriteCounts {
    pub fn total(&self) -> usize {
        self.patches + self.posts
    }
}

/// All records, indexed for the listings the API serves.
#[derive(Debug, Default)]
pub struct State {
    pub(crate) companies: BTreeMap<i64, Company>,
    pub(crate) catalog: BTreeMap<i64, CatalogItem>,
    pub(crate) agreements: BTreeMap<i64, Agreement>,
    /// Keyed by (agreement id, addition id).
    pub(crate) additions: BTreeMap<(i64, i64), Addition>,
    /// Addition id → agreement id: addition ids are unique across agreements.
    addition_owner: HashMap<i64, i64>,
    max_addition_id: i64,
    pub(crate) writes: WriteCounts,
}

impl State {
    pub fn new(data: CwData) -> State {
        let mut state = State {
            companies: data.companies.into_iter().map(|c| (c.id, c)).collect(),
            catalog: data.products.into_iter().map(|p| (p.id, p)).collect(),
            agreements: data.agreements.into_iter().map(|a| (a.id, a)).collect(),
            ..State::default()
        };
        for addition in data.additions {
            state.put_addition(addition);
        }
        state
    }

    /// A copy of every record, in id order.
    pub fn snapshot(&self) -> CwData {
        CwData {
            companies: self.companies.values().cloned().collect(),
            products: self.catalog.values().cloned().collect(),
            agreements: self.agreements.values().cloned().collect(),
            additions: self.additions.values().cloned().collect(),
        }
    }

    pub fn company(&self, id: i64) -> Option<&Company> {
        self.companies.get(&id)
    }

    pub fn catalog_item(&self, id: i64) -> Option<&CatalogItem> {
        self.catalog.get(&id)
    }

    pub fn agreement(&self, id: i64) -> Option<&Agreement> {
        self.agreements.get(&id)
    }

    pub fn addition(&self, agreement_id: i64, id: i64) -> Option<&Addition> {
        self.additions.get(&(agreement_id, id))
    }

    /// The additions of one agreement, in id order.
    pub fn additions_of(&self, agreement_id: i64) -> impl Iterator<Item = &Addition> {
        self.additions.range((agreement_id, i64::MIN)..=(agreement_id, i64::MAX)).map(|(_, a)| a)
    }

    /// Inserts or replaces a company exactly as given, `lastUpdated` included.
    pub fn put_company(&mut self, company: Company) {
        self.companies.insert(company.id, company);
    }

    pub fn put_catalog_item(&mut self, item: CatalogItem) {
        self.catalog.insert(item.id, item);
    }

    pub fn put_agreement(&mut self, agreement: Agreement) {
        self.agreements.insert(agreement.id, agreement);
    }

    /// Inserts or replaces an addition; an addition with the same id on another agreement is
    /// moved, since ids are unique across agreements.
    pub fn put_addition(&mut self, addition: Addition) {
        if let Some(old_owner) = self.addition_owner.insert(addition.id, addition.agreement_id) {
            self.additions.remove(&(old_owner, addition.id));
        }
        self.max_addition_id = self.max_addition_id.max(addition.id);
        self.additions.insert((addition.agreement_id, addition.id), addition);
    }

    pub fn remove_company(&mut self, id: i64) -> Option<Company> {
        self.companies.remove(&id)
    }

    pub fn remove_catalog_item(&mut self, id: i64) -> Option<CatalogItem> {
        self.catalog.remove(&id)
    }

    /// Removes an agreement and its additions.
    pub fn remove_agreement(&mut self, id: i64) -> Option<Agreement> {
        let ids: Vec<i64> = self.additions_of(id).map(|a| a.id).collect();
        for addition_id in ids {
            self.remove_addition(id, addition_id);
        }
        self.agreements.remove(&id)
    }

    pub fn remove_addition(&mut self, agreement_id: i64, id: i64) -> Option<Addition> {
        let removed = self.additions.remove(&(agreement_id, id))?;
        self.addition_owner.remove(&id);
        Some(removed)
    }

    /// Applies `change` as a ConnectWise write would: `lastUpdated` then moves forward.
    pub fn write_company(&mut self, id: i64, change: impl FnOnce(&mut Company)) -> bool {
        let Some(company) = self.companies.get_mut(&id) else { return false };
        change(company);
        company.last_updated = next_stamp(company.last_updated);
        true
    }

    pub fn write_catalog_item(&mut self, id: i64, change: impl FnOnce(&mut CatalogItem)) -> bool {
        let Some(item) = self.catalog.get_mut(&id) else { return false };
        change(item);
        item.last_updated = next_stamp(item.last_updated);
        true
    }

    pub fn write_agreement(&mut self, id: i64, change: impl FnOnce(&mut Agreement)) -> bool {
        let Some(agreement) = self.agreements.get_mut(&id) else { return false };
        change(agreement);
        agreement.last_updated = next_stamp(agreement.last_updated);
        true
    }

    /// Applies `change` to an addition and moves its `lastUpdated`. The change must not alter
    /// the addition's id or agreement; use `put_addition` to move one.
    pub fn write_addition(
        &mut self,
        agreement_id: i64,
        id: i64,
        change: impl FnOnce(&mut Addition),
    ) -> bool {
        let Some(addition) = self.additions.get_mut(&(agreement_id, id)) else { return false };
        change(addition);
        addition.id = id;
        addition.agreement_id = agreement_id;
        addition.last_updated = next_stamp(addition.last_updated);
        true
    }

    /// Sets `deletedFlag` the way a ConnectWise merge does: status and `lastUpdated` untouched.
    pub fn set_company_deleted_flag(&mut self, id: i64, deleted: bool) -> bool {
        let Some(company) = self.companies.get_mut(&id) else { return false };
        company.deleted_flag = deleted;
        true
    }

    /// Sets a record's `lastUpdated` to exactly `at` (to the millisecond), whatever it was.
    pub fn set_last_updated(&mut self, record: RecordRef, at: OffsetDateTime) -> bool {
        let at = truncate_to_millis(at);
        let slot = match record {
            RecordRef::Company(id) => self.companies.get_mut(&id).map(|r| &mut r.last_updated),
            RecordRef::CatalogItem(id) => self.catalog.get_mut(&id).map(|r| &mut r.last_updated),
            RecordRef::Agreement(id) => self.agreements.get_mut(&id).map(|r| &mut r.last_updated),
            RecordRef::Addition { agreement_id, id } => {
                self.additions.get_mut(&(agreement_id, id)).map(|r| &mut r.last_updated)
            }
        };
        match slot {
            Some(slot) => {
                *slot = at;
                true
            }
            None => false,
        }
    }

    /// An addition id not used by any agreement.
    pub fn next_addition_id(&self) -> i64 {
        self.max_addition_id + 1
    }
}
