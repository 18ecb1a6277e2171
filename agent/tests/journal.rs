//! The journal and the config file under bad input: files that are not journals, journals from
//! a newer tally, processes killed mid-write, several processes at once, and config mistakes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tally_agent::config::Config;
use tally_agent::journal::tables::{self, SEP};
use tally_agent::journal::{FORMAT_VERSION, Journal, JournalError, Read, Write, force_version};
use tally_agent::model::{Account, BillingLine, Seen, now_millis};

const CHILD_ENV: &str = "TALLY_TEST_JOURNAL_WRITER";

fn tally() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tally"))
}

fn digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn account(n: u64, txn: u64) -> Account {
    Account {
        vendor: "v".into(),
        id: format!("{txn:08}-{n:04}"),
        name: format!("account {n} of transaction {txn}"),
        description: "x".repeat(200),
        created_at: now_millis(),
        updated_at: now_millis(),
    }
}

/// Run by the child process: write transactions of 50 rows plus a counter, forever.
#[test]
fn journal_writer_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let journal = Journal::open(Path::new(&path), None).unwrap();
    let mut txn = journal
        .read()
        .unwrap()
        .get(&tables::META, "test_counter")
        .unwrap()
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    println!("ready");
    loop {
        txn += 1;
        journal
            .write(|tx| {
                for n in 0..50 {
                    tx.put(&tables::ACCOUNTS, &format!("v{SEP}{txn:08}-{n:04}"), &account(n, txn))?;
                }
                tx.put(&tables::META, "test_counter", &txn.to_le_bytes().to_vec())?;
                Ok::<_, JournalError>(())
            })
            .unwrap();
    }
}

fn spawn_writer(path: &Path) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "journal_writer_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            panic!("the writer child exited before it was ready");
        }
    }
    child
}

/// Every committed transaction is whole: the counter says how many, and exactly those rows
/// exist.
fn assert_consistent(path: &Path) -> u64 {
    let journal = Journal::open(path, None).unwrap();
    let tx = journal.read().unwrap();
    let counter = tx
        .get(&tables::META, "test_counter")
        .unwrap()
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let rows = tx.count(&tables::ACCOUNTS).unwrap();
    assert_eq!(rows, counter * 50, "rows of a half-committed transaction are visible");
    counter
}

#[test]
fn kill_9_mid_write_keeps_the_last_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let mut last = 0;
    for round in 0..20u64 {
        let mut child = spawn_writer(&path);
        // Different timings each round: from right away to a few hundred milliseconds in.
        std::thread::sleep(Duration::from_millis((round * 37) % 300));
        child.kill().unwrap();
        child.wait().unwrap();
        let counter = assert_consistent(&path);
        assert!(counter >= last, "committed transactions were lost: {counter} < {last}");
        last = counter;
    }
    assert!(last > 0, "the writer never committed; the test proved nothing");
}

