//! Vendor accounts, services and usage counts as the intake stores them: the write rules the
//! HTTP API and the CSV import share, and the checks every id, name and quantity passes first.
//!
//! Accounts are keyed by the vendor's own id, so a re-sent account updates its name and never
//! duplicates. Services are created by name (the id is made from the name, as `mapping.toml`
//! shows them), so re-sending a name returns the service already there. A usage count keeps its
//! latest value and up to [`HISTORY`] earlier ones; re-sending the same value only moves its
//! received time. Quantities are exact decimals from the text the vendor sent, never floating
//! point. These functions run inside the caller's write transaction and never commit, log
//! secrets, or trigger reconciliation themselves.

use redb::WriteTransaction;
use rust_decimal::Decimal;

use crate::journal::tables::{ACCOUNTS, SERVICES, USAGE, key2, key3};
use crate::journal::{JournalError, Read, Write};
use crate::model::{Account, Millis, Service, UsageCount};

/// Earlier usage values kept per account and service, newest first.
pub const HISTORY: usize = 5;

const MAX_ID: usize = 256;
const MAX_NAME: usize = 512;
const MAX_DESCRIPTION: usize = 4096;

/// What a write did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

/// An id as the vendor wrote it, trimmed. `what` names it in the message ("account id").
pub fn clean_id(what: &str, raw: &str) -> Result<String, String> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(format!("{what} is empty; every {what} must be a non-empty text"));
    }
    if id.chars().count() > MAX_ID {
        return Err(format!("{what} is longer than {MAX_ID} characters"));
    }
    if id.chars().any(char::is_control) {
        return Err(format!("{what} {id:?} holds a control character; ids are printable text"));
    }
    Ok(id.to_string())
}

/// A name, trimmed; required and printable.
pub fn clean_name(what: &str, raw: &str) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(format!("{what} is empty; give each one a name"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(format!("{what} is longer than {MAX_NAME} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} {name:?} holds a control character; names are printable text"));
    }
    Ok(name.to_string())
}

pub fn clean_description(what: &str, raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(format!("{what} is longer than {MAX_DESCRIPTION} characters"));
    }
    Ok(text.to_string())
}

/// Parses a quantity exactly from its text (`12`, `1.75`, `0.30000000000000004`, `1e3`).
/// The error completes a sentence that starts with the quantity: `"-3" is negative; …`.
pub fn parse_quantity(raw: &str) -> Result<Decimal, String> {
    let text = raw.trim();
    if text.is_empty() {
        return Err("is empty; write a number such as 12 or 1.75".to_string());
    }
    let plain = text.strip_prefix('+').unwrap_or(text);
    let looks_numeric = plain
        .strip_prefix('-')
        .unwrap_or(plain)
        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && plain.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'));
    if !looks_numeric {
        return Err(
            "is not a number; write digits with a decimal point, such as 12 or 1.75".to_string()
        );
    }
    let parsed = if plain.contains(['e', 'E']) {
        Decimal::from_scientific(plain).map_err(|e| e.to_string())
    } else {
        Decimal::from_str_exact(plain).map_err(|e| e.to_string())
    };
    let value = match parsed {
        Ok(value) => value,
        Err(reason) if reason.contains("precision") || reason.contains("overflow") => {
            return Err(format!(
                "has more digits than tally keeps exactly (28 significant digits): {reason}"
            ));
        }
        Err(_) => {
            return Err("is not a number; write digits with a decimal point, such as 12 or 1.75"
                .to_string());
        }
    };
    if value.is_sign_negative() && !value.is_zero() {
        return Err("is negative; quantities are zero or more".to_string());
    }
    // "-0" is zero; store it without the sign.
    Ok(if value.is_zero() { value.abs() } else { value })
}

