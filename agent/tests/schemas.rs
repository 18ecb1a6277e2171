//! The JSON Schemas in `schemas/` against what the code reads and writes.
//!
//! The config schema and `Config::parse` must accept and refuse the same files; the report and
//! status schemas must accept the real output of `tally report`, `tally report --history` and
//! `tally status` (and `GET /status`) over a journal that a sync against the ConnectWise
//! emulator filled; and the real PSA plugin libraries must answer in the shape the plugin
//! message schema describes, down to the records of a listing. Formats (`date-time`, `date`,
//! `uri`) are checked, not only noted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Env;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tally_agent::config::{Config, STARTER, toml_to_json};
use tally_agent::journal::tables;
use tally_agent::journal::{Read, Write};
use tally_agent::model::{Listing, OutboxEntry, OutboxState, SyncRun, now_millis};
use tally_plugin_sdk::abi::{ABI_VERSION, PluginApi};
use tally_plugin_sdk::{Call, Checkpoint, HttpResponse, LineRef, ListMode, Operation, StepInput};
use tally_tests::connectwise::{CwData, sample_ids::*};

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
}

fn schema(name: &str) -> Value {
    let path = schema_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A validator for a schema file, or for one of its `$defs`, with format checks on.
fn validator(name: &str, def: Option<&str>) -> jsonschema::Validator {
    let mut schema = schema(name);
    if let Some(def) = def {
        let root = schema.as_object_mut().unwrap();
        for key in ["oneOf", "type", "properties", "required", "additionalProperties"] {
            root.remove(key);
        }
        root.insert("$ref".into(), Value::String(format!("#/$defs/{def}")));
    }
    jsonschema::draft202012::options().should_validate_formats(true).build(&schema).unwrap()
}

fn assert_valid(validator: &jsonschema::Validator, what: &str, instance: &Value) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "{what} does not match its schema:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema() {
    let mut names: Vec<String> = std::fs::read_dir(schema_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".schema.json"))
        .collect();
    names.sort();
    for expected in [
        "config.schema.json",
        "plugin-messages.schema.json",
        "report.schema.json",
        "status.schema.json",
    ] {
        assert!(names.iter().any(|n| n == expected), "schemas/{expected} is missing: {names:?}");
    }
    for name in &names {
        let schema = schema(name);
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{name}");
        assert!(schema["description"].is_string(), "{name} has no description");
        if let Err(e) = jsonschema::meta::validate(&schema) {
            panic!("{name} is not a valid JSON Schema: {e} at {}", e.instance_path());
        }
        validator(name, None);
    }
}

// ---------------------------------------------------------------------------------------------
// Config

fn config_json(text: &str) -> Value {
    let table: toml::Table =
        toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"));
    toml_to_json(toml::Value::Table(table))
}