#[test]
fn other_processes_read_and_write_while_one_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let mut child = spawn_writer(&path);

    // This process opens the same journal, reads, and writes, while the child writes.
    let journal = Journal::open(&path, None).unwrap();
    journal.write(|tx| tx.put(&tables::META, "other_process", &b"yes".to_vec())).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = journal.read().unwrap().count(&tables::ACCOUNTS).unwrap();
        if n >= 100 || Instant::now() > deadline {
            assert!(n >= 100, "the other process's commits never became visible");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    // And the command line works too: no "Database already open".
    let out = tally()
        .args(["--journal", path.to_str().unwrap(), "report", "--format", "json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("already open"), "{stderr}");
    assert!(out.status.success(), "tally report failed while a writer held the journal: {stderr}");

    child.kill().unwrap();
    child.wait().unwrap();
    assert_consistent(&path);
}

#[test]
fn c21_one_process_shares_one_handle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    let a = Journal::open(&path, None).unwrap();
    let b = Journal::open(&path, None).unwrap();
    a.write(|tx| tx.put(&tables::META, "k", &b"v".to_vec())).unwrap();
    assert_eq!(b.read().unwrap().get(&tables::META, "k").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn c23_a_text_file_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "journal_path = \"/etc/msp-sync/mapping.toml\"\n").unwrap();
    let before = digest(&text);

    let err = Journal::open(&text, None).err().expect("a text file was opened as a journal");
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
    assert!(err.to_string().contains("not a tally journal"), "{err}");
    assert_eq!(digest(&text), before);

    let out = tally()
        .args(["--journal", text.to_str().unwrap(), "report"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a wrong journal path is a configuration error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("notes.txt") && stderr.contains("not a tally journal"), "{stderr}");
    assert_eq!(digest(&text), before, "the file was modified");
}

#[test]
fn c23_the_mapping_file_is_never_opened_as_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(&mapping, "[[account]]\nvendor = \"v\"\nid = \"1\"\ncompany = 250\n").unwrap();
    let before = digest(&mapping);
    let config = dir.path().join("tally.toml");
    std::fs::write(&config, "journal = \"mapping.toml\"\nmapping = \"mapping.toml\"\n").unwrap();

    let err = Journal::open(&mapping, Some(&mapping)).err().expect("opened");
    assert!(matches!(err, JournalError::IsMappingFile { .. }), "{err}");

    let out = tally().args(["--config", config.to_str().unwrap(), "report"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping file"));
    assert_eq!(digest(&mapping), before, "the mapping file was modified");
}

#[test]
fn a_journal_from_a_newer_tally_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    {
        let journal = Journal::open(&path, None).unwrap();
        force_version(&journal, FORMAT_VERSION + 1).unwrap();
    }
    // The handle above is dropped; a fresh open reads the version again.
    let err = Journal::open(&path, None).err().expect("a newer journal was opened");
    let text = err.to_string();
    assert!(text.contains(&format!("format {}", FORMAT_VERSION + 1)), "{text}");
    assert!(text.contains(&format!("up to {FORMAT_VERSION}")), "{text}");
}

#[test]
fn an_older_journal_is_migrated_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    // Format 0: a redb file that has never been stamped by tally.
    drop(redb::Database::create(&path).unwrap());
    let journal = Journal::open(&path, None).unwrap();
    let tx = journal.read().unwrap();
    assert_eq!(
        tx.get(&tables::META, "format_version").unwrap(),
        Some(FORMAT_VERSION.to_le_bytes().to_vec())
    );
    // Every table exists after the migration.
    assert_eq!(tx.count(&tables::OUTBOX).unwrap(), 0);
    assert_eq!(tx.count(&tables::CARDS).unwrap(), 0);
}

#[test]
fn a_format_2_journal_keeps_no_page_digest_it_may_have_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    {
        let journal = Journal::open(&path, None).unwrap();
        journal.write(|tx| tx.put(&tables::LINE_PAGES, "500", &vec![7u8; 32])).unwrap();
        force_version(&journal, 2).unwrap();
    }
    let journal = Journal::open(&path, None).unwrap();
    let tx = journal.read().unwrap();
    assert_eq!(tx.count(&tables::LINE_PAGES).unwrap(), 0);
    assert_eq!(
        tx.get(&tables::META, "format_version").unwrap(),
        Some(FORMAT_VERSION.to_le_bytes().to_vec())
    );
}

