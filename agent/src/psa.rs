//! The configured PSA: finding its plugin, opening a session with the resolved settings, and
//! presenting that session to the sync engine.
//!
//! This is the one place that joins the config, the plugin host and the engine. It resolves
//! `${VAR}` secrets only here, at the moment they are needed, and never logs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tally_plugin_sdk as sdk;

use crate::config::{Config, ConfigError};
use crate::plugin::{self, LoadedPlugin, PluginSession, SessionOptions};
use crate::sync::psa::{Page, Psa, PsaError};

/// The plugins tally would load: a scan of `plugin_dir`, or of the executable's directory.
/// Without `plugin_dir`, a development build also loads the workspace's plugins from `deps`
/// beside the executable, where cargo leaves the libraries it built as dependencies of `tally`
/// (only those named `tally_*`, never the rest of `deps`), except those whose file the
/// directory itself holds (cargo copies a plugin there when it was built on its own).
pub fn catalog(config: &Config) -> anyhow::Result<plugin::Catalog> {
    let dir = plugin::discovery::plugin_dir(config)?;
    let mut catalog = plugin::discovery::discover(&dir)?;
    if config.plugin_dir.is_none() {
        for path in dev_build_libraries(&dir) {
            match plugin::library::load(&path) {
                Ok(loaded) => catalog.loaded.push(loaded),
                Err(reason) => catalog.refused.push(plugin::Refused { path, reason }),
            }
        }
    }
    Ok(catalog)
}

/// Finds the PSA plugin named in the config (see [`catalog`]).
pub fn find_plugin(config: &Config, name: &str) -> anyhow::Result<Arc<LoadedPlugin>> {
    Ok(catalog(config)?.get(name)?)
}

/// The `tally_*` libraries in `dir/deps` whose file `dir` does not hold itself.
fn dev_build_libraries(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}tally_", std::env::consts::DLL_PREFIX);
    let Ok(entries) = std::fs::read_dir(dir.join("deps")) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with(&prefix)
                && name.ends_with(std::env::consts::DLL_SUFFIX)
                && !dir.join(name).exists()
        })
        .collect();
    found.sort();
    found
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
            let key = e.setting_path().unwrap_or("psa.settings").to_string();
            let (line, column) = crate::config::locate(&config.file, &key);
            anyhow::Error::new(ConfigError {
                file: config.file.clone(),
                line,
                column,
                key: Some(key),
                message: e.to_string(),
            })
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
            on_page(Page {
                records: page.records,
                checkpoint: page.checkpoint,
                last: page.last,
                source: page.source,
            })
        })
        .await
        .map_err(convert)?;
        Ok(outcome.result)
    }

    fn requests(&self) -> u64 {
        self.requests_sent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_development_build_adds_the_plugins_its_directory_lacks_from_deps() {
        let dir = tempfile::tempdir().unwrap();
        let file = |stem: &str| {
            format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
        };
        std::fs::create_dir(dir.path().join("deps")).unwrap();
        for name in [file("tally_alpha"), file("tally_beta"), file("other"), "tally_x.rlib".into()]
        {
            std::fs::write(dir.path().join("deps").join(name), b"").unwrap();
        }
        // Built on its own, alpha was also copied beside the executable: that copy is scanned.
        std::fs::write(dir.path().join(file("tally_alpha")), b"").unwrap();

        let found = dev_build_libraries(dir.path());

        assert_eq!(found, vec![dir.path().join("deps").join(file("tally_beta"))]);
        assert!(dev_build_libraries(&dir.path().join("deps")).is_empty());
    }
}
