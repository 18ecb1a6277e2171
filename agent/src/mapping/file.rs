//! The mapping file's format: parsing, validation against the journal, and locating every
//! problem at its file, line and column with the reason and the fix.
//!
//! A file is read whole and either every entry resolves or nothing does: this module returns
//! all problems, never a partial result. It only reads: it never touches the journal or the
//! file on disk (the caller hands it the text and a [`Catalog`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rust_decimal::Decimal;
use toml_edit::{Item, TableLike, Value};

use super::FileError;
use super::normalize::level1;
use crate::config::line_col;
use crate::journal::tables::SEP;
use crate::model::{Company, Product, ProductRules, Rounding, Target};

/// A 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Pos,
}

/// How an entry names a PSA company or product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// An integer: an id.
    Id(String),
    /// A string: an id, (for products) an identifier, or a unique name.
    Text(String),
}

impl Reference {
    pub fn text(&self) -> &str {
        match self {
            Reference::Id(s) | Reference::Text(s) => s,
        }
    }
}

/// What an `[[account]]` or `[[service]]` entry does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryTarget {
    To(Located<Reference>),
    Exclude,
    Unmap,
}

/// One `[[account]]` or `[[service]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub vendor: Located<String>,
    pub id: Located<String>,
    /// Where the `id` key is written.
    pub id_key: Pos,
    pub target: EntryTarget,
    /// The entry's header.
    pub at: Pos,
}

/// One `[[product]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleEntry {
    pub product: Located<Reference>,
    pub rules: ProductRules,
    pub at: Pos,
}

/// A parsed mapping file, not yet checked against the journal.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MappingFile {
    pub accounts: Vec<Entry>,
    pub services: Vec<Entry>,
    pub products: Vec<RuleEntry>,
}

impl MappingFile {
    pub fn entries(&self) -> usize {
        self.accounts.len() + self.services.len() + self.products.len()
    }
}

/// What the journal knows, for resolving references: PSA companies and products, and vendors.
pub struct Catalog<'a> {
    pub companies: &'a [Company],
    pub products: &'a [Product],
    pub vendors: BTreeSet<String>,
}

/// A file entry resolved against the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEntry {
    pub vendor: String,
    pub id: String,
    pub target: Target,
}

/// A mapping file checked against the journal: every reference is an existing id.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resolved {
    pub accounts: Vec<ResolvedEntry>,
    pub services: Vec<ResolvedEntry>,
    /// Product id and its rules.
    pub products: Vec<(String, ProductRules)>,
}

impl Resolved {
    pub fn entries(&self) -> usize {
        self.accounts.len() + self.services.len() + self.products.len()
    }
}

/// Collects problems with their positions.
struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    list: Vec<FileError>,
}

impl Problems<'_> {
    fn pos(&self, span: Option<std::ops::Range<usize>>) -> Pos {
        span.map(|s| {
            let (line, column) = line_col(self.text, s.start);
            Pos { line, column }
        })
        .unwrap_or_default()
    }

    fn at(&mut self, at: Pos, message: String) {
        self.list.push(FileError {
            file: self.file.to_path_buf(),
            line: at.line,
            column: at.column,
            message,
        });
    }

    fn finish<T>(mut self, value: T) -> Result<T, Vec<FileError>> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            self.list.sort_by_key(|e| (e.line, e.column));
            Err(self.list)
        }
    }
}

fn path_buf(file: &Path) -> PathBuf {
    file.to_path_buf()
}

