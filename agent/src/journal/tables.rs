//! The journal's tables and typed access to them.
//!
//! Every table maps a text key to encoded bytes (see `codec`). Composite keys join their parts
//! with [`SEP`], which no id or name contains after validation, so a prefix scan over
//! `"vendor\u{1f}"` reads exactly one vendor's rows. Sequence tables (outbox, audit, sync runs)
//! use zero-padded numbers so that key order is numeric order.

use std::marker::PhantomData;

use redb::{
    ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{JournalError, codec};
use crate::model;

/// Separates the parts of a composite key.
pub const SEP: char = '\u{1f}';

pub fn key2(a: &str, b: &str) -> String {
    format!("{a}{SEP}{b}")
}

pub fn key3(a: &str, b: &str, c: &str) -> String {
    format!("{a}{SEP}{b}{SEP}{c}")
}

pub fn seq_key(n: u64) -> String {
    format!("{n:020}")
}

/// A table of values of type `V`.
pub struct Table<V> {
    pub name: &'static str,
    _value: PhantomData<fn() -> V>,
}

impl<V> Table<V> {
    pub const fn new(name: &'static str) -> Self {
        Table { name, _value: PhantomData }
    }

    fn def(&self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(self.name)
    }
}

pub const META: Table<Vec<u8>> = Table::new("meta");
pub const COMPANIES: Table<model::Company> = Table::new("psa_companies");
pub const PRODUCTS: Table<model::Product> = Table::new("psa_products");
pub const AGREEMENTS: Table<model::Agreement> = Table::new("psa_agreements");
pub const BILLING_LINES: Table<model::BillingLine> = Table::new("psa_billing_lines");
pub const ACCOUNTS: Table<model::Account> = Table::new("vendor_accounts");
pub const SERVICES: Table<model::Service> = Table::new("vendor_services");
pub const USAGE: Table<model::UsageCount> = Table::new("vendor_usage");
pub const INTEGRATIONS: Table<model::Integration> = Table::new("integrations");
pub const ACCOUNT_MAPPINGS: Table<model::Mapping> = Table::new("account_mappings");
pub const SERVICE_MAPPINGS: Table<model::Mapping> = Table::new("service_mappings");
pub const STREAMS: Table<model::StreamState> = Table::new("streams");
pub const OUTBOX: Table<model::OutboxEntry> = Table::new("outbox");
pub const SYNC_RUNS: Table<model::SyncRun> = Table::new("sync_runs");
pub const AUDIT: Table<model::AuditEntry> = Table::new("audit");
pub const CARDS: Table<model::Card> = Table::new("cards");
pub const PRODUCT_RULES: Table<model::ProductRules> = Table::new("product_rules");
pub const APPROVALS: Table<model::Approval> = Table::new("approvals");
/// The source's JSON of each PSA record (`kind<SEP>id`), kept apart so that reading records
/// for reconciliation never loads it.
pub const RAW: Table<String> = Table::new("raw_records");
/// Every billing line under its agreement (`agreement<SEP>line`, no value): what a full
/// listing of one agreement's lines reads to find the lines it no longer returned, so that no
/// sync holds an index of every line in memory. Kept in step with `psa_billing_lines` by the
/// sync's store.
pub const LINES_BY_AGREEMENT: Table<()> = Table::new("psa_lines_by_agreement");
/// The SHA-256 of the billing lines the final page of each agreement's last complete lines
/// listing held, as the journal stores them, by agreement id. A later final page whose lines
/// hash the same holds nothing the journal lacks, so storing it reads no line. A digest stands
/// only while none of its agreement's lines changes: writing a changed line drops the digest
/// of the agreement it is on and of the one it left, and retiring lines drops the digest of
/// their agreement (of every agreement, when retiring across all of them).
pub const LINE_PAGES: Table<Vec<u8>> = Table::new("psa_line_pages");
/// The last calls each vendor integration made to the intake API, by integration name.
pub const INTAKE_CONTACTS: Table<model::IntakeContact> = Table::new("intake_contacts");
/// Small single records by name, such as the mapping file state.
pub const STATE: Table<Vec<u8>> = Table::new("state");

/// Names of every table, created together by the first migration.
pub const ALL_TABLES: [&str; 23] = [
    META.name,
    COMPANIES.name,
    PRODUCTS.name,
    AGREEMENTS.name,
    BILLING_LINES.name,
    ACCOUNTS.name,
    SERVICES.name,
    USAGE.name,
    INTEGRATIONS.name,
    ACCOUNT_MAPPINGS.name,
    SERVICE_MAPPINGS.name,
    STREAMS.name,
    OUTBOX.name,
    SYNC_RUNS.name,
    AUDIT.name,
    CARDS.name,
    PRODUCT_RULES.name,
    APPROVALS.name,
    RAW.name,
    LINES_BY_AGREEMENT.name,
    LINE_PAGES.name,
    INTAKE_CONTACTS.name,
    STATE.name,
];

pub fn create_table(tx: &WriteTransaction, name: &'static str) -> Result<(), JournalError> {
    let def: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new(name);
    tx.open_table(def)?;
    Ok(())
}

/// Deletes a table and everything in it, if it exists.
pub fn delete_table(tx: &WriteTransaction, name: &'static str) -> Result<(), JournalError> {
    let def: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new(name);
    tx.delete_table(def)?;
    Ok(())
}

fn decode_value<V: DeserializeOwned>(
    table: &str,
    key: &str,
    bytes: &[u8],
) -> Result<V, JournalError> {
    codec::decode(bytes).map_err(|reason| JournalError::BadRecord {
        table: table.to_string(),
        key: key.replace(SEP, "/"),
        reason,
    })
}

/// Reading, in a read or a write transaction.
pub trait Read {
    fn get<V: DeserializeOwned>(
        &self,
        table: &Table<V>,
        key: &str,
    ) -> Result<Option<V>, JournalError>;

    /// Every row whose key starts with `prefix` (all rows for `""`), in key order.
    fn scan<V: DeserializeOwned>(
        &self,
        table: &Table<V>,
        prefix: &str,
    ) -> Result<Vec<(String, V)>, JournalError>;

    /// Like `scan`, calling `f` for each row without collecting them.
    fn each<V: DeserializeOwned>(
        &self,
        table: &Table<V>,
        prefix: &str,
        f: &mut dyn FnMut(&str, V) -> Result<(), JournalError>,
    ) -> Result<(), JournalError>;

    /// Opens `table` once for many `get`s. While it is open in a write transaction, the same
    /// table cannot be used through the transaction.
    fn lookup<V: DeserializeOwned>(&self, table: &Table<V>) -> Result<Lookup<'_, V>, JournalError>;

    fn count<V>(&self, table: &Table<V>) -> Result<u64, JournalError>;

    /// The greatest key of a sequence table, as a number.
    fn last_seq<V>(&self, table: &Table<V>) -> Result<u64, JournalError>;

    fn values<V: DeserializeOwned>(
        &self,
        table: &Table<V>,
        prefix: &str,
    ) -> Result<Vec<V>, JournalError> {
        Ok(self.scan(table, prefix)?.into_iter().map(|(_, v)| v).collect())
    }
}

fn each_in<T, V>(
    t: &T,
    table: &Table<V>,
    prefix: &str,
    f: &mut dyn FnMut(&str, V) -> Result<(), JournalError>,
) -> Result<(), JournalError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
    V: DeserializeOwned,
{
    for row in t.range(prefix..)? {
        let (k, v) = row?;
        let key = k.value();
        if !key.starts_with(prefix) {
            break;
        }
        f(key, decode_value(table.name, key, v.value())?)?;
    }
    Ok(())
}

fn get_in<T, V>(t: &T, name: &str, key: &str) -> Result<Option<V>, JournalError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
    V: DeserializeOwned,
{
    match t.get(key)? {
        Some(v) => Ok(Some(decode_value(name, key, v.value())?)),
        None => Ok(None),
    }
}

fn last_seq_in<T>(t: &T) -> Result<u64, JournalError>
where
    T: ReadableTable<&'static str, &'static [u8]>,
{
    Ok(match t.last()? {
        Some((k, _)) => k.value().parse().unwrap_or(0),
        None => 0,
    })
}

macro_rules! read_impl {
    ($tx:ty, $open:ident, $handle:path) => {
        impl Read for $tx {
            fn get<V: DeserializeOwned>(
                &self,
                table: &Table<V>,
                key: &str,
            ) -> Result<Option<V>, JournalError> {
                get_in(&$open(self, table)?, table.name, key)
            }

            fn scan<V: DeserializeOwned>(
                &self,
                table: &Table<V>,
                prefix: &str,
            ) -> Result<Vec<(String, V)>, JournalError> {
                let mut rows = Vec::new();
                self.each(table, prefix, &mut |k, v| {
                    rows.push((k.to_string(), v));
                    Ok(())
                })?;
                Ok(rows)
            }

            fn each<V: DeserializeOwned>(
                &self,
                table: &Table<V>,
                prefix: &str,
                f: &mut dyn FnMut(&str, V) -> Result<(), JournalError>,
            ) -> Result<(), JournalError> {
                each_in(&$open(self, table)?, table, prefix, f)
            }

            fn lookup<V: DeserializeOwned>(
                &self,
                table: &Table<V>,
            ) -> Result<Lookup<'_, V>, JournalError> {
                let handle = $handle($open(self, table)?);
                Ok(Lookup { handle, name: table.name, _value: PhantomData })
            }

            fn count<V>(&self, table: &Table<V>) -> Result<u64, JournalError> {
                Ok($open(self, table)?.len()?)
            }

            fn last_seq<V>(&self, table: &Table<V>) -> Result<u64, JournalError> {
                last_seq_in(&$open(self, table)?)
            }
        }
    };
}

