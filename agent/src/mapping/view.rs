//! `tally map`: the mapping state on screen — what is mapped and from where, what is not
//! mapped yet (with the usage waiting on it), suggestions, and `map add`.
//!
//! Every subcommand first applies the mapping file, so automatic matches follow the latest
//! PSA companies and products. This module renders; it decides nothing about matches (that
//! is `resolve` and `suggest`) and writes the file only through `edit`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;

use super::edit::{self, AddRequest, AddTarget, EditError};
use super::index::{Lookups, NameIndex};
use super::normalize::visible;
use super::resolve::{self, Known};
use super::suggest::{self, Kind, Suggestion};
use super::{MappingChange, setup};
use crate::cli::{Ctx, Format, MapAddArgs, MapArgs, MapCommand, MapKind, UsageError};
use crate::journal::tables::{ACCOUNT_MAPPINGS, PRODUCT_RULES, SEP, SERVICE_MAPPINGS, USAGE, key2};
use crate::journal::{Journal, Read};
use crate::model::{Mapping, Origin, ProductRules, Rounding, Target};

/// Runs `tally map [show|unmapped|suggest|add]`.
pub fn run(ctx: &Ctx, args: &MapArgs) -> anyhow::Result<ExitCode> {
    if ctx.format == Format::Csv {
        return Err(UsageError(
            "`tally map` prints --format table, json or toml; csv is for `tally report`".into(),
        )
        .into());
    }
    let journal = ctx.existing_journal()?;
    if let Some(MapCommand::Add(add)) = &args.what {
        return run_add(ctx, &journal, add);
    }

    let applied = resolve::apply(&journal, &ctx.config);
    let problem = match applied {
        Ok(_) => None,
        Err(e) if e.is_file_problem() => Some(e),
        Err(e) => return Err(e).context("cannot apply the mapping file"),
    };
    let state = State::load(&journal, ctx)?;
    let out = match &args.what {
        None => summary(&state, ctx.format)?,
        Some(MapCommand::Show) => show(&state, ctx.format)?,
        Some(MapCommand::Unmapped) => unmapped(&state, ctx.format)?,
        Some(MapCommand::Suggest) => suggestions(&state, ctx.format)?,
        Some(MapCommand::Add(_)) => unreachable!("handled above"),
    };
    print!("{out}");
    match problem {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {e}");
            eprintln!("the previous mapping stays in force; the lists above show it");
            Ok(ExitCode::from(2))
        }
    }
}

fn run_add(ctx: &Ctx, journal: &Journal, args: &MapAddArgs) -> anyhow::Result<ExitCode> {
    let target = match (&args.to, args.exclude, args.unmap) {
        (Some(to), false, false) => AddTarget::To(to.clone()),
        (None, true, false) => AddTarget::Exclude,
        (None, false, true) => AddTarget::Unmap,
        _ => {
            return Err(UsageError("give exactly one of --to, --exclude and --unmap".into()).into());
        }
    };
    let kind = match args.kind {
        MapKind::Account => Kind::Account,
        MapKind::Service => Kind::Service,
    };
    let request = AddRequest { kind, vendor: args.vendor.clone(), id: args.id.clone(), target };
    let added = match edit::add(journal, &ctx.config, &request) {
        Ok(added) => added,
        Err(e @ (EditError::Request(_) | EditError::Invalid(_))) => {
            return Err(UsageError(e.to_string()).into());
        }
        Err(e) => return Err(e.into()),
    };
    let what = match (&request.target, &added.target) {
        (_, Some((id, name))) => format!("{} {id} ({})", kind.target(), visible(name)),
        (AddTarget::Exclude, _) => "excluded".to_string(),
        _ => "unmapped".to_string(),
    };
    let verb = if added.replaced { "changed" } else { "added" };
    let applied = resolve::apply(journal, &ctx.config);
    match ctx.format {
        Format::Json => println!(
            "{}",
            json!({
                "file": added.file.display().to_string(),
                "kind": kind.as_str(),
                "vendor": request.vendor,
                "id": request.id,
                "target": added.target.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
                "excluded": request.target == AddTarget::Exclude,
                "unmapped": request.target == AddTarget::Unmap,
                "replaced": added.replaced,
                "applied": applied.as_ref().map_err(ToString::to_string).map(change_json).ok(),
                "error": applied.as_ref().err().map(ToString::to_string),
            })
        ),
        _ => println!(
            "{}: {verb} {} \"{}\" of vendor \"{}\" -> {what}",
            added.file.display(),
            kind.as_str(),
            request.id,
            request.vendor
        ),
    }
    match applied {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("the entry was written, but the mapping could not be applied"),
    }
}

