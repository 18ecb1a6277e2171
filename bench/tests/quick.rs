//! The benchmark's quick form, end to end, so that `cargo test --workspace` checks it still
//! runs: every step against the real `tally` binary, the table, and a results file with every
//! figure. It asserts what the data fixes (requests, records), never a timing.

use std::path::PathBuf;
use std::process::Command;

/// The `tally` binary of this build profile: `target/<profile>/tally`, beside the directory
/// holding this test. `cargo test --workspace` has built it; on its own, this test builds it.
fn tally_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps")
        .to_path_buf();
    let bin = profile_dir.join("tally");
    if !bin.is_file() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "tally", "--bin", "tally", "--manifest-path"]).arg(manifest);
        if profile_dir.file_name().is_some_and(|name| name == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building tally failed: {status}");
    }
    bin
}

#[test]
fn quick_benchmark_runs_end_to_end_and_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.json");
    // 50 companies keeps a debug build well under a minute on a busy machine.
    let output = Command::new(env!("CARGO_BIN_EXE_tally-bench"))
        .args(["--quick", "--size", "50", "--out"])
        .arg(&out)
        .arg("--tally")
        .arg(tally_binary())
        .arg("--keep")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tally-bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("full sync: wall time"), "{stdout}");
    assert!(stdout.contains("baseline"), "{stdout}");

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(results["format"], 1);
    assert_eq!(results["settings"]["quick"], true);
    assert_eq!(results["settings"]["latency_ms"], 2);
    let figures = results["figures"].as_object().unwrap();
    for key in [
        "full_sync_wall_s",
        "full_sync_requests",
        "api_minimum_requests",
        "first_sync_wall_s",
        "quick_sync_unchanged_requests",
        "quick_sync_unchanged_wall_s",
        "quick_sync_1pct_requests",
        "quick_sync_1pct_wall_s",
        "cpu_per_record_us",
        "peak_rss_mb",
        "peak_rss_reference_mb",
        "peak_rss_growth",
        "reconcile_wall_s",
        "report_json_wall_s",
        "mapping_edit_to_cards_ms",
    ] {
        let figure = &figures.get(key).unwrap_or_else(|| panic!("no figure {key}"));
        assert!(figure["value"].as_f64().is_some_and(f64::is_finite), "{key}: {figure}");
        for field in ["label", "unit", "runs", "target", "met", "baseline", "vs_baseline", "note"] {
            assert!(figure.get(field).is_some(), "{key} has no {field}: {figure}");
        }
    }

    // What the data fixes: a full sync reads every record in the fewest requests the API
    // allows, and a quick sync with nothing changed sends at most one request per stream.
    let data = &results["data"];
    let minimum = figures["api_minimum_requests"]["value"].as_f64().unwrap();
    assert_eq!(figures["full_sync_requests"]["value"].as_f64(), Some(minimum), "{data}");
    let streams = data["streams"].as_f64().unwrap();
    let quick = figures["quick_sync_unchanged_requests"]["value"].as_f64().unwrap();
    assert!(quick <= streams + 1.0, "{quick} requests for {streams} streams");
    assert!(figures["full_sync_requests"]["baseline"].as_f64().unwrap() > minimum);
}
