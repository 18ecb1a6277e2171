//! `tally sync` against the ConnectWise emulator, through the real plugin: what reaches the
//! journal, how many requests it costs, what is written back, and what a crash, a failing page
//! or a merged company must never cause.

mod common;

use std::time::Duration;

use common::Env;
use rust_decimal::Decimal;
use tally_agent::journal::tables;
use tally_agent::journal::{Read, Write};
use tally_tests::connectwise::{Company, CwData, Fault, FaultRule, sample_ids::*};

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// Usage that makes every kind of card against the sample data.
fn seed(env: &Env) {
    env.usage("contoso", CONTOSO, "safedns-pro", SAFEDNS_SEAT, "45"); // 42 in force: +3
    env.usage("obrien", OBRIEN, "m365", M365_BP, "10"); // 8: +2
    env.usage("tailspin", TAILSPIN, "m365", M365_BP, "28"); // 30: -2, under the 20 % hold
    env.usage("muller", MULLER, "safedns-pro", SAFEDNS_SEAT, "15"); // 15: match
    env.usage("northwind", NORTHWIND, "edr", EDR_AGENT, "55"); // two lines in force: review
}

fn patches(env: &Env) -> Vec<String> {
    env.cw
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.status.is_some_and(|s| s < 300))
        .map(|r| r.api_path)
        .collect()
}

#[test]
fn sync_fills_the_journal_and_a_quick_sync_costs_one_request_per_listing() {
    let env = Env::new(CwData::sample(), "none");
    let out = env.ok(&["sync"]);
    assert!(out.contains("0 incomplete"), "{out}");

    let journal = env.journal();
    let tx = journal.read().unwrap();
    assert_eq!(tx.count(&tables::COMPANIES).unwrap(), 8);
    assert_eq!(tx.count(&tables::PRODUCTS).unwrap(), 5);
    assert_eq!(tx.count(&tables::AGREEMENTS).unwrap(), 8);
    assert_eq!(tx.count(&tables::BILLING_LINES).unwrap(), 18);
    let line = tx.get(&tables::BILLING_LINES, "11").unwrap().unwrap();
    assert_eq!(line.quantity, dec("1.75"), "decimal quantities are kept exactly (C15)");
    assert_eq!(
        line.company_id,
        FABRIKAM.to_string(),
        "lines take their company from the agreement"
    );
    let merged = tx.get(&tables::COMPANIES, &CONTOSO_MERGED.to_string()).unwrap().unwrap();
    assert!(merged.deleted, "a merged company is stored as deleted (C12)");
    // Each record's source JSON is kept as the PSA sent it: the plugin names the row's place in
    // the response body, and the host stores that part of the body.
    for (kind, id) in [("company", FABRIKAM.to_string()), ("billing_line", "11".to_string())] {
        let text = tx.get(&tables::RAW, &tables::key2(kind, &id)).unwrap().unwrap();
        let row: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(row["id"].to_string(), id, "{kind} {id}: {text}");
    }
    drop(tx);

    // Nothing changed upstream: one request per listing, plus one per agreement's lines.
    env.cw.clear_log();
    let out = env.ok(&["sync"]);
    assert!(out.contains("0 changed"), "{out}");
    let api: Vec<_> = env.cw.requests().into_iter().filter(|r| r.path.contains("/apis/")).collect();
    assert_eq!(
        api.len(),
        3 + 8,
        "requests: {:#?}",
        api.iter().map(|r| &r.api_path).collect::<Vec<_>>()
    );
    for request in api.iter().filter(|r| r.api_path == "company/companies") {
        let conditions = request.query_param("conditions").unwrap_or_default();
        assert!(
            conditions.contains("_info/lastUpdated>="),
            "a quick sync reads increments: {conditions}"
        );
    }
}

#[test]
fn a_quick_sync_after_a_one_line_change_updates_that_card() {
    let env = Env::new(CwData::sample(), "none");
    seed(&env);
    env.ok(&["sync"]);
    let cards = env.cards();
    assert_eq!(Env::card(&cards, "250", "101")["psa_quantity"], "42");

    env.cw.update_addition(CONTOSO_AGREEMENT, 2, |a| a.quantity = Decimal::from(44));
    env.cw.clear_log();
    let out = env.ok(&["sync"]);
    assert!(out.contains("1 changed"), "{out}");
    let cards = env.cards();
    let card = Env::card(&cards, "250", "101");
    assert_eq!(card["psa_quantity"], "44");
    assert_eq!(card["status"], "reconcile");
    assert_eq!(env.cw.requests().iter().filter(|r| r.path.contains("/apis/")).count(), 3 + 8);
}

