//! The measured steps, in the order they run: the baseline's full read, tally's first and full
//! syncs, quick syncs with nothing and with 1 % of billing lines changed, reconciliation, the
//! JSON report, a mapping-file edit under `tally run`, and the full sync again at a tenth of
//! the size to see how memory grows.
//!
//! Each step runs the real `tally` binary against the emulator and reads requests from the
//! emulator's counters, so nothing here takes tally's word for what it sent. Vendor data goes
//! in through `tally import` and the mapping file, as a user's would. This module decides what
//! is measured and how figures are derived; it must never tune the data or the agent to flatter
//! a figure, and it never asserts a target: it reports whether each one is met.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;
use tally_agent::journal::tables::{CARDS, SYNC_RUNS};
use tally_agent::journal::{Journal, Read as _};
use tally_tests::connectwise::{ConnectWiseEmulator, Credentials};

use crate::baseline::{self, BaselineRun};
use crate::child::{Measured, Tally, tail};
use crate::msp::{
    CODEBASE_LOOKUP_REQUESTS, EmulatorSite, FIRST_VENDOR, Files, Msp, PRIVATE_KEY_VAR, Requests,
    Size, exclusion_entry,
};
use crate::results::{Figure, Figures, Unit, median, megabytes, millis, seconds};

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub size: Size,
    /// Added by the emulator to every request, as a hosted PSA's round trip.
    pub latency: Duration,
    pub runs: usize,
    pub tally_bin: PathBuf,
    /// Keep the working directories (journals, logs, CSVs) under this directory.
    pub keep: Option<PathBuf>,
}

/// Facts about one generated data set, for the results document.
#[derive(Debug, Clone, Serialize)]
pub struct DataFacts {
    pub size: Size,
    pub usage_counts: usize,
    pub psa_records: usize,
    pub streams: u64,
    pub api_minimum: Requests,
    pub baseline_requests: Requests,
}

impl DataFacts {
    fn of(msp: &Msp) -> DataFacts {
        DataFacts {
            size: msp.size,
            usage_counts: msp.usage_counts(),
            psa_records: msp.psa_records(),
            streams: msp.streams(),
            api_minimum: msp.api_minimum(),
            baseline_requests: msp.baseline_requests(),
        }
    }
}

/// Everything one benchmark run measured.
pub struct Measurement {
    pub figures: Figures,
    pub data: DataFacts,
    pub reference: DataFacts,
}

/// One data set served by an emulator, with tally set up against it.
struct Site {
    msp: Msp,
    emulator: ConnectWiseEmulator,
    tally: Tally,
    files: Files,
    _temp: Option<tempfile::TempDir>,
}

/// One measured `tally sync`.
struct SyncRun {
    measured: Measured,
    requests: Requests,
    /// Requests to other endpoints (the first sync's probe).
    other: u64,
    records: u64,
    changed: u64,
}

impl SyncRun {
    fn total_requests(&self) -> u64 {
        self.requests.total() + self.other
    }
}

const FULL: [&str; 5] = ["sync", "--full", "--quiet", "--format", "json"];
const QUICK: [&str; 4] = ["sync", "--quiet", "--format", "json"];

