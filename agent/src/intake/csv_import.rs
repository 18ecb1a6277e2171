//! `tally import --vendor NAME FILE.csv`: usage from a vendor's CSV export, for vendors without
//! an API.
//!
//! The file is read and checked whole before anything is stored: one bad row, and nothing from
//! the file is kept, with every problem reported as `file:line:column: reason`. Columns are found
//! by header name (`[vendor.csv]` in tally.toml says which); extra columns are ignored. A UTF-8
//! byte order mark, CRLF line ends and quoted fields holding commas are all fine. Rows are stored
//! with the same rules as pushed usage (see `records`), in one transaction.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;

use rust_decimal::Decimal;
use serde::Serialize;

use super::integrations::{self, note_usage};
use super::records::{self, Change};
use crate::cli::{Ctx, Format, ImportArgs, UsageError};
use crate::config::{Config, CsvColumns, VendorSource};
use crate::journal::tables::{INTEGRATIONS, USAGE, key2};
use crate::journal::{Journal, JournalError, Read, Write};
use crate::model;

/// At most this many problems are listed; the count of the rest is given.
const SHOWN_PROBLEMS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "vendor \"{name}\" is not configured in {config}; add it there first:\n\n  [[vendor]]\n  \
         name = \"{name}\"\n  source = \"csv\"\n\n  [vendor.csv]   # the header names of the \
         export, if they differ\n  account_id = \"account_id\"\n  account_name = \
         \"account_name\"\n  service = \"service\"\n  quantity = \"quantity\""
    )]
    UnknownVendor { name: String, config: String },
    #[error(
        "vendor \"{name}\" has source = \"plugin\": its usage comes from its plugin and an import \
         would be overwritten by the next pull; set source = \"csv\" to import files instead"
    )]
    PluginVendor { name: String },
    #[error(
        "integration \"{name}\" was removed; `tally integration add {name}` brings it back before \
         importing"
    )]
    Removed { name: String },
    #[error("{file}: cannot read it: {reason}")]
    Unreadable { file: String, reason: String },
    #[error("{}", render(.file, .problems, *.total))]
    Invalid { file: String, problems: Vec<String>, total: usize },
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl ImportError {
    /// Whether the input (vendor name, file, rows) is at fault: exit code 2.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ImportError::Journal(_))
    }
}

fn render(file: &str, problems: &[String], total: usize) -> String {
    let mut text = problems.join("\n");
    if total > problems.len() {
        text.push_str(&format!("\n… and {} more problems", total - problems.len()));
    }
    text.push_str(&format!(
        "\nnothing from {file} was stored; fix the rows above and import it again"
    ));
    text
}

/// What an import stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub vendor: String,
    pub file: String,
    pub rows: usize,
    pub accounts: usize,
    pub accounts_created: usize,
    pub accounts_renamed: usize,
    pub services: usize,
    pub services_created: usize,
    /// Counts that are new or changed.
    pub counts_stored: usize,
    /// Counts equal to what the journal already held (only their received time moved).
    pub counts_unchanged: usize,
    /// Counts of this vendor (an account and a service) that are not zero and that the file
    /// does not restate: an import only adds and updates, so they stay in the cards until a
    /// file sets them (to 0 for a cancelled customer or service).
    pub counts_not_in_file: usize,
}

impl ImportSummary {
    /// The summary as one line for a person.
    pub fn line(&self) -> String {
        let n = |count: usize, noun: &str| match count {
            1 => format!("1 {noun}"),
            _ => format!("{count} {noun}s"),
        };
        let mut line = format!(
            "imported {} for vendor \"{}\": {}; {} ({} new, {} renamed), {} ({} new); {} \
             stored, {} unchanged",
            self.file,
            self.vendor,
            n(self.rows, "row"),
            n(self.accounts, "account"),
            self.accounts_created,
            self.accounts_renamed,
            n(self.services, "service"),
            self.services_created,
            n(self.counts_stored, "count"),
            self.counts_unchanged
        );
        if self.counts_not_in_file > 0 {
            let one = self.counts_not_in_file == 1;
            line.push_str(&format!(
                "\nnote: {} from earlier imports {} not in this file and {} {} value; a \
                 cancelled customer or service needs a row with quantity 0",
                n(self.counts_not_in_file, "count"),
                if one { "is" } else { "are" },
                if one { "keeps" } else { "keep" },
                if one { "its" } else { "their" },
            ));
        }
        line
    }
}

