//! `tally status` and the agent's `GET /status`: one document built from the journal, so every
//! process sees the same state, whether or not it runs the agent.
//!
//! It shows integrations and their connection state, the PSA streams (last and current
//! listing, errors), the outbox, the mapping file, the last and current sync, and the cards.
//! It only reads.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::journal::tables::{self, SEP};
use crate::journal::{Journal, Read, codec};
use crate::model::{
    MappingFileState, OutboxEntry, OutboxState, StreamState, SyncRun, format_millis,
};

/// The agent's own description of itself, next to the journal while it runs.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AgentInfo {
    pub pid: u32,
    pub listen: String,
    pub started_at: String,
    pub version: String,
}

/// Where a running agent describes itself: next to the journal.
pub fn agent_info_path(journal: &std::path::Path) -> std::path::PathBuf {
    let mut name = journal.file_name().unwrap_or_default().to_os_string();
    name.push(".agent");
    journal.with_file_name(name)
}

/// The running agent for this journal, if one holds its lock.
pub fn running_agent(journal: &std::path::Path) -> Option<AgentInfo> {
    let lock = crate::agent::lock_path(journal);
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&lock).ok()?;
    match file.try_lock() {
        Ok(()) => None,
        Err(_) => {
            let text = std::fs::read_to_string(agent_info_path(journal)).ok()?;
            serde_json::from_str(&text).ok()
        }
    }
}

fn time(at: Option<i64>) -> Value {
    at.map(|t| Value::String(format_millis(t))).unwrap_or(Value::Null)
}

fn stream_json(name: &str, state: &StreamState) -> Value {
    json!({
        "stream": name,
        "state": if state.listing.is_some() {
            if state.last_error.is_some() { "incomplete" } else { "listing" }
        } else if state.last_error.is_some() {
            "incomplete"
        } else if state.last_complete_at.is_some() {
            "complete"
        } else {
            "never listed"
        },
        "last_complete_at": time(state.last_complete_at),
        "last_full_at": time(state.last_full_at),
        "last_error": state.last_error,
        "last_error_at": time(state.last_error_at),
        "records_read": state.records_read,
        "pages_read": state.pages_read,
        "listing": state.listing.as_ref().map(|l| json!({
            "full": l.full,
            "started_at": format_millis(l.started_at),
            "records": l.records,
            "pages": l.pages,
        })),
    })
}

fn run_json(run: &SyncRun) -> Value {
    json!({
        "id": run.id,
        "full": run.full,
        "trigger": run.trigger,
        "started_at": format_millis(run.started_at),
        "finished_at": time(run.finished_at),
        "outcome": run.outcome,
        "streams_complete": run.streams_complete,
        "streams_incomplete": run.streams_incomplete,
        "records": run.records,
        "requests": run.requests,
        "pid": run.pid,
    })
}

fn alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pid;
        true
    }
}

/// The whole status document.
pub fn document(journal: &Journal, config: &Config) -> anyhow::Result<Value> {
    let tx = journal.read()?;

    // Streams: top-level ones one by one, child streams summed per stream name.
    let mut streams = Vec::new();
    let mut children: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for (key, state) in tx.scan(&tables::STREAMS, "")? {
        match key.split_once(SEP) {
            None => streams.push(stream_json(&key, &state)),
            Some((name, _)) => {
                let entry = children.entry(name.to_string()).or_default();
                entry.0 += 1;
                if state.last_error.is_some() {
                    entry.1 += 1;
                } else if state.listing.is_some() {
                    entry.2 += 1;
                }
                entry.3 += state.records_read;
            }
        }
    }
    for (name, (total, incomplete, listing, records)) in children {
        streams.push(json!({
            "stream": name,
            "state": if incomplete > 0 { "incomplete" } else if listing > 0 { "listing" } else { "complete" },
            "parents": total,
            "incomplete": incomplete,
            "listing_now": listing,
            "records_read": records,
        }));
    }

    let mut outbox_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for state in [
        OutboxState::Intent,
        OutboxState::Sent,
        OutboxState::Done,
        OutboxState::Failed,
        OutboxState::Conflict,
    ] {
        outbox_counts.insert(state.as_str(), 0);
    }
    tx.each(&tables::OUTBOX, "", &mut |_, entry: OutboxEntry| {
        *outbox_counts.entry(entry.state.as_str()).or_default() += 1;
        Ok(())
    })?;

    let runs: Vec<SyncRun> = tx.values(&tables::SYNC_RUNS, "")?;
    let current = runs.iter().rev().find(|r| r.finished_at.is_none() && alive(r.pid));
    let last = runs.iter().rev().find(|r| r.finished_at.is_some());

    let mapping_state: Option<MappingFileState> = tx
        .get(&tables::STATE, crate::mapping::resolve::STATE_KEY)?
        .and_then(|bytes| codec::decode(&bytes).ok());

    let summary = crate::report::summarize_journal(&tx)?;
    drop(tx);

    let integrations = crate::intake::integrations::integration_rows(journal)?;
    let mut setup = Vec::new();
    for vendor in &config.vendors {
        setup.push(serde_json::to_value(crate::mapping::setup::setup_state(
            journal,
            &vendor.name,
        )?)?);
    }

    Ok(json!({
        "journal": journal.path().display().to_string(),
        "config": config.file.display().to_string(),
        "agent": running_agent(journal.path()),
        "psa": config.psa.as_ref().map(|p| json!({
            "plugin": p.plugin,
            "apply": p.apply.as_str(),
            "hold_reductions_over": p.hold_reductions_over.to_string(),
        })),
        "streams": streams,
        "current_sync": current.map(run_json),
        "last_sync": last.map(run_json),
        "integrations": integrations,
        "setup": setup,
        "mapping_file": mapping_state.as_ref().map(|m| json!({
            "path": m.path,
            "edit_pending": crate::mapping::resolve::edit_pending(&config.mapping, Some(m)),
            "hash": m.hash,
            "loaded_at": time(m.loaded_at),
            "error": m.error,
            "error_at": time(m.error_at),
            "accounts_mapped": m.accounts_mapped,
            "services_mapped": m.services_mapped,
        })),
        "outbox": outbox_counts,
        "cards": summary,
    }))
}