fn loader_accepts(text: &str) -> Result<(), String> {
    Config::parse(Path::new("/etc/tally/tally.toml"), text).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn the_starter_config_matches_the_config_schema() {
    let validator = validator("config.schema.json", None);
    assert_valid(&validator, "the starter config", &config_json(STARTER));
    loader_accepts(STARTER).unwrap();
}

#[test]
fn the_config_schema_and_the_loader_accept_and_refuse_the_same_files() {
    let validator = validator("config.schema.json", None);
    let psa = "[psa]\nplugin = \"connectwise\"\n";
    let vendor = "[[vendor]]\nname = \"safedns\"\n";
    let accepted = [
        String::new(),
        "journal = \"/var/lib/tally/tally.redb\"\nplugin_dir = \"/usr/lib/tally/plugins\"\n".into(),
        "[agent]\nlisten = \"[::1]:0\"\nquick_sync_every = \"1h30m\"\nfull_sync_every = \"2w\"\n\
         lookback = \"0s\"\nretire_guard_percent = 80\nadmin_token_file = \"/run/tally/token\"\n"
            .into(),
        format!("{psa}apply = \"all\"\nhold_reductions_over = 12.5\nmax_concurrency = 2\n"),
        format!(
            "{psa}apply = \"increases\"\nhold_reductions_over = \"7.5\"\nrequests_per_minute = 60\n"
        ),
        format!(
            "{psa}[psa.settings]\nsite = \"${{SITE}}\"\npage_size = 500\nnested = {{ a = [1, 2] }}\n"
        ),
        format!(
            "{vendor}source = \"csv\"\n[vendor.csv]\naccount_id = \"Customer ID\"\nquantity = \"Seats\"\n"
        ),
        format!(
            "{vendor}source = \"plugin\"\nplugin = \"safedns-pull\"\n[vendor.settings]\nkey = 1\n"
        ),
        format!(
            "{vendor}source = \"push\"\n\n[[vendor]]\nname = \"dnsfilter\"\nsource = \"csv\"\n"
        ),
    ];
    let refused = [
        // Unknown keys, at every level that denies them.
        "journall = \"tally.redb\"\n".to_string(),
        "[agent]\nlisen = \"127.0.0.1:8737\"\n".into(),
        format!("{psa}applly = \"all\"\n"),
        format!("{vendor}source = \"push\"\nurl = \"https://example.com\"\n"),
        format!("{vendor}source = \"csv\"\n[vendor.csv]\naccount = \"Customer\"\n"),
        "[web]\nport = 80\n".into(),
        // Wrong types and values.
        "journal = 5\n".into(),
        "agent = \"fast\"\n".into(),
        "[agent]\nretire_guard_percent = \"50\"\n".into(),
        "[agent]\nretire_guard_percent = -1\n".into(),
        "[agent]\nquick_sync_every = \"1 hour\"\n".into(),
        "[agent]\nfull_sync_every = \"7\"\n".into(),
        "[agent]\nlisten = \"localhost:8737\"\n".into(),
        "[agent]\nlisten = \"127.0.0.1\"\n".into(),
        format!("{psa}apply = \"sometimes\"\n"),
        format!("{psa}hold_reductions_over = \"twenty\"\n"),
        format!("{psa}hold_reductions_over = true\n"),
        format!("{psa}max_concurrency = 1.5\n"),
        format!("{psa}requests_per_minute = -5\n"),
        format!("{psa}settings = \"site\"\n"),
        "[psa]\napply = \"all\"\n".into(),
        format!("{vendor}source = \"ftp\"\n"),
        vendor.to_string(),
        format!("{vendor}source = \"plugin\"\n"),
        format!("{vendor}source = \"csv\"\ncsv = \"columns\"\n"),
        "vendor = { name = \"safedns\", source = \"push\" }\n".into(),
    ];
    for text in &accepted {
        assert_valid(&validator, &format!("this config:\n{text}"), &config_json(text));
        if let Err(e) = loader_accepts(text) {
            panic!("the schema accepts what the loader refuses ({e}):\n{text}");
        }
    }
    for text in &refused {
        assert!(!validator.is_valid(&config_json(text)), "the schema accepts:\n{text}");
        assert!(loader_accepts(text).is_err(), "the loader accepts:\n{text}");
    }
}

/// Unique vendor names cannot be said in JSON Schema: the loader alone refuses a duplicate.
#[test]
fn a_duplicate_vendor_name_is_refused_by_the_loader_only() {
    let text = "[[vendor]]\nname = \"safedns\"\nsource = \"push\"\n\n\
                [[vendor]]\nname = \"safedns\"\nsource = \"csv\"\n";
    assert!(validator("config.schema.json", None).is_valid(&config_json(text)));
    let error = loader_accepts(text).unwrap_err();
    assert!(error.contains("configured twice"), "{error}");
}

#[test]
fn the_starter_mapping_file_matches_the_mapping_schema() {
    if !schema_dir().join("mapping.schema.json").exists() {
        return;
    }
    let validator = validator("mapping.schema.json", None);
    let json: Value = toml::from_str(tally_agent::mapping::STARTER).unwrap();
    assert_valid(&validator, "the starter mapping file", &json);
    // The starter's examples, uncommented, are entries the schema takes too.
    let uncommented: String = tally_agent::mapping::STARTER
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.starts_with('[') || l.contains(" = "))
        .map(|l| format!("{}\n", l.split("  #").next().unwrap().trim_end()))
        .collect();
    let json: Value = toml::from_str(&uncommented).unwrap();
    assert!(json["account"].as_array().is_some_and(|a| a.len() == 3), "{json:#}");
    assert_valid(&validator, "the starter mapping's examples", &json);
}

// ---------------------------------------------------------------------------------------------
// Report and status

