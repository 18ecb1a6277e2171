//! `tally run` as a child process, driven as an MSP and a vendor would: connect, check the
//! connection, push accounts, services and counts, edit the mapping file, sync over HTTP, read
//! status and metrics, run other commands beside it, and stop it with SIGTERM.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Env;
use serde_json::{Value, json};
use tally_tests::connectwise::CwData;

struct Agent {
    child: Child,
    base: String,
    token: String,
}

/// A test that fails part-way must not leave its agent running.
impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(env: &Env) -> Agent {
    let log = std::fs::File::create(env.path("agent.log")).unwrap();
    let child = env.command().arg("run").stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let pid = child.id();
    let info: Value = wait_for("the agent to describe itself", || {
        let text = std::fs::read_to_string(env.path("tally.redb.agent")).ok()?;
        let info: Value = serde_json::from_str(&text).ok()?;
        (info["pid"] == pid).then_some(info)
    });
    let token = std::fs::read_to_string(env.path("tally.token")).unwrap().trim().to_string();
    Agent { child, base: format!("http://{}", info["listen"].as_str().unwrap()), token }
}

fn runtime() -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn send(rt: &tokio::runtime::Runtime, request: reqwest::RequestBuilder) -> (u16, Value) {
    rt.block_on(async {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    })
}

#[test]
fn the_agent_takes_vendor_pushes_syncs_on_request_and_stops_cleanly() {
    let env = Env::new(CwData::sample(), "none");
    let rt = runtime();
    let added = env.ok(&["integration", "add", "safedns", "--format", "json"]);
    let added: Value = serde_json::from_str(&added).unwrap();
    let partner_key = added["partner_key"].as_str().unwrap().to_string();
    let mut agent = start(&env);
    let http = reqwest::Client::new();
    let gradient =
        base64::engine::general_purpose::STANDARD.encode(format!("vendor-7:{partner_key}"));
    let vendor = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", agent.base)).header("GRADIENT-TOKEN", &gradient)
    };

    // Health needs no token; status does.
    let (code, _) = send(&rt, http.get(format!("{}/healthz", agent.base)));
    assert_eq!(code, 200);
    let (code, _) = send(&rt, http.get(format!("{}/status", agent.base)));
    assert_eq!(code, 401);

    // Connect: "Check Connection", then pending, accounts, a service and counts.
    let (code, org) = send(&rt, vendor(reqwest::Method::GET, "/api/vendor-api/organization"));
    assert_eq!(code, 200, "{org}");
    let (code, _) =
        send(&rt, vendor(reqwest::Method::PATCH, "/api/vendor-api/organization/status/pending"));
    assert_eq!(code, 200);
    let accounts = json!([
        {"id": "acct-contoso", "name": "Contoso Ltd", "description": ""},
        {"id": "acct-obrien", "name": "O'Brien & Sons", "description": ""},
        {"id": "acct-nobody", "name": "Nobody Known", "description": ""}
    ]);
    let (code, body) = send(
        &rt,
        vendor(reqwest::Method::POST, "/api/vendor-api/organization/accounts").json(&accounts),
    );
    assert!(code == 200 || code == 201, "{code} {body}");
    let (code, service) = send(
        &rt,
        vendor(reqwest::Method::POST, "/api/vendor-api/service")
            .json(&json!({"name": "SafeDNS Pro"})),
    );
    assert!(code == 200 || code == 201, "{code} {service}");
    let service_id =
        service["data"]["id"].as_str().or(service["data"]["_id"].as_str()).unwrap().to_string();
    for (account, count) in [("acct-contoso", 45), ("acct-obrien", 11), ("acct-nobody", 3)] {
        let (code, body) = send(
            &rt,
            vendor(reqwest::Method::POST, &format!("/api/vendor-api/service/{service_id}/count"))
                .json(&json!({"accountId": account, "unitCount": count})),
        );
        assert_eq!(code, 201, "{body}");
    }

    // Map the service to the ConnectWise product while the agent runs; accounts match by name.
    // The agent's start-up sync may not have stored the product yet: the file is then refused
    // (`map show` exits 2) until that sync ends and applies it.
    std::fs::write(
        env.path("mapping.toml"),
        format!("# services\n[[service]]\nvendor = \"safedns\"\nid = \"{service_id}\"\nproduct = \"SAFEDNS-SEAT\"\n"),
    )
    .unwrap();
    wait_for("the mapping file to be applied", || {
        let out = env.tally(&["map", "show", "--format", "json"]);
        let out = String::from_utf8_lossy(&out.stdout);
        out.contains(&service_id).then_some(())
    });

    // Sync over HTTP and wait for it.
    let (code, report) =
        send(&rt, http.post(format!("{}/sync?wait=true", agent.base)).bearer_auth(&agent.token));
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["streams_incomplete"], 0, "{report}");

    // Other commands work while the agent holds the journal.
    let cards = env.cards();
    let contoso = Env::card(&cards, "250", "101");
    assert_eq!(contoso["vendor_quantity"], "45");
    assert_eq!(contoso["psa_quantity"], "42");
    assert!(cards["cards"].as_array().unwrap().iter().any(|c| c["status"] == "unmapped"));

    let (code, status) =
        send(&rt, http.get(format!("{}/status", agent.base)).bearer_auth(&agent.token));
    assert_eq!(code, 200);
    let integration = status["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "safedns")
        .unwrap()
        .clone();
    assert_eq!(integration["status"], "active", "{integration:#}");
    assert!(status["last_sync"].is_object(), "{status:#}");
    assert_eq!(status["agent"]["pid"], agent.child.id());
    let local: Value = serde_json::from_str(&env.ok(&["status", "--format", "json"])).unwrap();
    assert_eq!(local["cards"], status["cards"], "the command and the endpoint disagree");

    let (code, metrics) =
        send(&rt, http.get(format!("{}/metrics", agent.base)).bearer_auth(&agent.token));
    assert_eq!(code, 200);
    let metrics = metrics.as_str().unwrap().to_string();
    for name in [
        "tally_syncs_total",
        "tally_cards{status=\"reconcile\"}",
        "tally_outbox_depth",
        "tally_mapping_reloads_total",
        "tally_stream_last_success_timestamp_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // A second agent on the same journal is refused and names the first (case C21).
    let second = env.tally(&["run"]);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {}", agent.child.id())), "{stderr}");

    // SIGTERM: exit 0 soon after.
    let pid = agent.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_for("the agent to exit", || agent.child.try_wait().unwrap());
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        std::fs::read_to_string(env.path("agent.log")).unwrap()
    );

    let journal = env.journal();
    use tally_agent::journal::Read;
    let tx = journal.read().unwrap();
    assert_eq!(tx.count(&tally_agent::journal::tables::USAGE).unwrap(), 3);
    assert!(tx.count(&tally_agent::journal::tables::SYNC_RUNS).unwrap() >= 1);
}

