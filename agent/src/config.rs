//! The configuration file (`tally.toml`): its shape, loading, and the errors a user sees.
//!
//! A config is read whole and checked before anything acts on it: unknown keys and wrong types
//! are errors naming file, line, column and key. Secrets may be written as `${ENV_VAR}`; those
//! references are resolved only when the settings are used, so `tally report` works without the
//! PSA's secrets in the environment, and a missing variable is reported at its line. This
//! module never logs a resolved secret.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default config file name, looked up in the working directory.
pub const DEFAULT_FILE: &str = "tally.toml";

/// A configuration problem: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    journal: Option<String>,
    mapping: Option<String>,
    plugin_dir: Option<String>,
    #[serde(default)]
    agent: AgentConfig,
    psa: Option<RawPsa>,
    #[serde(default)]
    vendor: Vec<VendorConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPsa {
    plugin: String,
    #[serde(default)]
    apply: ApplyPolicy,
    #[serde(default = "default_hold")]
    hold_reductions_over: rust_decimal::Decimal,
    #[serde(default)]
    settings: toml::Table,
    max_concurrency: Option<u32>,
    requests_per_minute: Option<u32>,
}

fn default_hold() -> rust_decimal::Decimal {
    rust_decimal::Decimal::from(20)
}

/// `[agent]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub listen: String,
    pub quick_sync_every: String,
    pub full_sync_every: String,
    /// How far back an incremental listing re-reads (case C17).
    pub lookback: String,
    /// A full listing that would retire more than this share of a stream waits for `--confirm`.
    pub retire_guard_percent: u32,
    /// Where the local admin token lives; default: next to the journal.
    pub admin_token_file: Option<String>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            listen: "127.0.0.1:8737".to_string(),
            quick_sync_every: "1h".to_string(),
            full_sync_every: "7d".to_string(),
            lookback: "10m".to_string(),
            retire_guard_percent: 50,
            admin_token_file: None,
        }
    }
}

/// How changes reach the PSA.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyPolicy {
    /// Report only.
    #[default]
    None,
    /// Apply increases; hold reductions for approval.
    Increases,
    /// Apply both; hold a reduction larger than `hold_reductions_over` percent.
    All,
}

impl ApplyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyPolicy::None => "none",
            ApplyPolicy::Increases => "increases",
            ApplyPolicy::All => "all",
        }
    }
}

/// Where a vendor's usage comes from.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VendorSource {
    Push,
    Csv,
    Plugin,
}

/// `[[vendor]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VendorConfig {
    pub name: String,
    pub source: VendorSource,
    pub plugin: Option<String>,
    /// CSV header names, for `source = "csv"`.
    #[serde(default)]
    pub csv: CsvColumns,
    #[serde(default)]
    pub settings: toml::Table,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CsvColumns {
    pub account_id: String,
    pub account_name: String,
    pub service: String,
    pub quantity: String,
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            account_id: "account_id".to_string(),
            account_name: "account_name".to_string(),
            service: "service".to_string(),
            quantity: "quantity".to_string(),
        }
    }
}

/// `[psa]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PsaConfig {
    pub plugin: String,
    pub apply: ApplyPolicy,
    pub hold_reductions_over: rust_decimal::Decimal,
    /// The plugin's settings with `${VAR}` references still in place.
    pub settings: serde_json::Value,
    pub max_concurrency: Option<u32>,
    pub requests_per_minute: Option<u32>,
}

/// A `${VAR}` reference and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvRef {
    pub var: String,
    pub key: String,
    pub line: usize,
    pub column: usize,
}

/// A loaded, checked configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it came from (or where it would be, for the defaults).
    pub file: PathBuf,
    pub journal: PathBuf,
    pub mapping: PathBuf,
    pub plugin_dir: Option<PathBuf>,
    pub agent: AgentConfig,
    pub psa: Option<PsaConfig>,
    pub vendors: Vec<VendorConfig>,
    pub env_refs: Vec<EnvRef>,
    pub quick_sync_every: Duration,
    pub full_sync_every: Duration,
    pub lookback: Duration,
}

