//! `tally-bench`: what a sync costs as the MSP grows. It generates an MSP of a given size,
//! serves it from the ConnectWise emulator with a per-request latency, runs the real `tally`
//! binary against it, reads the same data the simple way for a baseline, and prints every
//! figure beside its target and its ratio to the baseline; the figures also go to a JSON file
//! with stable keys.
//!
//! This file owns the command line, finding (or building) the `tally` binary, and writing the
//! results; the measuring is in `steps`. It must never write anywhere but `--out`, `--keep`
//! and its temporary working directories.
//!
//! ```text
//! cargo run --release -p tally-bench -- [--quick] [--size small|large|N] [--latency-ms 20]
//!                                       [--runs 3] [--out bench/results.json]
//! ```

mod baseline;
mod child;
mod msp;
mod results;
mod steps;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde::Serialize;

use crate::msp::Size;
use crate::results::{FORMAT, Figures};
use crate::steps::{DataFacts, Options};

#[derive(Debug, Parser)]
#[command(
    name = "tally-bench",
    about = "What a tally sync costs as the MSP grows, beside a simple sequential client",
    after_help = "Builds and runs the `tally` binary of this workspace (release when the bench \
                  is a release build) unless --tally names one."
)]
struct Cli {
    /// The quick form for CI: the small size, 1 run, 2 ms latency (each unless given).
    #[arg(long)]
    quick: bool,

    /// small (500 companies), large (5,000) or a number of companies [default: large, or small
    /// with --quick].
    #[arg(long, value_parser = Size::parse, allow_negative_numbers = true)]
    size: Option<Size>,

    /// Latency the emulator adds to every request, in milliseconds [default: 20, or 2 with
    /// --quick].
    #[arg(long, value_name = "MS", value_parser = parse_latency, allow_negative_numbers = true)]
    latency_ms: Option<u64>,

    /// Runs of each step; figures are medians [default: 3, or 1 with --quick].
    #[arg(long, value_parser = parse_runs, allow_negative_numbers = true)]
    runs: Option<usize>,

    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Where the JSON results go; its directory must exist [default: bench/results.json, or
    /// target/bench-quick.json in the workspace with --quick].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// The tally binary to measure (its plugins are found as tally finds them).
    #[arg(long, value_name = "FILE")]
    tally: Option<PathBuf>,

    /// Keep the working directories (journals, logs, CSV exports) under DIR.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,

    /// Measure nothing: generate the MSP, serve it from the emulator, set tally up against it
    /// (under --keep when given), print how to run tally there, and serve until stdin closes
    /// or Ctrl-C. For profiling one command at a time.
    #[arg(long)]
    serve: bool,
}

/// The results document written to `--out`.
#[derive(Serialize)]
struct Document<'a> {
    format: u32,
    tally_version: &'static str,
    commit: Option<String>,
    finished_at: String,
    elapsed_s: f64,
    machine: Machine,
    settings: Settings,
    data: &'a DataFacts,
    reference_data: &'a DataFacts,
    figures: &'a Figures,
    missed: Vec<&'static str>,
}

#[derive(Serialize)]
struct Settings {
    quick: bool,
    size: String,
    seed: u64,
    latency_ms: u64,
    runs: usize,
    command: String,
}

#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: Option<String>,
    memory_total_gb: Option<f64>,
    kernel: Option<String>,
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == child::LAUNCHER) {
        return child::launcher(&args[2..]);
    }
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tally-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_latency(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| {
        format!("`{text}` is not a latency: give a whole number of milliseconds, 0 or more")
    })
}

fn parse_runs(text: &str) -> Result<usize, String> {
    match text.trim().parse() {
        Ok(runs) if runs >= 1 => Ok(runs),
        _ => Err(format!("`{text}` is not a number of runs: give a whole number, 1 or more")),
    }
}

