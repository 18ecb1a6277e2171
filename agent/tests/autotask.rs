//! `tally sync` against the Autotask emulator through the real Autotask plugin: unit changes
//! written as adjustments (deltas), exactly once, whatever happens to the process (C13, C18).

mod common;

use std::time::Duration;

use common::Workspace;
use tally_agent::journal::Read;
use tally_agent::journal::tables;
use tally_tests::autotask::{AtData, AutotaskEmulator, sample_ids::*};

fn workspace(at: &AutotaskEmulator, apply: &str) -> Workspace {
    let text = format!(
        r#"journal = "tally.redb"
mapping = "mapping.toml"

[psa]
plugin = "autotask"
apply = "{apply}"

[psa.settings]
username = "{user}"
secret = "${{TEST_AT_SECRET}}"
integration_code = "${{TEST_AT_CODE}}"
zone_discovery_url = "{zone}"

[[vendor]]
name = "safedns"
source = "push"
"#,
        user = at.username(),
        zone = at.zone_discovery_url(),
    );
    Workspace::new(
        &text,
        vec![
            ("TEST_AT_SECRET".into(), at.secret().into()),
            ("TEST_AT_CODE".into(), at.integration_code().into()),
        ],
    )
}

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

#[test]
fn autotask_sync_reads_units_in_force_and_writes_a_delta_once() {
    let at = AutotaskEmulator::start(AtData::sample());
    let ws = workspace(&at, "all");
    ws.usage("fabrikam", FABRIKAM, "m365", M365_BP, "43"); // 40 units in force: +3
    ws.ok(&["sync"]);

    let journal = ws.journal();
    let tx = journal.read().unwrap();
    let line = tx.get(&tables::BILLING_LINES, &FABRIKAM_M365.to_string()).unwrap().unwrap();
    assert_eq!(line.company_id, FABRIKAM.to_string());
    drop(tx);

    assert_eq!(at.units_on(FABRIKAM_M365, today()), Some(43));
    let adjustments: Vec<_> =
        at.adjustments().into_iter().filter(|a| a.contract_service_id == FABRIKAM_M365).collect();
    assert_eq!(adjustments.len(), 1, "{adjustments:?}");
    assert_eq!(adjustments[0].unit_change, 3);

    ws.ok(&["sync"]);
    assert_eq!(
        at.adjustments().iter().filter(|a| a.contract_service_id == FABRIKAM_M365).count(),
        1
    );
    let cards = ws.cards();
    assert_eq!(
        Workspace::card(&cards, &FABRIKAM.to_string(), &M365_BP.to_string())["status"],
        "match"
    );
}

#[test]
fn autotask_kill_9_during_sync_never_doubles_a_delta() {
    let at = AutotaskEmulator::start(AtData::sample());
    let ws = workspace(&at, "all");
    ws.usage("fabrikam", FABRIKAM, "m365", M365_BP, "43");
    ws.usage("contoso", CONTOSO, "safedns", SAFEDNS_SEAT, "45"); // 42 in force: +3
    let mut state: u64 = 0x853c_49e6_748f_ea9b;
    for _ in 0..30 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut child = ws.command().args(["sync", "--quiet"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(state % 400));
        let _ = child.kill();
        child.wait().unwrap();
    }
    ws.ok(&["sync"]);
    ws.ok(&["sync"]);
    assert_eq!(at.units_on(FABRIKAM_M365, today()), Some(43), "a delta was applied twice");
    assert_eq!(at.units_on(CONTOSO_SAFEDNS, today()), Some(45), "a delta was applied twice");
    for line in [FABRIKAM_M365, CONTOSO_SAFEDNS] {
        let created = at
            .adjustments()
            .into_iter()
            .filter(|a| a.contract_service_id == line && a.created_at.date() >= today())
            .count();
        assert_eq!(created, 1, "line {line}: {created} adjustments created");
    }
}
