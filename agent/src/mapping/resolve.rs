//! Resolution: the mapping file plus automatic exact-name matches, written into the journal's
//! mapping tables (account and service mappings, product rules) in one write transaction.
//!
//! The file is read, hashed, parsed and validated whole inside that transaction, so the last
//! process to commit has read the newest file. A file that is invalid, empty after holding
//! entries, or missing after holding entries changes nothing but the recorded mapping file
//! state: the previous mapping stays in force. File entries always win over automatic
//! matches; an automatic match needs exactly one active PSA record with the same level-1 name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::WriteTransaction;
use sha2::{Digest, Sha256};

use super::MappingError;
use super::file::{self, Catalog, Resolved};
use super::index::{Lookups, NameIndex};
use crate::config::Config;
use crate::journal::tables::{
    ACCOUNT_MAPPINGS, ACCOUNTS, COMPANIES, INTEGRATIONS, PRODUCT_RULES, PRODUCTS, SEP,
    SERVICE_MAPPINGS, SERVICES, STATE, key2,
};
use crate::journal::{Journal, JournalError, Read, Write, codec};
use crate::model::{
    Account, Company, Mapping, MappingFileState, Origin, Product, ProductRules, Service, Target,
    now_millis,
};

/// The key of the mapping file state in the `STATE` table.
pub const STATE_KEY: &str = "mapping_file";

/// What a successful apply changed, so the reconciler can recompute only those cards.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MappingChange {
    /// SHA-256 of the file in force (`None`: there is no mapping file).
    pub hash: Option<String>,
    /// (vendor, account id) whose mapping was added, changed or removed.
    pub accounts: Vec<(String, String)>,
    /// (vendor, service id) whose mapping was added, changed or removed.
    pub services: Vec<(String, String)>,
    /// Product ids whose rules were added, changed or removed.
    pub products: Vec<String>,
    /// Entries in the file.
    pub file_entries: u64,
    /// Vendor accounts mapped to a company, automatically or by the file.
    pub accounts_mapped: u64,
    /// Vendor services mapped to a product, automatically or by the file.
    pub services_mapped: u64,
}

impl MappingChange {
    /// Nothing in force changed.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.services.is_empty() && self.products.is_empty()
    }
}

/// One apply: the hash of the content it read (`None` for a missing file) and its result.
pub(crate) struct Attempt {
    pub hash: Option<String>,
    pub result: Result<MappingChange, MappingError>,
}

/// Reads the mapping file, validates it whole against the journal, and puts the effective
/// account and service mappings and product rules in force in one transaction; then
/// recomputes the cards if anything changed. On any problem with the file, the previous
/// mapping stays and the error is recorded for `tally status`.
pub fn apply(journal: &Journal, config: &Config) -> Result<MappingChange, MappingError> {
    attempt(journal, config).result
}

#[tracing::instrument(name = "mapping::apply", skip_all, fields(file = %config.mapping.display()))]
pub(crate) fn attempt(journal: &Journal, config: &Config) -> Attempt {
    let mut hash = None;
    let result = journal.write(|tx| {
        let outcome = read_file(&config.mapping).and_then(|read| {
            hash = read.as_ref().map(|bytes| file_hash(bytes));
            apply_in(tx, config, read.as_deref(), hash.clone())
        });
        match outcome {
            // A storage failure may leave half the writes done: commit nothing.
            Err(e @ (MappingError::Journal(_) | MappingError::Reconcile(_))) => Err(e),
            // Nothing was written: record why, and keep the previous mapping.
            Err(e) => {
                record_error(tx, config, &e.to_string())?;
                Ok(Err(e))
            }
            Ok(change) => Ok(Ok(change)),
        }
    });
    let result = match result {
        Ok(Ok(change)) if change.is_empty() => {
            tracing::debug!(entries = change.file_entries, "mapping unchanged");
            Ok(change)
        }
        Ok(Ok(change)) => {
            tracing::info!(
                entries = change.file_entries,
                accounts_changed = change.accounts.len(),
                services_changed = change.services.len(),
                products_changed = change.products.len(),
                "mapping in force"
            );
            refresh_cards(journal, config, change)
        }
        Ok(Err(e)) | Err(e) => {
            tracing::debug!(error = %e, "mapping file not applied; the previous mapping stays");
            Err(e)
        }
    };
    Attempt { hash, result }
}