/// Parses the mapping file's text: TOML syntax, the known tables and keys, and their types.
/// An empty file, or one holding only comments, has no entries.
pub fn parse(file: &Path, text: &str) -> Result<MappingFile, Vec<FileError>> {
    let doc = match toml_edit::Document::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            return Err(vec![FileError {
                file: path_buf(file),
                line,
                column,
                message: format!(
                    "not valid TOML: {}; fix the syntax (an editor with TOML support points at \
                     it)",
                    e.message().trim()
                ),
            }]);
        }
    };
    let mut problems = Problems { file, text, list: Vec::new() };
    let mut parsed = MappingFile::default();
    let root = doc.as_table();
    for (key, item) in root.iter() {
        let key_at = problems.pos(root.key(key).and_then(|k| k.span()));
        match key {
            "account" | "service" | "product" => {
                for (at, table) in entries_of(key, item, key_at, &mut problems) {
                    match key {
                        "account" => {
                            if let Some(e) =
                                parse_entry("account", "company", at, table, &mut problems)
                            {
                                parsed.accounts.push(e);
                            }
                        }
                        "service" => {
                            if let Some(e) =
                                parse_entry("service", "product", at, table, &mut problems)
                            {
                                parsed.services.push(e);
                            }
                        }
                        _ => {
                            if let Some(e) = parse_rules(at, table, &mut problems) {
                                parsed.products.push(e);
                            }
                        }
                    }
                }
            }
            other => problems.at(
                key_at,
                format!(
                    "unknown key `{other}`; the mapping file holds only [[account]], [[service]] \
                     and [[product]] entries{}",
                    did_you_mean(other, &["account", "service", "product"])
                ),
            ),
        }
    }
    problems.finish(parsed)
}

/// The tables of `[[kind]]` (or an array of inline tables), each with its position.
fn entries_of<'d>(
    kind: &str,
    item: &'d Item,
    key_at: Pos,
    problems: &mut Problems<'_>,
) -> Vec<(Pos, &'d dyn TableLike)> {
    let mut out = Vec::new();
    match item {
        Item::ArrayOfTables(tables) => {
            for table in tables.iter() {
                out.push((problems.pos(table.span()), table as &dyn TableLike));
            }
        }
        Item::Value(Value::Array(array)) => {
            for value in array.iter() {
                match value.as_inline_table() {
                    Some(table) => out.push((problems.pos(table.span()), table as &dyn TableLike)),
                    None => problems.at(
                        problems.pos(value.span()),
                        format!(
                            "each `{kind}` entry must be a table, found {}; write entries as \
                             [[{kind}]] sections",
                            value.type_name()
                        ),
                    ),
                }
            }
        }
        other => problems.at(
            key_at,
            format!(
                "`{kind}` must be an array of tables, found {}; write each entry as its own \
                 [[{kind}]] section (double brackets)",
                other.type_name()
            ),
        ),
    }
    out
}

/// The position of `key`'s value in `table`, or of the key itself.
fn value_pos(table: &dyn TableLike, key: &str, problems: &Problems<'_>) -> Pos {
    let value_span = table.get(key).and_then(Item::span);
    let key_span = table.key(key).and_then(|k| k.span());
    problems.pos(value_span.or(key_span))
}

fn key_pos(table: &dyn TableLike, key: &str, problems: &Problems<'_>) -> Pos {
    problems.pos(table.key(key).and_then(|k| k.span()))
}

/// Reports keys outside `allowed`.
fn check_keys(kind: &str, table: &dyn TableLike, allowed: &[&str], problems: &mut Problems<'_>) {
    for (key, _) in table.iter() {
        if !allowed.contains(&key) {
            let at = key_pos(table, key, problems);
            problems.at(
                at,
                format!(
                    "unknown key `{key}` in [[{kind}]]; the keys are {}{}",
                    allowed.join(", "),
                    did_you_mean(key, allowed)
                ),
            );
        }
    }
}

/// A required text value (strings; integers are taken as their digits, since vendor ids are
/// often numbers).
fn text_value(
    kind: &str,
    table: &dyn TableLike,
    key: &str,
    entry_at: Pos,
    problems: &mut Problems<'_>,
) -> Option<Located<String>> {
    let Some(item) = table.get(key) else {
        problems.at(entry_at, format!("[[{kind}]] has no `{key}`; add `{key} = \"...\"`"));
        return None;
    };
    let at = value_pos(table, key, problems);
    let value = match item.as_value() {
        Some(Value::String(s)) => s.value().clone(),
        Some(Value::Integer(i)) => i.value().to_string(),
        _ => {
            problems.at(
                at,
                format!("`{key}` must be a string, found {}; quote the value", item.type_name()),
            );
            return None;
        }
    };
    if value.trim().is_empty() {
        problems.at(at, format!("`{key}` is empty; write the {kind}'s {key}"));
        return None;
    }
    if value.contains(SEP) {
        problems.at(at, format!("`{key}` holds the control character U+001F; remove it"));
        return None;
    }
    Some(Located { value, at })
}