/// One checked row.
struct Row {
    account_id: String,
    account_name: String,
    service: String,
    quantity: Decimal,
}

struct Columns {
    account_id: usize,
    account_name: usize,
    service: usize,
    quantity: usize,
}

/// Reads and checks `path` whole, then stores it for `vendor`.
pub fn import(
    journal: &Journal,
    config: &Config,
    vendor: &str,
    path: &Path,
) -> Result<ImportSummary, ImportError> {
    let vendor_config = config.vendor(vendor).ok_or_else(|| ImportError::UnknownVendor {
        name: vendor.to_string(),
        config: config.file.display().to_string(),
    })?;
    if vendor_config.source == VendorSource::Plugin {
        return Err(ImportError::PluginVendor { name: vendor.to_string() });
    }
    let file = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| ImportError::Unreadable { file: file.clone(), reason: e.to_string() })?;
    let rows = check(&file, &bytes, &vendor_config.csv)?;

    let now = model::now_millis();
    let summary = journal.write(|tx| -> Result<ImportSummary, ImportError> {
        let mut integration = integrations::for_import(tx, vendor, vendor_config.source, now)?;
        if integration.removed_at.is_some() {
            return Err(ImportError::Removed { name: vendor.to_string() });
        }
        let mut summary = ImportSummary {
            vendor: vendor.to_string(),
            file: file.clone(),
            rows: rows.len(),
            accounts: 0,
            accounts_created: 0,
            accounts_renamed: 0,
            services: 0,
            services_created: 0,
            counts_stored: 0,
            counts_unchanged: 0,
            counts_not_in_file: 0,
        };
        let mut accounts_seen = HashMap::new();
        let mut pairs_seen: HashSet<String> = HashSet::new();
        let mut services_seen: HashMap<&str, String> = HashMap::new();
        for row in &rows {
            if !accounts_seen.contains_key(&row.account_id) {
                let (_, change) = records::upsert_account(
                    tx,
                    vendor,
                    &row.account_id,
                    &row.account_name,
                    None,
                    now,
                )?;
                match change {
                    Change::Created => summary.accounts_created += 1,
                    Change::Updated => summary.accounts_renamed += 1,
                    Change::Unchanged => {}
                }
                accounts_seen.insert(row.account_id.clone(), ());
            }
            let service_id = match services_seen.get(row.service.as_str()) {
                Some(id) => id.clone(),
                None => {
                    let (service, change) =
                        records::ensure_service(tx, vendor, &row.service, None, now)?;
                    if change == Change::Created {
                        summary.services_created += 1;
                    }
                    services_seen.insert(&row.service, service.id.clone());
                    service.id
                }
            };
            pairs_seen.insert(key2(&row.account_id, &service_id));
            let (_, change) =
                records::store_count(tx, vendor, &row.account_id, &service_id, row.quantity, now)?;
            if change == Change::Unchanged {
                summary.counts_unchanged += 1;
            } else {
                summary.counts_stored += 1;
            }
        }
        summary.accounts = accounts_seen.len();
        summary.services = services_seen.len();
        let prefix = key2(vendor, "");
        tx.each(&USAGE, &prefix, &mut |key, count: model::UsageCount| {
            if !count.quantity.is_zero() && !pairs_seen.contains(&key[prefix.len()..]) {
                summary.counts_not_in_file += 1;
            }
            Ok(())
        })?;
        note_usage(&mut integration, now);
        tx.put(&INTEGRATIONS, vendor, &integration)?;
        Ok(summary)
    })?;
    tracing::info!(
        vendor,
        file = %file,
        rows = summary.rows,
        counts_stored = summary.counts_stored,
        counts_unchanged = summary.counts_unchanged,
        "CSV usage imported"
    );
    Ok(summary)
}