/// Checks, before anything is measured, that the results can be written to `out`. The default
/// place's directory is made if need be; a path the user gave must be in a directory that
/// exists.
fn check_out(out: &Path, given: bool) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!("--out {}: is a directory; name the results file instead", out.display());
    }
    let parent = match out.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent,
        None => Path::new("."),
    };
    if parent.exists() && !parent.is_dir() {
        bail!("--out {}: {} is not a directory", out.display(), parent.display());
    }
    if !parent.is_dir() {
        if given {
            bail!(
                "--out {}: the directory {} does not exist; create it or choose another file",
                out.display(),
                parent.display()
            );
        }
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {} for the results", parent.display()))?;
    }
    let existed = out.exists();
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(out)
        .with_context(|| format!("--out {}: cannot write there", out.display()))?;
    if !existed {
        let _ = std::fs::remove_file(out);
    }
    Ok(())
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    // reqwest is built without a default TLS provider; the baseline talks plain HTTP on
    // loopback, but the client still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let size = cli.size.unwrap_or(if cli.quick { Size::small() } else { Size::large() });
    let latency_ms = cli.latency_ms.unwrap_or(if cli.quick { 2 } else { 20 });
    let runs = cli.runs.unwrap_or(if cli.quick { 1 } else { 3 });
    let out = cli.out.clone().unwrap_or_else(|| default_out(cli.quick));
    if !cli.serve {
        check_out(&out, cli.out.is_some())?;
    }
    let started = Instant::now();

    let tally_bin = match &cli.tally {
        Some(path) => path
            .canonicalize()
            .with_context(|| format!("--tally {}: no such file", path.display()))?,
        None => build_tally()?,
    };
    let options = Options {
        seed: cli.seed,
        size,
        latency: Duration::from_millis(latency_ms),
        runs,
        tally_bin,
        keep: cli.keep.clone(),
    };
    if cli.serve {
        return steps::serve(&options, &|line| eprintln!("{line}"));
    }
    eprintln!("tally-bench: measuring {}", options.tally_bin.display());
    let measurement = steps::measure(&options, &|line| {
        eprintln!("[{:>6.1} s] {line}", started.elapsed().as_secs_f64());
    })?;

    let document = Document {
        format: FORMAT,
        tally_version: env!("CARGO_PKG_VERSION"),
        commit: git_commit(),
        finished_at: now_rfc3339(),
        elapsed_s: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        machine: machine(),
        settings: Settings {
            quick: cli.quick,
            size: size.label(),
            seed: cli.seed,
            latency_ms,
            runs,
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        },
        data: &measurement.data,
        reference_data: &measurement.reference,
        figures: &measurement.figures,
        missed: measurement.figures.missed().iter().map(|f| f.key).collect(),
    };
    let data = &measurement.data.size;
    println!(
        "\ntally-bench: {} MSP ({} companies, {} products, {} agreements, {} billing lines, {} \
         vendors x {} accounts), {latency_ms} ms per request, median of {runs} run(s)\n",
        size.label(),
        data.companies,
        data.products,
        data.agreements,
        data.billing_lines,
        data.vendors,
        data.accounts_per_vendor
    );
    print!("{}", results::table(&measurement.figures));
    let machine = &document.machine;
    println!(
        "\nmachine: {} CPUs ({}), {} GB; finished in {:.0} s; results in {}",
        machine.cpus,
        machine.cpu_model.as_deref().unwrap_or("unknown CPU"),
        machine.memory_total_gb.map(|g| format!("{g:.0}")).unwrap_or_else(|| "?".into()),
        document.elapsed_s,
        out.display()
    );
    if !document.missed.is_empty() {
        println!("targets missed: {}", document.missed.join(", "));
    }
    if size != Size::large() || latency_ms != 20 {
        println!(
            "the targets are set for the large size at 20 ms per request; at these settings \
             they are shown for reference"
        );
    }
    // Written after the table, so that a file that cannot be written loses no figure.
    let mut json = serde_json::to_string_pretty(&document)?;
    json.push('\n');
    std::fs::write(&out, json).with_context(|| {
        format!("--out {}: cannot write the results (the table above holds them)", out.display())
    })?;
    Ok(())
}

/// The workspace root, from this package's manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn default_out(quick: bool) -> PathBuf {
    if quick {
        workspace_root().join("target").join("bench-quick.json")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("results.json")
    }
}

/// Builds `tally` with the bench's own profile into the bench's own target directory, and
/// returns the binary's path; its plugins land in `deps/` beside it, where tally looks.
fn build_tally() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let profile_dir = exe.parent().context("the bench executable has no directory")?;
    let target_dir =
        profile_dir.parent().context("the bench is not in a cargo target directory")?;
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    // Under `cargo run`, the bench inherits variables that describe its own package; a build
    // that sees them fingerprints differently and rebuilds what `cargo build` just built.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let ours = key.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
            ]
            .contains(&key.as_ref());
        if ours {
            command.env_remove(key.as_ref());
        }
    }
    command
        .args(["build", "-p", "tally", "--bin", "tally"])
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if release {
        command.arg("--release");
    }
    eprintln!(
        "tally-bench: building tally ({})",
        if release { "release" } else { "debug: figures will be slow" }
    );
    let status = command.status().context("cannot run cargo to build tally")?;
    if !status.success() {
        bail!("`cargo build -p tally` failed ({status}); fix the build, or pass --tally FILE");
    }
    let bin = profile_dir.join("tally");
    if !bin.is_file() {
        bail!("cargo built tally, but {} does not exist", bin.display());
    }
    Ok(bin)
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_total_gb = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| (kb / (1024.0 * 1024.0) * 10.0).round() / 10.0);
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|k| k.trim().to_string());
    Machine {
        cpus: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        cpu_model,
        memory_total_gb,
        kernel,
    }
}