impl Config {
    /// Loads `path`. A missing file gives the defaults only when `required` is false.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
            Err(e) => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    key: None,
                    message: format!(
                        "cannot read the config file: {e}. Run `tally init` to write one, or pass \
                         --config"
                    ),
                });
            }
        };
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, key: Option<String>, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError { file: path.to_path_buf(), line, column, key, message }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let key = key_at(text, e.span().map(|s| s.start));
            err(e.span(), key, explain(&message))
        })?;
        let env_refs = find_env_refs(text);

        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() { p } else { base.join(p) }
        };
        let span_of = |key: &str| find_key_span(text, key);
        let duration = |key: &str, value: &str| {
            parse_duration(value).ok_or_else(|| {
                err(
                    span_of(key),
                    Some(format!("agent.{key}")),
                    format!(
                        "\"{value}\" is not a duration; write a number and a unit, such as \"30s\", \
                         \"10m\", \"1h\" or \"7d\""
                    ),
                )
            })
        };
        let quick_sync_every = duration("quick_sync_every", &raw.agent.quick_sync_every)?;
        let full_sync_every = duration("full_sync_every", &raw.agent.full_sync_every)?;
        for (key, value, every) in [
            ("quick_sync_every", &raw.agent.quick_sync_every, quick_sync_every),
            ("full_sync_every", &raw.agent.full_sync_every, full_sync_every),
        ] {
            if every < Duration::from_secs(60) {
                return Err(err(
                    span_of(key),
                    Some(format!("agent.{key}")),
                    format!(
                        "\"{value}\" is too often: syncs run at most once a minute, so the PSA is \
                         not flooded; write \"1m\" or more"
                    ),
                ));
            }
        }
        let lookback = duration("lookback", &raw.agent.lookback)?;
        if raw.agent.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(
                span_of("listen"),
                Some("agent.listen".to_string()),
                format!(
                    "\"{}\" is not an address and port; write one such as \"127.0.0.1:8737\"",
                    raw.agent.listen
                ),
            ));
        }
        if raw.agent.retire_guard_percent > 100 {
            return Err(err(
                span_of("retire_guard_percent"),
                Some("agent.retire_guard_percent".to_string()),
                format!(
                    "{} is not a percentage; write a number from 0 to 100",
                    raw.agent.retire_guard_percent
                ),
            ));
        }
        if let Some(psa) = &raw.psa
            && !(rust_decimal::Decimal::ZERO..=rust_decimal::Decimal::ONE_HUNDRED)
                .contains(&psa.hold_reductions_over)
        {
            return Err(err(
                span_of("hold_reductions_over"),
                Some("psa.hold_reductions_over".to_string()),
                format!(
                    "{} is not a percentage; write a number from 0 to 100",
                    psa.hold_reductions_over
                ),
            ));
        }
        let psa = match raw.psa {
            Some(psa) => Some(PsaConfig {
                plugin: psa.plugin,
                apply: psa.apply,
                hold_reductions_over: psa.hold_reductions_over,
                settings: toml_to_json(toml::Value::Table(psa.settings)),
                max_concurrency: psa.max_concurrency,
                requests_per_minute: psa.requests_per_minute,
            }),
            None => None,
        };
        let mut names = std::collections::HashSet::new();
        for vendor in &raw.vendor {
            if !names.insert(vendor.name.clone()) {
                return Err(err(
                    find_value_span(text, &vendor.name),
                    Some("vendor.name".to_string()),
                    format!(
                        "vendor \"{}\" is configured twice; give each [[vendor]] its own name",
                        vendor.name
                    ),
                ));
            }
            if vendor.source == VendorSource::Plugin && vendor.plugin.is_none() {
                return Err(err(
                    find_value_span(text, &vendor.name),
                    Some("vendor.plugin".to_string()),
                    format!(
                        "vendor \"{}\" has source = \"plugin\" but no `plugin = \"NAME\"`",
                        vendor.name
                    ),
                ));
            }
        }
        Ok(Config {
            file: path.to_path_buf(),
            journal: resolve(raw.journal.as_deref().unwrap_or("tally.redb")),
            mapping: resolve(raw.mapping.as_deref().unwrap_or("mapping.toml")),
            plugin_dir: raw.plugin_dir.as_deref().map(resolve),
            agent: raw.agent,
            psa,
            vendors: raw.vendor,
            env_refs,
            quick_sync_every,
            full_sync_every,
            lookback,
        })
    }

    /// The PSA settings with every `${VAR}` replaced from the environment.
    pub fn resolved_psa_settings(&self) -> Result<serde_json::Value, ConfigError> {
        let Some(psa) = &self.psa else {
            return Err(ConfigError {
                file: self.file.clone(),
                line: 0,
                column: 0,
                key: Some("psa".to_string()),
                message: "no [psa] section; add one naming the PSA plugin and its settings \
                          (`tally init` writes an example)"
                    .to_string(),
            });
        };
        // Every missing variable at once, so one round of fixing is enough.
        let missing: Vec<&EnvRef> = self
            .env_refs
            .iter()
            .filter(|r| r.key.starts_with("psa.settings.") && std::env::var(&r.var).is_err())
            .collect();
        if let Some(first) = missing.first() {
            let others: Vec<String> = missing[1..]
                .iter()
                .map(|r| format!("{} (line {}, `{}`)", r.var, r.line, r.key))
                .collect();
            return Err(ConfigError {
                file: self.file.clone(),
                line: first.line,
                column: first.column,
                key: Some(first.key.clone()),
                message: format!(
                    "environment variable {} is not set{}; export {} (for a service, in its \
                     environment file) or write the values here and make the file readable only \
                     by its owner",
                    first.var,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(", nor {}", others.join(", "))
                    },
                    if others.is_empty() { "it" } else { "them" }
                ),
            });
        }
        let mut settings = psa.settings.clone();
        self.resolve_env(&mut settings, "psa.settings")?;
        Ok(settings)
    }

    fn resolve_env(&self, value: &mut serde_json::Value, key: &str) -> Result<(), ConfigError> {
        match value {
            serde_json::Value::String(s) if s.contains("${") => {
                *s = substitute(s, |var| {
                    std::env::var(var).map_err(|_| {
                        let at = self.env_refs.iter().find(|r| r.var == var);
                        ConfigError {
                            file: self.file.clone(),
                            line: at.map(|r| r.line).unwrap_or(0),
                            column: at.map(|r| r.column).unwrap_or(0),
                            key: Some(at.map(|r| r.key.clone()).unwrap_or(key.to_string())),
                            message: format!(
                                "environment variable {var} is not set; export it (for a \
                                     service, in its environment file) or write the value here \
                                     and make the file readable only by its owner"
                            ),
                        }
                    })
                })?;
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.resolve_env(item, key)?;
                }
            }
            serde_json::Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    self.resolve_env(v, &format!("{key}.{k}"))?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Settings that hold a literal secret while the file is readable by others.
    pub fn permission_warning(&self) -> Option<String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.file).ok()?.permissions().mode();
            let psa = self.psa.as_ref()?;
            let literal_secret = psa.settings.as_object()?.iter().any(|(k, v)| {
                let secretish = ["key", "secret", "password", "token", "client_id"]
                    .iter()
                    .any(|w| k.to_ascii_lowercase().contains(w));
                secretish && v.as_str().is_some_and(|s| !s.is_empty() && !s.contains("${"))
            });
            if literal_secret && mode & 0o077 != 0 {
                return Some(format!(
                    "{}: holds secrets but is readable by other users (mode {:o}); run chmod 600 {}",
                    self.file.display(),
                    mode & 0o777,
                    self.file.display()
                ));
            }
        }
        None
    }

    pub fn vendor(&self, name: &str) -> Option<&VendorConfig> {
        self.vendors.iter().find(|v| v.name == name)
    }
}