fn open_read<V>(
    tx: &ReadTransaction,
    table: &Table<V>,
) -> Result<redb::ReadOnlyTable<&'static str, &'static [u8]>, JournalError> {
    Ok(tx.open_table(table.def())?)
}

fn open_write<'t, V>(
    tx: &'t WriteTransaction,
    table: &Table<V>,
) -> Result<redb::Table<'t, &'static str, &'static [u8]>, JournalError> {
    Ok(tx.open_table(table.def())?)
}

read_impl!(ReadTransaction, open_read, Handle::Read);
read_impl!(WriteTransaction, open_write, Handle::Write);

/// One table opened for many lookups, in a read or a write transaction: for work that reads a
/// row or two per item, where opening the table for every row cost more than the row.
pub struct Lookup<'t, V> {
    handle: Handle<'t>,
    name: &'static str,
    _value: PhantomData<fn() -> V>,
}

enum Handle<'t> {
    Read(redb::ReadOnlyTable<&'static str, &'static [u8]>),
    Write(redb::Table<'t, &'static str, &'static [u8]>),
}

impl<V: DeserializeOwned> Lookup<'_, V> {
    pub fn get(&self, key: &str) -> Result<Option<V>, JournalError> {
        match &self.handle {
            Handle::Read(t) => get_in(t, self.name, key),
            Handle::Write(t) => get_in(t, self.name, key),
        }
    }
}