fn bool_value(table: &dyn TableLike, key: &str, problems: &mut Problems<'_>) -> Option<bool> {
    let item = table.get(key)?;
    match item.as_bool() {
        Some(b) => Some(b),
        None => {
            let at = value_pos(table, key, problems);
            problems.at(at, format!("`{key}` must be true or false, found {}", item.type_name()));
            None
        }
    }
}

fn reference_value(
    table: &dyn TableLike,
    key: &str,
    what: &str,
    problems: &mut Problems<'_>,
) -> Option<Located<Reference>> {
    let item = table.get(key)?;
    let at = value_pos(table, key, problems);
    let value = match item.as_value() {
        Some(Value::Integer(i)) => Reference::Id(i.value().to_string()),
        Some(Value::String(s)) if !s.value().trim().is_empty() => {
            Reference::Text(s.value().clone())
        }
        Some(Value::String(_)) => {
            problems.at(at, format!("`{key}` is empty; write the PSA {what}'s id or name"));
            return None;
        }
        _ => {
            problems.at(
                at,
                format!(
                    "`{key}` must be a {what} id (a number or a string) or a unique {what} name, \
                     found {}",
                    item.type_name()
                ),
            );
            return None;
        }
    };
    Some(Located { value, at })
}

fn parse_entry(
    kind: &str,
    target_key: &str,
    at: Pos,
    table: &dyn TableLike,
    problems: &mut Problems<'_>,
) -> Option<Entry> {
    check_keys(kind, table, &["vendor", "id", target_key, "exclude", "unmap"], problems);
    let before = problems.list.len();
    let vendor = text_value(kind, table, "vendor", at, problems);
    let id = text_value(kind, table, "id", at, problems);
    let what = if kind == "account" { "company" } else { "product" };
    let to = reference_value(table, target_key, what, problems);
    let exclude = bool_value(table, "exclude", problems).unwrap_or(false);
    let unmap = bool_value(table, "unmap", problems).unwrap_or(false);
    if problems.list.len() > before {
        return None;
    }
    let (vendor, id) = (vendor?, id?);

    let chosen = usize::from(to.is_some()) + usize::from(exclude) + usize::from(unmap);
    let describe = format!("{kind} \"{}\" of vendor \"{}\"", id.value, vendor.value);
    if chosen == 0 {
        problems.at(
            at,
            format!(
                "{describe} says neither `{target_key}`, `exclude = true` nor `unmap = true`; \
                 add one of them"
            ),
        );
        return None;
    }
    if chosen > 1 {
        problems.at(
            at,
            format!(
                "{describe} gives more than one of `{target_key}`, `exclude = true` and \
                 `unmap = true`; keep one"
            ),
        );
        return None;
    }
    let target = match to {
        Some(to) => EntryTarget::To(to),
        None if exclude => EntryTarget::Exclude,
        None => EntryTarget::Unmap,
    };
    let id_key = key_pos(table, "id", problems);
    Some(Entry { vendor, id, id_key, target, at })
}

const RULE_KEYS: [&str; 8] = [
    "product",
    "rounding",
    "whole_units",
    "max_auto_change_pct",
    "max_auto_change_abs",
    "never_auto_zero",
    "require_stable_pulls",
    "apply",
];

