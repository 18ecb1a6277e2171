//! Edits to the mapping file (`tally map add`): one entry added or changed with toml_edit, so
//! every other byte — comments, order, spacing — stays as the user wrote it.
//!
//! An edit is validated whole against the journal before it is written, and written
//! atomically (a temporary file in the same directory, then a rename) with the file's
//! permissions kept. It never writes a file that would not load, and never touches an entry
//! other than the one it names.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, Value};

use super::FileError;
use super::file::{self, Reference};
use super::normalize::level1;
use super::resolve::Known;
use super::suggest::Kind;
use crate::config::Config;
use crate::journal::{Journal, JournalError};

/// What the new entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddTarget {
    /// A PSA company or product: an id, identifier or unique name.
    To(String),
    Exclude,
    Unmap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddRequest {
    pub kind: Kind,
    pub vendor: String,
    pub id: String,
    pub target: AddTarget,
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The PSA record the entry points at (id and name), when it points at one.
    pub target: Option<(String, String)>,
    /// An entry for the same account or service was changed rather than a new one added.
    pub replaced: bool,
    pub file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The request itself cannot be written (the target does not resolve).
    #[error("{0}")]
    Request(String),
    /// The file would not load after the edit (or does not load now); nothing was written.
    #[error(
        "the mapping file was left unchanged, because with this entry it would not load:\n{}",
        .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    Invalid(Vec<FileError>),
    #[error("{}: cannot {action} the mapping file: {reason}", path.display())]
    Io { path: PathBuf, action: &'static str, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// Adds (or changes) the entry for one account or service and writes the file atomically.
/// The caller applies the new file (`resolve::apply`) afterwards.
pub fn add(journal: &Journal, config: &Config, request: &AddRequest) -> Result<Added, EditError> {
    let path = config.mapping.as_path();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(EditError::Io {
                path: path.to_path_buf(),
                action: "read",
                reason: e.to_string(),
            });
        }
    };
    let known = Known::load(&journal.read()?, config)?;

    let target = match &request.target {
        AddTarget::To(text) => {
            let reference = Reference::Text(text.clone());
            let found = match request.kind {
                Kind::Account => file::find_company(&known.companies, &reference),
                Kind::Service => file::find_product(&known.products, &reference),
            };
            let id = found.map_err(EditError::Request)?;
            let name = match request.kind {
                Kind::Account => known.companies.iter().find(|c| c.id == id).map(|c| &c.name),
                Kind::Service => known.products.iter().find(|p| p.id == id).map(|p| &p.description),
            };
            Some((id, name.cloned().unwrap_or_default()))
        }
        AddTarget::Exclude | AddTarget::Unmap => None,
    };

    let (new_text, replaced) = edited(&text, request, target.as_ref())
        .map_err(|reason| EditError::Invalid(vec![whole_file(path, reason)]))?;
    let parsed = file::parse(path, &new_text).map_err(EditError::Invalid)?;
    file::validate(path, &new_text, &parsed, &known.catalog()).map_err(EditError::Invalid)?;

    write_atomically(path, &new_text)?;
    Ok(Added { target, replaced, file: path.to_path_buf() })
}

fn whole_file(path: &Path, message: String) -> FileError {
    FileError { file: path.to_path_buf(), line: 0, column: 0, message }
}

