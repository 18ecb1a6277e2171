//! `tally demo`: the whole flow on built-in sample data, with no setup and no network.
//!
//! It starts the ConnectWise emulator in this process, creates a vendor integration, lets a
//! "vendor" push accounts, services and usage through the real vendor API on loopback, loads
//! the real ConnectWise plugin from the build, maps, syncs, reconciles, applies the increases,
//! and prints the report with a short explanation. Everything it writes goes to a temporary
//! directory (or `--keep DIR`); it never touches a real PSA or the user's own journal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::Engine as _;
use serde_json::json;
use tally_tests::connectwise::{ConnectWiseEmulator, CwData};

use crate::cli::{DemoArgs, Format};
use crate::config::Config;
use crate::journal::Journal;
use crate::sync::engine::{self, SyncOptions};
use crate::sync::progress::Progress;

/// What the demo's vendor reports: (account id, account name, service, seats).
const USAGE: &[(&str, &str, &str, u32)] = &[
    ("sd-1001", "Contoso Ltd", "SafeDNS Pro", 45),
    ("sd-1002", "O'Brien & Sons", "SafeDNS Pro", 10),
    ("sd-1003", "Müller Bäckerei GmbH", "SafeDNS Pro", 15),
    ("sd-1004", "Fabrikam Inc", "SafeDNS Pro", 9),
    ("sd-1005", "Tailspin Toys", "SafeDNS Pro", 4),
    ("sd-1006", "Northwind Traders", "SafeDNS Pro", 21),
    ("sd-1007", "Adventure Works", "SafeDNS Pro", 30),
];