fn refresh_cards(
    journal: &Journal,
    config: &Config,
    change: MappingChange,
) -> Result<MappingChange, MappingError> {
    if change.is_empty() {
        return Ok(change);
    }
    crate::reconcile::refresh(journal, config)
        .map_err(|e| MappingError::Reconcile(format!("{e:#}")))?;
    Ok(change)
}

/// The file's bytes, or `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, MappingError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(MappingError::Read { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

/// Hex SHA-256 of the file's bytes.
pub fn file_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// How the mapping file at a path compares with the mapping in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// The content in force, at the path it was read from.
    Same,
    /// Edited, created or removed since tally last applied it, or another file than the one
    /// it read: the cards show the edit only once it is applied, by `tally map`, a sync, or a
    /// running `tally run` as the file is saved.
    Changed,
    /// Never applied, and there to apply.
    NotApplied,
    /// It cannot be read (no permission, not a regular file): why.
    Unreadable(String),
}

/// Compares the mapping file at `path` with the mapping in force (`state`). Only a regular
/// file is read, so a pipe in its place cannot make a command wait.
pub fn check_file(path: &Path, state: Option<&MappingFileState>) -> FileCheck {
    let current = match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return FileCheck::Unreadable("it is not a regular file".to_string());
        }
        Ok(_) => match std::fs::read(path) {
            Ok(bytes) => Some(file_hash(&bytes)),
            Err(e) => return FileCheck::Unreadable(e.to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return FileCheck::Unreadable(e.to_string()),
    };
    let same_path = |recorded: &str| {
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        canonical(Path::new(recorded)) == canonical(path)
    };
    match state {
        Some(state) if state.hash == current && same_path(&state.path) => FileCheck::Same,
        Some(_) => FileCheck::Changed,
        None if current.is_some() => FileCheck::NotApplied,
        None => FileCheck::Same,
    }
}

/// Whether [`check_file`] finds anything but the content in force.
pub fn edit_pending(path: &Path, state: Option<&MappingFileState>) -> bool {
    check_file(path, state) != FileCheck::Same
}

/// A warning for commands that show cards while the file is not the mapping in force, or
/// `None`.
pub fn edit_pending_warning(path: &Path, state: Option<&MappingFileState>) -> Option<String> {
    let apply = "run `tally map` to apply it (a running `tally run` applies edits as they are \
                 saved)";
    let shown = path.display();
    match check_file(path, state) {
        FileCheck::Same => None,
        FileCheck::Changed => {
            let failed = state
                .and_then(|s| s.error.as_deref())
                .map(|e| format!(" (the last attempt to apply it: {e})"))
                .unwrap_or_default();
            Some(format!(
                "{shown} has changed since the mapping in force was loaded{failed}; the cards do \
                 not show the edit yet: {apply}"
            ))
        }
        FileCheck::NotApplied => {
            Some(format!("{shown} has not been applied yet; the cards do not show it: {apply}"))
        }
        FileCheck::Unreadable(why) => Some(format!(
            "{shown} cannot be read ({why}); the cards show the mapping last in force: make the \
             file readable by this user, then run `tally map`"
        )),
    }
}

/// The mapping file state as last recorded by any tally process.
pub fn file_state(journal: &Journal) -> Result<Option<MappingFileState>, JournalError> {
    read_state(&journal.read()?)
}

fn read_state(tx: &impl Read) -> Result<Option<MappingFileState>, JournalError> {
    match tx.get(&STATE, STATE_KEY)? {
        Some(bytes) => codec::decode(&bytes).map(Some).map_err(|reason| JournalError::BadRecord {
            table: STATE.name.to_string(),
            key: STATE_KEY.to_string(),
            reason,
        }),
        None => Ok(None),
    }
}