/// Usage that makes every kind of card, as in the sync tests, plus an unmapped and an
/// excluded account.
fn seed(env: &Env) {
    env.usage("contoso", CONTOSO, "safedns-pro", SAFEDNS_SEAT, "45"); // 42 in force: +3
    env.usage("obrien", OBRIEN, "m365", M365_BP, "10.5"); // 8: +2.5
    env.usage("tailspin", TAILSPIN, "m365", M365_BP, "28"); // 30: a reduction, held
    env.usage("muller", MULLER, "safedns-pro", SAFEDNS_SEAT, "15"); // 15: match
    env.usage("northwind", NORTHWIND, "edr", EDR_AGENT, "55"); // two lines in force: review
    let journal = env.journal();
    journal
        .write(|tx| {
            let now = now_millis();
            for account in ["stranger", "lab"] {
                tx.put(
                    &tables::ACCOUNTS,
                    &tables::key2("safedns", account),
                    &tally_agent::model::Account {
                        vendor: "safedns".into(),
                        id: account.into(),
                        name: format!("{account} account"),
                        description: String::new(),
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                tx.put(
                    &tables::USAGE,
                    &tables::key3("safedns", "safedns-pro", account),
                    &tally_agent::model::UsageCount {
                        vendor: "safedns".into(),
                        account_id: account.into(),
                        service_id: "safedns-pro".into(),
                        quantity: Decimal::from(3),
                        received_at: now,
                        previous: vec![],
                    },
                )?;
            }
            Ok::<_, tally_agent::journal::JournalError>(())
        })
        .unwrap();
    let mapping = env.path("mapping.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        format!("{text}\n[[account]]\nvendor = \"safedns\"\nid = \"lab\"\nexclude = true\n"),
    )
    .unwrap();
}

/// A write that was in flight when its process died, against a line someone has since
/// changed in the PSA: the next sync records a conflict.
fn interrupted_write(env: &Env) {
    env.journal()
        .write(|tx| {
            tx.append(&tables::OUTBOX, |id| OutboxEntry {
                id,
                company_id: CONTOSO.to_string(),
                product_id: SAFEDNS_SEAT.to_string(),
                agreement_id: CONTOSO_AGREEMENT.to_string(),
                line_id: "2".into(),
                old_quantity: Some(Decimal::from(45)),
                target_quantity: Decimal::from(47),
                effective_date: "2024-05-20".into(),
                decided_by: "policy".into(),
                created_at: 0,
                state: OutboxState::Sent,
                attempts: 1,
                last_error: None,
                updated_at: 0,
            })
        })
        .unwrap();
    env.cw.update_addition(CONTOSO_AGREEMENT, 2, |a| a.quantity = Decimal::from(50));
}

/// A sync that looks alive (its pid is this test's) and a listing stopped half-way, so that
/// the status shows a current sync and a stream under way.
fn sync_in_progress(env: &Env) -> u64 {
    let journal = env.journal();
    journal
        .write(|tx| {
            let mut companies = tx.get(&tables::STREAMS, "companies")?.expect("a companies stream");
            companies.listing = Some(Listing {
                started_at: now_millis(),
                full: true,
                records: 3,
                pages: 1,
                from: Checkpoint::default(),
            });
            companies.last_error = Some("server: 503 from company/companies".into());
            companies.last_error_at = Some(now_millis());
            tx.put(&tables::STREAMS, "companies", &companies)?;
            tx.append(&tables::SYNC_RUNS, |id| SyncRun {
                id,
                full: true,
                trigger: "schedule".into(),
                started_at: now_millis(),
                finished_at: None,
                streams_complete: 1,
                streams_incomplete: 0,
                records: 12,
                requests: 4,
                outcome: None,
                pid: std::process::id(),
            })
        })
        .unwrap()
}

fn end_sync(env: &Env, id: u64) {
    env.journal()
        .write(|tx| {
            let key = tables::seq_key(id);
            let mut run = tx.get(&tables::SYNC_RUNS, &key)?.unwrap();
            run.finished_at = Some(now_millis());
            run.outcome = Some("incomplete".into());
            tx.put(&tables::SYNC_RUNS, &key, &run)
        })
        .unwrap();
}

/// A `tally run` this test started, stopped when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn report_history_and_status_documents_match_their_schemas() {
    let env = Env::new(CwData::sample(), "increases");
    let cards_doc = validator("report.schema.json", Some("cards_document"));
    let history_doc = validator("report.schema.json", Some("history"));
    let report_any = validator("report.schema.json", None);
    let status_doc = validator("status.schema.json", None);

    env.ok(&["integration", "add", "safedns"]);
    seed(&env);
    env.ok(&["sync"]);
    interrupted_write(&env);
    env.ok(&["sync"]);
    let cards = json_of(&env.ok(&["report", "--format", "json"]));
    let held = Env::card(&cards, &TAILSPIN.to_string(), &M365_BP.to_string());
    assert_eq!(held["action"], "held", "{held:#}");
    env.ok(&["approve", held["card"].as_str().unwrap()]);
    env.ok(&["sync"]);

    // Every status and every action appears, so every branch of a row is checked.
    let cards = json_of(&env.ok(&["report", "--format", "json", "--sort", "money"]));
    assert_valid(&cards_doc, "tally report --format json", &cards);
    assert_valid(&report_any, "tally report --format json", &cards);
    let rows = cards["cards"].as_array().unwrap();
    for status in ["match", "reconcile", "stale", "unmapped", "excluded"] {
        assert!(rows.iter().any(|c| c["status"] == status), "no {status} card: {cards:#}");
    }
    for action in ["-", "held", "review"] {
        assert!(rows.iter().any(|c| c["action"] == action), "no {action} action: {cards:#}");
    }
    let filtered = json_of(&env.ok(&["report", "--format", "json", "--status", "unmapped"]));
    assert_valid(&cards_doc, "tally report --status unmapped", &filtered);

    let history = json_of(&env.ok(&["report", "--history", "--format", "json"]));
    assert_valid(&history_doc, "tally report --history --format json", &history);
    assert_valid(&report_any, "tally report --history --format json", &history);
    let outcomes: Vec<&str> =
        history.as_array().unwrap().iter().filter_map(|h| h["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"applied") && outcomes.contains(&"conflict"), "{history:#}");

    // The mapping file the test wrote is one the mapping schema takes.
    if schema_dir().join("mapping.schema.json").exists() {
        let text = std::fs::read_to_string(env.path("mapping.toml")).unwrap();
        let json: Value = toml::from_str(&text).unwrap();
        assert_valid(&validator("mapping.schema.json", None), "the test's mapping file", &json);
    }

    // Status: with a sync and a listing under way, then with the agent running.
    let run = sync_in_progress(&env);
    let status = json_of(&env.ok(&["status", "--format", "json"]));
    assert_valid(&status_doc, "tally status --format json", &status);
    assert_eq!(status["current_sync"]["id"], run, "{status:#}");
    assert!(status["streams"].as_array().unwrap().iter().any(|s| s["listing"].is_object()));
    assert!(status["streams"].as_array().unwrap().iter().any(|s| s["parents"].is_u64()));
    assert_eq!(status["integrations"][0]["name"], "safedns", "{status:#}");
    assert!(status["mapping_file"].is_object(), "{status:#}");
    end_sync(&env, run);

    let log = std::fs::File::create(env.path("agent.log")).unwrap();
    let agent =
        Running(env.command().arg("run").stdout(Stdio::null()).stderr(log).spawn().unwrap());
    let pid = agent.0.id();
    let listen = wait_for("the agent to describe itself", || {
        let text = std::fs::read_to_string(env.path("tally.redb.agent")).ok()?;
        let info: Value = serde_json::from_str(&text).ok()?;
        (info["pid"] == pid).then(|| info["listen"].as_str().unwrap().to_string())
    });
    let status = json_of(&env.ok(&["status", "--format", "json"]));
    assert_valid(&status_doc, "tally status --format json beside the agent", &status);
    assert_eq!(status["agent"]["pid"], pid);
    let token = std::fs::read_to_string(env.path("tally.token")).unwrap().trim().to_string();
    let rt = runtime();
    let (code, body) = rt.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://{listen}/status"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    assert_eq!(code, 200, "{body}");
    assert_valid(&status_doc, "GET /status", &json_of(&body));
    drop(agent);
}

#[test]
fn documents_of_an_empty_journal_match_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tally.toml"),
        "[[vendor]]\nname = \"dnsfilter\"\nsource = \"csv\"\n",
    )
    .unwrap();
    // Read-only commands never create a journal: make the empty one they read.
    drop(tally_agent::journal::Journal::open(&dir.path().join("tally.redb"), None).unwrap());
    let tally = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--config")
            .arg(dir.path().join("tally.toml"))
            .args(args)
            .env_remove("TALLY_CONFIG")
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "tally {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        json_of(&String::from_utf8_lossy(&out.stdout))
    };
    let status = tally(&["status", "--format", "json"]);
    assert_valid(&validator("status.schema.json", None), "an empty status", &status);
    assert!(status["psa"].is_null() && status["agent"].is_null(), "{status:#}");
    let cards = tally(&["report", "--format", "json"]);
    assert_valid(&validator("report.schema.json", Some("cards_document")), "no cards", &cards);
    let history = tally(&["report", "--history", "--format", "json"]);
    assert_eq!(history, json!([]));
    assert_valid(&validator("report.schema.json", Some("history")), "no history", &history);
}