/// The file's text with the entry added or changed; and whether it changed an existing one.
pub fn edited(
    text: &str,
    request: &AddRequest,
    target: Option<&(String, String)>,
) -> Result<(String, bool), String> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("not valid TOML ({}); fix the file first", e.message().trim())
    })?;
    let kind = request.kind.as_str();
    let target_key = request.kind.target();

    let target_value = target.map(|(id, name)| {
        let mut value = match id.parse::<i64>() {
            Ok(n) if n.to_string() == *id => Value::from(n),
            _ => Value::from(id.as_str()),
        };
        let name = level1(name);
        if !name.is_empty() {
            value.decor_mut().set_suffix(format!("  # {name}"));
        }
        value
    });

    let root = doc.as_table_mut();
    let first_of_its_kind = !root.contains_key(kind);
    if !root.contains_key(kind) {
        root.insert(kind, Item::ArrayOfTables(ArrayOfTables::new()));
    }
    let Some(tables) = root.get_mut(kind).and_then(Item::as_array_of_tables_mut) else {
        return Err(format!("`{kind}` is not written as [[{kind}]] sections; fix the file first"));
    };

    let same = |t: &Table| {
        let text_of = |key: &str| match t.get(key).and_then(Item::as_value) {
            Some(Value::String(s)) => Some(s.value().clone()),
            Some(Value::Integer(i)) => Some(i.value().to_string()),
            _ => None,
        };
        text_of("vendor").as_deref() == Some(request.vendor.as_str())
            && text_of("id").as_deref() == Some(request.id.as_str())
    };
    let existing = tables.iter_mut().find(|t| same(t));
    let replaced = existing.is_some();
    let table = match existing {
        Some(table) => {
            for key in [target_key, "exclude", "unmap"] {
                table.remove(key);
            }
            table
        }
        None => {
            let mut table = Table::new();
            table.insert("vendor", Item::Value(Value::from(request.vendor.as_str())));
            table.insert("id", Item::Value(Value::from(request.id.as_str())));
            tables.push(table);
            let last = tables.len() - 1;
            tables.get_mut(last).expect("just pushed")
        }
    };
    match (&request.target, target_value) {
        (AddTarget::To(_), Some(value)) => {
            table.insert(target_key, Item::Value(value));
        }
        (AddTarget::Exclude, _) => {
            table.insert("exclude", Item::Value(Value::from(true)));
        }
        (AddTarget::Unmap, _) => {
            table.insert("unmap", Item::Value(Value::from(true)));
        }
        (AddTarget::To(_), None) => return Err(format!("no {target_key} to point at")),
    }

    if !first_of_its_kind {
        // Next to the other entries of its kind.
        let mut out = doc.to_string();
        if !replaced && !text.is_empty() && !text.ends_with('\n') {
            // toml_edit writes the new section straight after the last byte; keep a line break.
            out = format!("{text}\n{}", &out[text.len()..]);
        }
        return Ok((out, replaced));
    }
    // The first entry of its kind goes at the end, after whatever the file ends with (a header
    // comment included), and every byte before it stays as it was.
    let mut entry = DocumentMut::new();
    let mut section = ArrayOfTables::new();
    section.push(table.clone());
    entry.as_table_mut().insert(kind, Item::ArrayOfTables(section));
    let separator = match text {
        "" => "",
        t if t.ends_with("\n\n") => "",
        t if t.ends_with('\n') => "\n",
        _ => "\n\n",
    };
    Ok((format!("{text}{separator}{}", entry.to_string().trim_start()), false))
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename,
/// keeping the existing file's permissions.
pub fn write_atomically(path: &Path, text: &str) -> Result<(), EditError> {
    let io = |action: &'static str, e: std::io::Error| EditError::Io {
        path: path.to_path_buf(),
        action,
        reason: e.to_string(),
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("mapping.toml");
    let tmp = dir.join(format!(".{name}.tally-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: AddTarget) -> AddRequest {
        AddRequest { kind: Kind::Account, vendor: "safedns".into(), id: "a2".into(), target }
    }

    #[test]
    fn appending_keeps_every_existing_byte() {
        let text = "# my notes\n[[account]]\nvendor = \"safedns\"   # aligned\nid = \"a1\"\n\
                    company = 7\n\n# services below\n[[service]]\nvendor = \"safedns\"\n\
                    id = \"pro\"\nproduct = 9\n";
        let target = ("250".to_string(), "Contoso\u{00A0}Ltd".to_string());
        let (out, replaced) =
            edited(text, &request(AddTarget::To("250".into())), Some(&target)).unwrap();
        assert!(!replaced);
        let block =
            "\n[[account]]\nvendor = \"safedns\"\nid = \"a2\"\ncompany = 250  # Contoso Ltd\n";
        assert!(out.contains(block), "{out}");
        assert_eq!(out.replacen(block, "", 1), text, "every other byte stays");
        assert!(out.find(block) < out.find("# services below"), "next to the other accounts");
    }

    #[test]
    fn changing_an_entry_touches_only_its_target() {
        let text = "[[account]] # first\nvendor = \"safedns\"\nid = \"a2\" # keep\n\
                    company = 7 # old\n# tail\n";
        let (out, replaced) = edited(text, &request(AddTarget::Exclude), None).unwrap();
        assert!(replaced);
        assert_eq!(
            out,
            "[[account]] # first\nvendor = \"safedns\"\nid = \"a2\" # keep\nexclude = true\n\
             # tail\n"
        );
    }

    #[test]
    fn a_file_without_a_final_newline_gets_one_before_the_new_entry() {
        let (out, _) = edited("# only a comment", &request(AddTarget::Unmap), None).unwrap();
        assert!(out.starts_with("# only a comment\n"), "{out:?}");
        assert!(out.contains("unmap = true"), "{out:?}");
    }
}