fn parse_rules(at: Pos, table: &dyn TableLike, problems: &mut Problems<'_>) -> Option<RuleEntry> {
    check_keys("product", table, &RULE_KEYS, problems);
    let before = problems.list.len();
    let product = reference_value(table, "product", "product", problems);
    if product.is_none() && table.get("product").is_none() {
        problems.at(at, "[[product]] has no `product`; add `product = \"...\"`".to_string());
    }
    let mut rules = ProductRules::default();
    if let Some(word) = choice(table, "rounding", &["ceil", "round", "exact"], problems) {
        rules.rounding = match word.as_str() {
            "ceil" => Rounding::Ceil,
            "round" => Rounding::Round,
            _ => Rounding::Exact,
        };
    }
    rules.whole_units = bool_value(table, "whole_units", problems).unwrap_or(false);
    rules.max_auto_change_pct = decimal_value(table, "max_auto_change_pct", problems);
    rules.max_auto_change_abs = decimal_value(table, "max_auto_change_abs", problems);
    rules.never_auto_zero = bool_value(table, "never_auto_zero", problems).unwrap_or(false);
    if let Some(item) = table.get("require_stable_pulls") {
        let at = value_pos(table, "require_stable_pulls", problems);
        match item.as_integer().map(u32::try_from) {
            Some(Ok(n)) => rules.require_stable_pulls = n,
            _ => problems.at(
                at,
                format!(
                    "`require_stable_pulls` must be a whole number of reports, 0 or more, found \
                     {}",
                    shown(item)
                ),
            ),
        }
    }
    rules.apply = choice(table, "apply", &["none", "increases", "all"], problems);
    if problems.list.len() > before {
        return None;
    }
    Some(RuleEntry { product: product?, rules, at })
}

fn choice(
    table: &dyn TableLike,
    key: &str,
    words: &[&str],
    problems: &mut Problems<'_>,
) -> Option<String> {
    let item = table.get(key)?;
    match item.as_str() {
        Some(word) if words.contains(&word) => Some(word.to_string()),
        _ => {
            let at = value_pos(table, key, problems);
            let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
            problems.at(
                at,
                format!("`{key}` must be one of {}, found {}", quoted.join(", "), shown(item)),
            );
            None
        }
    }
}

/// A non-negative decimal from an integer, a float (read as written) or a string.
fn decimal_value(table: &dyn TableLike, key: &str, problems: &mut Problems<'_>) -> Option<Decimal> {
    let item = table.get(key)?;
    let parsed = match item.as_value() {
        Some(Value::Integer(i)) => Some(Decimal::from(*i.value())),
        Some(Value::Float(f)) => Decimal::from_str(&f.value().to_string()).ok(),
        Some(Value::String(s)) => Decimal::from_str(s.value().trim()).ok(),
        _ => None,
    };
    match parsed {
        Some(d) if d >= Decimal::ZERO => Some(d),
        _ => {
            let at = value_pos(table, key, problems);
            problems.at(at, format!("`{key}` must be a number, 0 or more, found {}", shown(item)));
            None
        }
    }
}

/// How a value reads in a message: its text for scalars, its type otherwise.
fn shown(item: &Item) -> String {
    match item.as_value() {
        Some(Value::String(s)) => format!("\"{}\"", s.value()),
        Some(Value::Integer(i)) => i.value().to_string(),
        Some(Value::Float(f)) => f.value().to_string(),
        Some(Value::Boolean(b)) => b.value().to_string(),
        _ => item.type_name().to_string(),
    }
}

/// " (did you mean `x`?)" for a near miss among `known`.
fn did_you_mean(word: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] =
                if ca == *cb { previous } else { 1 + previous.min(row[j]).min(row[j + 1]) };
            previous = current;
        }
    }
    row[b.len()]
}