#[test]
fn a_format_1_journal_gets_its_billing_lines_indexed_by_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.redb");
    {
        let journal = Journal::open(&path, None).unwrap();
        // Lines as format 1 stored them: in their own table only.
        journal
            .write(|tx| {
                for (id, agreement) in [("11", "500"), ("12", "500"), ("21", "600")] {
                    let line = BillingLine {
                        id: id.into(),
                        agreement_id: agreement.into(),
                        company_id: "7".into(),
                        product_id: "101".into(),
                        quantity: 3.into(),
                        included_quantity: None,
                        unit_price: None,
                        effective_date: None,
                        cancelled_date: None,
                        updated_at: None,
                        seen: Seen { seen_at: now_millis(), retired_at: None },
                    };
                    tx.put(&tables::BILLING_LINES, id, &line)?;
                }
                Ok::<_, JournalError>(())
            })
            .unwrap();
        force_version(&journal, 1).unwrap();
    }
    let journal = Journal::open(&path, None).unwrap();
    let tx = journal.read().unwrap();
    let index: Vec<String> =
        tx.scan(&tables::LINES_BY_AGREEMENT, "").unwrap().into_iter().map(|(k, ())| k).collect();
    assert_eq!(index, [format!("500{SEP}11"), format!("500{SEP}12"), format!("600{SEP}21")]);
    assert_eq!(tx.count(&tables::LINE_PAGES).unwrap(), 0, "format 3 starts with no page digest");
    assert_eq!(
        tx.get(&tables::META, "format_version").unwrap(),
        Some(FORMAT_VERSION.to_le_bytes().to_vec())
    );
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn config_error(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "tally.toml", text);
    let out = tally().args(["--config", config.to_str().unwrap(), "report"]).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn config_with_an_unknown_key_names_file_line_and_key() {
    let (code, stderr) = config_error(
        "journal = \"j.redb\"\n\n[agent]\nlisten = \"127.0.0.1:1\"\nquick_sync = \"1h\"\n",
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tally.toml:5:"), "{stderr}");
    assert!(stderr.contains("quick_sync"), "{stderr}");
    assert!(stderr.contains("remove the key or correct its spelling"), "{stderr}");
}

#[test]
fn config_with_a_wrong_type_names_file_line_and_key() {
    let (code, stderr) =
        config_error("journal = \"j.redb\"\n[agent]\nretire_guard_percent = \"half\"\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tally.toml:3:"), "{stderr}");
    assert!(stderr.contains("retire_guard_percent"), "{stderr}");
}

#[test]
fn config_with_a_bad_value_names_the_allowed_ones() {
    let (code, stderr) = config_error("[psa]\nplugin = \"connectwise\"\napply = \"sometimes\"\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tally.toml:3:"), "{stderr}");
    assert!(stderr.contains("increases"), "{stderr}");
}

#[test]
fn config_with_a_missing_secret_variable_names_line_key_and_variable() {
    let text = "[psa]\nplugin = \"connectwise\"\n\n[psa.settings]\nsite = \"https://x\"\nprivate_key = \"${TALLY_TEST_SURELY_UNSET_VAR}\"\n";
    let config = Config::parse(Path::new("/etc/tally/tally.toml"), text).unwrap();
    let err = config.resolved_psa_settings().unwrap_err();
    let message = err.to_string();
    assert!(message.starts_with("/etc/tally/tally.toml:6:15"), "{message}");
    assert!(message.contains("psa.settings.private_key"), "{message}");
    assert!(message.contains("TALLY_TEST_SURELY_UNSET_VAR is not set"), "{message}");
}

#[test]
fn plugin_settings_the_plugin_refuses_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // The schema: a misspelled key, so a required one is missing; the misspelling's line.
        (
            "journal = \"j.redb\"\n[psa]\nplugin = \"connectwise\"\n\n[psa.settings]\nsite = \
             \"https://cw.example.com\"\ncompanyid = \"acme\"\npublic_key = \"p\"\nprivate_key = \
             \"k\"\nclient_id = \"c\"\n",
            "tally.toml:7:1: `psa.settings.companyid`",
            "\"company_id\" is a required property",
        ),
        // The plugin itself: a site that is no address; the key is named.
        (
            "journal = \"j.redb\"\n[psa]\nplugin = \"connectwise\"\n\n[psa.settings]\ncompany_id \
             = \"acme\"\npublic_key = \"p\"\nprivate_key = \"k\"\nclient_id = \"c\"\nsite = \
             \"not a site\"\n",
            "tally.toml:10:",
            "site",
        ),
    ];
    for (text, at, names) in cases {
        let config = write(dir.path(), "tally.toml", text);
        let out = tally().args(["--config", config.to_str().unwrap(), "sync"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(at) && stderr.contains(names), "{at}: {stderr}");
    }
}