fn find_columns(
    file: &str,
    header: &csv::StringRecord,
    names: &CsvColumns,
) -> Result<Columns, Vec<String>> {
    let mut problems = Vec::new();
    let mut find = |setting: &str, wanted: &str| -> usize {
        let matches: Vec<usize> = header
            .iter()
            .enumerate()
            .filter(|(_, h)| h.trim().eq_ignore_ascii_case(wanted.trim()))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [one] => *one,
            [] => {
                let found: Vec<String> = header.iter().map(|h| format!("{:?}", h.trim())).collect();
                problems.push(format!(
                    "{file}:1: no column named {wanted:?} (the header has {}); rename the column, \
                     or set `{setting} = \"…\"` under [vendor.csv] in tally.toml",
                    found.join(", ")
                ));
                usize::MAX
            }
            [first, second, ..] => {
                problems.push(format!(
                    "{file}:1:{}: two columns are named {wanted:?} (columns {} and {}); keep one",
                    second + 1,
                    first + 1,
                    second + 1
                ));
                usize::MAX
            }
        }
    };
    let columns = Columns {
        account_id: find("account_id", &names.account_id),
        account_name: find("account_name", &names.account_name),
        service: find("service", &names.service),
        quantity: find("quantity", &names.quantity),
    };
    if problems.is_empty() { Ok(columns) } else { Err(problems) }
}