fn substitute(
    s: &str,
    mut lookup: impl FnMut(&str) -> Result<String, ConfigError>,
) -> Result<String, ConfigError> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&lookup(&after[..end])?);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the dotted `key` (`psa.settings.site`) is written in the config file: the key itself,
/// else the nearest table above it that is written; `(0, 0)` when the file does not say.
pub fn locate(file: &Path, key: &str) -> (usize, usize) {
    let Ok(text) = std::fs::read_to_string(file) else { return (0, 0) };
    let Ok(doc) = toml_edit::Document::parse(text.as_str()) else { return (0, 0) };
    let mut span = None;
    let mut item = doc.as_item();
    for segment in key.split('.') {
        let Some(table) = item.as_table_like() else { break };
        let Some((k, next)) = table.get_key_value(segment) else { break };
        span = k.span().or_else(|| next.as_table().and_then(|t| t.span())).or(span);
        item = next;
    }
    span.map(|s| line_col(&text, s.start)).unwrap_or((0, 0))
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The key written at the start of the line holding `offset`, if any.
fn key_at(text: &str, offset: Option<usize>) -> Option<String> {
    let offset = offset?.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| key.to_string())
}

fn explain(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove the key or correct its spelling")
    } else if message.starts_with("invalid type") {
        format!("{message}; see schemas/config.schema.json for each key's type")
    } else if message.starts_with("unknown variant") {
        format!("{message}; use one of the listed values")
    } else {
        message.to_string()
    }
}