/// Writing, in a write transaction.
pub trait Write: Read {
    fn put<V: Serialize>(&self, table: &Table<V>, key: &str, value: &V)
    -> Result<(), JournalError>;
    fn delete<V>(&self, table: &Table<V>, key: &str) -> Result<bool, JournalError>;
    /// Appends to a sequence table; returns the new number.
    fn append<V: Serialize>(
        &self,
        table: &Table<V>,
        make: impl FnOnce(u64) -> V,
    ) -> Result<u64, JournalError>;
}

impl Write for WriteTransaction {
    fn put<V: Serialize>(
        &self,
        table: &Table<V>,
        key: &str,
        value: &V,
    ) -> Result<(), JournalError> {
        open_write(self, table)?.insert(key, codec::encode(value).as_slice())?;
        Ok(())
    }

    fn delete<V>(&self, table: &Table<V>, key: &str) -> Result<bool, JournalError> {
        Ok(open_write(self, table)?.remove(key)?.is_some())
    }

    fn append<V: Serialize>(
        &self,
        table: &Table<V>,
        make: impl FnOnce(u64) -> V,
    ) -> Result<u64, JournalError> {
        let n = self.last_seq(table)? + 1;
        self.put(table, &seq_key(n), &make(n))?;
        Ok(n)
    }
}

/// One table opened for the rest of a write transaction's work on it: for loops that read and
/// write many rows, where opening the table again for every row cost more than the row.
pub struct Opened<'t, V> {
    table: redb::Table<'t, &'static str, &'static [u8]>,
    name: &'static str,
    _value: PhantomData<fn() -> V>,
}

impl<'t, V: Serialize + DeserializeOwned> Opened<'t, V> {
    /// Opens `table` in `tx`. While it is open, the same table cannot be used through `tx`.
    pub fn open(tx: &'t WriteTransaction, table: &Table<V>) -> Result<Self, JournalError> {
        Ok(Opened { table: open_write(tx, table)?, name: table.name, _value: PhantomData })
    }

    pub fn get(&self, key: &str) -> Result<Option<V>, JournalError> {
        get_in(&self.table, self.name, key)
    }

    pub fn put(&mut self, key: &str, value: &V) -> Result<(), JournalError> {
        self.table.insert(key, codec::encode(value).as_slice())?;
        Ok(())
    }

    pub fn delete(&mut self, key: &str) -> Result<bool, JournalError> {
        Ok(self.table.remove(key)?.is_some())
    }

    /// The keys that start with `prefix`, in key order.
    pub fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, JournalError> {
        let mut keys = Vec::new();
        for row in self.table.range(prefix..)? {
            let (key, _) = row?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_string());
        }
        Ok(keys)
    }

    /// The keys strictly after `after` and strictly before `before`, in key order; `None` leaves
    /// that end open. Empty when the ends leave no room between them.
    pub fn keys_between(
        &self,
        after: Option<&str>,
        before: Option<&str>,
    ) -> Result<Vec<String>, JournalError> {
        use std::ops::Bound::{Excluded, Unbounded};
        if let (Some(after), Some(before)) = (after, before)
            && after >= before
        {
            return Ok(Vec::new());
        }
        let start = after.map_or(Unbounded, Excluded);
        let end = before.map_or(Unbounded, Excluded);
        let mut keys = Vec::new();
        for row in self.table.range((start, end))? {
            keys.push(row?.0.value().to_string());
        }
        Ok(keys)
    }
}
