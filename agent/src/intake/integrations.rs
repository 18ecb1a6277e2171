//! Vendor integrations: the `tally integration add|list|check|remove|rotate-key` commands, the
//! integration record's life (inactive → pending → active), and the rows `tally status` shows.
//!
//! An integration is named after a configured `[[vendor]]` whose usage arrives by push or CSV.
//! `add` and `rotate-key` print a partner key once and store only its salted hash; `remove`
//! only marks the record, so the vendor's accounts, services, usage and history stay, while the
//! key stops working. This module never prints or logs a key except the one it just made, on
//! stdout, for the user who asked.

use std::process::ExitCode;

use redb::WriteTransaction;
use serde::Serialize;

use super::keys;
use crate::cli::{Ctx, Format, IntegrationCommand, UsageError};
use crate::config::{Config, VendorSource};
use crate::journal::tables::{
    ACCOUNT_MAPPINGS, ACCOUNTS, INTAKE_CONTACTS, INTEGRATIONS, SERVICE_MAPPINGS, SERVICES, Table,
    USAGE, key2,
};
use crate::journal::{Journal, JournalError, Read, Write};
use crate::model::{
    self, IntakeCall, IntakeContact, Integration, IntegrationStatus, Mapping, Millis, Target,
};

/// Why an integration command could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    #[error(
        "vendor \"{name}\" is not configured in {config}; add it there first:\n\n  [[vendor]]\n  \
         name = \"{name}\"\n  source = \"push\"    # or \"csv\" for `tally import`\n\nthen run \
         `tally integration add {name}` again"
    )]
    NotConfigured { name: String, config: String },
    #[error(
        "vendor \"{name}\" has source = \"plugin\": tally pulls its usage with a plugin, so it \
         needs no partner key. Set source = \"push\" in tally.toml if the vendor pushes instead"
    )]
    PluginSource { name: String },
    #[error(
        "integration \"{name}\" already exists (added {created}); its key was shown once. Run \
         `tally integration rotate-key {name}` to issue a new key"
    )]
    Exists { name: String, created: String },
    #[error("no integration named \"{name}\"; `tally integration add {name}` creates it")]
    Unknown { name: String },
    #[error(
        "vendor \"{name}\" has source = \"csv\" and nothing was imported for it yet: `tally \
         import --vendor {name} FILE.csv` brings its usage (it needs no partner key)"
    )]
    NothingImported { name: String },
    #[error(
        "integration \"{name}\" was removed; `tally integration add {name}` brings it back with a \
         new key (its data was kept)"
    )]
    Removed { name: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl IntegrationError {
    /// Whether the user asked for something that cannot be (exit code 2).
    pub fn is_usage(&self) -> bool {
        !matches!(self, IntegrationError::Journal(_))
    }
}

/// A partner key just issued, to be shown once.
pub struct IssuedKey {
    pub integration: String,
    pub key: String,
    /// Where vendor scripts send their requests: Gradient's `https://app.usegradient.com/api`
    /// becomes this.
    pub base_url: String,
    /// Whether an earlier key was replaced.
    pub replaced: bool,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("integration", &self.integration)
            .field("key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

fn source_word(source: VendorSource) -> &'static str {
    match source {
        VendorSource::Push => "push",
        VendorSource::Csv => "csv",
        VendorSource::Plugin => "plugin",
    }
}

/// The intake API's base URL as vendors should write it.
pub fn base_url(config: &Config) -> String {
    match config.agent.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => format!("http://<this-host>:{}/api", addr.port()),
        _ => format!("http://{}/api", config.agent.listen),
    }
}

/// Creates the vendor integration `name` (or brings back a removed one) with a new key.
pub fn add(journal: &Journal, config: &Config, name: &str) -> Result<IssuedKey, IntegrationError> {
    let vendor = config.vendor(name).ok_or_else(|| IntegrationError::NotConfigured {
        name: name.to_string(),
        config: config.file.display().to_string(),
    })?;
    if vendor.source == VendorSource::Plugin {
        return Err(IntegrationError::PluginSource { name: name.to_string() });
    }
    let made = keys::new_partner_key();
    let now = model::now_millis();
    let replaced = journal.write(|tx| -> Result<bool, IntegrationError> {
        let existing = tx.get(&INTEGRATIONS, name)?;
        if let Some(existing) = &existing
            && existing.removed_at.is_none()
            && !existing.key_hash.is_empty()
        {
            return Err(IntegrationError::Exists {
                name: name.to_string(),
                created: model::format_millis(existing.created_at),
            });
        }
        let replaced = existing.as_ref().is_some_and(|e| !e.key_hash.is_empty());
        let integration = match existing {
            Some(mut old) => {
                old.source = source_word(vendor.source).to_string();
                old.key_salt = made.salt.clone();
                old.key_hash = made.hash.clone();
                old.vendor_key_hash = None;
                old.removed_at = None;
                if old.status != IntegrationStatus::Active || old.last_usage_at.is_none() {
                    old.status = IntegrationStatus::Inactive;
                }
                old
            }
            None => Integration {
                name: name.to_string(),
                source: source_word(vendor.source).to_string(),
                key_salt: made.salt.clone(),
                key_hash: made.hash.clone(),
                vendor_key_hash: None,
                status: IntegrationStatus::Inactive,
                created_at: now,
                last_contact_at: None,
                last_usage_at: None,
                removed_at: None,
            },
        };
        tx.put(&INTEGRATIONS, name, &integration)?;
        Ok(replaced)
    })?;
    tracing::info!(integration = name, "vendor integration added");
    Ok(IssuedKey {
        integration: name.to_string(),
        key: made.key,
        base_url: base_url(config),
        replaced,
    })
}

/// Issues a new key for `name`; the old key, and the vendor key bound to it, stop working.
pub fn rotate_key(
    journal: &Journal,
    config: &Config,
    name: &str,
) -> Result<IssuedKey, IntegrationError> {
    let made = keys::new_partner_key();
    journal.write(|tx| -> Result<(), IntegrationError> {
        let mut integration = live(tx, name)?;
        integration.key_salt = made.salt.clone();
        integration.key_hash = made.hash.clone();
        integration.vendor_key_hash = None;
        tx.put(&INTEGRATIONS, name, &integration)?;
        Ok(())
    })?;
    tracing::info!(integration = name, "partner key rotated");
    Ok(IssuedKey {
        integration: name.to_string(),
        key: made.key,
        base_url: base_url(config),
        replaced: true,
    })
}

/// Marks `name` removed. Returns false when it already was.
pub fn remove(journal: &Journal, name: &str) -> Result<bool, IntegrationError> {
    let now = model::now_millis();
    let changed = journal.write(|tx| -> Result<bool, IntegrationError> {
        let mut integration = tx
            .get(&INTEGRATIONS, name)?
            .ok_or_else(|| IntegrationError::Unknown { name: name.to_string() })?;
        if integration.removed_at.is_some() {
            return Ok(false);
        }
        integration.removed_at = Some(now);
        tx.put(&INTEGRATIONS, name, &integration)?;
        Ok(true)
    })?;
    if changed {
        tracing::info!(integration = name, "vendor integration removed; its data is kept");
    }
    Ok(changed)
}

fn live(tx: &impl Read, name: &str) -> Result<Integration, IntegrationError> {
    let integration = tx
        .get(&INTEGRATIONS, name)?
        .ok_or_else(|| IntegrationError::Unknown { name: name.to_string() })?;
    if integration.removed_at.is_some() {
        return Err(IntegrationError::Removed { name: name.to_string() });
    }
    Ok(integration)
}

/// A successful call with this integration's key: the first one binds the vendor key (done by
/// the caller) and moves a new integration from `inactive` to `pending`.
pub(crate) fn note_contact(integration: &mut Integration, first_with_this_key: bool, now: Millis) {
    if first_with_this_key && integration.status == IntegrationStatus::Inactive {
        integration.status = IntegrationStatus::Pending;
    }
    integration.last_contact_at = Some(now);
}

/// Usage arrived: the integration is `active`, unless the vendor set it `disabled`.
pub(crate) fn note_usage(integration: &mut Integration, now: Millis) {
    integration.last_usage_at = Some(now);
    if integration.status != IntegrationStatus::Disabled {
        integration.status = IntegrationStatus::Active;
    }
}

/// Records a call in the integration's contact history (never a key or a body).
pub(crate) fn record_call(
    tx: &WriteTransaction,
    name: &str,
    call: IntakeCall,
) -> Result<(), JournalError> {
    let mut contact = tx.get(&INTAKE_CONTACTS, name)?.unwrap_or_default();
    contact.calls += 1;
    if call.status >= 400 {
        contact.failures += 1;
        contact.last_failure = Some(call.clone());
    }
    contact.last = Some(call);
    tx.put(&INTAKE_CONTACTS, name, &contact)
}

/// The integration a CSV import writes under: created without a key when the vendor has none
/// yet (a keyless integration accepts no HTTP call until `tally integration add`).
pub(crate) fn for_import(
    tx: &WriteTransaction,
    name: &str,
    source: VendorSource,
    now: Millis,
) -> Result<Integration, JournalError> {
    Ok(match tx.get(&INTEGRATIONS, name)? {
        Some(integration) => integration,
        None => Integration {
            name: name.to_string(),
            source: source_word(source).to_string(),
            key_salt: Vec::new(),
            key_hash: Vec::new(),
            vendor_key_hash: None,
            status: IntegrationStatus::Inactive,
            created_at: now,
            last_contact_at: None,
            last_usage_at: None,
            removed_at: None,
        },
    })
}

/// One vendor integration as `tally status` and `tally integration list` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrationRow {
    pub name: String,
    /// `push` or `csv`.
    pub source: String,
    /// `inactive`, `pending`, `active`, `disabled` or `error`, as Gradient names them.
    pub status: String,
    pub removed: bool,
    pub created_at: String,
    /// The last call that passed the key check (RFC 3339, UTC).
    pub last_contact: Option<String>,
    /// When usage last arrived, by push or import.
    pub last_usage: Option<String>,
    pub accounts: u64,
    pub services: u64,
    pub counts: u64,
    pub accounts_mapped: u64,
    pub services_mapped: u64,
    /// At least one account and one service of the vendor are mapped.
    pub configured: bool,
}