/// Runs every step and derives the figures; `say` hears what is happening.
pub fn measure(options: &Options, say: &dyn Fn(&str)) -> anyhow::Result<Measurement> {
    let runs = options.runs.max(1);
    let site = prepare(options, options.size, say)?;
    let data = DataFacts::of(&site.msp);
    let mut figures = Figures::default();
    site.emulator.set_latency(options.latency);

    say(&format!("baseline: {runs} sequential full reads"));
    let mut base = Vec::new();
    for _ in 0..runs {
        site.emulator.clear_log();
        let run = baseline::read_all(&site.emulator.api_url(), site.emulator.credentials())?;
        let counted = Requests::from_paths(&site.emulator.request_counts()).0.total();
        if counted != run.requests {
            bail!("the baseline counted {} requests, the emulator {counted}", run.requests);
        }
        base.push(run);
    }
    let base_wall = median(&base.iter().map(|b| seconds(b.wall)).collect::<Vec<_>>());
    let base_requests = median(&base.iter().map(|b| b.requests as f64).collect::<Vec<_>>());
    check_baseline_read_everything(&site.msp, &base)?;

    say("first sync, on an empty journal");
    let first = sync(&site, "sync-first", &FULL)?;
    say(&format!("full sync x{runs}"));
    let full = repeat(runs, |i| sync(&site, &format!("sync-full-{i}"), &FULL))?;
    say(&format!("quick sync, nothing changed, x{runs}"));
    let quick = repeat(runs, |i| sync(&site, &format!("sync-quick-{i}"), &QUICK))?;
    say(&format!("quick sync, 1 % of billing lines changed, x{runs}"));
    let mut changed_lines = Vec::new();
    let quick_changed = repeat(runs, |i| {
        changed_lines.push(change_lines(&site, i));
        sync(&site, &format!("sync-quick-changed-{i}"), &QUICK)
    })?;
    say(&format!("reconcile all cards x{runs}"));
    let reconcile = repeat(runs, |i| {
        site.tally
            .run(&format!("reconcile-{i}"), &["sync", "--integration", FIRST_VENDOR, "--quiet"])
    })?;
    say(&format!("tally report --format json x{runs}"));
    let reports =
        repeat(runs, |i| site.tally.run(&format!("report-{i}"), &["report", "--format", "json"]))?;
    let cards = count_cards(&reports[0])?;
    say(&format!("mapping file edits under tally run x{runs}"));
    let edits = mapping_edits(&site, runs, say)?;
    drop(site);

    let reference_size = options.size.reference();
    say(&format!("memory at the reference size ({})", reference_size.label()));
    let small = prepare(options, reference_size, say)?;
    let reference = DataFacts::of(&small.msp);
    small.emulator.set_latency(options.latency);
    let small_first = sync(&small, "sync-first", &FULL)?;
    let small_full = repeat(runs, |i| sync(&small, &format!("sync-full-{i}"), &FULL))?;
    drop(small);

    // Full sync.
    let full_wall = Figure::new(
        "full_sync_wall_s",
        "full sync: wall time",
        Unit::Seconds,
        full.iter().map(|s| seconds(s.measured.wall)).collect(),
    )
    .baseline(base_wall);
    let speedup = full_wall.vs_baseline.unwrap_or(0.0);
    figures.push(full_wall.target("≥ 5× faster than the baseline", speedup >= 5.0).note(format!(
        "{} of latency per request; the baseline reads the same data one request at a time, \
         25 rows a page",
        show_latency(options.latency)
    )));
    let minimum = data.api_minimum.total();
    let full_requests = Figure::new(
        "full_sync_requests",
        "full sync: requests",
        Unit::Requests,
        full.iter().map(|s| s.total_requests() as f64).collect(),
    );
    let met = full_requests.runs.iter().all(|r| *r as u64 == minimum);
    figures.push(
        full_requests
            .target(format!("= API minimum ({minimum})"), met)
            .baseline(base_requests)
            .note(format!(
                "sent {}; the minimum {}",
                describe(&full[0].requests),
                describe(&data.api_minimum)
            )),
    );
    figures.push(
        Figure::new(
            "api_minimum_requests",
            "API minimum for this data",
            Unit::Requests,
            vec![minimum as f64],
        )
        .note(format!(
            "ConnectWise lists additions only per agreement, so each of the {} agreements costs \
             at least one request",
            site_count(&data)
        )),
    );
    figures.push(
        Figure::new(
            "first_sync_wall_s",
            "first sync (empty journal): wall time",
            Unit::Seconds,
            vec![seconds(first.measured.wall)],
        )
        .baseline(base_wall)
        .note(format!(
            "{} requests: the listings, the codebase lookup and one probe of the credentials",
            first.total_requests()
        )),
    );

    // Quick syncs, as ratios to the full sync.
    let full_wall_s = median(&full.iter().map(|s| seconds(s.measured.wall)).collect::<Vec<_>>());
    let full_req = median(&full.iter().map(|s| s.total_requests() as f64).collect::<Vec<_>>());
    let allowed = data.streams + CODEBASE_LOOKUP_REQUESTS;
    for (key_requests, key_wall, what, runs_of) in [
        ("quick_sync_unchanged_requests", "quick_sync_unchanged_wall_s", "nothing changed", &quick),
        (
            "quick_sync_1pct_requests",
            "quick_sync_1pct_wall_s",
            "1 % of lines changed",
            &quick_changed,
        ),
    ] {
        let requests = Figure::new(
            key_requests,
            format!("quick sync, {what}: requests"),
            Unit::Requests,
            runs_of.iter().map(|s| s.total_requests() as f64).collect(),
        );
        let within = requests.runs.iter().all(|r| *r as u64 <= allowed);
        let ratio = requests.value / full_req.max(1.0);
        figures.push(
            requests
                .target(format!("≤ 1 per stream + lookup ({allowed})"), within)
                .ratio(ratio)
                .note(format!("{} streams; ratio is to the full sync", data.streams)),
        );
        let wall = Figure::new(
            key_wall,
            format!("quick sync, {what}: wall time"),
            Unit::Seconds,
            runs_of.iter().map(|s| seconds(s.measured.wall)).collect(),
        );
        let ratio = wall.value / full_wall_s.max(f64::MIN_POSITIVE);
        figures.push(wall.ratio(ratio));
    }
    if let Some(figure) = figures.0.iter_mut().find(|f| f.key == "quick_sync_1pct_requests") {
        let found: Vec<String> = quick_changed.iter().map(|s| s.changed.to_string()).collect();
        let made: Vec<String> = changed_lines.iter().map(|n| n.to_string()).collect();
        figure.note = Some(format!(
            "lines changed in the PSA per run: {}; changed records the sync found: {}",
            made.join(", "),
            found.join(", ")
        ));
    }

    // CPU per record.
    let cpu = Figure::new(
        "cpu_per_record_us",
        "agent CPU per record (full sync)",
        Unit::Microseconds,
        full.iter().map(|s| s.measured.cpu.as_secs_f64() * 1e6 / s.records.max(1) as f64).collect(),
    );
    let under = cpu.value < 10.0;
    let cpu_seconds =
        median(&full.iter().map(|s| s.measured.cpu.as_secs_f64()).collect::<Vec<_>>());
    let cpu_note = format!(
        "{cpu_seconds:.1} s of user+system CPU for `tally sync --full` (listing, storing, \
         reconciling) over {} records",
        full[0].records
    );
    figures.push(cpu.target("< 10 µs", under).note(cpu_note));

    // Memory.
    let peak = |runs: &[SyncRun], first: &SyncRun| {
        runs.iter().chain([first]).map(|s| s.measured.max_rss).max().unwrap_or(0)
    };
    let memory_note = |runs: &[SyncRun], first: &SyncRun| {
        let full_peak = runs.iter().map(|s| s.measured.max_rss).max().unwrap_or(0);
        format!(
            "the higher of the first sync on an empty journal ({:.1} MB) and the full syncs \
             ({:.1} MB)",
            megabytes(first.measured.max_rss),
            megabytes(full_peak)
        )
    };
    let large_peak = megabytes(peak(&full, &first));
    let small_peak = megabytes(peak(&small_full, &small_first));
    let report_peak = reports.iter().map(|m| m.max_rss).max().unwrap_or(0);
    figures.push(
        Figure::new(
            "peak_rss_mb",
            format!("peak memory, syncs ({})", options.size.label()),
            Unit::Megabytes,
            vec![large_peak],
        )
        .target("< 150 MB", large_peak < 150.0)
        .note(format!(
            "{}; `tally report --format json` peaked at {:.1} MB",
            memory_note(&full, &first),
            megabytes(report_peak)
        )),
    );
    figures.push(
        Figure::new(
            "peak_rss_reference_mb",
            format!("peak memory, syncs ({})", reference_size.label()),
            Unit::Megabytes,
            vec![small_peak],
        )
        .note(memory_note(&small_full, &small_first)),
    );
    let growth = large_peak / small_peak.max(f64::MIN_POSITIVE);
    figures.push(
        Figure::new(
            "peak_rss_growth",
            format!(
                "peak memory growth ×{} data",
                options.size.companies / reference_size.companies.max(1)
            ),
            Unit::Ratio,
            vec![growth],
        )
        .target("≤ 1.5×", growth <= 1.5),
    );

    // Reconciliation, report and mapping edits.
    figures.push(
        Figure::new(
            "reconcile_wall_s",
            "reconcile all cards",
            Unit::Seconds,
            reconcile.iter().map(|m| seconds(m.wall)).collect(),
        )
        .note(format!("`tally sync --integration {FIRST_VENDOR}`: {cards} cards")),
    );
    let report_bytes = reports[0].stdout.len() as u64;
    figures.push(
        Figure::new(
            "report_json_wall_s",
            "`tally report --format json`, all cards",
            Unit::Seconds,
            reports.iter().map(|m| seconds(m.wall)).collect(),
        )
        .note(format!("{cards} cards, {:.1} MB of JSON", megabytes(report_bytes))),
    );
    let edit = Figure::new(
        "mapping_edit_to_cards_ms",
        "mapping file edit to updated cards",
        Unit::Milliseconds,
        edits.iter().map(|d| millis(*d)).collect(),
    );
    let fast = edit.value < 1000.0;
    figures.push(edit.target("< 1000 ms", fast).note(
        "an account excluded in mapping.toml, saved by rename as editors do, under `tally run`; \
         includes the watcher's 300 ms quiet period",
    ));

    Ok(Measurement { figures, data, reference })
}

