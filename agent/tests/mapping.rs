//! Mapping: level-1 matching (C28), suggestions (C27), the mapping file and its validation,
//! per-product rules (C14, C15), `map add`, setup state, and the watcher (C19, C20).
//!
//! The journal is seeded directly with PSA companies and products and vendor accounts and
//! services. Watcher tests wait for conditions with generous timeouts; none asserts a time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tally_agent::config::Config;
use tally_agent::journal::tables::{ACCOUNT_MAPPINGS, PRODUCT_RULES, SERVICE_MAPPINGS, key2};
use tally_agent::journal::tables::{ACCOUNTS, COMPANIES, PRODUCTS, SERVICES, USAGE};
use tally_agent::journal::{Journal, Read, Write};
use tally_agent::mapping::edit::{self, AddRequest, AddTarget};
use tally_agent::mapping::index::{Lookups, NameIndex};
use tally_agent::mapping::normalize::{level1, visible};
use tally_agent::mapping::resolve::file_state;
use tally_agent::mapping::suggest::{self, Kind};
use tally_agent::mapping::watcher::{WatchOptions, spawn_watcher_with};
use tally_agent::mapping::{MappingChange, MappingError, apply, setup_state};
use tally_agent::model::{
    Account, Company, Mapping, Origin, Product, Rounding, Seen, Service, Target, UsageCount,
};

// ---------------------------------------------------------------------------------------------
// Helpers

struct Env {
    _dir: tempfile::TempDir,
    config: Config,
    journal: Journal,
}

impl Env {
    fn new(mapping: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("tally.toml");
        let text = "journal = \"tally.redb\"\nmapping = \"mapping.toml\"\n\n[[vendor]]\nname = \
                    \"safedns\"\nsource = \"push\"\n\n[[vendor]]\nname = \"dnsfilter\"\nsource = \
                    \"csv\"\n";
        std::fs::write(&config_path, text).unwrap();
        let config = Config::parse(&config_path, text).unwrap();
        std::fs::write(&config.mapping, mapping).unwrap();
        let journal = Journal::open(&config.journal, Some(&config.mapping)).unwrap();
        Env { _dir: dir, config, journal }
    }

    fn dir(&self) -> &Path {
        self.config.mapping.parent().unwrap()
    }

    fn mapping_file(&self) -> &PathBuf {
        &self.config.mapping
    }

    fn write_file(&self, text: &str) {
        std::fs::write(self.mapping_file(), text).unwrap();
    }

    fn seed(
        &self,
        companies: &[Company],
        products: &[Product],
        accounts: &[Account],
        services: &[Service],
    ) {
        self.journal
            .write(|tx| {
                for c in companies {
                    tx.put(&COMPANIES, &c.id, c)?;
                }
                for p in products {
                    tx.put(&PRODUCTS, &p.id, p)?;
                }
                for a in accounts {
                    tx.put(&ACCOUNTS, &key2(&a.vendor, &a.id), a)?;
                }
                for s in services {
                    tx.put(&SERVICES, &key2(&s.vendor, &s.id), s)?;
                }
                Ok::<_, tally_agent::journal::JournalError>(())
            })
            .unwrap();
    }

    fn account_mapping(&self, vendor: &str, id: &str) -> Option<Mapping> {
        self.journal.read().unwrap().get(&ACCOUNT_MAPPINGS, &key2(vendor, id)).unwrap()
    }

    fn service_mapping(&self, vendor: &str, id: &str) -> Option<Mapping> {
        self.journal.read().unwrap().get(&SERVICE_MAPPINGS, &key2(vendor, id)).unwrap()
    }

    fn target(&self, vendor: &str, id: &str) -> Option<Target> {
        self.account_mapping(vendor, id).map(|m| m.target)
    }

    fn apply(&self) -> Result<MappingChange, MappingError> {
        apply(&self.journal, &self.config)
    }

    fn tally(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_tally"))
            .arg("--config")
            .arg(self.dir().join("tally.toml"))
            .args(args)
            .env_remove("TALLY_CONFIG")
            .output()
            .unwrap()
    }
}

fn seen() -> Seen {
    Seen { seen_at: 0, retired_at: None }
}

fn company(id: &str, name: &str) -> Company {
    Company {
        id: id.to_string(),
        name: name.to_string(),
        identifier: None,
        active: true,
        deleted: false,
        billable: true,
        updated_at: None,
        seen: seen(),
    }
}

fn product(id: &str, identifier: &str, description: &str) -> Product {
    Product {
        id: id.to_string(),
        identifier: Some(identifier.to_string()),
        description: description.to_string(),
        active: true,
        unit_price: None,
        updated_at: None,
        seen: seen(),
    }
}