fn change_json(change: &MappingChange) -> serde_json::Value {
    json!({
        "hash": change.hash,
        "file_entries": change.file_entries,
        "accounts_mapped": change.accounts_mapped,
        "services_mapped": change.services_mapped,
        "accounts_changed": change.accounts.len(),
        "services_changed": change.services.len(),
        "products_changed": change.products.len(),
    })
}

/// Everything the views read, from one read transaction.
struct State {
    known: Known,
    accounts: BTreeMap<String, Mapping>,
    services: BTreeMap<String, Mapping>,
    rules: Vec<(String, ProductRules)>,
    /// (vendor, account) and (vendor, service) → (usage counts, total quantity).
    account_usage: HashMap<(String, String), (u64, Decimal)>,
    service_usage: HashMap<(String, String), (u64, Decimal)>,
    file: Option<crate::model::MappingFileState>,
    setup: Vec<setup::SetupState>,
    names: Names,
}

/// Display names by id, so that listing thousands of mappings stays linear.
#[derive(Default)]
struct Names {
    companies: HashMap<String, String>,
    products: HashMap<String, String>,
    /// By `key2(vendor, id)`, as the mapping tables are keyed.
    accounts: HashMap<String, String>,
    services: HashMap<String, String>,
}

impl Names {
    fn of(known: &Known) -> Names {
        Names {
            companies: known.companies.iter().map(|c| (c.id.clone(), c.name.clone())).collect(),
            products: known
                .products
                .iter()
                .map(|p| (p.id.clone(), p.description.clone()))
                .collect(),
            accounts: known
                .accounts
                .iter()
                .map(|a| (key2(&a.vendor, &a.id), a.name.clone()))
                .collect(),
            services: known
                .services
                .iter()
                .map(|s| (key2(&s.vendor, &s.id), s.name.clone()))
                .collect(),
        }
    }
}