/// Serves one generated MSP with tally set up against it until stdin closes, printing how to
/// run tally there.
pub fn serve(options: &Options, say: &dyn Fn(&str)) -> anyhow::Result<()> {
    let site = prepare(options, options.size, say)?;
    site.emulator.set_latency(options.latency);
    let key = site.emulator.private_key();
    say(&format!(
        "serving {} at {} ms per request; run tally there with:\n  cd {} && \\\n  \
         {PRIVATE_KEY_VAR}={key} {} --config {} sync --full\nclose stdin (Ctrl-D) or press \
         Ctrl-C to stop",
        site.emulator.base_url(),
        options.latency.as_millis(),
        site.tally.dir.display(),
        site.tally.bin.display(),
        site.files.config.display(),
    ));
    std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())
        .context("cannot read stdin")?;
    Ok(())
}

fn site_count(data: &DataFacts) -> usize {
    data.size.agreements
}

fn show_latency(latency: Duration) -> String {
    format!("{} ms", latency.as_millis())
}

fn describe(r: &Requests) -> String {
    format!(
        "{} = companies {} + products {} + agreements {} + billing lines {} + codebase lookup {}",
        r.total(),
        r.companies,
        r.products,
        r.agreements,
        r.billing_lines,
        r.codebase_lookup
    )
}

