//! Setup state per vendor: whether an integration counts as configured (at least one account
//! and one service mapped, as in Gradient's flow) and, when it does not, why and what to do.
//!
//! It only reads the journal; it never changes a mapping.

use std::collections::HashMap;

use serde::Serialize;

use crate::journal::tables::{ACCOUNT_MAPPINGS, ACCOUNTS, SEP, SERVICE_MAPPINGS, SERVICES, USAGE};
use crate::journal::{Journal, JournalError, Read};
use crate::model::{Mapping, Target};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupState {
    pub vendor: String,
    /// At least one account and one service are mapped.
    pub configured: bool,
    /// Accounts the vendor has sent.
    pub accounts: u64,
    /// Of those, mapped to a PSA company.
    pub accounts_mapped: u64,
    pub services: u64,
    pub services_mapped: u64,
    /// Usage counts kept for accounts or services that are not mapped yet.
    pub unmapped_usage: u64,
    /// Why the vendor is not configured yet, and the next step.
    pub reason: Option<String>,
}

/// Whether a mapping row exists and what it says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Mapped,
    Excluded,
    Unmapped,
}

fn states(
    tx: &impl Read,
    table: &crate::journal::tables::Table<Mapping>,
    prefix: &str,
) -> Result<HashMap<String, State>, JournalError> {
    Ok(tx
        .scan(table, prefix)?
        .into_iter()
        .map(|(key, m)| {
            let id = key[prefix.len()..].to_string();
            let state = match m.target {
                Target::Id(_) => State::Mapped,
                Target::Excluded => State::Excluded,
                Target::Unmapped => State::Unmapped,
            };
            (id, state)
        })
        .collect())
}

/// The setup state of `vendor`, from the mappings in force.
pub fn setup_state(journal: &Journal, vendor: &str) -> Result<SetupState, JournalError> {
    let tx = journal.read()?;
    let prefix = format!("{vendor}{SEP}");
    let account_states = states(&tx, &ACCOUNT_MAPPINGS, &prefix)?;
    let service_states = states(&tx, &SERVICE_MAPPINGS, &prefix)?;
    let is = |states: &HashMap<String, State>, id: &str, want: State| {
        states.get(id).copied().unwrap_or(State::Unmapped) == want
    };

    let accounts = tx.values(&ACCOUNTS, &prefix)?;
    let services = tx.values(&SERVICES, &prefix)?;
    let accounts_mapped =
        accounts.iter().filter(|a| is(&account_states, &a.id, State::Mapped)).count() as u64;
    let services_mapped =
        services.iter().filter(|s| is(&service_states, &s.id, State::Mapped)).count() as u64;
    let mut unmapped_usage = 0;
    tx.each(&USAGE, &prefix, &mut |_, usage| {
        let account = is(&account_states, &usage.account_id, State::Unmapped);
        let service = is(&service_states, &usage.service_id, State::Unmapped);
        unmapped_usage += u64::from(account || service);
        Ok(())
    })?;

    let mut why = Vec::new();
    if accounts.is_empty() {
        why.push(format!(
            "vendor \"{vendor}\" has not sent any accounts yet; check that it can call in \
             (`tally integration check {vendor}`)"
        ));
    } else if accounts_mapped == 0 {
        why.push(format!(
            "none of its {} accounts is mapped to a PSA company; see `tally map suggest`, then \
             add [[account]] entries (`tally map add account`)",
            accounts.len()
        ));
    }
    if services.is_empty() {
        why.push(format!("vendor \"{vendor}\" has not sent any services yet"));
    } else if services_mapped == 0 {
        why.push(format!(
            "none of its {} services is mapped to a PSA product; see `tally map suggest`, then \
             add [[service]] entries (`tally map add service`)",
            services.len()
        ));
    }
    Ok(SetupState {
        vendor: vendor.to_string(),
        configured: why.is_empty(),
        accounts: accounts.len() as u64,
        accounts_mapped,
        services: services.len() as u64,
        services_mapped,
        unmapped_usage,
        reason: (!why.is_empty()).then(|| why.join("; ")),
    })
}
