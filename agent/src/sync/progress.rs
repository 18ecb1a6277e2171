//! Progress of a long sync: a bar on a terminal, plain log lines otherwise.
//!
//! Progress never decides anything; `tally status` reads the same numbers from the journal's
//! stream states, so another process sees a sync under way.

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    streams: AtomicU64,
    done: AtomicU64,
    pages: AtomicU64,
    records: AtomicU64,
    last_log: Mutex<Instant>,
}

impl Progress {
    /// A bar when stderr is a terminal and `quiet` is false; log lines otherwise.
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} streams {pos}/{len} {wide_bar} {msg} [{elapsed}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            streams: AtomicU64::new(0),
            done: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            records: AtomicU64::new(0),
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// No output at all.
    pub fn hidden() -> Progress {
        Progress::new(true)
    }

    pub fn streams(&self, more: u64) {
        let total = self.streams.fetch_add(more, Ordering::Relaxed) + more;
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn page(&self, records: u64) {
        let pages = self.pages.fetch_add(1, Ordering::Relaxed) + 1;
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        match &self.bar {
            Some(bar) => bar.set_message(format!("{pages} pages, {total} records")),
            None => {
                let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= Duration::from_secs(5) {
                    *last = Instant::now();
                    tracing::info!(
                        streams_done = self.done.load(Ordering::Relaxed),
                        streams = self.streams.load(Ordering::Relaxed),
                        pages,
                        records = total,
                        "sync progress"
                    );
                }
            }
        }
    }

    pub fn stream_done(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
