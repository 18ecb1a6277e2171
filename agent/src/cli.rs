//! The command line: parsing, the shared context of every command, and exit codes.
//!
//! Exit codes: 0 success, 1 failure, 2 usage or configuration error. Machine output
//! (`--format json`) is one JSON document on stdout; logs go to stderr. This module only wires
//! commands to the modules that own them; it holds no business logic.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config, ConfigError};
use crate::journal::Journal;
use crate::logging::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "tally",
    version,
    about = "Billing reconciliation for MSPs: vendor usage against PSA billing, on your own server",
    long_about = "tally compares what each vendor says a customer uses with what your PSA bills \
                  them, shows every difference, and writes approved changes back to the PSA \
                  exactly once.\n\nStart with `tally demo` (no setup), then `tally init`.",
    after_help = "Exit codes: 0 success, 1 failure, 2 usage or configuration error.\n\
                  Config: tally.toml in the working directory, or --config / TALLY_CONFIG."
)]
pub struct Cli {
    /// Config file.
    #[arg(long, global = true, env = "TALLY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Journal file (overrides the config's `journal`).
    #[arg(long, global = true, value_name = "FILE")]
    pub journal: Option<PathBuf>,

    /// Output format of results on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More log detail (-v, -vv). TALLY_LOG or RUST_LOG set the filter exactly.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    Toml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented starter config and mapping file.
    Init(InitArgs),
    /// Run the background agent: schedule, vendor intake API, status API, mapping watcher.
    Run,
    /// Sync now, with progress, then reconcile.
    Sync(SyncArgs),
    /// Integrations, connection state, streams, outbox and mapping file state.
    Status,
    /// The reconciliation cards.
    Report(ReportArgs),
    /// Mapping state: what is mapped, what is not, and suggestions.
    Map(MapArgs),
    /// Approve held changes.
    Approve(ApproveArgs),
    /// Vendor integrations: keys vendors push with.
    #[command(subcommand)]
    Integration(IntegrationCommand),
    /// Import vendor usage from a CSV export.
    Import(ImportArgs),
    /// Loaded plugins, and refused files with the reason.
    Plugins,
    /// The whole flow on built-in sample data, with no setup and no network.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write tally.toml and mapping.toml into.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Read every listing whole; may retire records that vanished from the PSA.
    #[arg(long)]
    pub full: bool,
    /// Sync only this integration (the PSA plugin name or a vendor name).
    #[arg(long, value_name = "NAME")]
    pub integration: Option<String>,
    /// Retire records even when a full listing would retire more than the guard allows.
    #[arg(long)]
    pub confirm_retire: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only cards with this status: match, reconcile, new, stale, unmapped, excluded. Repeat
    /// the flag or separate statuses with commas. Output: --format table, json or csv.
    #[arg(long, value_name = "S")]
    pub status: Vec<String>,
    /// Only companies whose name or id contains TEXT, ignoring case, repeated or
    /// non-breaking spaces and zero-width characters.
    #[arg(long, value_name = "TEXT")]
    pub company: Option<String>,
    /// Sort by company, product, status, vendor, psa, difference or money.
    #[arg(long, value_name = "FIELD", default_value = "company")]
    pub sort: String,
    /// The audit history of applied changes instead of the cards.
    #[arg(long)]
    pub history: bool,
}

#[derive(Debug, Args)]
pub struct MapArgs {
    #[command(subcommand)]
    pub what: Option<MapCommand>,
}

#[derive(Debug, Subcommand)]
pub enum MapCommand {
    /// Every mapping in force and where it comes from.
    Show,
    /// Vendor accounts and services that are not mapped yet.
    Unmapped,
    /// Likely matches for unmapped accounts and services; never applied by themselves.
    Suggest,
    /// Add an entry to the mapping file, keeping its comments and order.
    Add(MapAddArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "exclude", "unmap"])))]
