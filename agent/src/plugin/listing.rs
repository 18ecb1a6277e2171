//! `tally plugins`: the loaded plugins and the refused files, as a table or one JSON document.
//!
//! It lists what a scan of the plugin directory finds, so its answer is exactly what `tally
//! sync` and `tally run` would load. It prints and exits 0 whether or not files were refused:
//! a refusal is information here, not a failure. It never opens a session.

use std::io::Write as _;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::discovery::{self, Catalog};
use super::library::LoadedPlugin;
use crate::cli::{Ctx, Format, UsageError};

/// Runs `tally plugins`.
pub fn command(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    ctx.formats("plugins", &[Format::Table, Format::Json])?;
    let dir = discovery::plugin_dir(&ctx.config)?;
    if ctx.config.plugin_dir.is_some() && !dir.is_dir() {
        return Err(UsageError(format!(
            "{}: `plugin_dir` {} is not a directory; create it or correct the setting",
            ctx.config.file.display(),
            dir.display()
        ))
        .into());
    }
    let catalog = crate::psa::catalog(&ctx.config)?;
    let text = match ctx.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&to_json(&catalog))?),
        _ => to_table(&catalog),
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The JSON document of `tally plugins --format json`.
pub fn to_json(catalog: &Catalog) -> Value {
    json!({
        "plugin_dir": catalog.dir,
        "loaded": catalog.loaded.iter().map(|p| plugin_json(p)).collect::<Vec<_>>(),
        "refused": catalog.refused.iter().map(|r| json!({
            "path": r.path,
            "reason": r.reason.to_string(),
        })).collect::<Vec<_>>(),
    })
}

fn plugin_json(plugin: &LoadedPlugin) -> Value {
    let h = plugin.handshake();
    json!({
        "name": h.name,
        "version": h.version,
        "kind": h.kind,
        "abi_version": h.abi_version,
        "sdk_version": h.build.sdk_version,
        "compiler": h.build.compiler,
        "path": plugin.path(),
        "streams": h.streams,
        "capabilities": h.capabilities,
        "quantity_writes": h.quantity_writes,
        "limits": h.limits,
        "settings_schema": h.settings_schema,
        "secret_settings": h.secret_settings,
    })
}

/// The human-readable listing.
pub fn to_table(catalog: &Catalog) -> String {
    let mut out = format!(
        "plugin directory: {} ({} loaded, {} refused)\n",
        catalog.dir.display(),
        catalog.loaded.len(),
        catalog.refused.len()
    );
    for plugin in &catalog.loaded {
        let h = plugin.handshake();
        out.push_str(&format!(
            "\n{} {}  {}  ABI {}  SDK {}\n",
            h.name,
            h.version,
            as_word(&json!(h.kind)),
            h.abi_version,
            h.build.sdk_version
        ));
        out.push_str(&format!("  path          {}\n", plugin.path().display()));
        let streams: Vec<String> = h
            .streams
            .iter()
            .map(|s| {
                let mode = if s.incremental { "incremental" } else { "full" };
                format!("{} ({}, {mode})", s.name, as_word(&json!(s.record)))
            })
            .collect();
        out.push_str(&format!("  streams       {}\n", or_none(&streams.join(", "))));
        let capabilities: Vec<String> = h.capabilities.iter().map(|c| as_word(&json!(c))).collect();
        out.push_str(&format!("  capabilities  {}\n", or_none(&capabilities.join(", "))));
        out.push_str(&format!("  settings      {}\n", or_none(&settings_summary(h))));
    }
    if !catalog.refused.is_empty() {
        out.push_str("\nrefused:\n");
        for refused in &catalog.refused {
            out.push_str(&format!("  {}: {}\n", refused.path.display(), refused.reason));
        }
    }
    out
}

/// `site (required), token (required, secret)` from the settings schema.
fn settings_summary(h: &tally_plugin_sdk::Handshake) -> String {
    let schema = &h.settings_schema;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return String::new();
    };
    properties
        .keys()
        .map(|name| {
            let mut notes = Vec::new();
            if required.contains(&name.as_str()) {
                notes.push("required");
            }
            if h.secret_settings.contains(name) {
                notes.push("secret");
            }
            if notes.is_empty() { name.clone() } else { format!("{name} ({})", notes.join(", ")) }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn as_word(value: &Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string())
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}