// ---------------------------------------------------------------------------------------------
// The real plugins

/// A PSA plugin library built with the binary, called as the host calls it.
struct Library {
    api: &'static PluginApi,
    calls: jsonschema::Validator,
    replies: jsonschema::Validator,
}

impl Library {
    fn load(name: &str) -> Library {
        let dir = Path::new(env!("CARGO_BIN_EXE_tally")).parent().unwrap();
        let file =
            format!("{}tally_{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
        // `cargo build` puts workspace plugins next to the binary; `cargo test` leaves them in
        // `deps`, where they were built as dependencies of `tally`.
        let path = [dir.join(&file), dir.join("deps").join(&file)]
            .into_iter()
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{file} is neither in {} nor in its deps", dir.display()));
        // SAFETY: a plugin of this workspace, built with the binary under test. It is never
        // unloaded, as the host never unloads one.
        let library: &'static libloading::Library = Box::leak(Box::new(
            unsafe { libloading::Library::new(&path) }
                .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        ));
        // SAFETY: ABI 1 defines both symbols with these signatures.
        let version =
            unsafe { library.get::<extern "C" fn() -> u32>(b"tally_plugin_abi_version\0") }
                .unwrap();
        assert_eq!(version(), ABI_VERSION);
        let entry =
            unsafe { library.get::<extern "C" fn() -> *const PluginApi>(b"tally_plugin_v1\0") }
                .unwrap();
        let api = entry();
        assert!(!api.is_null());
        // SAFETY: the table lives as long as the library, which is never unloaded.
        let api: &'static PluginApi = unsafe { &*api };
        Library {
            api,
            calls: validator("plugin-messages.schema.json", Some("Call")),
            replies: validator("plugin-messages.schema.json", Some("Reply")),
        }
    }

    /// One call: the call and the raw reply both checked against the schema.
    fn call(&self, call: &Call) -> Value {
        let call = serde_json::to_value(call).unwrap();
        assert_valid(&self.calls, "a call", &call);
        let bytes = serde_json::to_vec(&call).unwrap();
        // SAFETY: `bytes` is readable for the call; the reply is copied, then handed back to
        // the plugin's own `free`.
        let reply = unsafe {
            let buffer = (self.api.invoke)(bytes.as_ptr(), bytes.len());
            let reply = std::slice::from_raw_parts(buffer.ptr, buffer.len).to_vec();
            (self.api.free)(buffer);
            reply
        };
        let reply: Value = serde_json::from_slice(&reply).unwrap();
        assert_valid(&self.replies, &format!("the reply to {call}"), &reply);
        reply
    }
}