fn account(vendor: &str, id: &str, name: &str) -> Account {
    Account {
        vendor: vendor.to_string(),
        id: id.to_string(),
        name: name.to_string(),
        description: String::new(),
        created_at: 0,
        updated_at: 0,
    }
}

fn service(vendor: &str, id: &str, name: &str) -> Service {
    Service {
        vendor: vendor.to_string(),
        id: id.to_string(),
        name: name.to_string(),
        description: String::new(),
        created_at: 0,
        updated_at: 0,
    }
}

fn id(s: &str) -> Option<Target> {
    Some(Target::Id(s.to_string()))
}

/// Polls `cond` every 20 ms for up to 10 s.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Every result the watcher reported, in order.
type Reports = Arc<Mutex<Vec<Result<MappingChange, String>>>>;

fn watch(env: &Env) -> (tally_agent::mapping::WatcherHandle, Reports) {
    let reports: Reports = Arc::default();
    let sink = reports.clone();
    let handle = spawn_watcher_with(
        env.journal.clone(),
        env.config.clone(),
        WatchOptions::default(),
        move |r| sink.lock().unwrap().push(r.map_err(|e| e.to_string())),
    )
    .unwrap();
    (handle, reports)
}

fn ok_count(reports: &Reports) -> usize {
    reports.lock().unwrap().iter().filter(|r| r.is_ok()).count()
}

fn account_entry(id: &str, company: &str) -> String {
    format!("[[account]]\nvendor = \"safedns\"\nid = \"{id}\"\ncompany = {company}\n")
}

/// The standard seed: two companies, two accounts, one product and one service.
fn seeded(mapping: &str) -> Env {
    let env = Env::new(mapping);
    env.seed(
        &[company("250", "Contoso Ltd"), company("251", "Fabrikam Inc")],
        &[product("9", "SAFEDNS-SEAT", "SafeDNS seat")],
        &[account("safedns", "acme-01", "Acme"), account("safedns", "fab-01", "Fabrikam Inc")],
        &[service("safedns", "pro", "SafeDNS Pro")],
    );
    env
}

// ---------------------------------------------------------------------------------------------
// Level-1 matching

#[test]
fn c28_non_breaking_and_zero_width_spaces_auto_match() {
    let names = ["Contoso\u{00a0}Ltd", "Contoso Ltd\u{200b}", "Contoso  Ltd"];
    for name in names {
        assert_eq!(level1(name), level1("Contoso Ltd"), "== after level 1: {}", visible(name));
    }
    let mut by_name = HashMap::new();
    by_name.insert(level1("Contoso Ltd"), "1");
    for name in names {
        assert_eq!(by_name.get(&level1(name)), Some(&"1"), "map key: {}", visible(name));
    }

    let env = Env::new("");
    env.seed(
        &[company("1", "Contoso Ltd")],
        &[],
        &[
            account("safedns", "a1", names[0]),
            account("safedns", "a2", names[1]),
            account("safedns", "a3", names[2]),
        ],
        &[],
    );
    env.apply().unwrap();
    for a in ["a1", "a2", "a3"] {
        assert_eq!(
            env.account_mapping("safedns", a),
            Some(Mapping { target: Target::Id("1".into()), origin: Origin::Auto }),
            "{a}"
        );
    }
}

#[test]
fn c28_mismatch_displays_show_invisible_code_points() {
    assert_eq!(visible("Contoso\u{00a0}Ltd"), "Contoso<U+00A0>Ltd");
    assert_eq!(visible("\u{feff}Contoso"), "<U+FEFF>Contoso");
}

#[test]
fn each_level1_rule_alone_makes_names_equal() {
    let cases = [
        ("Contoso\u{2003}Ltd", "unicode space"),
        ("Contoso\tLtd", "tab"),
        ("Con\u{200c}toso Ltd", "zero-width non-joiner"),
        ("Contoso Ltd\u{feff}", "byte order mark"),
        ("Contoso    Ltd", "run of spaces"),
        ("  Contoso Ltd ", "ends"),
    ];
    for (name, rule) in cases {
        assert_eq!(level1(name), "Contoso Ltd", "{rule}");
    }
    assert_eq!(level1("Cafe\u{301} Ltd"), level1("Caf\u{e9} Ltd"), "NFC");
    assert_ne!(level1("contoso ltd"), level1("Contoso Ltd"), "case is not level 1");
}

