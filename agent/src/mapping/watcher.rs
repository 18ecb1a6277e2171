//! The mapping file watcher used by `tally run`: reloads the file after the user saves it.
//!
//! It watches the file's parent directory, not the file (editors save by writing a new file
//! and renaming it over the old one, which ends a watch on the file itself: case C19), and
//! keeps only events for the file's own name, so swap, backup, `4913` and temporary files
//! never trigger anything. One save can be several events (truncate, then write, case C20):
//! a trailing quiet period of about 300 ms turns a burst into one reload. A reload re-reads
//! and hashes the whole file and does nothing if the hash is unchanged; otherwise it goes
//! through `resolve::apply`, which keeps the last good mapping whenever the file is invalid,
//! empty or missing. A watcher error or overflow, and a slow poll, lead to the same re-read.
//! The watcher never parses or writes anything itself.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use notify_debouncer_full::notify::event::{AccessKind, AccessMode};
use notify_debouncer_full::notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

use super::MappingError;
use super::resolve::{self, MappingChange, file_hash};
use crate::config::Config;
use crate::journal::Journal;

/// Timing of the watcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchOptions {
    /// Quiet time after the last event before the file is read.
    pub debounce: Duration,
    /// How often the file's hash is checked without any event (a backstop for missed events).
    pub poll_every: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions { debounce: Duration::from_millis(300), poll_every: Duration::from_secs(5) }
    }
}

/// The running watcher. Dropping it (or `stop`) ends the watch and waits for its thread.
pub struct WatcherHandle {
    signals: Sender<Signal>,
    thread: Option<JoinHandle<()>>,
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
}

impl WatcherHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(debouncer) = self.debouncer.take() {
            debouncer.stop_nonblocking();
        }
        let _ = self.signals.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WatcherHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Signal {
    /// Something may have changed the file: re-read it once things are quiet.
    Changed,
    Stop,
}

/// Applies the mapping file now (reporting the result to `on_reload` before returning), then
/// watches it and calls `on_reload` after every reload whose file content differs from the
/// last one read. Later calls run on the watcher's own thread. Errors are logged here; every
/// error leaves the last good mapping in force.
pub fn spawn_watcher(
    journal: Journal,
    config: Config,
    on_reload: impl Fn(Result<MappingChange, MappingError>) + Send + 'static,
) -> anyhow::Result<WatcherHandle> {
    spawn_watcher_with(journal, config, WatchOptions::default(), on_reload)
}

/// [`spawn_watcher`] with explicit timing.
pub fn spawn_watcher_with(
    journal: Journal,
    config: Config,
    options: WatchOptions,
    on_reload: impl Fn(Result<MappingChange, MappingError>) + Send + 'static,
) -> anyhow::Result<WatcherHandle> {
    let file = config.mapping.clone();
    let name = file
        .file_name()
        .map(|n| n.to_os_string())
        .with_context(|| format!("{}: the mapping path names no file", file.display()))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };

    let (signals, receiver) = mpsc::channel();
    let to_worker = signals.clone();
    let wanted = name.clone();
    let mut debouncer = new_debouncer(
        // notify-debouncer-full merges an event's own bursts (and tracks renames); the quiet
        // period that spans a whole save is the worker's.
        Duration::from_millis(50),
        None,
        move |result: DebounceEventResult| {
            if relevant(&result, &wanted) {
                let _ = to_worker.send(Signal::Changed);
            }
        },
    )
    .context("cannot start the mapping file watcher")?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive).with_context(|| {
        format!(
            "cannot watch {} for changes to the mapping file; check that the directory exists \
             and is readable",
            dir.display()
        )
    })?;
    tracing::info!(file = %file.display(), dir = %dir.display(), "watching the mapping file");

    let mut worker = Worker { journal, config, on_reload, last_seen: None };
    worker.reload(true);
    let thread = std::thread::Builder::new()
        .name("mapping-watcher".to_string())
        .spawn(move || worker.run(receiver, options))
        .context("cannot start the mapping file watcher thread")?;
    Ok(WatcherHandle { signals, thread: Some(thread), debouncer: Some(debouncer) })
}