#[test]
fn every_card_status_and_the_report_only_policy() {
    let env = Env::new(CwData::sample(), "none");
    seed(&env);
    // Usage nobody mapped, and an account the mapping file excludes.
    let journal = env.journal();
    journal
        .write(|tx| {
            let now = tally_agent::model::now_millis();
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
    drop(journal);
    let mapping = env.path("mapping.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        format!("{text}\n[[account]]\nvendor = \"safedns\"\nid = \"lab\"\nexclude = true\n"),
    )
    .unwrap();
    env.ok(&["sync"]);
    let cards = env.cards();
    assert_eq!(Env::card(&cards, "250", "101")["status"], "reconcile");
    assert_eq!(Env::card(&cards, "250", "101")["action"], "report");
    assert_eq!(Env::card(&cards, "19302", "101")["status"], "match");
    // Fabrikam bills SafeDNS but no mapped vendor reports it.
    assert_eq!(Env::card(&cards, "19303", "101")["status"], "stale");
    let all = cards["cards"].as_array().unwrap();
    assert!(all.iter().any(|c| c["status"] == "unmapped"), "{cards:#}");
    assert!(all.iter().any(|c| c["status"] == "excluded"), "{cards:#}");
    // Northwind has two EDR lines in force: ambiguous, sent to review (C32).
    let northwind = Env::card(&cards, "19305", "104");
    assert_eq!(northwind["action"], "review");
    assert!(northwind["reason"].as_str().unwrap().contains("ambiguous"));
    // Contoso: the cancelled and the future line are not summed (C32).
    assert_eq!(Env::card(&cards, "250", "101")["psa_quantity"], "42");
    assert!(patches(&env).is_empty(), "policy none writes nothing");
}

#[test]
fn policy_all_writes_each_change_exactly_once() {
    let env = Env::new(CwData::sample(), "all");
    seed(&env);
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 2).unwrap().quantity, Decimal::from(45));
    assert_eq!(env.cw.addition(5003, 6).unwrap().quantity, Decimal::from(10));
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(28));
    // C32: the cancelled and the future-dated additions are never touched.
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 1).unwrap().quantity, Decimal::from(40));
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 3).unwrap().quantity, Decimal::from(5));
    let first = patches(&env);
    assert_eq!(first.len(), 3, "{first:?}");

    env.ok(&["sync"]);
    env.ok(&["sync", "--full"]);
    assert_eq!(patches(&env).len(), 3, "a later sync wrote again");
    let cards = env.cards();
    assert_eq!(Env::card(&cards, "250", "101")["status"], "match");

    let history = env.ok(&["report", "--history", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_str(&history).unwrap();
    assert_eq!(history.as_array().unwrap().len(), 3, "{history:#}");
}

#[test]
fn increases_apply_and_reductions_wait_for_approval() {
    let env = Env::new(CwData::sample(), "increases");
    seed(&env);
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 2).unwrap().quantity, Decimal::from(45));
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(30), "held");
    let cards = env.cards();
    let tailspin = Env::card(&cards, "19304", "102");
    assert_eq!(tailspin["action"], "held");
    let id = tailspin["card"].as_str().unwrap().to_string();

    env.ok(&["approve", &id]);
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(28));
    let history: serde_json::Value =
        serde_json::from_str(&env.ok(&["report", "--history", "--format", "json"])).unwrap();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["decided_by"].as_str().unwrap().starts_with("approved by"))
    );
}

#[test]
fn a_reduction_over_the_threshold_is_held_under_policy_all() {
    let env = Env::new(CwData::sample(), "all");
    env.usage("tailspin", TAILSPIN, "m365", M365_BP, "20"); // 30 -> 20: -33 %
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(30));
    let cards = env.cards();
    let card = Env::card(&cards, "19304", "102");
    assert_eq!(card["action"], "held");
    assert!(card["reason"].as_str().unwrap().contains("hold_reductions_over"), "{card:#}");
}

