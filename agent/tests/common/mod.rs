//! Shared helpers of the end-to-end tests: a ConnectWise emulator, a config pointing at it, the
//! `tally` binary, and direct journal seeding for vendor data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rust_decimal::Decimal;
use tally_agent::journal::tables::{self, key2, key3};
use tally_agent::journal::{Journal, Write};
use tally_agent::model::{Account, Mapping, Origin, Service, Target, UsageCount, now_millis};
use tally_tests::connectwise::{ConnectWiseEmulator, CwData};

/// A ConnectWise emulator and a tally workspace configured for it.
pub struct Env {
    pub ws: Workspace,
    pub cw: ConnectWiseEmulator,
}

impl std::ops::Deref for Env {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        &self.ws
    }
}

/// A directory with a config, a mapping file and a journal, and the `tally` binary to run.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Environment variables every command gets (the secrets the config refers to).
    pub vars: Vec<(String, String)>,
}

impl Workspace {
    pub fn new(config_text: &str, vars: Vec<(String, String)>) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tally.toml");
        std::fs::write(&config, config_text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(dir.path().join("mapping.toml"), "# no manual entries\n").unwrap();
        Workspace { dir, config, vars }
    }
}

impl Env {
    pub fn new(data: CwData, apply: &str) -> Env {
        let cw = ConnectWiseEmulator::start(data);
        let text = format!(
            r#"journal = "tally.redb"
mapping = "mapping.toml"

[agent]
listen = "127.0.0.1:0"
lookback = "10m"

[psa]
plugin = "connectwise"
apply = "{apply}"
hold_reductions_over = 20

[psa.settings]
site = "{site}"
company_id = "{company}"
public_key = "{public}"
private_key = "${{TEST_CW_PRIVATE_KEY}}"
client_id = "{client}"

[[vendor]]
name = "safedns"
source = "push"
"#,
            site = cw.base_url(),
            company = cw.company_id(),
            public = cw.public_key(),
            client = cw.client_id(),
        );
        let vars = vec![("TEST_CW_PRIVATE_KEY".to_string(), cw.private_key().to_string())];
        Env { ws: Workspace::new(&text, vars), cw }
    }
}

impl Workspace {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .arg("--config")
            .arg(&self.config)
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .env_remove("TALLY_CONFIG")
            .current_dir(self.dir.path());
        command
    }

    pub fn tally(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// Runs tally and insists on success.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.tally(args);
        assert!(
            out.status.success(),
            "tally {args:?} failed ({:?}):\n{}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn journal(&self) -> Journal {
        Journal::open(&self.path("tally.redb"), None).unwrap()
    }

    /// Stores a vendor account, service and usage count, and maps them, as intake and the
    /// mapping file would.
    pub fn usage(
        &self,
        account: &str,
        company_id: i64,
        service: &str,
        product_id: i64,
        quantity: &str,
    ) {
        let journal = self.journal();
        let now = now_millis();
        journal
            .write(|tx| {
                tx.put(
                    &tables::ACCOUNTS,
                    &key2("safedns", account),
                    &Account {
                        vendor: "safedns".into(),
                        id: account.into(),
                        name: account.into(),
                        description: String::new(),
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                tx.put(
                    &tables::SERVICES,
                    &key2("safedns", service),
                    &Service {
                        vendor: "safedns".into(),
                        id: service.into(),
                        name: service.into(),
                        description: String::new(),
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                tx.put(
                    &tables::USAGE,
                    &key3("safedns", service, account),
                    &UsageCount {
                        vendor: "safedns".into(),
                        account_id: account.into(),
                        service_id: service.into(),
                        quantity: quantity.parse::<Decimal>().unwrap(),
                        received_at: now,
                        previous: Vec::new(),
                    },
                )?;
                tx.put(
                    &tables::ACCOUNT_MAPPINGS,
                    &key2("safedns", account),
                    &Mapping { target: Target::Id(company_id.to_string()), origin: Origin::File },
                )?;
                tx.put(
                    &tables::SERVICE_MAPPINGS,
                    &key2("safedns", service),
                    &Mapping { target: Target::Id(product_id.to_string()), origin: Origin::File },
                )?;
                Ok::<_, tally_agent::journal::JournalError>(())
            })
            .unwrap();
        self.append_mapping(account, company_id, service, product_id);
    }

    fn append_mapping(&self, account: &str, company_id: i64, service: &str, product_id: i64) {
        use std::io::Write as _;
        let path = self.path("mapping.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(
            file,
            "\n[[account]]\nvendor = \"safedns\"\nid = \"{account}\"\ncompany = {company_id}\n"
        )
        .unwrap();
        let service_entry = format!("id = \"{service}\"\nproduct = {product_id}\n");
        if !text.contains(&service_entry) {
            write!(file, "\n[[service]]\nvendor = \"safedns\"\n{service_entry}").unwrap();
        }
    }

    pub fn cards(&self) -> serde_json::Value {
        let out = self.ok(&["report", "--format", "json"]);
        serde_json::from_str(&out).unwrap()
    }

    pub fn card<'a>(
        cards: &'a serde_json::Value,
        company: &str,
        product: &str,
    ) -> &'a serde_json::Value {
        cards["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["company_id"] == company && c["product_id"] == product)
            .unwrap_or_else(|| panic!("no card for {company}/{product} in {cards:#}"))
    }
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

impl Env {
    pub fn card<'a>(
        cards: &'a serde_json::Value,
        company: &str,
        product: &str,
    ) -> &'a serde_json::Value {
        Workspace::card(cards, company, product)
    }
}