#[test]
fn c21_a_killed_agent_leaves_no_lock_behind() {
    let env = Env::new(CwData::sample(), "none");
    let mut agent = start(&env);
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let rt = runtime();
    let mut again = start(&env);
    let (code, _) = send(&rt, reqwest::Client::new().get(format!("{}/healthz", again.base)));
    assert_eq!(code, 200);
    again.child.kill().unwrap();
    again.child.wait().unwrap();
}

#[test]
fn the_demo_runs_with_no_setup_and_shows_every_kind_of_card() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["demo", "--format", "json"])
        .current_dir(dir.path())
        .env_remove("TALLY_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    let cards = doc["cards"].as_array().unwrap();
    let status = |company: &str| {
        cards.iter().find(|c| c["company"].as_str().unwrap().starts_with(company)).unwrap()["status"].clone()
    };
    assert_eq!(status("Contoso Ltd"), "match", "the increase was applied");
    assert_eq!(status("Fabrikam"), "reconcile", "the reduction waits for approval");
    assert_eq!(status("Adventure Works"), "unmapped");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the demo wrote into the working directory"
    );
}

#[test]
fn sighup_reloads_the_config_and_keeps_the_old_one_when_the_new_one_is_invalid() {
    let env = Env::new(CwData::sample(), "none");
    let rt = runtime();
    let mut agent = start(&env);
    let pid = agent.child.id().to_string();
    let log = || std::fs::read_to_string(env.path("agent.log")).unwrap();
    let good = std::fs::read_to_string(&env.config).unwrap();

    std::fs::write(&env.config, format!("{good}\nnot valid toml = = =\n")).unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the refused reload in the log", || {
        log().contains("config not reloaded").then_some(())
    });
    let (code, _) = send(&rt, reqwest::Client::new().get(format!("{}/healthz", agent.base)));
    assert_eq!(code, 200, "the agent did not survive a bad config");

    std::fs::write(&env.config, good.replace("lookback = \"10m\"", "lookback = \"20m\"")).unwrap();
    assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    wait_for("the reload in the log", || log().contains("config reloaded").then_some(()));

    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_for("the agent to exit", || agent.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0));
}
