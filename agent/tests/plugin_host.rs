//! The plugin host with real libraries: discovery and every refusal reason, permissions,
//! the registry that never unloads (C24), ABI mismatch (C25), panics (C26), malformed replies,
//! settings checks, the driver over the example plugin (C07, C10) and `tally plugins`.
//!
//! Bad plugins are built here: C files from `tests/plugins/` with gcc, and the `panicky` Rust
//! crate with cargo, into `<target>/test-plugins`. The example plugin is a dev-dependency, so
//! cargo leaves its library in the `deps` directory next to this test binary.

#[path = "support/scripted.rs"]
mod scripted;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scripted::{Server, json, status, with_header};
use serde_json::{Value, json};
use tally_agent::http::{HttpClient, HttpError, ManualClock, Timeouts};
use tally_agent::plugin::{self, HostError, LoadError, Page, PluginSession, SessionOptions};
use tally_plugin_sdk::{Call, ErrorKind, ListMode, OpResult, Operation, Record, Reply};

fn library_file(stem: &str) -> String {
    format!("{}{stem}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_path_buf()
}

fn example_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().join(library_file("tally_example"));
    assert!(path.is_file(), "{} is missing: build the tests with cargo", path.display());
    path
}

/// Builds `tests/plugins/{source}.c` (once per process) into a library named `out`.
fn c_plugin(source: &str, defines: &[&str], out: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let dir = target_dir().join("test-plugins").join("c");
    let path = dir.join(library_file(out));
    let mut built = BUILT.lock().unwrap();
    if built.get_or_insert_with(HashSet::new).insert(out.to_string()) {
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins").join(source);
        // Built beside and renamed, so another test process never loads a half-written file.
        let partial = dir.join(format!("{out}.{}.partial", std::process::id()));
        let output = Command::new("gcc")
            .args(["-shared", "-fPIC", "-Wall", "-o"])
            .arg(&partial)
            .args(defines)
            .arg(src.with_extension("c"))
            .output()
            .expect("gcc runs");
        assert!(output.status.success(), "gcc: {}", String::from_utf8_lossy(&output.stderr));
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

/// Builds the panicky plugin unless its library is newer than its sources; with `handshake`,
/// the variant that panics in the handshake too.
fn panicky(handshake: bool) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let krate = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plugins/panicky");
    let target = target_dir().join("test-plugins");
    let out = target.join(library_file(if handshake { "panicky_handshake" } else { "panicky" }));
    let newest_source = ["Cargo.toml", "src/lib.rs"]
        .iter()
        .map(|f| std::fs::metadata(krate.join(f)).unwrap().modified().unwrap())
        .max()
        .unwrap();
    let fresh = std::fs::metadata(&out).and_then(|m| m.modified()).is_ok_and(|t| t > newest_source);
    if !fresh {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut command = Command::new(cargo);
        command
            .arg("build")
            .arg("--manifest-path")
            .arg(krate.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .arg("--offline");
        if handshake {
            command.args(["--features", "handshake"]);
        }
        let output = command.output().expect("cargo runs");
        assert!(output.status.success(), "cargo: {}", String::from_utf8_lossy(&output.stderr));
        let partial = out.with_extension(format!("{}.partial", std::process::id()));
        std::fs::copy(target.join("debug").join(library_file("panicky")), &partial).unwrap();
        std::fs::rename(&partial, &out).unwrap();
    }
    out
}

/// A fresh plugin directory only this user can write (tempdir creates it 0700).
fn plugin_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn install(dir: &Path, library: &Path, name: &str) -> PathBuf {
    let to = dir.join(library_file(name));
    std::fs::copy(library, &to).unwrap();
    to
}

fn client() -> HttpClient {
    HttpClient::new(Timeouts { connect: Duration::from_secs(10), read: Duration::from_secs(30) })
        .unwrap()
}

fn options(clock: Arc<ManualClock>) -> SessionOptions {
    SessionOptions {
        settings_key: "psa.settings".to_string(),
        client: Some(client()),
        clock,
        ..SessionOptions::default()
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(httpdate::parse_http_date("Wed, 21 Oct 2026 07:27:53 GMT").unwrap()))
}

fn example_session(server: &Server, clock: Arc<ManualClock>) -> PluginSession {
    let plugin = plugin::load(&example_library()).unwrap();
    let settings = json!({ "base_url": server.url(""), "token": "tok-123" });
    PluginSession::open(plugin, &settings, options(clock)).unwrap()
}

fn list_companies() -> Operation {
    Operation::List {
        stream: "companies".to_string(),
        mode: ListMode::Full,
        checkpoint: None,
        parent_id: None,
        lookback_seconds: 0,
    }
}

fn rows(from: u64, count: u64) -> String {
    let rows: Vec<Value> = (from..from + count)
        .map(|id| json!({ "id": id, "name": format!("Company {id}") }))
        .collect();
    Value::Array(rows).to_string()
}

fn reasons(catalog: &plugin::Catalog) -> Vec<(String, String)> {
    catalog
        .refused
        .iter()
        .map(|r| (r.path.file_name().unwrap().to_string_lossy().into_owned(), r.reason.to_string()))
        .collect()
}

#[test]
fn every_file_loads_or_is_refused_with_its_reason() {
    let dir = plugin_dir();
    install(dir.path(), &example_library(), "example");
    std::fs::write(dir.path().join("bad.so"), "this is not a library\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not considered\n").unwrap();
    install(dir.path(), &c_plugin("no_entry", &[], "no_entry"), "no_entry");
    install(dir.path(), &c_plugin("abi99", &[], "abi99"), "abi99");
    let garbage = c_plugin("garbage", &["-DGARBAGE_HANDSHAKE"], "garbage_handshake");
    install(dir.path(), &garbage, "garbage_handshake");

    let catalog = plugin::discover(dir.path()).unwrap();

    let loaded: Vec<&str> = catalog.loaded.iter().map(|p| p.name()).collect();
    assert_eq!(loaded, vec!["example"]);
    let reasons = reasons(&catalog);
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    let reason = |file: &str| {
        reasons.iter().find(|(f, _)| f == file).map(|(_, r)| r.clone()).unwrap_or_default()
    };
    assert!(reason("bad.so").starts_with("not a shared library"), "{reasons:?}");
    assert!(reason("libno_entry.so").contains("does not export `tally_plugin_v1`"), "{reasons:?}");
    assert!(reason("libgarbage_handshake.so").starts_with("malformed handshake"), "{reasons:?}");
    assert!(catalog.get("nope").unwrap_err().to_string().contains("bad.so: not a shared library"));
}

#[test]
fn c25_abi_mismatch_is_refused_naming_both_versions_without_touching_the_entry() {
    let dir = plugin_dir();
    let path = install(dir.path(), &c_plugin("abi99", &[], "abi99"), "abi99");

    // The library's `tally_plugin_v1` aborts the process: reaching this line proves the host
    // stopped at the version.
    let error = plugin::load(&path).unwrap_err();

    assert_eq!(error, LoadError::AbiMismatch { plugin: 99, host: 1 });
    assert!(error.to_string().contains("plugin ABI 99, this tally speaks 1"), "{error}");
}

#[test]
fn duplicate_names_are_refused_naming_both_paths() {
    let dir = plugin_dir();
    let first = install(dir.path(), &example_library(), "a_example");
    let second = install(dir.path(), &example_library(), "b_example");

    let catalog = plugin::discover(dir.path()).unwrap();

    assert_eq!(catalog.loaded.len(), 1);
    assert_eq!(catalog.loaded[0].path(), first.canonicalize().unwrap());
    assert_eq!(catalog.refused.len(), 1);
    let message = catalog.refused[0].reason.to_string();
    assert!(message.contains("duplicate plugin name \"example\""), "{message}");
    assert!(message.contains(&*first.to_string_lossy()), "{message}");
    assert!(message.contains(&*second.to_string_lossy()), "{message}");
}

#[test]
fn writable_plugin_files_and_directories_are_refused_before_loading() {
    // `boom` aborts the process when loaded, so a refusal that came after loading would end
    // this test run.
    let dir = plugin_dir();
    let boom = install(dir.path(), &c_plugin("boom", &[], "boom"), "boom");
    std::fs::set_permissions(&boom, std::fs::Permissions::from_mode(0o757)).unwrap();
    let catalog = plugin::discover(dir.path()).unwrap();
    let file = reasons(&catalog);
    assert!(file[0].1.contains("unsafe permissions: the file"), "{file:?}");
    assert!(file[0].1.contains("writable by others"), "{file:?}");

    let dir = plugin_dir();
    install(dir.path(), &c_plugin("boom", &[], "boom"), "boom");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o707)).unwrap();
    let catalog = plugin::discover(dir.path()).unwrap();
    let directory = reasons(&catalog);
    assert!(directory[0].1.contains("unsafe permissions: the directory"), "{directory:?}");
    assert!(catalog.loaded.is_empty());

    // Someone else's file: only root can make one; the rule itself has a unit test.
    if unsafe { libc::geteuid() } == 0 {
        let dir = plugin_dir();
        let boom = install(dir.path(), &c_plugin("boom", &[], "boom"), "boom");
        std::os::unix::fs::chown(&boom, Some(4242), None).unwrap();
        let catalog = plugin::discover(dir.path()).unwrap();
        assert!(reasons(&catalog)[0].1.contains("owned by uid 4242"), "{:?}", reasons(&catalog));
    }
}