/// Checks every row; returns them all, or every problem found.
fn check(file: &str, bytes: &[u8], names: &CsvColumns) -> Result<Vec<Row>, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let invalid = |problems: Vec<String>| {
        let total = problems.len();
        ImportError::Invalid {
            file: file.to_string(),
            problems: problems.into_iter().take(SHOWN_PROBLEMS).collect(),
            total,
        }
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        Some(Ok(header)) => header,
        Some(Err(e)) => return Err(invalid(vec![csv_problem(file, bytes, &e)])),
        None => {
            return Err(invalid(vec![format!(
                "{file}: the file is empty; it needs a header row ({}, {}, {}, {}) and one row per \
                 account and service",
                names.account_id, names.account_name, names.service, names.quantity
            )]));
        }
    };
    let columns = find_columns(file, &header, names).map_err(invalid)?;
    // A quote never closed makes the rest of the file one field; at the end of a file without
    // a final line break it would even read as a whole row, of a truncated export.
    if let Some(offset) = unclosed_quote(bytes) {
        let line_start = bytes[..offset].iter().rposition(|&b| b == b'\n' || b == b'\r');
        let column = String::from_utf8_lossy(&bytes[line_start.map_or(0, |i| i + 1)..offset])
            .chars()
            .filter(|&c| c == ',')
            .count();
        return Err(invalid(vec![format!(
            "{file}:{}:{}: a quote opened here is never closed: close it (\"), or double a \
             quote meant as text (\"\"); a file cut short also ends this way",
            line_at(bytes, offset as u64),
            column + 1
        )]));
    }

    let mut problems = Vec::new();
    let mut rows = Vec::new();
    // (account id, service name) → line; account id → (name, line).
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    let mut names_seen: HashMap<String, (String, u64)> = HashMap::new();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                problems.push(csv_problem(file, bytes, &e));
                continue;
            }
        };
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let line = record.position().map(|p| line_at(bytes, p.byte())).unwrap_or(0);
        let at = |column: usize| format!("{file}:{line}:{}", column + 1);
        // A quote that is never closed swallows the rest of its line and the lines after it
        // into one field: name the quote, not the fields that seem to be missing.
        if let Some(column) = record.iter().position(|f| f.contains(['\n', '\r'])) {
            problems.push(format!(
                "{}: a quoted field runs past the end of its line: close the quote (\") that \
                 opens it, or double a quote meant as text (\"\")",
                at(column)
            ));
            continue;
        }
        let field = |column: usize, label: &str, problems: &mut Vec<String>| -> Option<String> {
            match record.get(column) {
                Some(value) => Some(value.to_string()),
                None => {
                    problems.push(format!(
                        "{}: the row has {} fields, so {label} (column {}) is missing",
                        at(column),
                        record.len(),
                        column + 1
                    ));
                    None
                }
            }
        };
        let before = problems.len();
        if record.len() > header.len() {
            // Most often a decimal comma ("1,5") that split a quantity in two: refuse the row
            // rather than store half a number.
            problems.push(format!(
                "{}: the row has {} fields but the header has {}; quote fields that contain \
                 commas, and write decimals with a point (1.5, not 1,5)",
                at(header.len()),
                record.len(),
                header.len()
            ));
            continue;
        }
        let account_id = field(columns.account_id, "account id", &mut problems).and_then(|v| {
            records::clean_id("account id", &v)
                .map_err(|m| problems.push(format!("{}: {m}", at(columns.account_id))))
                .ok()
        });
        let account_name =
            field(columns.account_name, "account name", &mut problems).and_then(|v| {
                records::clean_name("account name", &v)
                    .map_err(|m| problems.push(format!("{}: {m}", at(columns.account_name))))
                    .ok()
            });
        let service = field(columns.service, "service", &mut problems).and_then(|v| {
            records::clean_name("service", &v)
                .map_err(|m| problems.push(format!("{}: {m}", at(columns.service))))
                .ok()
        });
        let quantity = field(columns.quantity, "quantity", &mut problems).and_then(|v| {
            records::parse_quantity(&v)
                .map_err(|reason| {
                    problems.push(format!(
                        "{}: quantity {:?} {reason}",
                        at(columns.quantity),
                        v.trim()
                    ))
                })
                .ok()
        });
        if problems.len() > before {
            continue;
        }
        let (Some(account_id), Some(account_name), Some(service), Some(quantity)) =
            (account_id, account_name, service, quantity)
        else {
            continue;
        };
        if let Some(first) = pairs.insert((account_id.clone(), service.clone()), line) {
            problems.push(format!(
                "{}: account {account_id:?} and service {service:?} appear twice (lines {first} \
                 and {line}); keep one row per account and service",
                at(columns.account_id)
            ));
            pairs.insert((account_id, service), first);
            continue;
        }
        match names_seen.get(&account_id) {
            Some((name, first)) if *name != account_name => {
                problems.push(format!(
                    "{}: account {account_id:?} is named {account_name:?} here but {name:?} at line \
                     {first}; an account has one name",
                    at(columns.account_name)
                ));
                continue;
            }
            Some(_) => {}
            None => {
                names_seen.insert(account_id.clone(), (account_name.clone(), line));
            }
        }
        rows.push(Row { account_id, account_name, service, quantity });
    }
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    if rows.is_empty() {
        return Err(invalid(vec![format!(
            "{file}: the file has a header but no rows; nothing to import"
        )]));
    }
    Ok(rows)
}

/// Where a quote that opens a field is never closed: the offset of that quote. Inside a
/// quoted field `""` is a quote; a quote inside an unquoted field is text.
fn unclosed_quote(bytes: &[u8]) -> Option<usize> {
    let mut open = None;
    let mut field_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if open.is_some() {
            if b == b'"' {
                if bytes.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    open = None;
                }
            }
        } else {
            if b == b'"' && field_start {
                open = Some(i);
            }
            field_start = matches!(b, b',' | b'\n' | b'\r');
        }
        i += 1;
    }
    open
}

/// The 1-based line holding byte `offset`: CRLF, LF and lone CR all end a line. (The csv
/// reader's own line count is off by one after CRLF line ends.)
fn line_at(bytes: &[u8], offset: u64) -> u64 {
    let before = &bytes[..(offset as usize).min(bytes.len())];
    let ends = before
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && before.get(i + 1) != Some(&b'\n')))
        .count();
    ends as u64 + 1
}

