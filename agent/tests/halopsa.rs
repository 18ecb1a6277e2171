//! `tally sync` against the HaloPSA emulator through the real HaloPSA plugin: recurring
//! invoice lines as billing lines, quantity upserts that never drop a line, and the crash test.

mod common;

use std::time::Duration;

use common::Workspace;
use rust_decimal::Decimal;
use tally_agent::journal::Read;
use tally_agent::journal::tables;
use tally_tests::halopsa::{HaloData, HaloEmulator};

fn workspace(halo: &HaloEmulator, apply: &str) -> Workspace {
    let text = format!(
        r#"journal = "tally.redb"
mapping = "mapping.toml"

[psa]
plugin = "halopsa"
apply = "{apply}"

[psa.settings]
base_url = "{base}"
client_id = "{client}"
client_secret = "${{TEST_HALO_SECRET}}"

[[vendor]]
name = "safedns"
source = "push"
"#,
        base = halo.base_url(),
        client = halo.client_id(),
    );
    Workspace::new(&text, vec![("TEST_HALO_SECRET".into(), halo.client_secret().into())])
}

fn upserts(halo: &HaloEmulator) -> usize {
    halo.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.eq_ignore_ascii_case("/api/RecurringInvoice"))
        .filter(|r| r.status < 300)
        .count()
}

#[test]
fn halo_sync_fills_the_journal_and_applies_without_dropping_a_line() {
    let halo = HaloEmulator::start(HaloData::sample());
    let ws = workspace(&halo, "all");
    ws.usage("harbourside", 420, "m365-apps", 1000, "15"); // line 24967 = 14: +1
    ws.ok(&["sync"]);

    let journal = ws.journal();
    let tx = journal.read().unwrap();
    assert_eq!(tx.count(&tables::COMPANIES).unwrap(), 2);
    assert_eq!(tx.get(&tables::AGREEMENTS, "-94").unwrap().unwrap().company_id, "420");
    assert!(tx.get(&tables::BILLING_LINES, "24963").unwrap().is_some());
    drop(tx);

    assert_eq!(halo.line(-94, 24967).unwrap().qty_order, Decimal::from(15));
    assert_eq!(halo.line(-94, 24963).unwrap().qty_order, Decimal::from(1), "a line was dropped");
    assert_eq!(upserts(&halo), 1);
    ws.ok(&["sync"]);
    assert_eq!(upserts(&halo), 1, "a second sync wrote again");
    let cards = ws.cards();
    assert_eq!(Workspace::card(&cards, "420", "1000")["status"], "match");
}

#[test]
fn halo_kill_9_during_sync_applies_the_change_exactly_once() {
    let halo = HaloEmulator::start(HaloData::sample());
    let ws = workspace(&halo, "all");
    ws.usage("harbourside", 420, "m365-apps", 1000, "18");
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..30 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut child = ws.command().args(["sync", "--quiet"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(state % 300));
        let _ = child.kill();
        child.wait().unwrap();
    }
    ws.ok(&["sync"]);
    ws.ok(&["sync"]);
    assert_eq!(halo.line(-94, 24967).unwrap().qty_order, Decimal::from(18));
    assert_eq!(halo.line(-94, 24963).unwrap().qty_order, Decimal::from(1));
    assert_eq!(upserts(&halo), 1, "the change was written more than once");
}
