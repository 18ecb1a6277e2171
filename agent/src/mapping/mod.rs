//! Mapping: vendor accounts to PSA companies, vendor services to PSA products, and the
//! per-product rules of the mapping file.
//!
//! This module owns the mapping file (parsing, validation against the journal, edits that keep
//! the user's comments), automatic exact-name matches, suggestions, and the journal's mapping
//! tables, which it rewrites as one transaction. It must never apply a suggestion by itself,
//! never unmap anything because a file was empty, missing or invalid (the last good mapping
//! stays in force), and never write the mapping file except through `edit`, atomically.

pub mod edit;
pub mod file;
pub mod index;
pub mod normalize;
pub mod resolve;
pub mod setup;
pub mod suggest;
pub mod view;
pub mod watcher;

use std::fmt;
use std::path::PathBuf;

use crate::journal::JournalError;

pub use resolve::{MappingChange, apply};
pub use setup::{SetupState, setup_state};
pub use watcher::{WatcherHandle, spawn_watcher};

/// One problem in the mapping file, located: `mapping.toml:14:3: reason; fix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (the file as a whole).
    pub line: usize,
    pub column: usize,
    /// The reason and the fix.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Why a mapping file was not put in force. In every case the previous mapping stays.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The file has problems; every one is listed, in file order.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<FileError>),
    /// An empty file replaced one with entries: taken for a half-written save (case C20).
    #[error(
        "{} is empty; keeping the previous mapping ({entries} entries). If you mean to remove \
         every entry, leave a comment line in the file",
        path.display()
    )]
    Empty { path: PathBuf, entries: u64 },
    /// The file disappeared while entries from it are in force (an editor mid-save, or a
    /// deletion).
    #[error(
        "{} does not exist; keeping the previous mapping ({entries} entries). Restore the \
         file; to remove every entry, write a file holding only a comment line",
        path.display()
    )]
    Missing { path: PathBuf, entries: u64 },
    #[error(
        "{}: cannot read the mapping file: {reason}; check that tally may read it",
        path.display()
    )]
    Read { path: PathBuf, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The new mapping is in force, but the cards could not be recomputed from it.
    #[error("the mapping is in force, but recomputing the cards failed: {0}")]
    Reconcile(String),
}

impl MappingError {
    /// Whether the mapping file itself is at fault (the user can fix it by editing the file).
    pub fn is_file_problem(&self) -> bool {
        matches!(
            self,
            MappingError::Invalid(_) | MappingError::Empty { .. } | MappingError::Missing { .. }
        )
    }
}

fn render_problems(problems: &[FileError]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// The commented starter mapping file `tally init` writes. It holds no entries, so it is valid
/// before the first sync.
pub const STARTER: &str = r#"# tally mapping: vendor accounts -> companies, services -> products.
# Accounts whose name equals a PSA company's name are matched automatically; everything here
# wins over automatic matches. `tally map suggest --format toml` prints entries to paste, and
# `tally map add` writes them for you. Reference: schemas/mapping.schema.json.
#
# [[account]]
# vendor = "safedns"
# id = "acct-1001"              # the vendor's account id
# company = 250                 # a PSA company id, or a unique company name
#
# [[account]]
# vendor = "safedns"
# id = "internal-lab"
# exclude = true                # not billed
#
# [[account]]
# vendor = "safedns"
# id = "acct-1002"
# unmap = true                  # turn off an automatic name match
#
# [[service]]
# vendor = "safedns"
# id = "safedns-pro"
# product = "SAFEDNS-SEAT"      # a PSA product id, identifier or unique description
#
# [[product]]
# product = "SAFEDNS-SEAT"
# rounding = "ceil"             # ceil | round | exact (default)
# whole_units = true            # the PSA takes whole numbers only
# max_auto_change_pct = 20      # larger changes wait for `tally approve`
# never_auto_zero = true        # a vendor count of 0 never applies by itself
# require_stable_pulls = 2      # apply only after this many equal vendor reports
# apply = "increases"           # none | increases | all: overrides [psa] apply
"#;