#[test]
fn init_writes_a_config_that_loads_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally().args(["init", dir.path().to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = Config::load(&dir.path().join("tally.toml"), true).unwrap();
    assert_eq!(config.psa.unwrap().plugin, "connectwise");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tally.toml")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the config may hold secrets: it must be private");
    }
    let again = tally().args(["init", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn config_percentages_must_be_between_0_and_100() {
    let (code, stderr) = config_error("[agent]\nretire_guard_percent = 150\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("tally.toml:2:1") && stderr.contains("from 0 to 100"), "{stderr}");
    let (code, stderr) =
        config_error("[psa]\nplugin = \"connectwise\"\nhold_reductions_over = -5\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("psa.hold_reductions_over"), "{stderr}");
}

#[test]
fn a_mistyped_journal_path_is_not_taken_for_a_new_installation() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no-such-dir").join("tally.redb");
    let out = tally()
        .args(["--journal", missing_dir.to_str().unwrap(), "integration", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("directory does not exist"));
    assert!(!dir.path().join("no-such-dir").exists(), "a directory was created");

    let missing = dir.path().join("talyl.redb");
    let out = tally()
        .args(["--journal", missing.to_str().unwrap(), "status"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no journal at"));
    assert!(!missing.exists(), "a read-only command created a journal");
}

#[test]
fn without_a_config_file_commands_say_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = tally()
        .args(["status"])
        .current_dir(dir.path())
        .env_remove("TALLY_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no tally.toml") && stderr.contains("tally init"), "{stderr}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "files were created");
}

#[test]
fn a_config_path_that_does_not_exist_is_named_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    let named = dir.path().join("other.toml");
    for (args, var) in [
        (vec!["--config", named.to_str().unwrap(), "status"], None),
        (vec!["status"], Some(named.to_str().unwrap())),
    ] {
        let mut command = tally();
        command.args(&args).current_dir(dir.path()).env_remove("TALLY_CONFIG");
        if let Some(var) = var {
            command.env("TALLY_CONFIG", var);
        }
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{} does not exist", named.display())),
            "{args:?}: {stderr}"
        );
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "files were created");

    // There, but out of reach (here: under a file; for a user, a directory only root enters):
    // not called missing.
    let file = write(dir.path(), "plain", "");
    let beyond = file.join("tally.toml");
    let out = tally()
        .args(["--config", beyond.to_str().unwrap(), "status"])
        .env_remove("TALLY_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("cannot read {}", beyond.display())), "{stderr}");
    assert!(!stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn output_piped_into_a_closed_reader_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("j.redb");
    Journal::open(&journal, None).unwrap();
    let mut child = tally()
        .args(["--journal", journal.to_str().unwrap(), "status"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[test]
fn syncs_cannot_be_scheduled_more_often_than_once_a_minute() {
    let (code, stderr) = config_error("[agent]\nquick_sync_every = \"0s\"\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("tally.toml:2:1") && stderr.contains("at most once a minute"),
        "{stderr}"
    );
}

#[test]
fn every_missing_secret_variable_is_named_at_once() {
    let text = "[psa]\nplugin = \"connectwise\"\n[psa.settings]\npublic_key = \"${TALLY_TEST_UNSET_A}\"\nprivate_key = \"${TALLY_TEST_UNSET_B}\"\n";
    let config = Config::parse(Path::new("tally.toml"), text).unwrap();
    let message = config.resolved_psa_settings().unwrap_err().to_string();
    assert!(message.starts_with("tally.toml:4:"), "{message}");
    assert!(
        message.contains("TALLY_TEST_UNSET_A") && message.contains("TALLY_TEST_UNSET_B (line 5"),
        "{message}"
    );
}