/// The status as a few readable lines.
pub fn render(doc: &Value) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
    match doc["agent"].as_object() {
        Some(agent) => out.push_str(&format!(
            "agent: running (pid {}, listening on {}, since {})\n",
            agent["pid"],
            s(&agent["listen"]),
            s(&agent["started_at"])
        )),
        None => out.push_str("agent: not running (`tally run` starts it)\n"),
    }
    match doc["psa"].as_object() {
        Some(psa) => out.push_str(&format!(
            "psa: {} (apply = {}, hold reductions over {} %)\n",
            s(&psa["plugin"]),
            s(&psa["apply"]),
            s(&psa["hold_reductions_over"])
        )),
        None => out.push_str("psa: not configured\n"),
    }
    if let Some(run) = doc["current_sync"].as_object() {
        out.push_str(&format!(
            "sync in progress: run {} ({}), started {}\n",
            run["id"],
            if run["full"] == true { "full" } else { "quick" },
            s(&run["started_at"])
        ));
    }
    if let Some(run) = doc["last_sync"].as_object() {
        out.push_str(&format!(
            "last sync: run {} {} at {}: {} streams complete, {} incomplete, {} records, {} requests\n",
            run["id"],
            s(&run["outcome"]),
            s(&run["finished_at"]),
            run["streams_complete"],
            run["streams_incomplete"],
            run["records"],
            run["requests"]
        ));
    } else {
        out.push_str("last sync: never (`tally sync` runs one)\n");
    }
    for stream in doc["streams"].as_array().into_iter().flatten() {
        let mut line = format!("  stream {}: {}", s(&stream["stream"]), s(&stream["state"]));
        if let Some(parents) = stream["parents"].as_u64() {
            line.push_str(&format!(" ({parents} listings, {} incomplete)", stream["incomplete"]));
        }
        if let Some(at) = stream["last_complete_at"].as_str() {
            line.push_str(&format!(", last complete {at}"));
        }
        if let Some(listing) = stream["listing"].as_object() {
            line.push_str(&format!(
                ", listing now: {} pages, {} records",
                listing["pages"], listing["records"]
            ));
        }
        if let Some(error) = stream["last_error"].as_str() {
            line.push_str(&format!("\n    error: {error}"));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let integrations = doc["integrations"].as_array().cloned().unwrap_or_default();
    if integrations.is_empty() {
        out.push_str("integrations: none (`tally integration add NAME` creates one)\n");
    }
    for i in &integrations {
        out.push_str(&format!(
            "integration {}: {}{}, last contact {}, {} accounts, {} services, {} counts\n",
            s(&i["name"]),
            s(&i["status"]),
            if i["removed"] == true { " (removed)" } else { "" },
            i["last_contact"].as_str().unwrap_or("never"),
            i["accounts"],
            i["services"],
            i["counts"]
        ));
    }
    for setup in doc["setup"].as_array().into_iter().flatten() {
        if setup["configured"] != true {
            out.push_str(&format!(
                "setup {}: not complete: {}\n",
                s(&setup["vendor"]),
                setup["reason"].as_str().unwrap_or("map at least one account and one service")
            ));
        }
    }
    match doc["mapping_file"].as_object() {
        Some(m) => {
            out.push_str(&format!(
                "mapping file: {} ({} accounts and {} services mapped, loaded {})\n",
                s(&m["path"]),
                m["accounts_mapped"],
                m["services_mapped"],
                m["loaded_at"].as_str().unwrap_or("never")
            ));
            if let Some(error) = m["error"].as_str() {
                out.push_str(&format!("  error, previous mapping kept: {error}\n"));
            }
            if m["edit_pending"] == true {
                out.push_str(
                    "  the file is not the mapping in force (changed since, or unreadable): \
                     `tally map` applies it or says why (a running `tally run` applies edits as \
                     they are saved)\n",
                );
            }
        }
        None => out.push_str("mapping file: not read yet\n"),
    }
    let outbox = &doc["outbox"];
    out.push_str(&format!(
        "outbox: {} waiting, {} awaiting a check, {} done, {} failed, {} conflicts\n",
        outbox["intent"], outbox["sent"], outbox["done"], outbox["failed"], outbox["conflict"]
    ));
    let cards = &doc["cards"];
    let by_status = cards["by_status"].as_object().cloned().unwrap_or_default();
    let parts: Vec<String> = by_status
        .iter()
        .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    out.push_str(&format!(
        "cards: {} ({}); {} held for approval; money at stake {} per month\n",
        cards["cards"],
        if parts.is_empty() { "none".to_string() } else { parts.join(", ") },
        cards["held"],
        s(&cards["money_at_stake_per_month"])
    ));
    out
}
