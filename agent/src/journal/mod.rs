//! The journal: tally's one source of truth, a redb file.
//!
//! It owns opening the file safely and the transactions over it. It must never modify a file
//! that is not a tally journal (case C23), never open one file twice in a process (case C21:
//! handles are shared), and never lock other tally processes out: the file is opened in redb's
//! multi-writer mode, so `tally report` works while `tally run` holds it, and write
//! transactions from several processes take turns. A write transaction commits whole or not
//! at all, which is what lets a page and its checkpoint land together.

pub mod codec;
mod migrate;
pub mod tables;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use redb::{ConcurrencyMode, Database, ReadTransaction, ReadableDatabase, WriteTransaction};

pub use migrate::{FORMAT_VERSION, force_version};
pub use tables::{Read, Write};

/// The first bytes of every redb file.
const REDB_MAGIC: &[u8] = b"redb";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "{path}: not a tally journal (the file does not start with the redb header); it was left \
         untouched. Check the `journal` setting or --journal: it must name a journal file or a \
         path that does not exist yet"
    )]
    NotAJournal { path: PathBuf },
    #[error(
        "{path}: the journal path is the mapping file; refusing to open it as a journal. Give \
         `journal` and `mapping` different paths"
    )]
    IsMappingFile { path: PathBuf },
    #[error(
        "{path}: journal format {found} was written by a newer tally; this tally reads formats up \
         to {supported}. Upgrade tally, or point --journal at another file"
    )]
    NewerFormat { path: PathBuf, found: u32, supported: u32 },
    #[error(
        "{path}: the journal is held exclusively by another program (an older tally or another \
         redb user); stop it, or use another journal"
    )]
    HeldElsewhere { path: PathBuf },
    #[error("{path}: cannot open the journal: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("journal table {table}, key {key}: {reason}")]
    BadRecord { table: String, key: String, reason: String },
    #[error("journal storage error: {0}")]
    Storage(String),
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self {
                JournalError::Storage(e.to_string())
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

/// An open journal. Cheap to clone; every clone shares one database handle.
#[derive(Clone)]
pub struct Journal {
    db: Arc<Database>,
    path: PathBuf,
}

fn open_handles() -> &'static Mutex<HashMap<PathBuf, Weak<Database>>> {
    static HANDLES: OnceLock<Mutex<HashMap<PathBuf, Weak<Database>>>> = OnceLock::new();
    HANDLES.get_or_init(Default::default)
}

impl Journal {
    /// Opens (creating if needed) the journal at `path`, migrating an older format in one
    /// transaction. `mapping` is the mapping file's path, which is never opened as a journal.
    pub fn open(path: &Path, mapping: Option<&Path>) -> Result<Journal, JournalError> {
        let path = absolute(path);
        if let Some(mapping) = mapping
            && (absolute(mapping) == path || same_file(mapping, &path))
        {
            return Err(JournalError::IsMappingFile { path });
        }
        check_header(&path)?;

        let mut handles = open_handles().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = handles.get(&path).and_then(Weak::upgrade) {
            return Ok(Journal { db, path });
        }
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| JournalError::Open {
                path: path.clone(),
                reason: format!("cannot create its directory: {e}"),
            })?;
        }
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            // The operating system caches the file too; a larger cache here only raised the
            // peak memory of a large MSP's first sync (by 56 MB at 64 MiB) without speeding
            // anything up.
            .set_cache_size(16 * 1024 * 1024)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen
                | redb::DatabaseError::LockProtocolMismatch => {
                    JournalError::HeldElsewhere { path: path.clone() }
                }
                other => JournalError::Open { path: path.clone(), reason: other.to_string() },
            })?;
        let db = Arc::new(db);
        let journal = Journal { db: db.clone(), path: path.clone() };
        migrate::migrate(&journal)?;
        handles.insert(path, Arc::downgrade(&db));
        Ok(journal)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn read(&self) -> Result<ReadTransaction, JournalError> {
        Ok(self.db.begin_read()?)
    }

    /// Runs `f` in one write transaction and commits it, or commits nothing if `f` fails.
    pub fn write<T, E>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, E>) -> Result<T, E>
    where
        E: From<JournalError>,
    {
        let tx = self.db.begin_write().map_err(JournalError::from)?;
        let value = f(&tx)?;
        tx.commit().map_err(JournalError::from)?;
        Ok(value)
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Refuses an existing, non-empty file that does not start with the redb header (case C23),
/// reading only its first bytes.
fn check_header(path: &Path) -> Result<(), JournalError> {
    use std::io::Read as _;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(JournalError::Open { path: path.to_path_buf(), reason: e.to_string() });
        }
    };
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(JournalError::Open {
            path: path.to_path_buf(),
            reason: "it is a directory; give a file path".to_string(),
        });
    }
    let mut head = [0u8; 4];
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => {
                return Err(JournalError::Open { path: path.to_path_buf(), reason: e.to_string() });
            }
        }
    }
    if read == 0 {
        return Err(JournalError::NotAJournal { path: path.to_path_buf() });
    }
    if read < head.len() || &head[..] != REDB_MAGIC {
        return Err(JournalError::NotAJournal { path: path.to_path_buf() });
    }
    Ok(())
}