#[test]
fn c24_a_loaded_library_stays_while_calling_threads_come_and_go() {
    let dir = plugin_dir();
    let path = install(dir.path(), &example_library(), "example");
    let first = plugin::load(&path).unwrap();

    for _ in 0..100 {
        let path = path.clone();
        let first = first.clone();
        std::thread::spawn(move || {
            let plugin = plugin::load(&path).unwrap();
            assert!(Arc::ptr_eq(&plugin, &first), "loading again must return the registry entry");
            let reply = plugin.call(&Call::Handshake).unwrap();
            assert!(matches!(reply, Reply::Handshake { .. }));
            let settings = json!({ "base_url": "http://127.0.0.1:9", "token": "t" });
            let session =
                PluginSession::open(plugin.clone(), &settings, SessionOptions::default()).unwrap();
            drop(session);
            drop(plugin);
        })
        .join()
        .unwrap();
    }

    assert!(matches!(first.call(&Call::Handshake).unwrap(), Reply::Handshake { .. }));
}

#[test]
fn settings_are_checked_against_the_schema_naming_each_setting() {
    let plugin = plugin::load(&example_library()).unwrap();
    let open = |settings: Value| {
        PluginSession::open(plugin.clone(), &settings, options(clock())).unwrap_err()
    };

    let error = open(json!({ "base_url": "ftp://x", "token": "t" }));
    assert!(error.is_configuration());
    let message = error.to_string();
    assert!(
        message.contains(r#"psa.settings.base_url: "ftp://x" does not match "^https?://[^/@]+""#),
        "{message}"
    );

    let message = open(json!({ "base_url": "https://x", "extra": 1 })).to_string();
    assert!(message.contains(r#"psa.settings: "token" is a required property"#), "{message}");
    assert!(message.contains("extra"), "{message}");

    // A secret in the wrong shape is named, never shown.
    let message = open(json!({ "base_url": "https://x", "token": 987654321 })).to_string();
    assert!(message.contains("psa.settings.token"), "{message}");
    assert!(!message.contains("987654321"), "{message}");
}

#[tokio::test]
async fn c07_listing_hands_each_page_over_and_waits_as_asked() {
    let page1 = rows(1, 1000);
    let page2 = rows(1001, 1000);
    let page3 = rows(2001, 10);
    let mut served = std::collections::HashMap::<String, usize>::new();
    let server = Server::start(move |seen| {
        let n = served.entry(seen.target.clone()).or_default();
        *n += 1;
        match (seen.target.as_str(), *n) {
            ("/companies?page=1", _) => json(page1.clone()),
            ("/companies?page=2", 1) => with_header(429, "Retry-After", "2"),
            ("/companies?page=2", _) => json(page2.clone()),
            ("/companies?page=3", 1) => {
                with_header(429, "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT")
            }
            ("/companies?page=3", _) => json(page3.clone()),
            ("/companies?page=4", _) => json("[]"),
            (other, _) => panic!("unexpected {other}"),
        }
    })
    .await;
    let clock = clock();
    let session = example_session(&server, clock.clone());

    let mut pages: Vec<Page> = Vec::new();
    let outcome = session
        .run(list_companies(), |page| {
            pages.push(page);
            Ok(())
        })
        .await
        .unwrap();

    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2), Duration::from_secs(5)]);
    for (page, times) in [(1, 1), (2, 2), (3, 2), (4, 1)] {
        assert_eq!(server.count(&format!("/companies?page={page}")), times, "page {page}");
    }
    let tokens: Vec<Option<&str>> =
        pages.iter().map(|p| p.checkpoint.page_token.as_deref()).collect();
    assert_eq!(tokens, vec![Some("2"), Some("3"), Some("4"), None]);
    let ids: HashSet<String> = pages
        .iter()
        .flat_map(|p| &p.records)
        .map(|r| match r {
            Record::Company(c) => c.id.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 2010);
    assert_eq!(pages.iter().map(|p| p.last).collect::<Vec<_>>(), vec![false, false, false, true]);
    assert_eq!((outcome.requests, outcome.pages, outcome.complete), (6, 4, true));
    assert_eq!(outcome.result, OpResult::Listed);
    assert_eq!(session.requests_sent(), 6);
    assert_eq!(server.seen()[0].header("authorization"), Some("Bearer tok-123"));
}

#[tokio::test]
async fn a_response_body_goes_beside_the_call_when_the_plugin_takes_it_and_inside_otherwise() {
    // A plugin without the optional entry finds the body inside the step call, escaped.
    let server = Server::start(|_| json(r#"[{"id":1}]"#)).await;
    let inside = plugin::load(&c_plugin("body_inside", &[], "body_inside")).unwrap();
    assert!(!inside.takes_body_beside());
    let settings = json!({ "url": server.url("/probe") });
    let session = PluginSession::open(inside, &settings, options(clock())).unwrap();
    assert_eq!(session.probe().await.unwrap(), "body inside");

    // A plugin built with the SDK takes it beside, from a small page read inline and from a
    // large one read on a blocking thread alike, names that JSON escapes included.
    let tricky = |id: u64| format!("Quote \"{id}\" back\\slash é ☃ {}", "x".repeat(100));
    let small = json!([{ "id": 1, "name": tricky(1) }]).to_string();
    let large: Vec<Value> = (2..1002).map(|id| json!({ "id": id, "name": tricky(id) })).collect();
    let large = Value::Array(large).to_string();
    assert!(large.len() > 64 * 1024, "the large page must be read on a blocking thread");
    let server = Server::start(move |seen| match seen.target.as_str() {
        "/companies?page=1" => json(small.clone()),
        "/companies?page=2" => json(large.clone()),
        _ => json("[]"),
    })
    .await;
    let session = example_session(&server, clock());
    let example = plugin::load(&example_library()).unwrap();
    assert!(example.takes_body_beside());

    let mut names = Vec::new();
    session
        .run(list_companies(), |page| {
            for record in &page.records {
                let Record::Company(company) = record else { panic!("{record:?}") };
                names.push((company.id.clone(), company.name.clone()));
            }
            Ok(())
        })
        .await
        .unwrap();

    let expected: Vec<(String, String)> =
        (1..1002).map(|id| (id.to_string(), tricky(id))).collect();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn a_page_that_cannot_be_stored_stops_the_listing() {
    let server = Server::start(|_| json(rows(1, 3))).await;
    let session = example_session(&server, clock());

    let error =
        session.run(list_companies(), |_| anyhow::bail!("the journal is full")).await.unwrap_err();

    assert!(matches!(error, HostError::Page { .. }), "{error}");
    assert!(error.to_string().contains("the journal is full"), "{error}");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn retryable_plugin_failures_resend_the_previous_request_within_bounds() {
    let mut first = true;
    let server = Server::start(move |seen| match seen.target.as_str() {
        "/companies?page=1" if std::mem::take(&mut first) => status(500),
        "/companies?page=1" => json(rows(1, 2)),
        _ => json("[]"),
    })
    .await;
    let clock = clock();
    let session = example_session(&server, clock.clone());
    let outcome = session.run(list_companies(), |_| Ok(())).await.unwrap();
    assert_eq!((outcome.requests, outcome.pages), (3, 2));
    assert_eq!(server.count("/companies?page=1"), 2);
    assert_eq!(clock.sleeps().len(), 1);

    let broken = Server::start(|_| status(500)).await;
    let session = example_session(&broken, clock);
    let error = session.run(list_companies(), |_| Ok(())).await.unwrap_err();
    assert!(matches!(&error, HostError::Failed { error, .. } if error.kind == ErrorKind::Server));
    assert_eq!(broken.seen().len(), 5, "bounded by the retry policy's attempts");

    let refused = Server::start(|_| status(401)).await;
    let session = example_session(&refused, self::clock());
    let error = session.run(list_companies(), |_| Ok(())).await.unwrap_err();
    assert_eq!(error.plugin_error().map(|e| e.kind), Some(ErrorKind::Auth));
    assert_eq!(refused.seen().len(), 1);
}

#[tokio::test]
async fn c10_a_failed_probe_is_a_configuration_error_and_is_not_retried() {
    for answer in [status(500), status(503), status(401)] {
        let server = Server::start(move |_| answer.clone()).await;
        let session = example_session(&server, clock());

        let error = session.probe().await.unwrap_err();

        assert!(error.is_configuration(), "{error}");
        assert!(error.to_string().contains("the settings do not work"), "{error}");
        assert!(error.to_string().contains("psa.settings"), "{error}");
        assert_eq!(server.seen().len(), 1, "{error}");
    }

    let server = Server::start(|_| status(401)).await;
    let error = example_session(&server, clock()).probe().await.unwrap_err();
    assert_eq!(error.plugin_error().unwrap().field.as_deref(), Some("psa.settings.token"));

    let server = Server::start(|_| json(rows(1, 1))).await;
    let detail = example_session(&server, clock()).probe().await.unwrap();
    assert!(detail.contains("1 companies"), "{detail}");
}

#[tokio::test]
async fn requests_to_hosts_the_plugin_did_not_declare_are_never_sent() {
    let server = Server::start(|_| json("{}")).await;
    let plugin = plugin::load(&c_plugin("other_host", &[], "other_host")).unwrap();
    let settings = json!({ "url": server.url("/steal") });
    let session = PluginSession::open(plugin, &settings, options(clock())).unwrap();

    let error = session.run(list_companies(), |_| Ok(())).await.unwrap_err();

    let HostError::Http { source, .. } = &error else { panic!("{error}") };
    assert!(matches!(source, HttpError::HostNotAllowed { .. }), "{error}");
    assert!(error.to_string().contains("api.example.com"), "{error}");
    assert_eq!(server.seen().len(), 0);
}

#[tokio::test]
async fn malformed_replies_are_typed_errors_and_the_host_carries_on() {
    let server = Server::start(|_| json("[]")).await;
    let plugin = plugin::load(&c_plugin("garbage", &[], "garbage")).unwrap();
    let session = PluginSession::open(plugin, &json!({}), options(clock())).unwrap();

    let error = session.run(list_companies(), |_| Ok(())).await.unwrap_err();

    assert!(matches!(error, HostError::Malformed { call: "start", .. }), "{error}");
    assert!(error.to_string().contains("not a valid reply"), "{error}");
    let outcome = example_session(&server, clock()).run(list_companies(), |_| Ok(())).await;
    assert!(outcome.unwrap().complete);
}

#[tokio::test]
async fn c26_panics_in_a_plugin_become_errors_and_other_plugins_keep_working() {
    let dir = plugin_dir();
    install(dir.path(), &panicky(false), "panicky");
    install(dir.path(), &panicky(true), "panicky_handshake");
    install(dir.path(), &example_library(), "example");
    let catalog = plugin::discover(dir.path()).unwrap();

    let reasons = reasons(&catalog);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].1.contains("the plugin panicked: handshake exploded"), "{reasons:?}");
    let panicky = catalog.get("panicky").unwrap();
    let server = Server::start(|seen| match seen.target.as_str() {
        "/usage" => json(r#"{"accounts":[{"id":7,"name":"Contoso"}]}"#),
        "/companies?page=1" => json(rows(1, 2)),
        _ => json("[]"),
    })
    .await;
    let open = |panic_in: &str| {
        let settings = json!({ "base": server.url(""), "panic_in": panic_in });
        PluginSession::open(panicky.clone(), &settings, options(clock()))
    };

    for entry in ["open", "hosts"] {
        let error = open(entry).unwrap_err();
        let kind = error.plugin_error().map(|e| e.kind);
        assert_eq!(kind, Some(ErrorKind::Internal), "{error}");
        assert!(error.to_string().contains(&format!("{entry} exploded")), "{error}");
    }
    for entry in ["start", "step"] {
        let error = open(entry).unwrap().run(Operation::Probe, |_| Ok(())).await.unwrap_err();
        assert!(error.to_string().contains("the plugin panicked"), "{error}");
        assert_eq!(error.plugin_error().map(|e| e.retryable), Some(false), "{error}");
    }
    assert_eq!(server.count("/usage"), 1, "the step panic came after one response");

    // The same library still answers, and so does its neighbour.
    assert!(matches!(panicky.call(&Call::Handshake).unwrap(), Reply::Handshake { .. }));
    let example = catalog.get("example").unwrap();
    let settings = json!({ "base_url": server.url(""), "token": "t" });
    let session = PluginSession::open(example, &settings, options(clock())).unwrap();
    let outcome = session.run(list_companies(), |_| Ok(())).await.unwrap();
    assert_eq!(outcome.pages, 2);
}

#[test]
fn tally_plugins_lists_loaded_plugins_and_refused_files() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    install(&dir, &example_library(), "tally_example");
    std::fs::write(dir.join("bad.so"), "not a library").unwrap();
    let config = home.path().join("tally.toml");
    std::fs::write(&config, "plugin_dir = \"plugins\"\n").unwrap();
    let tally = |format: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--config")
            .arg(&config)
            .args(["plugins", "--format", format])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };

    let listing: Value = serde_json::from_str(&tally("json")).unwrap();
    let example = &listing["loaded"][0];
    assert_eq!(example["name"], "example");
    assert_eq!(example["kind"], "psa");
    assert_eq!(example["abi_version"], 1);
    assert_eq!(example["sdk_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(example["streams"][0]["name"], "companies");
    assert_eq!(example["capabilities"], json!([]));
    assert!(example["path"].as_str().unwrap().ends_with(&library_file("tally_example")));
    assert!(listing["refused"][0]["path"].as_str().unwrap().ends_with("bad.so"));
    let reason = listing["refused"][0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("not a shared library"), "{reason}");

    let table = tally("table");
    assert!(table.contains("example 0.1.0  psa  ABI 1"), "{table}");
    assert!(table.contains("companies (company, full)"), "{table}");
    assert!(table.contains("base_url (required), token (required, secret)"), "{table}");
    assert!(
        table.contains("refused:") && table.contains("bad.so: not a shared library"),
        "{table}"
    );
}