/// Every vendor integration, including removed ones, in name order.
pub fn integration_rows(journal: &Journal) -> anyhow::Result<Vec<IntegrationRow>> {
    let tx = journal.read()?;
    let mut rows = Vec::new();
    for integration in tx.values(&INTEGRATIONS, "")? {
        rows.push(row(&tx, &integration)?);
    }
    Ok(rows)
}

fn count_rows<V: serde::de::DeserializeOwned>(
    tx: &impl Read,
    table: &Table<V>,
    vendor: &str,
) -> Result<u64, JournalError> {
    let mut n = 0;
    tx.each(table, &key2(vendor, ""), &mut |_, _| {
        n += 1;
        Ok(())
    })?;
    Ok(n)
}

fn count_mapped(tx: &impl Read, table: &Table<Mapping>, vendor: &str) -> Result<u64, JournalError> {
    let mut n = 0;
    tx.each(table, &key2(vendor, ""), &mut |_, mapping: Mapping| {
        if matches!(mapping.target, Target::Id(_)) {
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}

fn row(tx: &impl Read, integration: &Integration) -> Result<IntegrationRow, JournalError> {
    let vendor = &integration.name;
    let accounts_mapped = count_mapped(tx, &ACCOUNT_MAPPINGS, vendor)?;
    let services_mapped = count_mapped(tx, &SERVICE_MAPPINGS, vendor)?;
    Ok(IntegrationRow {
        name: vendor.clone(),
        source: integration.source.clone(),
        status: integration.status.as_str().to_string(),
        removed: integration.removed_at.is_some(),
        created_at: model::format_millis(integration.created_at),
        last_contact: integration.last_contact_at.map(model::format_millis),
        last_usage: integration.last_usage_at.map(model::format_millis),
        accounts: count_rows(tx, &ACCOUNTS, vendor)?,
        services: count_rows(tx, &SERVICES, vendor)?,
        counts: count_rows(tx, &USAGE, vendor)?,
        accounts_mapped,
        services_mapped,
        configured: accounts_mapped > 0 && services_mapped > 0,
    })
}

/// One call as `check` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallView {
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub message: String,
}

impl From<&IntakeCall> for CallView {
    fn from(call: &IntakeCall) -> Self {
        CallView {
            at: model::format_millis(call.at),
            method: call.method.clone(),
            path: call.path.clone(),
            status: call.status,
            message: call.message.clone(),
        }
    }
}

/// What `tally integration check NAME` reports: has the vendor called, when, how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub row: IntegrationRow,
    /// The vendor has made at least one call that passed the key check.
    pub called: bool,
    /// Whether a vendor key is bound to the current partner key.
    pub vendor_key_bound: bool,
    pub calls: u64,
    pub failures: u64,
    pub last_call: Option<CallView>,
    pub last_failure: Option<CallView>,
    /// What to do next, when something is missing.
    pub hint: Option<String>,
}

pub fn check(
    journal: &Journal,
    config: &Config,
    name: &str,
) -> Result<CheckReport, IntegrationError> {
    let tx = journal.read()?;
    let integration = tx.get(&INTEGRATIONS, name)?.ok_or_else(|| match config.vendor(name) {
        Some(vendor) if vendor.source == VendorSource::Csv => {
            IntegrationError::NothingImported { name: name.to_string() }
        }
        Some(_) => IntegrationError::Unknown { name: name.to_string() },
        None => IntegrationError::NotConfigured {
            name: name.to_string(),
            config: config.file.display().to_string(),
        },
    })?;
    let contact: IntakeContact = tx.get(&INTAKE_CONTACTS, name)?.unwrap_or_default();
    let mut row = row(&tx, &integration)?;
    // How usage arrives is what tally.toml says now, whatever the integration began as.
    if let Some(vendor) = config.vendor(name) {
        row.source = source_word(vendor.source).to_string();
    }
    let called = integration.last_contact_at.is_some();
    let csv = row.source == source_word(VendorSource::Csv);
    let hint = if integration.removed_at.is_some() {
        Some(format!("removed; `tally integration add {name}` issues a new key"))
    } else if csv && row.counts == 0 {
        Some(format!("no usage imported yet: `tally import --vendor {name} FILE.csv` brings it"))
    } else if csv && !row.configured {
        Some("map at least one account and one service (`tally map unmapped`)".to_string())
    } else if csv {
        None
    } else if integration.key_hash.is_empty() {
        Some(format!(
            "no partner key yet (usage came by CSV import); `tally integration add {name}` makes \
             one if the vendor will push"
        ))
    } else if !called {
        Some(format!(
            "the vendor has not called yet: in the vendor's portal, set the API base URL to {} \
             and paste the partner key `tally integration add` printed",
            base_url(config)
        ))
    } else if row.counts == 0 {
        Some("connected, but no usage yet: the vendor's \"Sync Now\" sends it".to_string())
    } else if !row.configured {
        Some(
            "usage is arriving; map at least one account and one service (`tally map unmapped`)"
                .to_string(),
        )
    } else {
        None
    };
    Ok(CheckReport {
        called,
        vendor_key_bound: integration.vendor_key_hash.is_some(),
        calls: contact.calls,
        failures: contact.failures,
        last_call: contact.last.as_ref().map(CallView::from),
        last_failure: contact.last_failure.as_ref().map(CallView::from),
        hint,
        row,
    })
}

/// `tally integration …`.
pub fn run(ctx: &Ctx, cmd: &IntegrationCommand) -> anyhow::Result<ExitCode> {
    let usage = |e: IntegrationError| -> anyhow::Error {
        if e.is_usage() { UsageError(e.to_string()).into() } else { e.into() }
    };
    let json = match ctx.format {
        Format::Json => true,
        Format::Table => false,
        other => {
            return Err(UsageError(format!(
                "`tally integration` prints a table or JSON, not {other:?}; use --format table \
                 or --format json"
            ))
            .into());
        }
    };
    let journal = ctx.journal()?;
    match cmd {
        IntegrationCommand::Add { name } => {
            let issued = add(&journal, &ctx.config, name).map_err(usage)?;
            print_key(&issued, json, "added")?;
        }
        IntegrationCommand::RotateKey { name } => {
            let issued = rotate_key(&journal, &ctx.config, name).map_err(usage)?;
            print_key(&issued, json, "has a new key")?;
        }
        IntegrationCommand::Remove { name } => {
            let changed = remove(&journal, name).map_err(usage)?;
            if json {
                let doc = serde_json::json!({ "integration": name, "removed": true,
                    "already_removed": !changed });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else if changed {
                println!(
                    "integration \"{name}\" removed: its key no longer works. Its accounts, \
                     services and usage are kept; `tally integration add {name}` issues a new key"
                );
            } else {
                println!("integration \"{name}\" was already removed");
            }
        }
        IntegrationCommand::List => {
            let rows = integration_rows(&journal)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_list(&rows);
            }
        }
        IntegrationCommand::Check { name } => {
            let report = check(&journal, &ctx.config, name).map_err(usage)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_check(&report);
            }
            // A vendor that pushes has not connected until it called; one whose usage comes
            // by CSV import never calls, and is not failing for it.
            if !report.called && report.row.source == source_word(VendorSource::Push) {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_key(issued: &IssuedKey, json: bool, what: &str) -> anyhow::Result<()> {
    if json {
        let doc = serde_json::json!({
            "integration": issued.integration,
            "partner_key": issued.key,
            "base_url": issued.base_url,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "integration \"{}\" {what}. Its partner key, shown only this once:",
        issued.integration
    );
    println!();
    println!("  {}", issued.key);
    println!();
    println!(
        "In the vendor's portal, paste it as the partner API key and set the API base URL to {} \
         (scripts written for https://app.usegradient.com/api need only that change).",
        issued.base_url
    );
    if issued.replaced {
        println!(
            "The previous key no longer works; the vendor binds its vendor key again on its next call."
        );
    }
    println!("`tally integration check {}` shows when the vendor has called.", issued.integration);
    Ok(())
}

/// "2026-12-03 16:05:12Z (3m ago)".
fn when(rfc3339: &Option<String>) -> String {
    let Some(text) = rfc3339 else {
        return "never".to_string();
    };
    let format = time::format_description::well_known::Rfc3339;
    let Ok(at) = time::OffsetDateTime::parse(text, &format) else {
        return text.clone();
    };
    let shown = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let age = (time::OffsetDateTime::now_utc() - at).whole_seconds().max(0);
    let age = match age {
        0..60 => format!("{age}s"),
        60..3600 => format!("{}m", age / 60),
        3600..86_400 => format!("{}h", age / 3600),
        _ => format!("{}d", age / 86_400),
    };
    format!("{shown} ({age} ago)")
}

fn print_list(rows: &[IntegrationRow]) {
    if rows.is_empty() {
        println!("no vendor integrations yet; `tally integration add NAME` creates one");
        return;
    }
    let header = [
        "NAME",
        "SOURCE",
        "STATUS",
        "LAST CONTACT",
        "LAST USAGE",
        "ACCOUNTS",
        "SERVICES",
        "COUNTS",
        "CONFIGURED",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        table.push(vec![
            row.name.clone(),
            row.source.clone(),
            if row.removed { "removed".to_string() } else { row.status.clone() },
            when(&row.last_contact),
            when(&row.last_usage),
            row.accounts.to_string(),
            row.services.to_string(),
            row.counts.to_string(),
            if row.configured { "yes" } else { "no" }.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| table.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &table {
        let line: Vec<String> =
            r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn print_check(report: &CheckReport) {
    let row = &report.row;
    println!("integration:   {} ({})", row.name, row.source);
    println!("status:        {}{}", row.status, if row.removed { " (removed)" } else { "" });
    if report.called {
        println!("called:        yes, last {}", when(&row.last_contact));
    } else {
        println!("called:        no");
    }
    if let Some(call) = &report.last_call {
        println!(
            "last call:     {} {} -> {} {} ({})",
            call.method,
            call.path,
            call.status,
            call.message,
            when(&Some(call.at.clone()))
        );
    }
    if let Some(call) = &report.last_failure {
        println!(
            "last refused:  {} {} -> {} {} ({})",
            call.method,
            call.path,
            call.status,
            call.message,
            when(&Some(call.at.clone()))
        );
    }
    println!("calls:         {} ({} refused)", report.calls, report.failures);
    println!("last usage:    {}", when(&row.last_usage));
    println!(
        "data:          {} accounts, {} services, {} usage counts",
        row.accounts, row.services, row.counts
    );
    println!(
        "mapped:        {} accounts, {} services ({})",
        row.accounts_mapped,
        row.services_mapped,
        if row.configured { "configured" } else { "not configured yet" }
    );
    if let Some(hint) = &report.hint {
        println!("next:          {hint}");
    }
}