fn write_state(tx: &WriteTransaction, state: &MappingFileState) -> Result<(), JournalError> {
    tx.put(&STATE, STATE_KEY, &codec::encode(state))
}

/// Keeps everything in force and records why the file was not applied.
fn record_error(tx: &WriteTransaction, config: &Config, error: &str) -> Result<(), JournalError> {
    let mut state = read_state(tx)?.unwrap_or_default();
    state.path = config.mapping.display().to_string();
    state.error = Some(error.to_string());
    state.error_at = Some(now_millis());
    write_state(tx, &state)
}

/// What the journal knows that the mapping file may refer to.
pub(crate) struct Known {
    pub companies: Vec<Company>,
    pub products: Vec<Product>,
    pub accounts: Vec<Account>,
    pub services: Vec<Service>,
    /// Configured vendors, vendor integrations, and vendors that sent accounts or services.
    pub vendors: BTreeSet<String>,
}

impl Known {
    pub fn load(tx: &impl Read, config: &Config) -> Result<Known, JournalError> {
        let accounts = tx.values(&ACCOUNTS, "")?;
        let services = tx.values(&SERVICES, "")?;
        let mut vendors: BTreeSet<String> = config.vendors.iter().map(|v| v.name.clone()).collect();
        vendors.extend(tx.values(&INTEGRATIONS, "")?.into_iter().map(|i| i.name));
        vendors.extend(accounts.iter().map(|a| a.vendor.clone()));
        vendors.extend(services.iter().map(|s| s.vendor.clone()));
        Ok(Known {
            companies: tx.values(&COMPANIES, "")?,
            products: tx.values(&PRODUCTS, "")?,
            accounts,
            services,
            vendors,
        })
    }

    pub fn catalog(&self) -> Catalog<'_> {
        Catalog {
            companies: &self.companies,
            products: &self.products,
            vendors: self.vendors.clone(),
        }
    }
}

/// Entries in force that came from the file: file mappings plus product rules.
fn file_entries_in_force(tx: &impl Read) -> Result<u64, JournalError> {
    let mut n = tx.count(&PRODUCT_RULES)?;
    for table in [&ACCOUNT_MAPPINGS, &SERVICE_MAPPINGS] {
        tx.each(table, "", &mut |_, m: Mapping| {
            n += u64::from(m.origin == Origin::File);
            Ok(())
        })?;
    }
    Ok(n)
}

/// Splits a `key2` back into its parts.
fn split_key(key: &str) -> (String, String) {
    match key.split_once(SEP) {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (key.to_string(), String::new()),
    }
}

type Keyed = BTreeMap<(String, String), Mapping>;

