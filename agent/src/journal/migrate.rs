//! Journal format versions and the migrations between them.
//!
//! The format version lives in the `meta` table. A journal from a newer tally is refused with
//! both versions named; an older one is brought up to date in a single write transaction, so a
//! crash during a migration leaves the old format intact.

use redb::{ReadableDatabase, TableHandle, WriteTransaction};

use super::tables::{self, META, Read, Write};
use super::{Journal, JournalError};

/// The journal format this build writes.
pub const FORMAT_VERSION: u32 = 3;

const VERSION_KEY: &str = "format_version";

/// Migration `i` takes a journal from format `i` to format `i + 1`.
type Migration = fn(&WriteTransaction) -> Result<(), JournalError>;

const MIGRATIONS: [Migration; 3] = [create_tables, index_lines_by_agreement, add_line_pages];

/// Format 0 is a new, empty file: create every table.
fn create_tables(tx: &WriteTransaction) -> Result<(), JournalError> {
    for name in tables::ALL_TABLES {
        tables::create_table(tx, name)?;
    }
    Ok(())
}

/// Format 2 indexes every billing line under its agreement.
fn index_lines_by_agreement(tx: &WriteTransaction) -> Result<(), JournalError> {
    let mut index = tables::Opened::open(tx, &tables::LINES_BY_AGREEMENT)?;
    tx.each(&tables::BILLING_LINES, "", &mut |key, line: crate::model::BillingLine| {
        index.put(&tables::key2(&line.agreement_id, key), &())
    })?;
    Ok(())
}

/// Format 3 keeps a digest of each agreement's last page of lines. The format changes with it
/// so that an older tally, which would write lines without voiding digests, refuses the
/// journal instead. Digests a format-2 journal may hold are not trusted: the table starts
/// empty.
fn add_line_pages(tx: &WriteTransaction) -> Result<(), JournalError> {
    tables::delete_table(tx, tables::LINE_PAGES.name)?;
    tables::create_table(tx, tables::LINE_PAGES.name)
}

fn stored_version(tx: &impl Read) -> Result<u32, JournalError> {
    Ok(match tx.get(&META, VERSION_KEY)? {
        Some(bytes) if bytes.len() == 4 => {
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        }
        Some(_) => {
            return Err(JournalError::BadRecord {
                table: META.name.to_string(),
                key: VERSION_KEY.to_string(),
                reason: "the format version is not a 4-byte number".to_string(),
            });
        }
        None => 0,
    })
}

pub(super) fn migrate(journal: &Journal) -> Result<(), JournalError> {
    let current = {
        let tx = journal.db.begin_read()?;
        let has_meta = tx.list_tables().is_ok_and(|mut names| names.any(|t| t.name() == META.name));
        if has_meta { stored_version(&tx)? } else { 0 }
    };
    if current == FORMAT_VERSION {
        return create_missing_tables(journal);
    }
    if current > FORMAT_VERSION {
        return Err(JournalError::NewerFormat {
            path: journal.path.clone(),
            found: current,
            supported: FORMAT_VERSION,
        });
    }
    journal.write(|tx| {
        // Another process may have migrated between our read and this write.
        let version = stored_version(tx)?;
        if version > FORMAT_VERSION {
            return Err(JournalError::NewerFormat {
                path: journal.path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        for step in &MIGRATIONS[version as usize..FORMAT_VERSION as usize] {
            step(tx)?;
        }
        tx.put(&META, VERSION_KEY, &FORMAT_VERSION.to_le_bytes().to_vec())?;
        Ok(())
    })
}

/// Tables added within a format version are created on open, so a journal never lacks one.
fn create_missing_tables(journal: &Journal) -> Result<(), JournalError> {
    let missing = {
        let tx = journal.db.begin_read()?;
        let existing: Vec<String> = match tx.list_tables() {
            Ok(names) => names.map(|t| t.name().to_string()).collect(),
            Err(e) => return Err(JournalError::Storage(e.to_string())),
        };
        tables::ALL_TABLES.iter().any(|name| !existing.iter().any(|e| e == name))
    };
    if missing { journal.write(create_tables) } else { Ok(()) }
}

/// Writes a format version as if a newer or older tally had, for tests.
#[doc(hidden)]
pub fn force_version(journal: &Journal, version: u32) -> Result<(), JournalError> {
    journal.write(|tx| tx.put(&META, VERSION_KEY, &version.to_le_bytes().to_vec()))
}