/// Drives one operation to its end, sending its requests from here as the host would, and
/// returns the records of its pages and its result.
fn drive(
    plugin: &Library,
    rt: &tokio::runtime::Runtime,
    session: u64,
    operation: Operation,
) -> (Vec<Value>, Value) {
    let http = reqwest::Client::new();
    let reply = plugin.call(&Call::Start { session, operation: operation.clone() });
    assert_eq!(reply["reply"], "started", "{reply:#}");
    let id = reply["operation"].as_u64().unwrap();
    let mut step = reply["step"].clone();
    let mut records = Vec::new();
    let result = loop {
        let input = match step["step"].as_str().unwrap() {
            "send" => {
                let request: tally_plugin_sdk::HttpRequest =
                    serde_json::from_value(step["request"].clone()).unwrap();
                let response = rt.block_on(async {
                    let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
                    let mut builder = http.request(method, &request.url);
                    for header in &request.headers {
                        builder = builder.header(&header.name, &header.value);
                    }
                    if let Some(body) = &request.body {
                        builder = builder.body(body.clone());
                    }
                    let response = builder.send().await.unwrap();
                    let status = response.status().as_u16();
                    let headers = response
                        .headers()
                        .iter()
                        .map(|(name, value)| tally_plugin_sdk::Header {
                            name: name.to_string(),
                            value: value.to_str().unwrap_or_default().to_string(),
                        })
                        .collect();
                    HttpResponse { status, headers, body: response.text().await.unwrap() }
                });
                StepInput::Response { response }
            }
            "page" => {
                records.extend(step["records"].as_array().unwrap().iter().cloned());
                if step["last"] == true {
                    break Value::Null;
                }
                StepInput::Continue
            }
            "done" => break step["result"].clone(),
            _ => panic!("{operation:?} failed: {step:#}"),
        };
        let reply = plugin.call(&Call::Step { operation: id, input });
        assert_eq!(reply["reply"], "stepped", "{reply:#}");
        step = reply["step"].clone();
    };
    let reply = plugin.call(&Call::Finish { operation: id });
    assert_eq!(reply["reply"], "done");
    (records, result)
}