#[test]
fn ambiguous_names_never_auto_match_and_are_suggested_with_every_candidate() {
    let env = Env::new("");
    let mut gone = company("3", "Contoso");
    gone.deleted = true;
    env.seed(
        &[company("7", "Contoso"), company("9", "Contoso"), gone],
        &[],
        &[account("safedns", "a1", "Contoso")],
        &[],
    );
    env.apply().unwrap();
    assert_eq!(env.account_mapping("safedns", "a1"), None);

    let out = env.tally(&["map", "suggest", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &json["suggestions"][0];
    assert_eq!(s["ambiguous"], true);
    let ids: Vec<&str> =
        s["candidates"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["7", "9"], "the deleted company is no candidate");
}

#[test]
fn deleted_and_inactive_companies_are_never_auto_match_targets() {
    let env = Env::new("");
    let mut deleted = company("1", "Northwind");
    deleted.deleted = true;
    let mut inactive = company("2", "Tailspin");
    inactive.active = false;
    env.seed(
        &[deleted, inactive, company("3", "Northwind")],
        &[],
        &[account("safedns", "n", "Northwind"), account("safedns", "t", "Tailspin")],
        &[],
    );
    env.apply().unwrap();
    assert_eq!(env.target("safedns", "n"), id("3"), "the one live company of that name");
    assert_eq!(env.target("safedns", "t"), None);
}

#[test]
fn services_auto_match_products_by_description_or_identifier() {
    let env = Env::new("");
    env.seed(
        &[],
        &[product("9", "SAFEDNS-SEAT", "SafeDNS seat"), product("10", "BKP-TB", "Backup per TB")],
        &[],
        &[
            service("safedns", "seat", "SafeDNS\u{00a0}seat"),
            service("safedns", "tb", "BKP-TB"),
            service("safedns", "other", "safedns seat"),
        ],
    );
    env.apply().unwrap();
    assert_eq!(env.service_mapping("safedns", "seat").map(|m| m.target), id("9"));
    assert_eq!(env.service_mapping("safedns", "tb").map(|m| m.target), id("10"));
    assert_eq!(env.service_mapping("safedns", "other"), None, "case differs: only a suggestion");
}

// ---------------------------------------------------------------------------------------------
// Suggestions

fn c27_env() -> Env {
    let env = Env::new("");
    env.seed(
        &[
            company("1", "Acme, Inc."),
            company("2", "Contoso Limited"),
            company("3", "Northwind Traders L.L.C."),
            company("4", "Acme Holdings Inc."),
        ],
        &[],
        &[
            account("safedns", "v1", "Acme Inc."),
            account("safedns", "v2", "ACME, Inc"),
            account("safedns", "v3", "Contoso Ltd"),
            account("safedns", "v4", "Northwind Traders LLC "),
        ],
        &[],
    );
    env
}

#[test]
fn c27_legal_suffix_and_punctuation_variants_are_suggestions_only() {
    let env = c27_env();
    env.apply().unwrap();
    for v in ["v1", "v2", "v3", "v4"] {
        assert_eq!(env.account_mapping("safedns", v), None, "{v} is not auto-matched");
    }

    let tx = env.journal.read().unwrap();
    let companies = tx.values(&COMPANIES, "").unwrap();
    let accounts = tx.values(&ACCOUNTS, "").unwrap();
    let found = suggest::suggest(
        &accounts,
        &[],
        &NameIndex::companies(&companies, Lookups::Suggest),
        &NameIndex::default(),
    );
    let by_id: HashMap<&str, &suggest::Suggestion> =
        found.items.iter().map(|s| (s.id.as_str(), s)).collect();
    let best = |v: &str| {
        let s = by_id[v];
        assert_eq!(s.kind, Kind::Account);
        (s.candidates[0].id.as_str(), s.candidates[0].reasons.clone())
    };
    assert_eq!(best("v1"), ("1", vec!["punctuation differs".to_string()]));
    assert_eq!(best("v2"), ("1", vec!["case differs".into(), "punctuation differs".into()]));
    assert_eq!(best("v3"), ("2", vec!["legal suffix differs".to_string()]));
    assert_eq!(best("v4"), ("3", vec!["punctuation differs".to_string()]));
    for s in &found.items {
        assert!(
            s.candidates.iter().all(|c| c.id != "4"),
            "Acme Holdings is never suggested for {}: {:?}",
            s.name,
            s.candidates
        );
    }
}

#[test]
fn c27_manual_entries_win() {
    let env = c27_env();
    env.write_file(&account_entry("v1", "4"));
    env.apply().unwrap();
    assert_eq!(
        env.account_mapping("safedns", "v1"),
        Some(Mapping { target: Target::Id("4".into()), origin: Origin::File })
    );
}

#[test]
fn c27_suggest_prints_entries_ready_to_paste() {
    let env = c27_env();
    let out = env.tally(&["map", "suggest", "--format", "toml"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("id = \"v3\"\ncompany = 2  # Contoso Limited"), "{text}");
    assert!(text.contains("legal suffix differs"), "{text}");

    // Pasted as they are, they load and map.
    let pasted: String =
        text.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n");
    env.write_file(&pasted);
    env.apply().unwrap();
    assert_eq!(env.target("safedns", "v1"), id("1"));
    assert_eq!(env.target("safedns", "v3"), id("2"));
    assert_eq!(env.target("safedns", "v4"), id("3"));

    // With everything mapped, it says there is nothing to suggest, still as TOML comments.
    let out = env.tally(&["map", "suggest", "--format", "toml"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, "# no suggestions: nothing unmapped resembles a PSA company or product\n");
}

#[test]
fn suggestions_read_an_index_instead_of_comparing_all_pairs() {
    // 10,000 made-up words, two per name, and one word every name shares.
    let syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "su"];
    let word = |n: usize| -> String {
        [n / 1000 % 10, n / 100 % 10, n / 10 % 10, n % 10].iter().map(|&d| syllables[d]).collect()
    };
    let name = |i: usize| format!("{} {} Services", word(i), word((i * 37 + 11) % 10_000));
    let companies: Vec<Company> =
        (0..5000).map(|i| company(&i.to_string(), &format!("{} LLC", name(i)))).collect();
    let accounts: Vec<Account> = (0..5000)
        .map(|i| account("safedns", &format!("a{i}"), &format!("{}, Inc.", name(i).to_uppercase())))
        .collect();
    let found = suggest::suggest(
        &accounts,
        &[],
        &NameIndex::companies(&companies, Lookups::Suggest),
        &NameIndex::default(),
    );
    assert_eq!(found.items.len(), 5000);
    assert!(found.items.iter().all(|s| s.candidates[0].id == s.id[1..]), "each finds its own");
    assert!(
        found.compared < 100_000,
        "{} comparisons for 5,000 × 5,000 (all pairs would be 25,000,000)",
        found.compared
    );
}

// ---------------------------------------------------------------------------------------------
// The mapping file

#[test]
fn file_entries_map_exclude_unmap_and_add_up_many_to_one() {
    let env = seeded(
        "# two accounts, one company\n\
         [[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\ncompany = \"Contoso Ltd\"\n\n\
         [[account]]\nvendor = \"safedns\"\nid = \"acme-02\"\ncompany = 250\n\n\
         [[account]]\nvendor = \"safedns\"\nid = \"fab-01\"\nunmap = true\n\n\
         [[service]]\nvendor = \"safedns\"\nid = \"pro\"\nproduct = \"SAFEDNS-SEAT\"\n\n\
         [[service]]\nvendor = \"safedns\"\nid = \"lab\"\nexclude = true\n",
    );
    let change = env.apply().unwrap();
    assert_eq!(change.file_entries, 5);
    assert_eq!(env.target("safedns", "acme-01"), id("250"));
    assert_eq!(env.target("safedns", "acme-02"), id("250"));
    assert_eq!(
        env.account_mapping("safedns", "fab-01"),
        Some(Mapping { target: Target::Unmapped, origin: Origin::File }),
        "unmap overrides the automatic match"
    );
    assert_eq!(env.service_mapping("safedns", "pro").map(|m| m.target), id("9"));
    assert_eq!(env.service_mapping("safedns", "lab").map(|m| m.target), Some(Target::Excluded));
    let state = file_state(&env.journal).unwrap().unwrap();
    assert_eq!(state.error, None);
    assert!(state.hash.is_some());
}

#[test]
fn c14_c15_product_rules_are_stored_by_product_id() {
    let env = seeded(
        "[[product]]\nproduct = \"SAFEDNS-SEAT\"\nrounding = \"ceil\"\nwhole_units = true\n\
         max_auto_change_pct = 20\nmax_auto_change_abs = 2.5\nnever_auto_zero = true\n\
         require_stable_pulls = 2\napply = \"increases\"\n",
    );
    let change = env.apply().unwrap();
    assert_eq!(change.products, ["9"]);
    let rules = env.journal.read().unwrap().get(&PRODUCT_RULES, "9").unwrap().unwrap();
    assert_eq!(rules.rounding, Rounding::Ceil);
    assert!(rules.whole_units && rules.never_auto_zero);
    assert_eq!(rules.max_auto_change_pct, Some("20".parse().unwrap()));
    assert_eq!(rules.max_auto_change_abs, Some("2.5".parse().unwrap()));
    assert_eq!(rules.require_stable_pulls, 2);
    assert_eq!(rules.apply.as_deref(), Some("increases"));

    env.write_file("# no rules any more\n");
    assert_eq!(env.apply().unwrap().products, ["9"]);
    assert_eq!(env.journal.read().unwrap().get(&PRODUCT_RULES, "9").unwrap(), None);
}

#[test]
fn apply_reports_only_the_keys_that_changed() {
    let env = seeded(&account_entry("acme-01", "250"));
    let first = env.apply().unwrap();
    assert_eq!(
        first.accounts,
        [("safedns".to_string(), "acme-01".to_string()), ("safedns".into(), "fab-01".into())]
    );
    assert!(env.apply().unwrap().is_empty(), "nothing changed the second time");
    env.write_file(&account_entry("acme-01", "251"));
    assert_eq!(env.apply().unwrap().accounts, [("safedns".to_string(), "acme-01".to_string())]);
}

/// Applies a good file, then `bad`; the good mapping must stay, and the error must be
/// recorded and contain `expect`.
fn rejected(bad: &str, expect: &str) {
    let env = seeded(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    env.write_file(bad);
    let e = env.apply().unwrap_err();
    assert!(e.to_string().contains(expect), "{e}\n--- expected: {expect}");
    assert_eq!(env.target("safedns", "acme-01"), id("250"), "previous mapping kept: {expect}");
    let state = file_state(&env.journal).unwrap().unwrap();
    assert!(state.error.as_deref().unwrap().contains(expect), "{state:?}");
    assert_eq!(state.accounts_mapped, 2, "the counts of the mapping in force stay");
}

#[test]
fn invalid_syntax_keeps_the_previous_mapping() {
    rejected("[[account]]\nvendor = \"safedns\nid = \"x\"\n", "mapping.toml:2:");
}

#[test]
fn unknown_key_keeps_the_previous_mapping() {
    rejected(
        "[[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\ncompnay = 250\n",
        "mapping.toml:4:1: unknown key `compnay` in [[account]]",
    );
}

#[test]
fn wrong_type_keeps_the_previous_mapping() {
    rejected(
        "[[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\ncompany = 2.5\n",
        "mapping.toml:4:11: `company` must be a company id",
    );
}

#[test]
fn account_mapped_twice_keeps_the_previous_mapping() {
    let text = format!(
        "# header\n\n\n\n\n\n{}\n{}",
        account_entry("acme-01", "250"),
        "[[account]]\n  vendor = \"safedns\"\n  id = \"acme-01\"\n  company = 251\n"
    );
    rejected(
        &text,
        "mapping.toml:14:3: account \"acme-01\" of vendor \"safedns\" is mapped twice (also at \
         line 9)",
    );
}

#[test]
fn unknown_company_id_keeps_the_previous_mapping() {
    rejected(&account_entry("acme-01", "999"), "mapping.toml:4:11: company 999 does not exist");
}

#[test]
fn ambiguous_company_name_keeps_the_previous_mapping_and_lists_candidates() {
    let env = seeded("");
    env.seed(&[company("300", "Contoso Ltd")], &[], &[], &[]);
    env.write_file(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    env.write_file(&account_entry("acme-01", "\"Contoso Ltd\""));
    let e = env.apply().unwrap_err().to_string();
    assert!(e.contains("company name \"Contoso Ltd\" is ambiguous: 2 companies have it"), "{e}");
    assert!(e.contains("250 (\"Contoso Ltd\")") && e.contains("300 (\"Contoso Ltd\")"), "{e}");
    assert_eq!(env.target("safedns", "acme-01"), id("250"));
}

#[test]
fn unknown_vendor_keeps_the_previous_mapping() {
    rejected(
        "[[account]]\nvendor = \"safedsn\"\nid = \"acme-01\"\ncompany = 250\n",
        "mapping.toml:2:10: vendor \"safedsn\" is not known",
    );
}

#[test]
fn c20_empty_file_after_entries_keeps_the_previous_mapping() {
    rejected(
        "",
        "mapping.toml is empty; keeping the previous mapping (1 entries). If you mean to remove \
         every entry, leave a comment line in the file",
    );
    rejected("\n  \n", "is empty; keeping the previous mapping");
}

#[test]
fn missing_file_after_entries_keeps_the_previous_mapping() {
    let env = seeded(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    std::fs::remove_file(env.mapping_file()).unwrap();
    let e = env.apply().unwrap_err().to_string();
    assert!(e.contains("does not exist; keeping the previous mapping (1 entries)"), "{e}");
    assert_eq!(env.target("safedns", "acme-01"), id("250"));
}

#[test]
fn a_comment_only_file_removes_every_entry_but_keeps_automatic_matches() {
    let env = seeded(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    env.write_file("# nothing mapped by hand\n");
    env.apply().unwrap();
    assert_eq!(env.target("safedns", "acme-01"), None);
    assert_eq!(env.target("safedns", "fab-01"), id("251"), "automatic");
}

#[test]
fn an_empty_file_is_valid_when_nothing_came_from_the_file() {
    let env = seeded("");
    env.apply().unwrap();
    assert_eq!(env.target("safedns", "fab-01"), id("251"));
}

// ---------------------------------------------------------------------------------------------
// map add, setup state, the command line

#[test]
fn map_add_keeps_comments_byte_for_byte_and_writes_atomically() {
    let original = "# Our mapping. Reviewed monthly.\n\n\
                    [[account]]   # the first one\nvendor = \"safedns\"  # aligned by hand\n\
                    id = \"acme-01\"\ncompany = 250\n\n\
                    # --- services ---\n[[service]]\nvendor = \"safedns\"\nid = \"pro\"\n\
                    product = 9  # seats\n";
    let env = seeded(original);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.mapping_file(), std::fs::Permissions::from_mode(0o640))
            .unwrap();
    }
    let added = edit::add(
        &env.journal,
        &env.config,
        &AddRequest {
            kind: Kind::Account,
            vendor: "safedns".into(),
            id: "fab-01".into(),
            target: AddTarget::To("Fabrikam Inc".into()),
        },
    )
    .unwrap();
    assert_eq!(added.target, Some(("251".to_string(), "Fabrikam Inc".to_string())));

    let text = std::fs::read_to_string(env.mapping_file()).unwrap();
    let block =
        "\n[[account]]\nvendor = \"safedns\"\nid = \"fab-01\"\ncompany = 251  # Fabrikam Inc\n";
    assert!(text.contains(block), "{text}");
    assert_eq!(text.replacen(block, "", 1), original, "every other byte is kept");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.mapping_file()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "permissions kept");
    }
    let leftovers: Vec<_> = std::fs::read_dir(env.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    env.apply().unwrap();
    assert_eq!(
        env.account_mapping("safedns", "fab-01"),
        Some(Mapping { target: Target::Id("251".into()), origin: Origin::File })
    );
}

#[test]
fn map_add_refuses_what_would_not_load_and_leaves_the_file() {
    let env = seeded("# untouched\n");
    for (target, vendor) in
        [(AddTarget::To("No Such Company".into()), "safedns"), (AddTarget::Exclude, "nosuchvendor")]
    {
        let request =
            AddRequest { kind: Kind::Account, vendor: vendor.into(), id: "x".into(), target };
        assert!(edit::add(&env.journal, &env.config, &request).is_err());
        assert_eq!(std::fs::read_to_string(env.mapping_file()).unwrap(), "# untouched\n");
    }
}

#[test]
fn map_add_from_the_command_line_changes_an_existing_entry() {
    let env = seeded(&format!("# keep me\n{}", account_entry("acme-01", "250")));
    let out = env.tally(&[
        "map",
        "add",
        "account",
        "--vendor",
        "safedns",
        "--id",
        "acme-01",
        "--exclude",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(env.mapping_file()).unwrap(),
        "# keep me\n[[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\nexclude = true\n"
    );
    assert_eq!(env.target("safedns", "acme-01"), Some(Target::Excluded));

    let out =
        env.tally(&["map", "add", "account", "--vendor", "safedns", "--id", "z", "--to", "nobody"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no company has the id or name \"nobody\""), "{stderr}");
    assert!(stderr.contains("lists likely companies"), "{stderr}");
}

#[test]
fn map_show_and_unmapped_list_origins_and_unmapped_usage() {
    let env = seeded(&account_entry("acme-01", "250"));
    env.journal
        .write(|tx| {
            let usage = UsageCount {
                vendor: "safedns".into(),
                account_id: "stray".into(),
                service_id: "pro".into(),
                quantity: "12".parse().unwrap(),
                received_at: 0,
                previous: vec![],
            };
            tx.put(&USAGE, "safedns\u{1f}stray\u{1f}pro", &usage)?;
            tx.put(
                &ACCOUNTS,
                &key2("safedns", "stray"),
                &account("safedns", "stray", "Stray\u{a0}Co"),
            )
        })
        .unwrap();

    let out = env.tally(&["map", "show", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let origins: Vec<(String, String)> = json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap().into(), a["origin"].as_str().unwrap().into()))
        .collect();
    assert_eq!(origins, [("acme-01".into(), "file".into()), ("fab-01".into(), "auto".into())]);

    let out = env.tally(&["map", "unmapped"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Stray<U+00A0>Co") && text.contains("1 counts, 12 units"), "{text}");
    assert!(text.contains("service  safedns  pro"), "the service is unmapped too: {text}");
}

#[test]
fn map_commands_exit_2_on_an_invalid_file_and_still_show_the_mapping_in_force() {
    let env = seeded(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    env.write_file(&account_entry("acme-01", "999"));
    let out = env.tally(&["map", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("company 250 Contoso Ltd"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mapping.toml:4:11: company 999"));
}

#[test]
fn setup_state_counts_a_vendor_configured_once_an_account_and_a_service_are_mapped() {
    let env = seeded("");
    env.seed(&[], &[], &[], &[service("safedns", "x", "Unknown")]);
    env.apply().unwrap();
    let state = setup_state(&env.journal, "safedns").unwrap();
    assert!(!state.configured);
    assert!(
        state.reason.as_deref().unwrap().contains("none of its 2 services is mapped"),
        "{state:?}"
    );
    assert_eq!(state.accounts_mapped, 1);

    env.write_file("[[service]]\nvendor = \"safedns\"\nid = \"pro\"\nproduct = 9\n");
    env.apply().unwrap();
    let state = setup_state(&env.journal, "safedns").unwrap();
    assert!(state.configured, "{state:?}");
    assert_eq!(state.reason, None);

    let other = setup_state(&env.journal, "dnsfilter").unwrap();
    assert!(other.reason.unwrap().contains("has not sent any accounts yet"));
}

// ---------------------------------------------------------------------------------------------
// The watcher

fn save_by_rename(env: &Env, text: &str) {
    let tmp = env.dir().join("mapping.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, env.mapping_file()).unwrap();
}

#[test]
fn c19_saves_by_rename_reload_every_time() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("250")), "initial load");

    save_by_rename(&env, &account_entry("acme-01", "251"));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")), "save 1");
    save_by_rename(&env, &account_entry("acme-01", "\"Contoso Ltd\""));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("250")), "save 2");
    assert!(reports.lock().unwrap().iter().all(Result::is_ok), "{:?}", reports.lock().unwrap());
}

#[test]
fn c19_vim_style_save_with_side_files() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| ok_count(&reports) == 1));

    // vim: probe file, swap file, backup by rename, new file, remove the backup.
    let dir = env.dir();
    std::fs::write(dir.join("4913"), "").unwrap();
    std::fs::remove_file(dir.join("4913")).unwrap();
    std::fs::write(dir.join(".mapping.toml.swp"), "swap").unwrap();
    std::fs::rename(env.mapping_file(), dir.join("mapping.toml~")).unwrap();
    std::fs::write(env.mapping_file(), account_entry("acme-01", "251")).unwrap();
    std::fs::remove_file(dir.join("mapping.toml~")).unwrap();
    std::fs::remove_file(dir.join(".mapping.toml.swp")).unwrap();
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));

    // Side files alone change nothing.
    let before = reports.lock().unwrap().len();
    std::fs::write(dir.join(".mapping.toml.swp"), "swap again").unwrap();
    std::fs::write(dir.join("mapping.toml~"), "backup").unwrap();
    std::fs::write(dir.join("mapping.toml.tmp"), "[[broken").unwrap();
    save_by_rename(&env, &account_entry("acme-01", "250"));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("250")));
    let reports = reports.lock().unwrap();
    assert!(reports[before..].iter().all(Result::is_ok), "{:?}", &reports[before..]);
}