fn csv_problem(file: &str, bytes: &[u8], e: &csv::Error) -> String {
    let line = e.position().map(|p| line_at(bytes, p.byte())).unwrap_or(0);
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => {
            format!("{file}:{line}: the row is not UTF-8 text; save the export as UTF-8 CSV")
        }
        _ => format!("{file}:{line}: cannot read the row: {e}"),
    }
}

/// `tally import --vendor NAME FILE.csv`.
pub fn run(ctx: &Ctx, args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let journal = ctx.journal()?;
    let summary = match import(&journal, &ctx.config, &args.vendor, &args.file) {
        Ok(summary) => summary,
        Err(e) if e.is_usage() => return Err(UsageError(e.to_string()).into()),
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = crate::reconcile::after_vendor_change(&journal, &ctx.config) {
        tracing::warn!(error = %format!("{e:#}"), "usage stored, but reconciling failed; `tally sync` retries");
    }
    match ctx.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        _ => println!("{}", summary.line()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_counts_in_the_singular_and_the_plural() {
        let summary = |rows, accounts, counts| ImportSummary {
            vendor: "safedns".into(),
            file: "usage.csv".into(),
            rows,
            accounts,
            accounts_created: 0,
            accounts_renamed: 0,
            services: 1,
            services_created: 0,
            counts_stored: counts,
            counts_unchanged: 0,
            counts_not_in_file: 0,
        };
        assert_eq!(
            summary(1, 1, 1).line(),
            "imported usage.csv for vendor \"safedns\": 1 row; 1 account (0 new, 0 renamed), \
             1 service (0 new); 1 count stored, 0 unchanged"
        );
        assert!(summary(2, 0, 3).line().contains(": 2 rows; 0 accounts (0 new"));
        assert!(summary(2, 0, 3).line().contains("; 3 counts stored"));
    }

    fn problems(text: &str) -> Vec<String> {
        match check("usage.csv", text.as_bytes(), &CsvColumns::default()) {
            Err(ImportError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn bom_crlf_and_quoted_commas_are_read() {
        let text = "\u{feff}account_id,account_name,service,quantity\r\n\
                    a1,\"Contoso, Ltd\",\"SafeDNS Pro\",12\r\n\
                    a2,Fabrikam,SafeDNS Pro,1.75\r\n";
        let rows = check("usage.csv", text.as_bytes(), &CsvColumns::default()).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].account_name, "Contoso, Ltd");
        assert_eq!(rows[1].quantity.to_string(), "1.75");
    }

    #[test]
    fn a_negative_quantity_is_reported_at_its_line_and_column() {
        let text = "account_id,account_name,service,quantity\na1,A,S,1\na2,B,S,-3\n";
        assert_eq!(
            problems(text),
            ["usage.csv:3:4: quantity \"-3\" is negative; quantities are zero or more"]
        );
    }

    #[test]
    fn lines_are_counted_the_same_for_lf_crlf_and_cr() {
        for end in ["\n", "\r\n", "\r"] {
            let text =
                ["account_id,account_name,service,quantity", "a1,A,S,1", "a2,B,S,x", ""].join(end);
            let found = problems(&text);
            assert_eq!(found.len(), 1, "{end:?}: {found:?}");
            assert!(found[0].starts_with("usage.csv:3:4:"), "{end:?}: {found:?}");
        }
    }

    #[test]
    fn duplicate_pairs_name_both_lines() {
        let text = "account_id,account_name,service,quantity\na1,A,S,1\na2,B,S,2\na1,A,S,3\n";
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert!(found[0].contains("lines 2 and 4"), "{found:?}");
    }

    #[test]
    fn a_missing_column_names_the_setting() {
        let text = "account_id,account_name,sku,quantity\na1,A,S,1\n";
        let found = problems(text);
        assert!(found[0].starts_with("usage.csv:1: no column named \"service\""), "{found:?}");
        assert!(found[0].contains("[vendor.csv]"), "{found:?}");
    }
}