fn find_key_span(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = offset + (line.len() - trimmed.len());
            return Some(start..start + key.len());
        }
        offset += line.len();
    }
    None
}

fn find_value_span(text: &str, value: &str) -> Option<std::ops::Range<usize>> {
    let quoted = format!("\"{value}\"");
    text.find(&quoted).map(|i| i..i + quoted.len())
}

/// Every `${VAR}` in a string value, with the dotted key and position where it is written.
fn find_env_refs(text: &str) -> Vec<EnvRef> {
    let mut refs = Vec::new();
    let Ok(doc) = toml_edit::Document::parse(text) else {
        return refs;
    };
    fn walk(item: &toml_edit::Item, path: &str, text: &str, refs: &mut Vec<EnvRef>) {
        match item {
            toml_edit::Item::Table(table) => {
                for (k, v) in table.iter() {
                    walk(v, &join(path, k), text, refs);
                }
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                for table in tables.iter() {
                    for (k, v) in table.iter() {
                        walk(v, &join(path, k), text, refs);
                    }
                }
            }
            toml_edit::Item::Value(value) => walk_value(value, path, text, refs),
            toml_edit::Item::None => {}
        }
    }
    fn walk_value(value: &toml_edit::Value, path: &str, text: &str, refs: &mut Vec<EnvRef>) {
        match value {
            toml_edit::Value::String(s) => {
                let mut rest = s.value().as_str();
                while let Some(start) = rest.find("${") {
                    let after = &rest[start + 2..];
                    let Some(end) = after.find('}') else { break };
                    let (line, column) =
                        value.span().map(|sp| line_col(text, sp.start)).unwrap_or((0, 0));
                    refs.push(EnvRef {
                        var: after[..end].to_string(),
                        key: path.to_string(),
                        line,
                        column,
                    });
                    rest = &after[end + 1..];
                }
            }
            toml_edit::Value::Array(items) => {
                for item in items.iter() {
                    walk_value(item, path, text, refs);
                }
            }
            toml_edit::Value::InlineTable(table) => {
                for (k, v) in table.iter() {
                    walk_value(v, &join(path, k), text, refs);
                }
            }
            _ => {}
        }
    }
    fn join(path: &str, key: &str) -> String {
        if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
    }
    walk(doc.as_item(), "", text, &mut refs);
    refs
}

pub fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(table) => serde_json::Value::Object(
            table.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect(),
        ),
    }
}

/// "30s", "10m", "1h", "7d" (and combinations such as "1h30m").
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    if !number.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// The commented starter config `tally init` writes.
pub const STARTER: &str = r#"# tally configuration. Reference: schemas/config.schema.json and `tally --help`.
# Paths are relative to this file.

journal = "tally.redb"      # the local database: vendor usage, PSA records, outbox, audit
mapping = "mapping.toml"    # vendor accounts and services -> PSA companies and products
# plugin_dir = "/usr/lib/tally/plugins"   # default: next to the tally executable

[agent]
listen = "127.0.0.1:8737"   # vendor intake API and status; loopback unless you need more
quick_sync_every = "1h"     # incremental PSA sync
full_sync_every = "7d"      # full PSA sync: the backstop that finds deleted records
lookback = "10m"            # incremental reads re-read this far back, so late rows are not missed

[psa]
plugin = "connectwise"
apply = "none"              # none (report only) | increases | all
hold_reductions_over = 20   # percent: larger reductions wait for `tally approve`

[psa.settings]              # the plugin's own settings (`tally plugins` shows each schema)
site = "https://api-na.myconnectwise.net"   # http:// is accepted for loopback only
company_id = "acme"
public_key = "${CW_PUBLIC_KEY}"
private_key = "${CW_PRIVATE_KEY}"
client_id = "${CW_CLIENT_ID}"
# codebase = "v4_6_release/"   # found with /login/companyinfo when left out

[[vendor]]
name = "safedns"
source = "push"             # push (vendor API) | csv (`tally import`) | plugin
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("7"), None);
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn starter_config_parses() {
        let config = Config::parse(Path::new("/etc/tally/tally.toml"), STARTER).unwrap();
        assert_eq!(config.journal, PathBuf::from("/etc/tally/tally.redb"));
        assert_eq!(config.env_refs.len(), 3);
        assert_eq!(config.env_refs[0].key, "psa.settings.public_key");
    }
}