#[test]
fn c20_truncate_and_write_in_two_halves_is_one_reload() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| ok_count(&reports) == 1));

    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(env.mapping_file()).unwrap(); // truncates
        std::thread::sleep(Duration::from_millis(50));
        f.write_all(b"[[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\n").unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        f.write_all(b"company = 251\n").unwrap();
    }
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));
    assert!(wait_until(|| ok_count(&reports) >= 2));
    // Room for a second reload to show itself, were the burst split.
    std::thread::sleep(Duration::from_millis(800));
    let reports = reports.lock().unwrap();
    assert_eq!(
        reports.iter().filter(|r| r.is_ok()).count(),
        2,
        "the initial load and one reload for the whole burst: {reports:?}"
    );
    assert!(
        reports.iter().flatten().all(|c| c.file_entries == 1),
        "never an empty or partial mapping in force: {reports:?}"
    );
}

#[test]
fn c20_truncate_then_write_whole_reloads() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, _reports) = watch(&env);
    env.write_file(&account_entry("acme-01", "251"));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));
}

#[test]
fn c20_invalid_edits_keep_the_mapping_and_are_recorded_until_fixed() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| ok_count(&reports) == 1));

    let bad = [
        ("", "is empty; keeping the previous mapping (1 entries)"),
        ("[[account]]\nvendor = \"safedns\"\nid = \"acme-01\"\ncompany = \n", "mapping.toml:4:"),
        (account_entry("acme-01", "999").as_str(), "mapping.toml:4:11: company 999"),
        (
            format!("{}\n{}", account_entry("acme-01", "250"), account_entry("acme-01", "251"))
                .as_str(),
            "mapping.toml:8:1: account \"acme-01\" of vendor \"safedns\" is mapped twice (also at \
             line 3)",
        ),
    ]
    .map(|(text, expect)| (text.to_string(), expect));
    for (text, expect) in &bad {
        save_by_rename(&env, text);
        let recorded = wait_until(|| {
            file_state(&env.journal)
                .unwrap()
                .and_then(|s| s.error)
                .is_some_and(|e| e.contains(expect))
        });
        assert!(recorded, "{expect}: {:?}", file_state(&env.journal).unwrap());
        assert_eq!(env.target("safedns", "acme-01"), id("250"), "{expect}");
    }

    save_by_rename(&env, &account_entry("acme-01", "251"));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));
    assert!(wait_until(|| file_state(&env.journal).unwrap().unwrap().error.is_none()));
}

