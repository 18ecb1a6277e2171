//! The plugin directory: where it is, and which of its files load.
//!
//! The directory is `plugin_dir` from the config or, by default, the directory of the running
//! executable, so a workspace build finds the plugins built next to it. Only files with the
//! platform's library extension are considered, and each of them either loads or is refused
//! with its reason; nothing is skipped silently. Files are taken in name order, so when two
//! libraries claim one plugin name the same one wins every time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::error::{LoadError, PluginNotFound};
use super::library::{self, LoadedPlugin};
use crate::config::Config;

/// A file in the plugin directory that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: LoadError,
}

/// What a scan of the plugin directory found.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub dir: PathBuf,
    pub loaded: Vec<Arc<LoadedPlugin>>,
    pub refused: Vec<Refused>,
}

/// The plugin directory for `config`.
pub fn plugin_dir(config: &Config) -> anyhow::Result<PathBuf> {
    match &config.plugin_dir {
        Some(dir) => Ok(dir.clone()),
        None => default_dir(),
    }
}

/// The directory of the running executable.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    exe.parent().map(Path::to_path_buf).with_context(|| {
        format!("{} has no parent directory; set `plugin_dir` in the config", exe.display())
    })
}

/// Loads every plugin library in `dir`.
pub fn discover(dir: &Path) -> anyhow::Result<Catalog> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the plugin directory {}; create it or set `plugin_dir` in the config",
            dir.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == std::env::consts::DLL_EXTENSION)
                && !path.is_dir()
        })
        .collect();
    files.sort();

    let mut catalog = Catalog { dir: dir.to_path_buf(), loaded: Vec::new(), refused: Vec::new() };
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        match library::load(&path) {
            Ok(plugin) => {
                if let Some(first) = names.get(plugin.name()) {
                    let reason = LoadError::DuplicateName {
                        name: plugin.name().to_string(),
                        this: path.clone(),
                        first: first.clone(),
                    };
                    tracing::warn!(path = %path.display(), %reason, "plugin refused");
                    catalog.refused.push(Refused { path, reason });
                    continue;
                }
                names.insert(plugin.name().to_string(), path);
                catalog.loaded.push(plugin);
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "plugin refused");
                catalog.refused.push(Refused { path, reason });
            }
        }
    }
    Ok(catalog)
}

impl Catalog {
    /// The loaded plugin called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedPlugin>, PluginNotFound> {
        self.loaded.iter().find(|p| p.name() == name).cloned().ok_or_else(|| PluginNotFound {
            name: name.to_string(),
            dir: self.dir.clone(),
            loaded: self.loaded.iter().map(|p| p.name().to_string()).collect(),
            refused: self
                .refused
                .iter()
                .map(|r| format!("{}: {}", r.path.display(), r.reason))
                .collect(),
        })
    }
}