/// Checks a parsed file against the journal: known vendors, no account or service mapped
/// twice, no product given rules twice, and every company and product reference naming
/// exactly one existing record.
pub fn validate(
    file: &Path,
    text: &str,
    parsed: &MappingFile,
    catalog: &Catalog<'_>,
) -> Result<Resolved, Vec<FileError>> {
    let mut problems = Problems { file, text, list: Vec::new() };
    let companies = Lookup::companies(catalog.companies);
    let products = Lookup::products(catalog.products);
    let mut resolved = Resolved::default();

    for (kind, entries, lookup, out) in [
        ("account", &parsed.accounts, &companies, &mut resolved.accounts),
        ("service", &parsed.services, &products, &mut resolved.services),
    ] {
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for entry in entries {
            let (vendor, id) = (entry.vendor.value.as_str(), entry.id.value.as_str());
            let mut ok = true;
            if !catalog.vendors.contains(vendor) {
                ok = false;
                problems.at(entry.vendor.at, unknown_vendor(vendor, &catalog.vendors));
            }
            if let Some(first) = seen.insert((vendor, id), entry.id_key.line) {
                ok = false;
                problems.at(
                    entry.id_key,
                    format!(
                        "{kind} \"{id}\" of vendor \"{vendor}\" is mapped twice (also at line \
                         {first}); keep one of the two entries"
                    ),
                );
                seen.insert((vendor, id), first);
            }
            let target = match &entry.target {
                EntryTarget::To(reference) => match lookup.find(&reference.value) {
                    Ok(id) => Target::Id(id),
                    Err(reason) => {
                        problems.at(reference.at, reason);
                        continue;
                    }
                },
                EntryTarget::Exclude => Target::Excluded,
                EntryTarget::Unmap => Target::Unmapped,
            };
            if ok {
                out.push(ResolvedEntry { vendor: vendor.to_string(), id: id.to_string(), target });
            }
        }
    }

    let mut ruled: HashMap<String, usize> = HashMap::new();
    for entry in &parsed.products {
        match products.find(&entry.product.value) {
            Ok(id) => {
                if let Some(first) = ruled.get(&id) {
                    problems.at(
                        entry.product.at,
                        format!(
                            "product {id} has rules twice (also at line {first}); merge the two \
                             [[product]] entries"
                        ),
                    );
                } else {
                    ruled.insert(id.clone(), entry.product.at.line);
                    resolved.products.push((id, entry.rules.clone()));
                }
            }
            Err(reason) => problems.at(entry.product.at, reason),
        }
    }
    problems.finish(resolved)
}

fn unknown_vendor(vendor: &str, known: &BTreeSet<String>) -> String {
    let list = if known.is_empty() {
        "none yet".to_string()
    } else {
        known.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
    };
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    format!(
        "vendor \"{vendor}\" is not known (known vendors: {list}){}; correct the name, or add a \
         [[vendor]] named \"{vendor}\" to the config",
        did_you_mean(vendor, &names)
    )
}

/// Resolves a company reference as the file would: the company id it names, or the reason
/// it names none (or several).
pub fn find_company(companies: &[Company], reference: &Reference) -> Result<String, String> {
    Lookup::companies(companies).find(reference)
}

/// Resolves a product reference as the file would.
pub fn find_product(products: &[Product], reference: &Reference) -> Result<String, String> {
    Lookup::products(products).find(reference)
}

/// Resolves references to companies or products: by id, then identifier, then unique
/// level-1 name. Names resolve only among records that are not deleted or retired.
struct Lookup<'a> {
    what: &'static str,
    ids: HashMap<&'a str, &'a str>,
    identifiers: HashMap<String, Vec<(&'a str, &'a str)>>,
    names: HashMap<String, Vec<(&'a str, &'a str)>>,
}

impl<'a> Lookup<'a> {
    fn companies(companies: &'a [Company]) -> Self {
        let mut lookup = Lookup::new("company");
        for c in companies {
            lookup.ids.insert(&c.id, &c.name);
            if !c.deleted && c.seen.retired_at.is_none() {
                lookup.names.entry(level1(&c.name)).or_default().push((&c.id, &c.name));
            }
        }
        lookup
    }

    fn products(products: &'a [Product]) -> Self {
        let mut lookup = Lookup::new("product");
        for p in products {
            lookup.ids.insert(&p.id, &p.description);
            if p.seen.retired_at.is_none() {
                if let Some(identifier) = &p.identifier {
                    lookup
                        .identifiers
                        .entry(level1(identifier))
                        .or_default()
                        .push((&p.id, &p.description));
                }
                lookup
                    .names
                    .entry(level1(&p.description))
                    .or_default()
                    .push((&p.id, &p.description));
            }
        }
        lookup
    }