#[test]
fn deleting_and_recreating_the_file_keeps_working() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| ok_count(&reports) == 1));

    std::fs::remove_file(env.mapping_file()).unwrap();
    assert!(wait_until(|| {
        reports
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("does not exist")))
    }));
    assert_eq!(env.target("safedns", "acme-01"), id("250"));

    std::fs::write(env.mapping_file(), account_entry("acme-01", "251")).unwrap();
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));
    std::fs::remove_file(env.mapping_file()).unwrap();
    std::fs::write(env.mapping_file(), account_entry("acme-01", "250")).unwrap();
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("250")));
}

#[test]
fn a_valid_edit_takes_effect_and_unchanged_content_is_not_reapplied() {
    let env = seeded(&account_entry("acme-01", "250"));
    let (_watcher, reports) = watch(&env);
    assert!(wait_until(|| ok_count(&reports) == 1));

    save_by_rename(&env, &account_entry("acme-01", "251"));
    assert!(wait_until(|| env.target("safedns", "acme-01") == id("251")));
    assert!(wait_until(|| ok_count(&reports) == 2));

    // Saving the file without changing it: the hash is the same, nothing is re-applied.
    save_by_rename(&env, &account_entry("acme-01", "251"));
    save_by_rename(&env, "# a comment only\n");
    assert!(wait_until(|| env.target("safedns", "acme-01").is_none()));
    // The report follows the journal write: wait for it, then check no other one came.
    assert!(wait_until(|| reports.lock().unwrap().len() >= 3));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 3, "{reports:?}");
}

