//! Logs: tracing to stderr, human-readable or JSON, level from `TALLY_LOG` or `RUST_LOG`.
//!
//! Results go to stdout and logs to stderr, always, so `--format json` output stays one clean
//! document. Nothing here may print a secret: redaction happens where requests are logged.

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// The level a command logs at when neither `-v` nor `TALLY_LOG` says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// What the agent and a sync did.
    Info,
    /// Only what needs attention.
    Warn,
    Error,
}

/// Installs the global subscriber. Colours only on a terminal.
pub fn init(format: LogFormat, verbose: u8, level: Default) {
    use std::io::IsTerminal as _;
    let default = match verbose {
        0 if level == Default::Error => "error",
        0 if level == Default::Warn => "warn",
        0 => "warn,tally_agent=info,tally=info",
        1 => "info,tally_agent=debug,tally=debug",
        _ => "debug",
    };
    let filter = std::env::var("TALLY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
