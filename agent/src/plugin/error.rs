//! What can go wrong between the host and a plugin, as values a caller can decide on.
//!
//! [`LoadError`] says why a file in the plugin directory is not a usable plugin; `tally
//! plugins` prints it as the refusal reason. [`HostError`] says why a session or an operation
//! did not complete. Messages name the plugin (or file), the reason and, where there is one,
//! the fix. Nothing here may carry a secret: session code redacts plugin messages before they
//! become errors.

use std::path::PathBuf;

use tally_plugin_sdk::PluginError;

use crate::http::HttpError;

/// Why a file is not loaded as a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Unreadable(String),
    /// Refused before loading, because loading runs the library's code.
    #[error("unsafe permissions: {0}")]
    UnsafePermissions(String),
    #[error("not a shared library: {0}")]
    NotALibrary(String),
    #[error("not a tally plugin: it does not export `{symbol}`")]
    MissingSymbol { symbol: &'static str },
    #[error(
        "ABI mismatch: plugin ABI {plugin}, this tally speaks {host}; rebuild the plugin against \
         this tally's plugin SDK"
    )]
    AbiMismatch { plugin: u32, host: u32 },
    #[error("malformed handshake: {0}")]
    MalformedHandshake(String),
    #[error(
        "duplicate plugin name \"{name}\": {this} and {first} both provide it; {first} is \
         loaded, remove the other"
    )]
    DuplicateName { name: String, this: PathBuf, first: PathBuf },
}

/// Why a session or an operation did not complete.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The settings do not match the plugin's settings schema (checked before the plugin sees
    /// them). Each problem names the setting.
    #[error("plugin \"{plugin}\": invalid settings: {}", problems.join("; "))]
    Settings { plugin: String, problems: Vec<String> },
    /// The plugin refused the settings, or the probe that checks them failed (case C10).
    /// `error.field` names the setting in full (`psa.settings.token`), or the settings section
    /// when the plugin did not name one.
    #[error("plugin \"{plugin}\": the settings do not work: {error}")]
    Config { plugin: String, error: PluginError },
    /// An operation ended with a final failure the plugin reported.
    #[error("plugin \"{plugin}\": {operation} failed: {error}")]
    Failed { plugin: String, operation: String, error: PluginError },
    /// The plugin answered something that is not a valid reply to the call.
    #[error("plugin \"{plugin}\" gave a malformed reply to `{call}`: {detail}")]
    Malformed { plugin: String, call: &'static str, detail: String },
    /// A request could not be sent or answered.
    #[error("plugin \"{plugin}\": {operation}: {source}")]
    Http {
        plugin: String,
        operation: String,
        #[source]
        source: HttpError,
    },
    /// The caller's page handler failed; the operation stopped before its next request.
    #[error("plugin \"{plugin}\": {operation}: the page could not be stored: {source:#}")]
    Page { plugin: String, operation: String, source: anyhow::Error },
}

impl HostError {
    /// Whether the fix is in the configuration (exit code 2), not in trying again.
    pub fn is_configuration(&self) -> bool {
        matches!(self, HostError::Settings { .. } | HostError::Config { .. })
    }

    /// The dotted setting a configuration error is about (`psa.settings.site`), or its
    /// section (`psa.settings`): of several problems, the one that names a setting deepest.
    pub fn setting_path(&self) -> Option<&str> {
        match self {
            HostError::Settings { problems, .. } => problems
                .iter()
                .filter_map(|p| p.split_once(": ").map(|(path, _)| path))
                .max_by_key(|path| path.matches('.').count()),
            HostError::Config { error, .. } => error.field.as_deref(),
            _ => None,
        }
    }

    /// The plugin's own error, when it reported one.
    pub fn plugin_error(&self) -> Option<&PluginError> {
        match self {
            HostError::Config { error, .. } | HostError::Failed { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A plugin name that no loaded plugin has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no plugin named \"{name}\" in {dir}{loaded}{refused}; put the plugin library there or set \
     `plugin_dir` in the config",
    dir = dir.display(),
    loaded = if loaded.is_empty() { String::new() } else { format!(" (loaded: {})", loaded.join(", ")) },
    refused = if refused.is_empty() { String::new() } else { format!(" (refused: {})", refused.join("; ")) }
)]
pub struct PluginNotFound {
    pub name: String,
    pub dir: PathBuf,
    pub loaded: Vec<String>,
    /// Refused files with their reasons: the wanted plugin may be among them.
    pub refused: Vec<String>,
}