/// Whether a batch of events (or errors) may concern the file named `name`.
fn relevant(result: &DebounceEventResult, name: &std::ffi::OsStr) -> bool {
    match result {
        Err(errors) => {
            for e in errors {
                tracing::warn!(error = %e, "mapping file watcher error; re-reading the file");
            }
            true
        }
        Ok(events) => events.iter().any(|e| {
            if e.need_rescan() {
                tracing::warn!("mapping file watcher overflowed; re-reading the file");
                return true;
            }
            let reads = matches!(e.kind, EventKind::Access(kind)
                if kind != AccessKind::Close(AccessMode::Write));
            !reads && e.paths.iter().any(|p| p.file_name() == Some(name))
        }),
    }
}

struct Worker<F> {
    journal: Journal,
    config: Config,
    on_reload: F,
    /// What the last reload read: `Some(None)` for a missing file, `None` before the first
    /// read or after an unreadable one.
    last_seen: Option<Option<String>>,
}

impl<F: Fn(Result<MappingChange, MappingError>)> Worker<F> {
    fn run(mut self, receiver: mpsc::Receiver<Signal>, options: WatchOptions) {
        let mut deadline: Option<Instant> = None;
        loop {
            let wait = match deadline {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => options.poll_every,
            };
            match receiver.recv_timeout(wait) {
                Ok(Signal::Changed) => deadline = Some(Instant::now() + options.debounce),
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    deadline = None;
                    self.reload(false);
                }
            }
        }
    }

    /// Re-reads the file and applies it unless its content is what the last reload read.
    fn reload(&mut self, always: bool) {
        if !always
            && let Some(current) = current_hash(&self.config.mapping)
            && self.last_seen.as_ref() == Some(&current)
        {
            return;
        }
        let attempt = resolve::attempt(&self.journal, &self.config);
        self.last_seen = match &attempt.result {
            Err(MappingError::Read { .. } | MappingError::Journal(_)) => None,
            _ => Some(attempt.hash.clone()),
        };
        if let Err(e) = &attempt.result {
            tracing::warn!(error = %e, "mapping file not applied; the previous mapping stays");
        }
        (self.on_reload)(attempt.result);
    }
}

/// The file's hash (`Some(None)` when it does not exist), or `None` when it cannot be read.
fn current_hash(path: &Path) -> Option<Option<String>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(Some(file_hash(&bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(None),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use notify_debouncer_full::DebouncedEvent;
    use notify_debouncer_full::notify::event::{CreateKind, Flag, ModifyKind, RenameMode};
    use notify_debouncer_full::notify::{Error, Event};

    use super::*;

    fn batch(kind: EventKind, paths: &[&str]) -> DebounceEventResult {
        let mut event = Event::new(kind);
        for p in paths {
            event = event.add_path(Path::new("/etc/tally").join(p));
        }
        Ok(vec![DebouncedEvent::new(event, Instant::now())])
    }

    fn name() -> &'static std::ffi::OsStr {
        std::ffi::OsStr::new("mapping.toml")
    }

    #[test]
    fn c19_side_files_are_ignored() {
        for side in [
            ".mapping.toml.swp",
            ".mapping.toml.swx",
            "mapping.toml~",
            "4913",
            "mapping.toml.tmp",
            ".mapping.toml.tally-7.tmp",
        ] {
            let created = batch(EventKind::Create(CreateKind::File), &[side]);
            assert!(!relevant(&created, name()), "{side}");
        }
    }

    #[test]
    fn c19_a_rename_onto_the_file_and_a_rename_away_from_it_count() {
        let onto = batch(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["mapping.toml.tmp", "mapping.toml"],
        );
        assert!(relevant(&onto, name()));
        let away = batch(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &["mapping.toml"]);
        assert!(relevant(&away, name()));
    }

    #[test]
    fn reads_are_ignored_but_a_closed_write_counts() {
        let open = batch(EventKind::Access(AccessKind::Open(AccessMode::Any)), &["mapping.toml"]);
        assert!(!relevant(&open, name()), "tally's own reads must not trigger reloads");
        let closed =
            batch(EventKind::Access(AccessKind::Close(AccessMode::Write)), &["mapping.toml"]);
        assert!(relevant(&closed, name()));
    }

    #[test]
    fn errors_and_overflows_lead_to_a_full_re_read() {
        assert!(relevant(&Err(vec![Error::generic("queue overflow")]), name()));
        let rescan = Ok(vec![DebouncedEvent::new(
            Event::new(EventKind::Other).set_flag(Flag::Rescan),
            Instant::now(),
        )]);
        assert!(relevant(&rescan, name()));
    }
}