/// Creates the account or brings its name (and description, when given) up to date.
pub fn upsert_account(
    tx: &WriteTransaction,
    vendor: &str,
    id: &str,
    name: &str,
    description: Option<&str>,
    now: Millis,
) -> Result<(Account, Change), JournalError> {
    let key = key2(vendor, id);
    match tx.get(&ACCOUNTS, &key)? {
        Some(mut account) => {
            let description = description.unwrap_or(&account.description);
            if account.name == name && account.description == description {
                return Ok((account, Change::Unchanged));
            }
            account.name = name.to_string();
            account.description = description.to_string();
            account.updated_at = now;
            tx.put(&ACCOUNTS, &key, &account)?;
            Ok((account, Change::Updated))
        }
        None => {
            let account = Account {
                vendor: vendor.to_string(),
                id: id.to_string(),
                name: name.to_string(),
                description: description.unwrap_or("").to_string(),
                created_at: now,
                updated_at: now,
            };
            tx.put(&ACCOUNTS, &key, &account)?;
            Ok((account, Change::Created))
        }
    }
}

/// Changes fields of an existing account; `None` when the vendor never created it.
pub fn update_account(
    tx: &WriteTransaction,
    vendor: &str,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
    now: Millis,
) -> Result<Option<Account>, JournalError> {
    let key = key2(vendor, id);
    let Some(mut account) = tx.get(&ACCOUNTS, &key)? else {
        return Ok(None);
    };
    let name = name.unwrap_or(&account.name).to_string();
    let description = description.unwrap_or(&account.description).to_string();
    if account.name != name || account.description != description {
        account.name = name;
        account.description = description;
        account.updated_at = now;
        tx.put(&ACCOUNTS, &key, &account)?;
    }
    Ok(Some(account))
}

pub fn account(tx: &impl Read, vendor: &str, id: &str) -> Result<Option<Account>, JournalError> {
    tx.get(&ACCOUNTS, &key2(vendor, id))
}

pub fn accounts(tx: &impl Read, vendor: &str) -> Result<Vec<Account>, JournalError> {
    tx.values(&ACCOUNTS, &key2(vendor, ""))
}

pub fn service(tx: &impl Read, vendor: &str, id: &str) -> Result<Option<Service>, JournalError> {
    tx.get(&SERVICES, &key2(vendor, id))
}

pub fn services(tx: &impl Read, vendor: &str) -> Result<Vec<Service>, JournalError> {
    tx.values(&SERVICES, &key2(vendor, ""))
}

pub fn service_by_name(
    tx: &impl Read,
    vendor: &str,
    name: &str,
) -> Result<Option<Service>, JournalError> {
    Ok(services(tx, vendor)?.into_iter().find(|s| s.name == name))
}

/// Returns the vendor's service called `name`, creating it if there is none.
pub fn ensure_service(
    tx: &WriteTransaction,
    vendor: &str,
    name: &str,
    description: Option<&str>,
    now: Millis,
) -> Result<(Service, Change), JournalError> {
    if let Some(existing) = service_by_name(tx, vendor, name)? {
        return Ok((existing, Change::Unchanged));
    }
    let id = free_service_id(tx, vendor, name)?;
    let service = Service {
        vendor: vendor.to_string(),
        id: id.clone(),
        name: name.to_string(),
        description: description.unwrap_or("").to_string(),
        created_at: now,
        updated_at: now,
    };
    tx.put(&SERVICES, &key2(vendor, &id), &service)?;
    Ok((service, Change::Created))
}

/// Why a service could not be changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceUpdate {
    Done(Service),
    NotFound,
    /// Another service of the vendor already has the name asked for.
    NameTaken {
        other_id: String,
    },
}

pub fn update_service(
    tx: &WriteTransaction,
    vendor: &str,
    id: &str,
    name: Option<&str>,
    description: Option<&str>,
    now: Millis,
) -> Result<ServiceUpdate, JournalError> {
    let key = key2(vendor, id);
    let Some(mut service) = tx.get(&SERVICES, &key)? else {
        return Ok(ServiceUpdate::NotFound);
    };
    if let Some(name) = name
        && let Some(other) = service_by_name(tx, vendor, name)?
        && other.id != service.id
    {
        return Ok(ServiceUpdate::NameTaken { other_id: other.id });
    }
    let name = name.unwrap_or(&service.name).to_string();
    let description = description.unwrap_or(&service.description).to_string();
    if service.name != name || service.description != description {
        service.name = name;
        service.description = description;
        service.updated_at = now;
        tx.put(&SERVICES, &key, &service)?;
    }
    Ok(ServiceUpdate::Done(service))
}