#[test]
fn c04_a_page_that_always_fails_leaves_the_listing_incomplete_and_decides_nothing() {
    let env = Env::new(CwData::sample(), "all");
    seed(&env);
    env.ok(&["sync"]);
    env.cw.remove_company(NORTHWIND); // would be retired by a complete full listing
    env.cw.inject(FaultRule::new("company/companies", Fault::server_error()).always());
    env.cw.update_addition(CONTOSO_AGREEMENT, 2, |a| a.quantity = Decimal::from(40));
    let before = patches(&env).len();

    let out = env.tally(&["sync", "--full"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("companies") && stdout.contains("incomplete"), "{stdout}");

    let journal = env.journal();
    let northwind =
        journal.read().unwrap().get(&tables::COMPANIES, &NORTHWIND.to_string()).unwrap().unwrap();
    assert!(northwind.seen.retired_at.is_none(), "an incomplete listing retired a company");
    assert_eq!(patches(&env).len(), before, "a change was written while a listing was incomplete");
    // The first listing never got a usable answer, so no other was tried: the change to line 2
    // was not even read, and nothing was queued for it.
    assert!(stdout.contains("no other listing was tried"), "{stdout}");
    let cards = env.cards();
    assert_ne!(Env::card(&cards, "250", "101")["action"], "apply");
    // The bounded retries happened, and then stopped.
    let attempts = env.cw.requests().iter().filter(|r| r.api_path == "company/companies").count();
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
}

#[test]
fn a_stream_state_the_journal_cannot_read_stops_the_sync_naming_it_and_loses_nothing() {
    let env = Env::new(CwData::sample(), "all");
    seed(&env);
    env.ok(&["sync"]);
    let key = tables::key2("billing_lines", &CONTOSO_AGREEMENT.to_string());
    let lines_before = env.journal().read().unwrap().scan(&tables::BILLING_LINES, "").unwrap();
    {
        // A state written by something that is not this tally: not one the codec can read.
        let db = redb::Database::open(env.path("tally.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let streams: redb::TableDefinition<&str, &[u8]> =
                redb::TableDefinition::new(tables::STREAMS.name);
            let mut table = tx.open_table(streams).unwrap();
            table.insert(key.as_str(), &b"\xff not a stream state"[..]).unwrap();
        }
        tx.commit().unwrap();
    }
    env.cw.remove_addition(CONTOSO_AGREEMENT, 4);
    let before = patches(&env).len();

    let out = env.tally(&["sync", "--full"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("table streams, key billing_lines/5001"), "{stderr}");
    // Nothing was retired, rewritten or written back on the strength of an unreadable journal.
    let lines_after = env.journal().read().unwrap().scan(&tables::BILLING_LINES, "").unwrap();
    assert_eq!(lines_after, lines_before);
    assert_eq!(patches(&env).len(), before);
}

#[test]
fn a_psa_that_gives_the_first_listing_no_usable_answer_is_not_asked_for_the_others() {
    // No answer at all, and only "try again later" (maintenance behind a proxy).
    for fault in [Fault::DropConnection, Fault::ServiceUnavailable] {
        let env = Env::new(CwData::sample(), "all");
        seed(&env);
        env.ok(&["sync"]);
        let lines_before = env.journal().read().unwrap().scan(&tables::BILLING_LINES, "").unwrap();
        let asked_before = env.cw.requests().len();
        env.cw.inject(FaultRule::new("**", fault).always());

        let out = env.tally(&["sync", "--full"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("the PSA gave the first listing no usable answer"), "{stdout}");
        assert!(stdout.contains("no other listing was tried"), "{stdout}");
        // Only the first listing's request was sent, and retried; no agreement's lines.
        let asked: Vec<String> =
            env.cw.requests()[asked_before..].iter().map(|r| r.api_path.clone()).collect();
        assert!(!asked.is_empty());
        assert!(asked.iter().all(|path| *path == asked[0]), "{asked:?}");
        assert!(!asked[0].contains("additions"), "{asked:?}");
        let lines_after = env.journal().read().unwrap().scan(&tables::BILLING_LINES, "").unwrap();
        assert_eq!(lines_after, lines_before, "nothing was retired or changed");
    }
}

#[test]
fn c12_a_merged_company_is_never_written_to() {
    let env = Env::new(CwData::sample(), "all");
    env.usage("contoso-old", CONTOSO_MERGED, "safedns-pro", SAFEDNS_SEAT, "9"); // line 5 = 7
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(5002, 5).unwrap().quantity, Decimal::from(7));
    let cards = env.cards();
    let card = Env::card(&cards, "251", "101");
    assert_eq!(card["action"], "review");
    assert!(card["reason"].as_str().unwrap().contains("deleted or merged"), "{card:#}");
}

#[test]
fn an_approval_is_void_once_the_line_changed_in_the_psa() {
    let env = Env::new(CwData::sample(), "increases");
    env.usage("tailspin", TAILSPIN, "m365", M365_BP, "28"); // 30 -> 28: held
    env.ok(&["sync"]);
    let cards = env.cards();
    let id = Env::card(&cards, "19304", "102")["card"].as_str().unwrap().to_string();
    env.ok(&["approve", &id]);
    // Someone edits the line in the PSA before the next sync.
    env.cw.update_addition(5007, 14, |a| a.quantity = Decimal::from(33));
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(33), "overwritten");
    let cards = env.cards();
    let card = Env::card(&cards, "19304", "102");
    assert_eq!(card["action"], "held");
    assert!(card["reason"].as_str().unwrap().contains("approve again"), "{card:#}");
}

#[test]
fn an_open_write_whose_line_changed_becomes_a_conflict() {
    let env = Env::new(CwData::sample(), "none");
    env.ok(&["sync"]);
    // A write decided against 42 was in flight when the process died; since then someone set
    // the line to 50 in the PSA.
    let journal = env.journal();
    journal
        .write(|tx| {
            tx.append(&tables::OUTBOX, |id| tally_agent::model::OutboxEntry {
                id,
                company_id: CONTOSO.to_string(),
                product_id: SAFEDNS_SEAT.to_string(),
                agreement_id: CONTOSO_AGREEMENT.to_string(),
                line_id: "2".into(),
                old_quantity: Some(Decimal::from(42)),
                target_quantity: Decimal::from(45),
                effective_date: "2024-05-20".into(),
                decided_by: "policy".into(),
                created_at: 0,
                state: tally_agent::model::OutboxState::Sent,
                attempts: 1,
                last_error: None,
                updated_at: 0,
            })
        })
        .unwrap();
    drop(journal);
    env.cw.update_addition(CONTOSO_AGREEMENT, 2, |a| a.quantity = Decimal::from(50));
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 2).unwrap().quantity, Decimal::from(50));
    assert!(patches(&env).is_empty());
    let history: serde_json::Value =
        serde_json::from_str(&env.ok(&["report", "--history", "--format", "json"])).unwrap();
    assert_eq!(history[0]["outcome"], "conflict", "{history:#}");
}