    fn new(what: &'static str) -> Self {
        Lookup { what, ids: HashMap::new(), identifiers: HashMap::new(), names: HashMap::new() }
    }

    fn find(&self, reference: &Reference) -> Result<String, String> {
        let what = self.what;
        let whats = match what.strip_suffix('y') {
            Some(stem) => format!("{stem}ies"),
            None => format!("{what}s"),
        };
        match reference {
            Reference::Id(id) => {
                if self.ids.contains_key(id.as_str()) {
                    Ok(id.clone())
                } else {
                    Err(format!(
                        "{what} {id} does not exist in the PSA as tally last synced it; correct \
                         the id, or run `tally sync` if the {what} is new"
                    ))
                }
            }
            Reference::Text(text) => {
                if self.ids.contains_key(text.as_str()) {
                    return Ok(text.clone());
                }
                let key = level1(text);
                for (kind, map) in [("identifier", &self.identifiers), ("name", &self.names)] {
                    match map.get(&key).map(Vec::as_slice) {
                        Some([(id, _)]) => return Ok(id.to_string()),
                        Some(many) if many.len() > 1 => {
                            let list: Vec<String> = many
                                .iter()
                                .map(|(id, name)| format!("{id} (\"{name}\")"))
                                .collect();
                            return Err(format!(
                                "{what} {kind} \"{text}\" is ambiguous: {} {whats} have it: {}; \
                                 write the id instead",
                                many.len(),
                                list.join(", ")
                            ));
                        }
                        _ => {}
                    }
                }
                Err(format!(
                    "no {what} has the id or name \"{text}\"; correct it (`tally map suggest` \
                     lists likely {whats}), or run `tally sync` if the {what} is new"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> &'static Path {
        Path::new("mapping.toml")
    }

    fn errors(text: &str) -> Vec<String> {
        parse(file(), text).unwrap_err().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn empty_and_comment_only_files_have_no_entries() {
        assert_eq!(parse(file(), "").unwrap().entries(), 0);
        assert_eq!(parse(file(), "# nothing yet\n\n").unwrap().entries(), 0);
        assert_eq!(parse(file(), super::super::STARTER).unwrap().entries(), 0);
    }

    #[test]
    fn entries_parse_with_positions() {
        let text = "[[account]]\nvendor = \"safedns\"\nid = \"a1\"\ncompany = 250\n\n\
                    [[service]]\nvendor = \"safedns\"\nid = \"pro\"\nexclude = true\n\n\
                    [[product]]\nproduct = \"SEAT\"\nrounding = \"ceil\"\n\
                    max_auto_change_pct = 12.5\n";
        let parsed = parse(file(), text).unwrap();
        assert_eq!(parsed.accounts[0].at, Pos { line: 1, column: 1 });
        assert_eq!(parsed.accounts[0].id.at, Pos { line: 3, column: 6 });
        assert_eq!(
            parsed.accounts[0].target,
            EntryTarget::To(Located {
                value: Reference::Id("250".into()),
                at: Pos { line: 4, column: 11 }
            })
        );
        assert_eq!(parsed.services[0].target, EntryTarget::Exclude);
        assert_eq!(parsed.products[0].rules.rounding, Rounding::Ceil);
        assert_eq!(parsed.products[0].rules.max_auto_change_pct, Some(Decimal::new(125, 1)));
    }

    #[test]
    fn syntax_error_is_located() {
        let e = errors("[[account]]\nvendor = \"safedns\nid = 1\n");
        assert!(e[0].starts_with("mapping.toml:2:"), "{e:?}");
        assert!(e[0].contains("not valid TOML"), "{e:?}");
    }

    #[test]
    fn unknown_keys_are_located_with_a_hint() {
        let e = errors("[[account]]\nvendor = \"s\"\nid = \"a\"\ncompnay = 1\n");
        assert!(
            e.iter().any(|e| e.starts_with("mapping.toml:4:1: unknown key `compnay`")),
            "{e:?}"
        );
        assert!(e.iter().any(|e| e.contains("did you mean `company`?")), "{e:?}");
        let e = errors("[[acount]]\nvendor = \"s\"\n");
        assert!(e[0].starts_with("mapping.toml:1:3: unknown key `acount`"), "{e:?}");
    }

    #[test]
    fn wrong_types_are_located() {
        let e = errors("[[account]]\nvendor = \"s\"\nid = \"a\"\ncompany = true\n");
        assert!(e[0].starts_with("mapping.toml:4:11: `company` must be a company id"), "{e:?}");
        let e = errors("[[product]]\nproduct = 1\nrounding = \"up\"\n");
        assert!(e[0].contains("`rounding` must be one of \"ceil\", \"round\", \"exact\""), "{e:?}");
        let e = errors("[[product]]\nproduct = 1\nrequire_stable_pulls = -1\n");
        assert!(e[0].contains("require_stable_pulls"), "{e:?}");
        let e = errors("[account]\nvendor = \"s\"\n");
        assert!(e[0].contains("[[account]] section (double brackets)"), "{e:?}");
    }

    #[test]
    fn an_entry_needs_exactly_one_target() {
        let e = errors("[[account]]\nvendor = \"s\"\nid = \"a\"\n");
        assert!(e[0].contains("neither `company`"), "{e:?}");
        let e = errors("[[account]]\nvendor = \"s\"\nid = \"a\"\ncompany = 1\nexclude = true\n");
        assert!(e[0].contains("more than one"), "{e:?}");
        let parsed = parse(file(), "[[account]]\nvendor = \"s\"\nid = \"a\"\nunmap = true\n");
        assert_eq!(parsed.unwrap().accounts[0].target, EntryTarget::Unmap);
    }

    /// The schema users validate against and the parser accept the same shapes.
    #[test]
    fn the_json_schema_agrees_with_the_parser() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/mapping.schema.json"
        )))
        .unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let account = "[[account]]\nvendor = \"s\"\nid = \"a\"\n";
        let samples = [
            String::new(),
            "# only a comment\n".to_string(),
            format!("{account}company = 250\n"),
            format!("{account}company = \"Contoso Ltd\"\n"),
            format!("{account}exclude = true\n"),
            format!("{account}unmap = true\n"),
            format!("{account}company = 1\nexclude = false\n"),
            "[[service]]\nvendor = \"s\"\nid = 7\nproduct = \"SEAT\"\n".to_string(),
            "[[product]]\nproduct = 9\nrounding = \"ceil\"\nwhole_units = true\n\
             max_auto_change_pct = 12.5\nmax_auto_change_abs = \"2\"\nnever_auto_zero = true\n\
             require_stable_pulls = 2\napply = \"all\"\n"
                .to_string(),
            "[[acount]]\nvendor = \"s\"\n".to_string(),
            format!("{account}compnay = 1\n"),
            format!("{account}company = true\n"),
            format!("{account}company = 1\nexclude = true\n"),
            format!("{account}exclude = false\n"),
            account.to_string(),
            "[[account]]\nvendor = \"\"\nid = \"a\"\nexclude = true\n".to_string(),
            "[account]\nvendor = \"s\"\nid = \"a\"\nexclude = true\n".to_string(),
            "[[product]]\nproduct = 9\nrounding = \"up\"\n".to_string(),
            "[[product]]\nproduct = 9\nrequire_stable_pulls = -1\n".to_string(),
            "[[product]]\nproduct = 9\nmax_auto_change_pct = -1\n".to_string(),
            "[[product]]\nrounding = \"ceil\"\n".to_string(),
        ];
        for text in samples {
            let json: serde_json::Value = toml::from_str(&text).unwrap();
            assert_eq!(
                validator.is_valid(&json),
                parse(file(), &text).is_ok(),
                "schema and parser disagree on:\n{text}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_not_only_the_first() {
        let e = errors("[[account]]\nvendor = 1.5\nid = \"a\"\n\n[[service]]\nid = \"x\"\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("mapping.toml:2:10: `vendor` must be a string"), "{e:?}");
        assert!(e[1].starts_with("mapping.toml:5:1: [[service]] has no `vendor`"), "{e:?}");
    }
}