/// The id a new service gets: its name in lower case with runs of other characters as `-`
/// ("SafeDNS Pro" → `safedns-pro`), with `-2`, `-3`, … when another service has it already.
fn free_service_id(tx: &impl Read, vendor: &str, name: &str) -> Result<String, JournalError> {
    let base = slug(name);
    let mut id = base.clone();
    let mut n = 1;
    while tx.get(&SERVICES, &key2(vendor, &id))?.is_some() {
        n += 1;
        id = format!("{base}-{n}");
    }
    Ok(id)
}

pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.extend(c.to_lowercase());
        } else {
            dash = true;
        }
        if out.chars().count() >= 64 {
            break;
        }
    }
    if out.is_empty() { "service".to_string() } else { out }
}

/// Stores the latest count for one account and service. The same value again only moves the
/// received time; a new value pushes the old one onto the history.
pub fn store_count(
    tx: &WriteTransaction,
    vendor: &str,
    account_id: &str,
    service_id: &str,
    quantity: Decimal,
    now: Millis,
) -> Result<(UsageCount, Change), JournalError> {
    let key = key3(vendor, account_id, service_id);
    let (count, change) = match tx.get(&USAGE, &key)? {
        Some(mut count) if count.quantity == quantity => {
            count.received_at = now;
            (count, Change::Unchanged)
        }
        Some(mut count) => {
            count.previous.insert(0, (count.quantity, count.received_at));
            count.previous.truncate(HISTORY);
            count.quantity = quantity;
            count.received_at = now;
            (count, Change::Updated)
        }
        None => (
            UsageCount {
                vendor: vendor.to_string(),
                account_id: account_id.to_string(),
                service_id: service_id.to_string(),
                quantity,
                received_at: now,
                previous: Vec::new(),
            },
            Change::Created,
        ),
    };
    tx.put(&USAGE, &key, &count)?;
    Ok((count, change))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_exactly() {
        let q = |s: &str| parse_quantity(s).unwrap().to_string();
        assert_eq!(q("12"), "12");
        assert_eq!(q(" 1.75 "), "1.75");
        assert_eq!(q("0.30000000000000004"), "0.30000000000000004");
        assert_eq!(q("1e3"), "1000");
        assert_eq!(q("2.5E-1"), "0.25");
        assert_eq!(q("-0"), "0");
        assert_eq!(q("+4"), "4");
    }

    #[test]
    fn bad_quantities_say_why() {
        assert!(parse_quantity("-3").unwrap_err().contains("negative"));
        assert!(parse_quantity("-0.5").unwrap_err().contains("negative"));
        assert!(parse_quantity("abc").unwrap_err().contains("not a number"));
        assert!(parse_quantity("1,5").unwrap_err().contains("not a number"));
        assert!(parse_quantity("1_000").unwrap_err().contains("not a number"));
        assert!(parse_quantity("NaN").unwrap_err().contains("not a number"));
        assert!(parse_quantity("").unwrap_err().contains("empty"));
        assert!(parse_quantity("1.2.3").unwrap_err().contains("not a number"));
        assert!(
            parse_quantity("0.1234567890123456789012345678901")
                .unwrap_err()
                .contains("more digits")
        );
    }

    #[test]
    fn slugs_follow_the_mapping_file_style() {
        assert_eq!(slug("SafeDNS Pro"), "safedns-pro");
        assert_eq!(slug("  M365 / Business Premium "), "m365-business-premium");
        assert_eq!(slug("***"), "service");
        assert_eq!(slug("Überwachung"), "überwachung");
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert_eq!(clean_id("account id", " a-1 ").unwrap(), "a-1");
        assert!(clean_id("account id", "  ").unwrap_err().contains("empty"));
        assert!(clean_id("account id", "a\u{1f}b").unwrap_err().contains("control"));
        assert!(clean_name("account name", "").unwrap_err().contains("empty"));
        assert!(clean_name("account name", &"x".repeat(600)).unwrap_err().contains("longer"));
    }
}