/// The crash test: `tally sync` with policy `all` killed at random moments, 30 times, then
/// run to the end. The PSA ends as an uninterrupted run leaves it, each change written once.
#[test]
fn c18_kill_9_during_sync_applies_every_change_exactly_once() {
    let reference = Env::new(CwData::sample(), "all");
    seed(&reference);
    reference.ok(&["sync"]);
    let expected: Vec<(i64, i64, Decimal)> = [(CONTOSO_AGREEMENT, 2), (5003, 6), (5007, 14)]
        .iter()
        .map(|&(a, id)| (a, id, reference.cw.addition(a, id).unwrap().quantity))
        .collect();

    let env = Env::new(CwData::sample(), "all");
    seed(&env);
    env.cw.set_latency(Duration::from_millis(15));
    let mut rng_state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        rng_state
    };
    for _ in 0..30 {
        let mut child = env.command().args(["sync", "--quiet"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(next() % 400));
        let _ = child.kill();
        child.wait().unwrap();
    }
    env.cw.set_latency(Duration::ZERO);
    env.ok(&["sync"]);
    env.ok(&["sync"]);

    for (agreement, id, quantity) in &expected {
        assert_eq!(env.cw.addition(*agreement, *id).unwrap().quantity, *quantity, "line {id}");
    }
    let writes = patches(&env);
    for (_, id, _) in &expected {
        let n = writes.iter().filter(|p| p.ends_with(&format!("/additions/{id}"))).count();
        assert_eq!(n, 1, "line {id} was written {n} times: {writes:?}");
    }
    let history: serde_json::Value =
        serde_json::from_str(&env.ok(&["report", "--history", "--format", "json"])).unwrap();
    let applied: Vec<_> =
        history.as_array().unwrap().iter().filter(|h| h["outcome"] != "conflict").collect();
    assert_eq!(applied.len(), 3, "each audit row exists once: {history:#}");
    let cards = env.cards();
    let reference_cards = reference.cards();
    for (company, product) in [("250", "101"), ("19301", "102"), ("19304", "102"), ("19302", "101")]
    {
        assert_eq!(
            Env::card(&cards, company, product)["psa_quantity"],
            Env::card(&reference_cards, company, product)["psa_quantity"]
        );
    }
}

