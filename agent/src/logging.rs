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

/// Installs the global subscriber. The default level is `info` for tally and `warn` for
/// libraries.
pub fn init(format: LogFormat, verbose: u8, quiet: bool) {
    let default = match verbose {
        0 if quiet => "warn",
        0 => "warn,tally_agent=info,tally=info",
        1 => "info,tally_agent=debug,tally=debug",
        _ => "debug",
    };
    let filter = std::env::var("TALLY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
}