impl State {
    fn load(journal: &Journal, ctx: &Ctx) -> anyhow::Result<State> {
        let tx = journal.read()?;
        let known = Known::load(&tx, &ctx.config)?;
        let mut account_usage: HashMap<(String, String), (u64, Decimal)> = HashMap::new();
        let mut service_usage: HashMap<(String, String), (u64, Decimal)> = HashMap::new();
        tx.each(&USAGE, "", &mut |_, u| {
            for (map, id) in
                [(&mut account_usage, &u.account_id), (&mut service_usage, &u.service_id)]
            {
                let entry = map.entry((u.vendor.clone(), id.clone())).or_default();
                entry.0 += 1;
                entry.1 += u.quantity;
            }
            Ok(())
        })?;
        let setup = known
            .vendors
            .iter()
            .map(|v| setup::setup_state(journal, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(State {
            accounts: tx.scan(&ACCOUNT_MAPPINGS, "")?.into_iter().collect(),
            services: tx.scan(&SERVICE_MAPPINGS, "")?.into_iter().collect(),
            rules: tx.scan(&PRODUCT_RULES, "")?,
            account_usage,
            service_usage,
            file: resolve::file_state(journal)?,
            setup,
            names: Names::of(&known),
            known,
        })
    }

    fn company_name(&self, id: &str) -> String {
        self.names.companies.get(id).cloned().unwrap_or_default()
    }

    fn product_name(&self, id: &str) -> String {
        self.names.products.get(id).cloned().unwrap_or_default()
    }

    /// Every mapping row in force, with the vendor record's name.
    fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for (kind, table) in [(Kind::Account, &self.accounts), (Kind::Service, &self.services)] {
            for (key, mapping) in table {
                let (vendor, id) = key.split_once(SEP).unwrap_or((key, ""));
                let names = match kind {
                    Kind::Account => &self.names.accounts,
                    Kind::Service => &self.names.services,
                };
                let target_name = match (&mapping.target, kind) {
                    (Target::Id(t), Kind::Account) => self.company_name(t),
                    (Target::Id(t), Kind::Service) => self.product_name(t),
                    _ => String::new(),
                };
                rows.push(Row {
                    kind,
                    vendor: vendor.to_string(),
                    id: id.to_string(),
                    name: names.get(key).cloned().unwrap_or_default(),
                    target: match &mapping.target {
                        Target::Id(t) => Some(t.clone()),
                        _ => None,
                    },
                    target_name,
                    excluded: mapping.target == Target::Excluded,
                    unmapped: mapping.target == Target::Unmapped,
                    origin: match mapping.origin {
                        Origin::Auto => "auto",
                        Origin::File => "file",
                    },
                });
            }
        }
        rows
    }

    /// Accounts and services without a mapping to a PSA record (not excluded).
    fn unmapped(&self) -> Vec<Unmapped> {
        let mut out = Vec::new();
        let open = |table: &BTreeMap<String, Mapping>, vendor: &str, id: &str| {
            table.get(&key2(vendor, id)).is_none_or(|m| m.target == Target::Unmapped)
        };
        for a in &self.known.accounts {
            if open(&self.accounts, &a.vendor, &a.id) {
                let (counts, quantity) = self
                    .account_usage
                    .get(&(a.vendor.clone(), a.id.clone()))
                    .copied()
                    .unwrap_or_default();
                out.push(Unmapped {
                    kind: Kind::Account,
                    vendor: a.vendor.clone(),
                    id: a.id.clone(),
                    name: a.name.clone(),
                    usage_counts: counts,
                    usage_quantity: quantity,
                });
            }
        }
        for s in &self.known.services {
            if open(&self.services, &s.vendor, &s.id) {
                let (counts, quantity) = self
                    .service_usage
                    .get(&(s.vendor.clone(), s.id.clone()))
                    .copied()
                    .unwrap_or_default();
                out.push(Unmapped {
                    kind: Kind::Service,
                    vendor: s.vendor.clone(),
                    id: s.id.clone(),
                    name: s.name.clone(),
                    usage_counts: counts,
                    usage_quantity: quantity,
                });
            }
        }
        out
    }

    /// Suggestions for accounts and services with no mapping row at all (an explicit
    /// `unmap = true` is the user's decision and gets none).
    fn suggestions(&self) -> Vec<Suggestion> {
        let companies = NameIndex::companies(&self.known.companies, Lookups::Suggest);
        let products = NameIndex::products(&self.known.products, Lookups::Suggest);
        let accounts = self
            .known
            .accounts
            .iter()
            .filter(|a| !self.accounts.contains_key(&key2(&a.vendor, &a.id)));
        let services = self
            .known
            .services
            .iter()
            .filter(|s| !self.services.contains_key(&key2(&s.vendor, &s.id)));
        suggest::suggest(accounts, services, &companies, &products).items
    }
}

#[derive(Debug, Serialize)]
struct Row {
    kind: Kind,
    vendor: String,
    id: String,
    name: String,
    target: Option<String>,
    target_name: String,
    excluded: bool,
    unmapped: bool,
    origin: &'static str,
}

impl Row {
    fn target_text(&self) -> String {
        match &self.target {
            Some(id) => format!("{} {id} {}", self.kind.target(), visible(&self.target_name)),
            None if self.excluded => "excluded".to_string(),
            None => "unmapped (automatic match turned off)".to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Unmapped {
    kind: Kind,
    vendor: String,
    id: String,
    name: String,
    usage_counts: u64,
    usage_quantity: Decimal,
}

fn file_state_json(state: &State) -> serde_json::Value {
    match &state.file {
        Some(f) => json!({
            "path": f.path,
            "hash": f.hash,
            "loaded_at": f.loaded_at.map(crate::model::format_millis),
            "error": f.error,
            "error_at": f.error_at.map(crate::model::format_millis),
            "accounts_mapped": f.accounts_mapped,
            "services_mapped": f.services_mapped,
        }),
        None => serde_json::Value::Null,
    }
}

fn rules_json(rules: &ProductRules) -> serde_json::Value {
    json!({
        "rounding": rounding_word(rules.rounding),
        "whole_units": rules.whole_units,
        "max_auto_change_pct": rules.max_auto_change_pct,
        "max_auto_change_abs": rules.max_auto_change_abs,
        "never_auto_zero": rules.never_auto_zero,
        "require_stable_pulls": rules.require_stable_pulls,
        "apply": rules.apply,
    })
}

fn rounding_word(r: Rounding) -> &'static str {
    match r {
        Rounding::Exact => "exact",
        Rounding::Ceil => "ceil",
        Rounding::Round => "round",
    }
}

fn summary(state: &State, format: Format) -> anyhow::Result<String> {
    if format == Format::Json {
        return Ok(format!(
            "{}\n",
            json!({"mapping_file": file_state_json(state), "vendors": state.setup})
        ));
    }
    let mut out = String::new();
    if let Some(f) = &state.file {
        writeln!(out, "mapping file: {}", f.path)?;
        match &f.error {
            Some(e) => writeln!(out, "  not applied: {e}")?,
            None => writeln!(
                out,
                "  in force: {} accounts and {} services mapped",
                f.accounts_mapped, f.services_mapped
            )?,
        }
    }
    for s in &state.setup {
        let status = if s.configured { "configured" } else { "not configured" };
        writeln!(
            out,
            "vendor {}: {status}; {} of {} accounts and {} of {} services mapped; {} unmapped \
             usage counts",
            s.vendor,
            s.accounts_mapped,
            s.accounts,
            s.services_mapped,
            s.services,
            s.unmapped_usage
        )?;
        if let Some(reason) = &s.reason {
            writeln!(out, "  {reason}")?;
        }
    }
    writeln!(out, "see `tally map show`, `tally map unmapped` and `tally map suggest`")?;
    Ok(out)
}

fn show(state: &State, format: Format) -> anyhow::Result<String> {
    let rows = state.rows();
    match format {
        Format::Json => {
            let products: Vec<_> = state
                .rules
                .iter()
                .map(|(id, r)| {
                    json!({"product": id, "name": state.product_name(id), "rules": rules_json(r)})
                })
                .collect();
            let (accounts, services): (Vec<&Row>, Vec<&Row>) =
                rows.iter().partition(|r| r.kind == Kind::Account);
            Ok(format!(
                "{}\n",
                json!({
                    "mapping_file": file_state_json(state),
                    "accounts": accounts,
                    "services": services,
                    "products": products,
                })
            ))
        }
        Format::Toml => {
            let mut out = String::from("# every mapping in force; automatic ones are marked\n");
            for r in &rows {
                writeln!(out, "\n# {} ({})", visible(&r.name), r.origin)?;
                writeln!(out, "[[{}]]", r.kind.as_str())?;
                writeln!(out, "vendor = {}", toml_string(&r.vendor))?;
                writeln!(out, "id = {}", toml_string(&r.id))?;
                match &r.target {
                    Some(id) => writeln!(
                        out,
                        "{} = {}  # {}",
                        r.kind.target(),
                        toml_id(id),
                        visible(&r.target_name)
                    )?,
                    None if r.excluded => writeln!(out, "exclude = true")?,
                    None => writeln!(out, "unmap = true")?,
                }
            }
            for (id, rules) in &state.rules {
                writeln!(out, "\n# {}", visible(&state.product_name(id)))?;
                writeln!(out, "[[product]]\nproduct = {}", toml_id(id))?;
                write_rules(&mut out, rules)?;
            }
            Ok(out)
        }
        _ => {
            let mut table = vec![
                ["KIND", "VENDOR", "ID", "NAME", "MAPPED TO", "ORIGIN"].map(String::from).to_vec(),
            ];
            for r in &rows {
                table.push(vec![
                    r.kind.as_str().into(),
                    r.vendor.clone(),
                    r.id.clone(),
                    visible(&r.name),
                    r.target_text(),
                    r.origin.into(),
                ]);
            }
            let mut out = render(&table);
            if !state.rules.is_empty() {
                let mut rules = vec![["PRODUCT", "NAME", "RULES"].map(String::from).to_vec()];
                for (id, r) in &state.rules {
                    let mut text = String::new();
                    write_rules(&mut text, r)?;
                    rules.push(vec![
                        id.clone(),
                        visible(&state.product_name(id)),
                        text.trim().replace('\n', ", "),
                    ]);
                }
                out.push('\n');
                out.push_str(&render(&rules));
            }
            if rows.is_empty() && state.rules.is_empty() {
                out = "nothing is mapped yet; see `tally map suggest`\n".to_string();
            }
            Ok(out)
        }
    }
}

fn write_rules(out: &mut String, r: &ProductRules) -> std::fmt::Result {
    writeln!(out, "rounding = \"{}\"", rounding_word(r.rounding))?;
    if r.whole_units {
        writeln!(out, "whole_units = true")?;
    }
    if let Some(p) = r.max_auto_change_pct {
        writeln!(out, "max_auto_change_pct = {p}")?;
    }
    if let Some(a) = r.max_auto_change_abs {
        writeln!(out, "max_auto_change_abs = {a}")?;
    }
    if r.never_auto_zero {
        writeln!(out, "never_auto_zero = true")?;
    }
    if r.require_stable_pulls > 0 {
        writeln!(out, "require_stable_pulls = {}", r.require_stable_pulls)?;
    }
    if let Some(apply) = &r.apply {
        writeln!(out, "apply = \"{apply}\"")?;
    }
    Ok(())
}

fn unmapped(state: &State, format: Format) -> anyhow::Result<String> {
    let items = state.unmapped();
    match format {
        Format::Json => {
            let (accounts, services): (Vec<&Unmapped>, Vec<&Unmapped>) =
                items.iter().partition(|u| u.kind == Kind::Account);
            Ok(format!("{}\n", json!({"accounts": accounts, "services": services})))
        }
        Format::Toml => {
            let mut out =
                String::from("# unmapped accounts and services: fill in each target, or exclude\n");
            for u in &items {
                writeln!(
                    out,
                    "\n# {} ({} unmapped usage counts)",
                    visible(&u.name),
                    u.usage_counts
                )?;
                writeln!(out, "[[{}]]", u.kind.as_str())?;
                writeln!(out, "vendor = {}", toml_string(&u.vendor))?;
                writeln!(out, "id = {}", toml_string(&u.id))?;
                writeln!(out, "# {} = ", u.kind.target())?;
                writeln!(out, "# exclude = true")?;
            }
            Ok(out)
        }
        _ => {
            if items.is_empty() {
                return Ok("every account and service is mapped or excluded\n".to_string());
            }
            let mut table =
                vec![["KIND", "VENDOR", "ID", "NAME", "UNMAPPED USAGE"].map(String::from).to_vec()];
            for u in &items {
                let usage = if u.usage_counts == 0 {
                    "-".to_string()
                } else {
                    format!("{} counts, {} units", u.usage_counts, u.usage_quantity.normalize())
                };
                table.push(vec![
                    u.kind.as_str().into(),
                    u.vendor.clone(),
                    u.id.clone(),
                    visible(&u.name),
                    usage,
                ]);
            }
            Ok(render(&table))
        }
    }
}

fn suggestions(state: &State, format: Format) -> anyhow::Result<String> {
    let items = state.suggestions();
    match format {
        Format::Json => Ok(format!("{}\n", json!({"suggestions": items}))),
        Format::Toml => {
            if items.is_empty() {
                return Ok("# no suggestions: nothing unmapped resembles a PSA company or \
                           product\n"
                    .to_string());
            }
            let mut out = String::from(
                "# suggestions: check each one, then paste it into the mapping file\n",
            );
            for s in &items {
                writeln!(out, "\n# {} \"{}\"", s.kind.as_str(), visible(&s.name))?;
                for c in &s.candidates {
                    writeln!(
                        out,
                        "#   {} {} \"{}\": {} (score {})",
                        s.kind.target(),
                        c.id,
                        visible(&c.name),
                        c.reasons.join(", "),
                        c.score
                    )?;
                }
                let comment = if s.ambiguous { "# " } else { "" };
                if s.ambiguous {
                    writeln!(
                        out,
                        "# several {} fit equally well: choose one, then uncomment",
                        s.kind.targets()
                    )?;
                }
                writeln!(out, "{comment}[[{}]]", s.kind.as_str())?;
                writeln!(out, "{comment}vendor = {}", toml_string(&s.vendor))?;
                writeln!(out, "{comment}id = {}", toml_string(&s.id))?;
                let best = &s.candidates[0];
                writeln!(
                    out,
                    "{comment}{} = {}  # {}",
                    s.kind.target(),
                    toml_id(&best.id),
                    visible(&best.name)
                )?;
            }
            Ok(out)
        }
        _ => {
            if items.is_empty() {
                return Ok("no suggestions: nothing unmapped resembles a PSA company or product\n"
                    .to_string());
            }
            let mut table = vec![
                ["KIND", "VENDOR", "ID", "NAME", "SUGGESTED", "SCORE", "WHY"]
                    .map(String::from)
                    .to_vec(),
            ];
            for s in &items {
                for (i, c) in s.candidates.iter().enumerate() {
                    let (kind, vendor, id, name) = if i == 0 {
                        (
                            s.kind.as_str().to_string(),
                            s.vendor.clone(),
                            s.id.clone(),
                            visible(&s.name),
                        )
                    } else {
                        Default::default()
                    };
                    table.push(vec![
                        kind,
                        vendor,
                        id,
                        name,
                        format!("{} {}", c.id, visible(&c.name)),
                        c.score.to_string(),
                        c.reasons.join(", "),
                    ]);
                }
            }
            Ok(render(&table))
        }
    }
}

/// A TOML string literal.
fn toml_string(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

/// An id as the mapping file writes it: a bare integer when it is one, else a string.
fn toml_id(id: &str) -> String {
    match id.parse::<i64>() {
        Ok(n) if n.to_string() == id => n.to_string(),
        _ => toml_string(id),
    }
}

/// Left-aligned columns, two spaces apart.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r.get(c).map_or(0, |s| s.chars().count())).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