/// Stores a vendor report for Contoso's M365 seats, keeping the earlier reports as intake does.
fn report_m365(env: &Env, quantity: i64) {
    let journal = env.journal();
    journal
        .write(|tx| {
            let key = tables::key3("safedns", "m365", "contoso");
            let mut usage: tally_agent::model::UsageCount = tx.get(&tables::USAGE, &key)?.unwrap();
            usage.previous.insert(0, (usage.quantity, usage.received_at));
            usage.previous.truncate(5);
            usage.quantity = Decimal::from(quantity);
            usage.received_at = tally_agent::model::now_millis();
            tx.put(&tables::USAGE, &key, &usage)
        })
        .unwrap();
}

#[test]
fn c14_a_vendor_glitch_to_zero_is_held_and_a_change_waits_for_two_equal_reports() {
    let env = Env::new(CwData::sample(), "all");
    env.usage("contoso", CONTOSO, "m365", M365_BP, "25"); // line 4 = 25
    let mapping = env.path("mapping.toml");
    let text = std::fs::read_to_string(&mapping).unwrap();
    std::fs::write(
        &mapping,
        format!("{text}\n[[product]]\nproduct = \"M365-BP\"\nnever_auto_zero = true\nrequire_stable_pulls = 2\n"),
    )
    .unwrap();
    env.ok(&["sync"]);
    let line = || env.cw.addition(CONTOSO_AGREEMENT, 4).unwrap().quantity;
    assert_eq!(line(), Decimal::from(25));

    report_m365(&env, 0); // a transient glitch
    env.ok(&["sync"]);
    assert_eq!(line(), Decimal::from(25), "a drop to zero was written");
    let cards = env.cards();
    assert_eq!(Env::card(&cards, "250", "102")["action"], "held");

    report_m365(&env, 26);
    env.ok(&["sync"]);
    assert_eq!(line(), Decimal::from(25), "applied after a single report");
    let cards = env.cards();
    assert!(
        Env::card(&cards, "250", "102")["reason"]
            .as_str()
            .unwrap()
            .contains("2 equal vendor reports")
    );

    report_m365(&env, 26);
    env.ok(&["sync"]);
    assert_eq!(line(), Decimal::from(26));
}

#[test]
fn c17_a_row_that_becomes_visible_behind_the_cursor_is_read_by_the_next_quick_sync() {
    let env = Env::new(CwData::sample(), "none");
    env.ok(&["sync"]);
    // The newest company the first sync saw was stamped 2024-05-02 14:20:00; this one is stamped
    // a little earlier but only becomes visible now.
    let mut late = Company::new(42, "LateRow", "Late Row Ltd");
    late.last_updated = time::macros::datetime!(2024-05-02 14:19:59.869 UTC);
    env.cw.add_company(late);
    let out = env.ok(&["sync"]);
    assert!(out.contains("quick sync"), "{out}");
    let journal = env.journal();
    assert!(
        journal.read().unwrap().get(&tables::COMPANIES, "42").unwrap().is_some(),
        "row 42 was skipped"
    );
}

#[test]
fn transient_faults_are_retried_and_the_sync_completes() {
    let env = Env::new(CwData::sample(), "all");
    seed(&env);
    env.cw.inject(FaultRule::new("company/companies", Fault::rate_limited_secs(1)));
    env.cw.inject(FaultRule::new("procurement/catalog", Fault::ServiceUnavailable));
    env.cw.inject(FaultRule::new("finance/agreements", Fault::TruncatedBody));
    env.cw.inject(FaultRule::new("finance/agreements/*/additions", Fault::DropConnection));
    env.cw.inject(
        FaultRule::new("finance/agreements/*/additions/*", Fault::DropAfterProcessing)
            .method("PATCH"),
    );
    let out = env.ok(&["sync"]);
    assert!(out.contains("0 incomplete"), "{out}");
    assert_eq!(env.cw.armed_faults(), 0, "a fault was never hit");
    // The PATCH that landed without an answer was confirmed by reading the line, not resent.
    env.ok(&["sync"]);
    assert_eq!(env.cw.addition(CONTOSO_AGREEMENT, 2).unwrap().quantity, Decimal::from(45));
    assert_eq!(env.cw.addition(5003, 6).unwrap().quantity, Decimal::from(10));
    assert_eq!(env.cw.addition(5007, 14).unwrap().quantity, Decimal::from(28));
    assert_eq!(env.cw.writes().patches, 3, "a change was applied twice");
}