#[test]
fn the_psa_plugins_handshakes_and_refusals_match_the_message_schema() {
    for name in ["connectwise", "autotask", "halopsa"] {
        let plugin = Library::load(name);
        let reply = plugin.call(&Call::Handshake);
        assert_eq!(reply["reply"], "handshake", "{name}: {reply:#}");
        assert_eq!(reply["handshake"]["name"], name);
        let reply = plugin.call(&Call::Open { settings: json!({}) });
        assert_eq!(reply["reply"], "failed", "{name}: {reply:#}");
        assert_eq!(reply["error"]["kind"], "config", "{name}: {reply:#}");
        let reply = plugin.call(&Call::Step { operation: 999_999, input: StepInput::Start });
        assert_eq!(reply["reply"], "failed", "{name}: {reply:#}");
    }
}

#[test]
fn connectwise_listings_and_line_reads_match_the_message_schema() {
    let env = Env::new(CwData::sample(), "none");
    let plugin = Library::load("connectwise");
    let rt = runtime();
    let settings = json!({
        "site": env.cw.base_url(),
        "company_id": env.cw.company_id(),
        "public_key": env.cw.public_key(),
        "private_key": env.cw.private_key(),
        "client_id": env.cw.client_id(),
    });
    let reply = plugin.call(&Call::Open { settings });
    assert_eq!(reply["reply"], "opened", "{reply:#}");
    let session = reply["session"].as_u64().unwrap();

    let (_, probed) = drive(&plugin, &rt, session, Operation::Probe);
    assert_eq!(probed["result"], "probed", "{probed:#}");
    let list = |stream: &str, parent_id: Option<String>| Operation::List {
        stream: stream.into(),
        mode: ListMode::Full,
        checkpoint: None,
        parent_id,
        lookback_seconds: 600,
    };
    let mut kinds = std::collections::BTreeSet::new();
    for stream in ["companies", "products", "agreements"] {
        let (records, _) = drive(&plugin, &rt, session, list(stream, None));
        assert!(!records.is_empty(), "{stream}: no records");
        kinds.extend(records.iter().filter_map(|r| r["kind"].as_str().map(str::to_string)));
    }
    let (lines, _) =
        drive(&plugin, &rt, session, list("billing_lines", Some(CONTOSO_AGREEMENT.to_string())));
    assert!(lines.iter().any(|l| l["cancelled_date"].is_string()), "{lines:#?}");
    kinds.extend(lines.iter().filter_map(|r| r["kind"].as_str().map(str::to_string)));
    assert_eq!(kinds.len(), 4, "{kinds:?}");

    let line = LineRef { id: "2".into(), agreement_id: CONTOSO_AGREEMENT.to_string() };
    let (_, read) = drive(&plugin, &rt, session, Operation::ReadLine { line });
    assert_eq!(read["result"], "line", "{read:#}");
    let quantity: Decimal = read["line"]["quantity"].as_str().unwrap().parse().unwrap();
    assert_eq!(quantity, Decimal::from(42), "{read:#}");

    let reply = plugin.call(&Call::Close { session });
    assert_eq!(reply["reply"], "done");
}