#[test]
fn map_add_appends_after_the_files_header_comment() {
    use tally_agent::mapping::edit::{AddRequest, AddTarget, edited};
    use tally_agent::mapping::suggest::Kind;
    let text = "# tally mapping: vendor accounts -> companies\n# keep this header first\n";
    let request = AddRequest {
        kind: Kind::Account,
        vendor: "backupco".into(),
        id: "zzz".into(),
        target: AddTarget::Exclude,
    };
    let (out, replaced) = edited(text, &request, None).unwrap();
    assert!(!replaced);
    assert!(out.starts_with(text), "the header moved:\n{out}");
    assert!(
        out.ends_with("[[account]]\nvendor = \"backupco\"\nid = \"zzz\"\nexclude = true\n"),
        "{out}"
    );
}

#[test]
fn report_and_status_say_when_the_file_changed_since_the_mapping_in_force_was_loaded() {
    let env = seeded(&account_entry("acme-01", "250"));
    env.apply().unwrap();
    let pending = |env: &Env| {
        let out = env.tally(&["status", "--format", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["mapping_file"]["edit_pending"].clone()
    };
    let report_warning = |env: &Env| {
        let out = env.tally(&["report"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).contains("has changed since the mapping in force")
    };
    assert_eq!(pending(&env), false);
    assert!(!report_warning(&env));

    // Edited but not applied: both say so, and name the way to apply it.
    env.write_file(&account_entry("acme-01", "251"));
    assert_eq!(pending(&env), true);
    assert!(report_warning(&env));
    let text = env.tally(&["status"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("`tally map` applies it or says why"));
    assert_eq!(env.target("safedns", "acme-01"), id("250"), "reading applied nothing");

    // A broken edit: the warning carries the failed attempt.
    env.write_file("[[account]\n");
    assert!(env.apply().is_err());
    let out = env.tally(&["report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has changed") && stderr.contains("the last attempt to apply it:"),
        "{stderr}"
    );

    // Not a file that can be read (here a directory; a pipe is never opened): said, no wait.
    std::fs::remove_file(env.mapping_file()).unwrap();
    std::fs::create_dir(env.mapping_file()).unwrap();
    let out = env.tally(&["report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot be read (it is not a regular file)"), "{stderr}");
    assert_eq!(pending(&env), true);
    std::fs::remove_dir(env.mapping_file()).unwrap();

    // Applied: neither warns, also when the file is named by another path to it.
    env.write_file(&account_entry("acme-01", "251"));
    env.apply().unwrap();
    assert_eq!(pending(&env), false);
    assert!(!report_warning(&env));
    let state = tally_agent::mapping::resolve::file_state(&env.journal).unwrap();
    let roundabout = env.dir().join(".").join("mapping.toml");
    assert_eq!(
        tally_agent::mapping::resolve::check_file(&roundabout, state.as_ref()),
        tally_agent::mapping::resolve::FileCheck::Same
    );
}

#[test]
fn a_mapping_file_never_applied_is_said_to_be_not_applied_yet() {
    let env = seeded(&account_entry("acme-01", "250"));
    let out = env.tally(&["report"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has not been applied yet"), "{stderr}");
    assert!(!stderr.contains("has changed since"), "{stderr}");
}
