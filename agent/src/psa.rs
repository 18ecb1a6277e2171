//! The configured PSA: finding its plugin, opening a session with the resolved settings, and
//! presenting that session to the sync engine.
//!
//! This is the one place that joins the config, the plugin host and the engine. It resolves
//! `${VAR}` secrets only here, at the moment they are needed, and never logs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tally_plugin_sdk as sdk;

use crate::config::{Config, ConfigError};
use crate::plugin::{self, LoadedPlugin, PluginSession, SessionOptions};
use crate::sync::psa::{Page, Psa, PsaError};

/// Finds the PSA plugin named in the config. Without `plugin_dir`, a development build also
/// looks in the `deps` directory beside the executable, where cargo leaves plugin libraries
/// built as dependencies of `tally`.
pub fn find_plugin(config: &Config, name: &str) -> anyhow::Result<Arc<LoadedPlugin>> {
    let dir = plugin::discovery::plugin_dir(config)?;
    let catalog = plugin::discovery::discover(&dir)?;
    match catalog.get(name) {
        Ok(found) => Ok(found),
        Err(missing) => {
            if config.plugin_dir.is_none()
                && let Some(path) = dev_build_library(&dir, name)
            {
                return plugin::library::load(&path)
                    .with_context(|| format!("cannot load {}", path.display()));
            }
            Err(missing.into())
        }
    }
}

fn dev_build_library(dir: &Path, name: &str) -> Option<PathBuf> {
    let file =
        format!("{}tally_{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let path = dir.join("deps").join(file);
    path.is_file().then_some(path)
}

/// Opens a session with the configured PSA. Configuration problems are `ConfigError`s
/// (exit code 2).
pub fn open(config: &Config) -> anyhow::Result<PluginSession> {
    let psa = config.psa.as_ref().ok_or_else(|| ConfigError {
        file: config.file.clone(),
        line: 0,
        column: 0,
        key: Some("psa".into()),
        message: "no [psa] section: name the PSA plugin and its settings (`tally init` writes an \
                  example)"
            .into(),
    })?;
    let settings = config.resolved_psa_settings()?;
    let plugin = find_plugin(config, &psa.plugin)?;
    if plugin.handshake().kind != sdk::PluginKind::Psa {
        return Err(crate::cli::UsageError(format!(
            "plugin \"{}\" is a vendor plugin, not a PSA plugin; check `psa.plugin`",
            psa.plugin
        ))
        .into());
    }
    PluginSession::open(plugin, &settings, SessionOptions::for_psa(psa)).map_err(|e| {
        if e.is_configuration() {
            anyhow::Error::new(crate::cli::UsageError(e.to_string()))
        } else {
            e.into()
        }
    })
}

fn convert(error: plugin::HostError) -> PsaError {
    use crate::http::HttpError;
    use plugin::HostError;
    match error {
        HostError::Failed { error, .. } | HostError::Config { error, .. } => {
            PsaError::Plugin(error)
        }
        HostError::Http { source: HttpError::Transport { .. }, .. } => {
            PsaError::Transport(error.to_string())
        }
        other => PsaError::Host(other.to_string()),
    }
}

impl Psa for PluginSession {
    fn handshake(&self) -> &sdk::Handshake {
        self.plugin().handshake()
    }

    async fn run(
        &self,
        operation: sdk::Operation,
        on_page: &mut (dyn FnMut(Page) -> anyhow::Result<()> + Send),
    ) -> Result<sdk::OpResult, PsaError> {
        let outcome = PluginSession::run(self, operation, |page: plugin::Page| {
            on_page(Page { records: page.records, checkpoint: page.checkpoint, last: page.last })
        })
        .await
        .map_err(convert)?;
        Ok(outcome.result)
    }

    fn requests(&self) -> u64 {
        self.requests_sent()
    }
}