pub fn run(args: &DemoArgs, format: Format) -> anyhow::Result<ExitCode> {
    let temp;
    let dir: &Path = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => {
            temp = tempfile_dir()?;
            temp.path()
        }
    };
    let quiet = format == Format::Json;
    let say = |text: &str| {
        if !quiet {
            eprintln!("{text}");
        }
    };

    say("Starting a ConnectWise PSA emulator with a small MSP's data (8 companies, 5 products)...");
    let cw = ConnectWiseEmulator::start(CwData::sample());
    let config_path = dir.join("tally.toml");
    crate::cli::write_private(&config_path, &config_text(&cw))?;
    std::fs::write(dir.join("mapping.toml"), "# written by tally demo\n")?;
    let mut config = Config::load(&config_path, true)?;
    // The demo's secrets are the emulator's, held only in this process.
    config.psa.as_mut().expect("the demo config has a [psa] section").settings["private_key"] =
        json!(cw.private_key());
    let journal = Journal::open(&config.journal, Some(&config.mapping))?;

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(flow(&journal, &config, &say))?;

    let cards = crate::report::select(
        &journal,
        &crate::cli::ReportArgs {
            status: Vec::new(),
            company: None,
            sort: "company".into(),
            history: false,
        },
    )?;
    let mut out = std::io::stdout().lock();
    crate::report::print_cards(&cards, format, &mut out)?;
    if !quiet {
        use std::io::Write as _;
        writeln!(out, "\nChanges written to the PSA (`tally report --history`):")?;
        crate::report::print_history(&journal, Format::Table, &mut out)?;
        writeln!(
            out,
            "\nWhat happened:\n\
             - A vendor (\"safedns\") pushed {} accounts and their seat counts to tally's vendor API,\n  \
               exactly as a vendor script written for Gradient's vendor API would.\n\
             - Accounts were matched to PSA companies by exact name (\"Fabrikam Inc\" matches the PSA's\n  \
               \"Fabrikam<U+00A0>Inc\" once invisible spaces are normalised); the one service was mapped\n  \
               in mapping.toml.\n\
             - The ConnectWise plugin read companies, products, agreements and additions ({} requests).\n\
             - Each card compares the vendor's count with what the PSA bills today. With apply =\n  \
               \"increases\", {} increase(s) were written to the PSA; reductions wait for `tally approve`.\n\
             - Adventure Works is unknown to the PSA: it shows as unmapped usage, never dropped.\n\
             \nTo use your own PSA: `tally init`, put your ConnectWise site and API keys in tally.toml,\n\
             `tally integration add safedns` for each vendor, then `tally run`.",
            USAGE.len(),
            report.requests,
            report.applied
        )?;
        if args.keep.is_some() {
            writeln!(out, "The demo's files are in {}.", dir.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("tally-demo-")
        .tempdir()
        .context("cannot create a temporary directory")
}

fn config_text(cw: &ConnectWiseEmulator) -> String {
    format!(
        r#"journal = "tally.redb"
mapping = "mapping.toml"

[agent]
listen = "127.0.0.1:0"

[psa]
plugin = "connectwise"
apply = "increases"

[psa.settings]
site = "{site}"
company_id = "{company}"
public_key = "{public}"
private_key = "set by the demo"
client_id = "{client}"

[[vendor]]
name = "safedns"
source = "push"
"#,
        site = cw.base_url(),
        company = cw.company_id(),
        public = cw.public_key(),
        client = cw.client_id(),
    )
}

async fn flow(
    journal: &Journal,
    config: &Config,
    say: &dyn Fn(&str),
) -> anyhow::Result<crate::sync::engine::SyncReport> {
    say("Creating the vendor integration \"safedns\" and its partner key...");
    let issued = crate::intake::integrations::add(journal, config, "safedns")?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = crate::intake::api::router(crate::intake::api::IntakeState::new(
        journal.clone(),
        config.clone(),
    ));
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    say("The vendor checks the connection and pushes accounts, a service and seat counts...");
    let service_id = push(&base, &issued.key).await.context("the demo vendor's push failed")?;
    server.abort();

    say("Mapping the vendor's service to the PSA product in mapping.toml...");
    std::fs::write(
        &config.mapping,
        format!(
            "# The vendor calls its SKU \"SafeDNS Pro\"; the PSA's catalog calls it SAFEDNS-SEAT.\n\
             # Accounts need no entry: their names match PSA companies exactly.\n\
             [[service]]\nvendor = \"safedns\"\nid = \"{service_id}\"\nproduct = \"SAFEDNS-SEAT\"\n"
        ),
    )?;

    say("Loading the ConnectWise plugin and syncing the PSA...");
    let session = crate::psa::open(config).context(
        "the demo needs the ConnectWise plugin built next to tally: run it from a workspace build \
         (`cargo run -p tally -- demo`)",
    )?;
    engine::probe(&session)
        .await
        .map_err(|e| anyhow::anyhow!("the emulator refused the probe: {e}"))?;
    let options =
        SyncOptions { full: true, confirm_retire: false, trigger: "demo".into(), apply: true };
    let report = engine::sync(journal, config, &session, &options, &Progress::hidden()).await?;
    say("");
    Ok(report)
}

/// Pushes the demo vendor's data; returns the service id tally assigned.
async fn push(base: &str, partner_key: &str) -> anyhow::Result<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("safedns-demo:{partner_key}"));
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}/api/vendor-api{path}"))
            .header("GRADIENT-TOKEN", &token)
    };
    let check = |response: reqwest::Response| async move {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        anyhow::ensure!(status.is_success(), "{status}: {text}");
        Ok::<_, anyhow::Error>(text)
    };
    check(call(reqwest::Method::GET, "/organization").send().await?).await?;
    check(call(reqwest::Method::PATCH, "/organization/status/pending").send().await?).await?;
    let accounts: Vec<_> = USAGE
        .iter()
        .map(|(id, name, _, _)| json!({"id": id, "name": name, "description": ""}))
        .collect();
    check(call(reqwest::Method::POST, "/organization/accounts").json(&accounts).send().await?)
        .await?;
    let service = check(
        call(reqwest::Method::POST, "/service")
            .json(&json!({"name": "SafeDNS Pro", "description": "DNS filtering, per seat"}))
            .send()
            .await?,
    )
    .await?;
    let service: serde_json::Value = serde_json::from_str(&service)?;
    let service_id = service["data"]["id"]
        .as_str()
        .or(service["data"]["_id"].as_str())
        .context("the service reply has no id")?
        .to_string();
    for (account, _, _, seats) in USAGE {
        check(
            call(reqwest::Method::POST, &format!("/service/{service_id}/count"))
                .json(&json!({"accountId": account, "unitCount": seats}))
                .send()
                .await?,
        )
        .await?;
    }
    Ok(service_id)
}