fn repeat<T>(runs: usize, mut f: impl FnMut(usize) -> anyhow::Result<T>) -> anyhow::Result<Vec<T>> {
    (1..=runs).map(&mut f).collect()
}

/// Generates the data, starts its emulator, writes tally's files and imports the vendors' CSVs.
fn prepare(options: &Options, size: Size, say: &dyn Fn(&str)) -> anyhow::Result<Site> {
    say(&format!(
        "generating {}: {} companies, {} products, {} agreements, {} billing lines, {} vendors \
         x {} accounts",
        size.label(),
        size.companies,
        size.products,
        size.agreements,
        size.billing_lines,
        size.vendors,
        size.accounts_per_vendor
    ));
    let msp = Msp::generate(options.seed, size);
    let emulator = ConnectWiseEmulator::try_start(msp.data.clone(), Credentials::default())
        .context("cannot start the ConnectWise emulator")?;
    emulator.set_logging(false);

    let (dir, temp) = match &options.keep {
        Some(root) => {
            let dir = root.join(format!("{}-companies", size.companies));
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot clear {}", dir.display()))?;
            }
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            (dir, None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("tally-bench-")
                .tempdir()
                .context("cannot create a working directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let site = EmulatorSite {
        base_url: emulator.base_url(),
        company_id: emulator.company_id().to_string(),
        public_key: emulator.public_key().to_string(),
        client_id: emulator.client_id().to_string(),
    };
    let files = msp.write_files(&dir, &site)?;
    let tally = Tally {
        bin: options.tally_bin.clone(),
        dir: dir.clone(),
        config: files.config.clone(),
        env: vec![(PRIVATE_KEY_VAR.to_string(), emulator.private_key().to_string())],
    };
    for (vendor, path) in &files.csv {
        let path = path.to_string_lossy();
        tally.run(&format!("import-{vendor}"), &["import", "--vendor", vendor, &path])?;
    }
    say(&format!(
        "  {} usage counts imported; working directory {}",
        msp.usage_counts(),
        dir.display()
    ));
    Ok(Site { msp, emulator, tally, files, _temp: temp })
}

/// The baseline must have read every row, or its figures mean nothing.
fn check_baseline_read_everything(msp: &Msp, runs: &[BaselineRun]) -> anyhow::Result<()> {
    let expected = msp.psa_records() as u64;
    let requests = msp.baseline_requests().total();
    for run in runs {
        if run.rows != expected || run.requests != requests {
            bail!(
                "the baseline read {} rows in {} requests; the data has {expected} rows, which \
                 take {requests} requests at 25 a page",
                run.rows,
                run.requests
            );
        }
    }
    Ok(())
}

/// Runs one `tally sync` and reads its requests from the emulator and its counts from its
/// JSON report; an incomplete sync is an error.
fn sync(site: &Site, label: &str, args: &[&str]) -> anyhow::Result<SyncRun> {
    site.emulator.clear_log();
    let measured = site.tally.run(label, args)?;
    let (requests, other) = Requests::from_paths(&site.emulator.request_counts());
    let report: Value = serde_json::from_slice(&measured.stdout)
        .with_context(|| format!("`tally {}` did not print a JSON report", args.join(" ")))?;
    if report["streams_incomplete"].as_u64() != Some(0) {
        bail!(
            "`tally {}` left streams incomplete: {}; see {}",
            args.join(" "),
            report["errors"],
            site.tally.log_path(label).display()
        );
    }
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    Ok(SyncRun { records: count("records"), changed: count("changed"), measured, requests, other })
}

/// Changes the quantity of 1 % of the billing lines in the PSA (a different 1 % on each run,
/// spread over the agreements); returns how many.
fn change_lines(site: &Site, run: usize) -> usize {
    let mut changed = 0;
    for line in site.msp.data.additions.iter().skip(run % 100).step_by(100) {
        let updated = site.emulator.update_addition(line.agreement_id, line.id, |a| {
            a.quantity += rust_decimal::Decimal::ONE;
        });
        changed += usize::from(updated);
    }
    changed
}

fn count_cards(report: &Measured) -> anyhow::Result<usize> {
    let value: Value = serde_json::from_slice(&report.stdout)
        .context("`tally report --format json` did not print JSON")?;
    value["cards"]
        .as_array()
        .map(Vec::len)
        .context("`tally report --format json` printed no `cards` array")
}

/// Starts `tally run`, waits for its start-up sync, then excludes one account per run in the
/// mapping file and times until its card no longer counts that account.
fn mapping_edits(site: &Site, runs: usize, say: &dyn Fn(&str)) -> anyhow::Result<Vec<Duration>> {
    // The agent's start-up quick sync is not what this step measures: let it finish quickly.
    site.emulator.set_latency(Duration::ZERO);
    let mut agent = site.tally.spawn("agent", &["run"])?;
    let journal = Journal::open(&site.tally.dir.join("tally.redb"), None)
        .context("cannot open the journal to watch the cards")?;
    let pid = agent.pid();
    wait_until("the agent's start-up sync", Duration::from_secs(1200), || {
        if agent.exited() {
            bail!("`tally run` stopped; the end of its log:\n{}", tail(agent.log(), 20));
        }
        let tx = journal.read()?;
        let runs = tx.values(&SYNC_RUNS, "")?;
        Ok(runs.iter().any(|r| r.pid == pid && r.finished_at.is_some()))
    })?;
    say("  the agent's start-up sync finished; editing the mapping file");

    let mut latencies = Vec::new();
    for (card_key, account) in accounts_to_exclude(&journal, runs)? {
        let source = format!("{FIRST_VENDOR}/{account}/");
        let mut text = std::fs::read_to_string(&site.files.mapping)
            .with_context(|| format!("cannot read {}", site.files.mapping.display()))?;
        text.push_str(&exclusion_entry(&account));
        let saved = site.files.mapping.with_extension("toml.bench-save");
        std::fs::write(&saved, text)
            .with_context(|| format!("cannot write {}", saved.display()))?;

        let started = Instant::now();
        std::fs::rename(&saved, &site.files.mapping)
            .with_context(|| format!("cannot save {}", site.files.mapping.display()))?;
        wait_until("the card to drop the excluded account", Duration::from_secs(120), || {
            let tx = journal.read()?;
            Ok(match tx.get(&CARDS, &card_key)? {
                None => true,
                Some(card) => !card.sources.iter().any(|(s, _)| s.starts_with(&source)),
            })
        })?;
        latencies.push(started.elapsed());
    }
    agent.stop(Duration::from_secs(30));
    Ok(latencies)
}

/// `runs` mapped cards fed by one account of the first vendor each, spread over the cards:
/// (card key, account id).
fn accounts_to_exclude(journal: &Journal, runs: usize) -> anyhow::Result<Vec<(String, String)>> {
    let prefix = format!("{FIRST_VENDOR}/");
    let tx = journal.read()?;
    let candidates: Vec<(String, String)> = tx
        .scan(&CARDS, "")?
        .into_iter()
        .filter(|(key, _)| !key.starts_with('~'))
        .filter_map(|(key, card)| {
            let source = card.sources.iter().find(|(s, _)| s.starts_with(&prefix))?;
            let account = source.0.split('/').nth(1)?.to_string();
            Some((key, account))
        })
        .collect();
    if candidates.len() < runs {
        bail!(
            "only {} cards count a {FIRST_VENDOR} account; the mapping edit needs {runs}",
            candidates.len()
        );
    }
    let step = candidates.len() / runs;
    Ok(candidates.into_iter().step_by(step.max(1)).take(runs).collect())
}

/// Polls `done` every 5 ms until it holds, fails, or `limit` passes.
fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