pub struct MapAddArgs {
    /// What to map: a vendor account (to a PSA company) or service (to a PSA product).
    #[arg(value_enum)]
    pub kind: MapKind,
    /// Vendor name.
    #[arg(long)]
    pub vendor: String,
    /// The vendor's account or service id.
    #[arg(long)]
    pub id: String,
    /// PSA company or product: an id, a product identifier, or a unique name.
    #[arg(long, value_name = "ID|NAME")]
    pub to: Option<String>,
    /// Mark as not billed.
    #[arg(long)]
    pub exclude: bool,
    /// Turn off an automatic name match.
    #[arg(long)]
    pub unmap: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MapKind {
    Account,
    Service,
}

#[derive(Debug, Args)]
#[command(after_help = "An approval is for the card's target quantity against the PSA quantity \
                        shown now; the next sync (or `tally sync`) writes it. If the line changes \
                        in the PSA first, the card asks to be approved again.")]
pub struct ApproveArgs {
    /// Card ids (as `tally report` shows them).
    pub cards: Vec<String>,
    /// Approve every held change.
    #[arg(long, conflicts_with = "cards")]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum IntegrationCommand {
    /// Create a vendor integration and print its key once.
    #[command(after_help = "NAME must be a [[vendor]] in tally.toml with source = \"push\" (or \
                            \"csv\"). Paste the key into the vendor's portal with the API base \
                            URL printed with it.")]
    Add {
        /// The vendor's name, as in a [[vendor]] section of tally.toml.
        name: String,
    },
    /// Every vendor integration.
    List,
    /// Has the vendor called in, when, and with what status (exit 1 until it has).
    Check {
        /// The vendor's name.
        name: String,
    },
    /// Remove an integration: its key stops working; its data and history are kept.
    Remove {
        /// The vendor's name.
        name: String,
    },
    /// Issue a new key; the old one stops working.
    RotateKey {
        /// The vendor's name.
        name: String,
    },
}

#[derive(Debug, Args)]
#[command(after_help = "Columns: account id, account name, service, quantity. Header names come \
                        from [vendor.csv] in tally.toml (defaults: account_id, account_name, \
                        service, quantity). The whole file is checked first: a bad row is \
                        reported as file:line:column and nothing from the file is stored (exit 2).")]
