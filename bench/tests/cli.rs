//! Bad options are refused before anything is built, measured or written, each with a message
//! naming the option and what to give instead.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally-bench")).args(args).output().unwrap()
}

fn refused(args: &[&str], code: i32, expected: &[&str]) {
    let output = bench(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{args:?}: `{part}` missing from: {stderr}");
    }
    assert!(!stderr.contains("building tally"), "{args:?} built tally before refusing: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?} measured something");
}

#[test]
fn numbers_out_of_range_name_the_option_and_the_fix() {
    refused(&["--runs", "0"], 2, &["--runs", "1 or more"]);
    refused(&["--runs=-1"], 2, &["--runs", "1 or more"]);
    refused(&["--latency-ms", "-5"], 2, &["--latency-ms", "0 or more"]);
    refused(&["--latency-ms", "soon"], 2, &["--latency-ms", "milliseconds"]);
    refused(&["--size", "-3"], 2, &["--size", "at least 5"]);
    refused(&["--size", "huge"], 2, &["--size", "small", "large"]);
}

#[test]
fn a_results_file_that_cannot_be_written_is_refused_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("results.json");
    refused(&["--quick", "--out", missing.to_str().unwrap()], 1, &["--out", "does not exist"]);
    assert!(!dir.path().join("no-such-dir").exists(), "the missing directory was made");

    refused(&["--quick", "--out", dir.path().to_str().unwrap()], 1, &["--out", "is a directory"]);

    let file = dir.path().join("plain");
    std::fs::write(&file, "kept").unwrap();
    let under_file = file.join("results.json");
    refused(&["--quick", "--out", under_file.to_str().unwrap()], 1, &["not a directory"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "kept");
}