fn apply_in(
    tx: &WriteTransaction,
    config: &Config,
    bytes: Option<&[u8]>,
    hash: Option<String>,
) -> Result<MappingChange, MappingError> {
    let path = config.mapping.as_path();
    let previous_entries = file_entries_in_force(tx)?;
    let text = match bytes {
        None if previous_entries > 0 => {
            return Err(MappingError::Missing {
                path: path.to_path_buf(),
                entries: previous_entries,
            });
        }
        None => String::new(),
        Some(bytes) => match String::from_utf8(bytes.to_vec()) {
            Ok(text) => text,
            Err(e) => {
                let valid = &bytes[..e.utf8_error().valid_up_to()];
                let text = String::from_utf8_lossy(valid);
                let (line, column) = crate::config::line_col(&text, text.len());
                return Err(MappingError::Invalid(vec![super::FileError {
                    file: path.to_path_buf(),
                    line,
                    column,
                    message: "the file is not UTF-8 text; save it as UTF-8".to_string(),
                }]));
            }
        },
    };
    if text.trim().is_empty() && previous_entries > 0 {
        return Err(MappingError::Empty { path: path.to_path_buf(), entries: previous_entries });
    }

    let known = Known::load(tx, config)?;
    let parsed = file::parse(path, &text).map_err(MappingError::Invalid)?;
    let resolved =
        file::validate(path, &text, &parsed, &known.catalog()).map_err(MappingError::Invalid)?;

    let company_index = NameIndex::companies(&known.companies, Lookups::Exact);
    let product_index = NameIndex::products(&known.products, Lookups::Exact);
    let (want_accounts, want_services) =
        effective(&resolved, &known.accounts, &known.services, &company_index, &product_index);
    let want_rules: BTreeMap<String, ProductRules> = resolved.products.iter().cloned().collect();

    let accounts_changed = sync_table(tx, &ACCOUNT_MAPPINGS, &want_accounts)?;
    let services_changed = sync_table(tx, &SERVICE_MAPPINGS, &want_services)?;
    let mut products_changed = Vec::new();
    let have_rules: BTreeMap<String, ProductRules> =
        tx.scan(&PRODUCT_RULES, "")?.into_iter().collect();
    for (id, rules) in &want_rules {
        if have_rules.get(id) != Some(rules) {
            tx.put(&PRODUCT_RULES, id, rules)?;
            products_changed.push(id.clone());
        }
    }
    for id in have_rules.keys().filter(|id| !want_rules.contains_key(*id)) {
        tx.delete(&PRODUCT_RULES, id)?;
        products_changed.push(id.clone());
    }
    products_changed.sort();

    let mapped = |m: &Keyed| m.values().filter(|m| matches!(m.target, Target::Id(_))).count();
    let change = MappingChange {
        hash: hash.clone(),
        accounts: accounts_changed,
        services: services_changed,
        products: products_changed,
        file_entries: resolved.entries() as u64,
        accounts_mapped: mapped(&want_accounts) as u64,
        services_mapped: mapped(&want_services) as u64,
    };
    write_state(
        tx,
        &MappingFileState {
            path: path.display().to_string(),
            hash,
            loaded_at: Some(now_millis()),
            error: None,
            error_at: None,
            accounts_mapped: change.accounts_mapped,
            services_mapped: change.services_mapped,
        },
    )?;
    Ok(change)
}

/// The mappings in force: automatic exact-name matches, overridden by the file's entries.
pub fn effective(
    resolved: &Resolved,
    accounts: &[Account],
    services: &[Service],
    companies: &NameIndex,
    products: &NameIndex,
) -> (Keyed, Keyed) {
    let auto = |name: &str, index: &NameIndex| match index.exact(name).as_slice() {
        [one] => Some(Mapping { target: Target::Id(one.target_id.clone()), origin: Origin::Auto }),
        _ => None,
    };
    let mut want_accounts = Keyed::new();
    for a in accounts {
        if let Some(m) = auto(&a.name, companies) {
            want_accounts.insert((a.vendor.clone(), a.id.clone()), m);
        }
    }
    let mut want_services = Keyed::new();
    for s in services {
        if let Some(m) = auto(&s.name, products) {
            want_services.insert((s.vendor.clone(), s.id.clone()), m);
        }
    }
    for (want, entries) in
        [(&mut want_accounts, &resolved.accounts), (&mut want_services, &resolved.services)]
    {
        for e in entries {
            want.insert(
                (e.vendor.clone(), e.id.clone()),
                Mapping { target: e.target.clone(), origin: Origin::File },
            );
        }
    }
    (want_accounts, want_services)
}

/// Makes `table` hold exactly `want`; returns the keys that changed.
fn sync_table(
    tx: &WriteTransaction,
    table: &crate::journal::tables::Table<Mapping>,
    want: &Keyed,
) -> Result<Vec<(String, String)>, JournalError> {
    let have: Keyed = tx.scan(table, "")?.into_iter().map(|(k, m)| (split_key(&k), m)).collect();
    let mut changed = Vec::new();
    for (key, mapping) in want {
        if have.get(key) != Some(mapping) {
            tx.put(table, &key2(&key.0, &key.1), mapping)?;
            changed.push(key.clone());
        }
    }
    for key in have.keys().filter(|k| !want.contains_key(*k)) {
        tx.delete(table, &key2(&key.0, &key.1))?;
        changed.push(key.clone());
    }
    changed.sort();
    Ok(changed)
}