pub struct ImportArgs {
    /// The vendor the file comes from.
    #[arg(long)]
    pub vendor: String,
    /// The CSV file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's files in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// A usage or configuration error: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What every command gets: the checked config and the output format.
pub struct Ctx {
    pub config: Config,
    pub format: Format,
    /// Whether a config file was found (or named).
    pub has_config_file: bool,
}

impl Ctx {
    /// Refuses an output format this command does not print.
    pub fn formats(&self, command: &str, accepted: &[Format]) -> anyhow::Result<()> {
        if accepted.contains(&self.format) {
            return Ok(());
        }
        let names: Vec<&str> = accepted
            .iter()
            .map(|f| match f {
                Format::Table => "table",
                Format::Json => "json",
                Format::Csv => "csv",
                Format::Toml => "toml",
            })
            .collect();
        let list = match names.split_last() {
            Some((last, [])) => last.to_string(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        Err(UsageError(format!("`tally {command}` prints --format {list}")).into())
    }

    /// Opens the journal (shared within the process), creating it if it does not exist yet;
    /// its directory must exist, so a mistyped path is not taken for a new installation.
    pub fn journal(&self) -> anyhow::Result<Journal> {
        let path = &self.config.journal;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.is_dir()
        {
            return Err(UsageError(format!(
                "{}: the journal's directory does not exist; check `journal` in {} or \
                 --journal, or create the directory",
                path.display(),
                self.config.file.display()
            ))
            .into());
        }
        Ok(Journal::open(path, Some(&self.config.mapping))?)
    }

    /// Opens a journal that must exist already: for commands that only read.
    pub fn existing_journal(&self) -> anyhow::Result<Journal> {
        let path = &self.config.journal;
        if !path.exists() {
            return Err(UsageError(format!(
                "no journal at {}: it is created by the first `tally sync`, `tally run`, \
                 `tally import` or `tally integration add`; check `journal` in {} or --journal",
                path.display(),
                self.config.file.display()
            ))
            .into());
        }
        self.journal()
    }
}

pub fn main() -> ExitCode {
    // Output piped into `head` ends quietly, as for any command-line tool, instead of an error.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The agent and a sync report their work as INFO lines; other commands print their result
    // and log only warnings, and the demo explains itself.
    let level = match cli.command {
        Command::Run | Command::Sync(_) => logging::Default::Info,
        Command::Demo(_) => logging::Default::Error,
        _ => logging::Default::Warn,
    };
    logging::init(cli.log_format, cli.verbose, level);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = exit_code(&e);
            eprintln!("error: {}", render(&e));
            ExitCode::from(code)
        }
    }
}

fn render(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn exit_code(e: &anyhow::Error) -> u8 {
    use crate::journal::JournalError;
    let usage = e.chain().any(|c| {
        c.is::<ConfigError>()
            || c.is::<UsageError>()
            || c.is::<crate::plugin::PluginNotFound>()
            || matches!(
                c.downcast_ref::<JournalError>(),
                Some(JournalError::NotAJournal { .. } | JournalError::IsMappingFile { .. })
            )
    });
    if usage { 2 } else { 1 }
}

fn load_config(cli: &Cli) -> anyhow::Result<(Config, bool)> {
    let (path, required) = match &cli.config {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(config::DEFAULT_FILE), false),
    };
    let path = std::path::absolute(&path).unwrap_or(path);
    let exists = match std::fs::metadata(&path) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        // Not missing: there but out of reach (a directory only root may enter, say).
        Err(e) => {
            return Err(UsageError(format!(
                "cannot read {}: {e}; run tally as a user that may read it (the tally user, or \
                 root)",
                path.display()
            ))
            .into());
        }
    };
    if !exists && cli.journal.is_none() && !matches!(cli.command, Command::Plugins) {
        if required {
            return Err(UsageError(format!(
                "{} does not exist: check the path given by --config or TALLY_CONFIG, or run \
                 `tally init` to write a tally.toml",
                path.display()
            ))
            .into());
        }
        return Err(UsageError(format!(
            "no {} in {}: pass --config FILE or set TALLY_CONFIG, or run `tally init` to write \
             one (with only --journal FILE, tally runs on that journal with default settings)",
            config::DEFAULT_FILE,
            path.parent().unwrap_or(Path::new(".")).display()
        ))
        .into());
    }
    let mut config = Config::load(&path, required)?;
    if let Some(journal) = &cli.journal {
        config.journal = std::path::absolute(journal).unwrap_or_else(|_| journal.clone());
    }
    if let Some(warning) = config.permission_warning() {
        tracing::warn!("{warning}");
    }
    Ok((config, exists))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Init(args) = &cli.command {
        return init(args);
    }
    if let Command::Demo(args) = &cli.command {
        return crate::demo::run(args, cli.format);
    }
    let (config, has_config_file) = load_config(&cli)?;
    let ctx = Ctx { config, format: cli.format, has_config_file };
    match cli.command {
        Command::Init(_) | Command::Demo(_) => unreachable!("handled above"),
        Command::Run => crate::agent::run(&ctx),
        Command::Sync(args) => crate::commands::sync(&ctx, &args),
        Command::Status => crate::commands::status(&ctx),
        Command::Report(args) => crate::commands::report(&ctx, &args),
        Command::Map(args) => crate::commands::map(&ctx, &args),
        Command::Approve(args) => crate::commands::approve(&ctx, &args),
        Command::Integration(cmd) => crate::commands::integration(&ctx, &cmd),
        Command::Import(args) => crate::commands::import(&ctx, &args),
        Command::Plugins => crate::commands::plugins(&ctx),
    }
}

fn init(args: &InitArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let files = [
        (args.dir.join(config::DEFAULT_FILE), config::STARTER),
        (args.dir.join("mapping.toml"), crate::mapping::STARTER),
    ];
    if !args.force
        && let Some((existing, _)) = files.iter().find(|(path, _)| path.exists())
    {
        return Err(UsageError(format!(
            "{} already exists; nothing was written. Use --force to overwrite it",
            existing.display()
        ))
        .into());
    }
    for (path, text) in &files {
        write_private(path, text)?;
        println!("wrote {}", path.display());
    }
    println!(
        "next: set CW_PUBLIC_KEY, CW_PRIVATE_KEY and CW_CLIENT_ID (or edit [psa.settings]), then \
         run `tally integration add safedns` and `tally run`"
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a file readable only by its owner, atomically (temporary file and rename).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("tally"),
        std::process::id()
    ));
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file =
            options.open(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
