//! `endio-harness bench-completion`: a short run reports every contender at every
//! load with sane numbers, and bad options are refused with the fix named.
//! The numbers' goals are not checked here: speed is shown by the benchmark,
//! never asserted by a timed test.

use std::process::{Command, Output};

use serde_json::Value;

const CONTENDERS: [&str; 8] = [
    "endio-adaptive",
    "endio-immediate",
    "endio-fixed-1ms",
    "crossbeam",
    "std-mpsc",
    "mutex-condvar",
    "tokio-spawn-blocking",
    "inline",
];

const LOADS: [&str; 4] = ["1k/s", "10k/s", "100k/s", "saturation"];

/// Runs `endio-harness bench-completion ARGS...`.
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_endio-harness"))
        .arg("bench-completion")
        .args(args)
        .output()
        .expect("the endio-harness binary runs")
}

/// Parses standard output as JSON, showing everything on failure.
fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

fn number(cell: &Value, key: &str) -> f64 {
    cell[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {cell}"))
}

#[test]
fn quick_run_reports_every_contender_and_load() {
    let output = bench(&[
        "--quick",
        "--duration",
        "40ms",
        "--warmup",
        "10ms",
        "--json",
        "-",
    ]);
    let report = json_of(&output);
    // The table goes to standard error when the JSON takes standard output.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("goals of the completion path:"), "{stderr}");

    assert_eq!(report["quick"], true);
    let cells = report["cells"].as_array().expect("cells is an array");
    assert_eq!(cells.len(), CONTENDERS.len() * LOADS.len(), "{report}");
    for contender in CONTENDERS {
        for load in LOADS {
            let cell = cells
                .iter()
                .find(|c| c["contender"] == contender && c["load"] == load)
                .unwrap_or_else(|| panic!("no cell for {contender} at {load}"));
            let what = format!("{contender} at {load}: {cell}");
            assert!(number(cell, "seconds") > 0.0, "{what}");
            assert!(number(cell, "completions") > 0.0, "{what}");
            assert!(number(cell, "completions_per_s") > 0.0, "{what}");
            assert!(
                number(cell, "handed_over_in_cell") >= number(cell, "completions"),
                "{what}"
            );
            assert!(number(cell, "ctx_switches_per_completion") >= 0.0, "{what}");
            assert!(
                number(cell, "handoff_ctx_switches_per_completion") >= 0.0,
                "{what}"
            );
            assert!(
                cell["cpu"]["ns_per_completion"].as_f64().unwrap() > 0.0,
                "{what}"
            );

            let latency = &cell["latency_us"];
            assert!(latency["samples"].as_u64().unwrap() > 0, "{what}");
            let (p50, p99, p999, max) = (
                number(latency, "p50"),
                number(latency, "p99"),
                number(latency, "p999"),
                number(latency, "max"),
            );
            assert!(
                0.0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
                "{what}"
            );
            if load == "saturation" {
                assert!(cell["offered_per_s"].is_null(), "{what}");
                assert!(cell["latency_from_scheduled_us"].is_null(), "{what}");
            } else {
                assert!(number(cell, "offered_per_s") >= 1000.0, "{what}");
                let scheduled = &cell["latency_from_scheduled_us"];
                assert!(number(scheduled, "p99") >= p99, "{what}");
            }

            match contender {
                "tokio-spawn-blocking" => assert!(cell["wakeups"].is_null(), "{what}"),
                "inline" => assert_eq!(cell["wakeups"], 0, "{what}"),
                _ => assert!(cell["wakeups"].is_u64(), "{what}"),
            }
            if contender.starts_with("endio-") {
                let stats = &cell["endio_stats"];
                assert!(stats["deferred"].as_u64().unwrap() > 0, "{what}");
                // The producers are atomic: nothing ran inline.
                assert_eq!(stats["inline"], 0, "{what}");
            } else {
                assert!(cell["endio_stats"].is_null(), "{what}");
            }
        }
    }

    let goals = report["goals"].as_array().expect("goals is an array");
    assert_eq!(goals.len(), 4, "{report}");
    for goal in goals {
        assert!(goal["met"].is_boolean(), "every goal is judged: {goal}");
        assert!(goal["measured"].as_f64().unwrap() >= 0.0, "{goal}");
    }
}

#[test]
fn a_subset_runs_and_unjudged_goals_say_so() {
    let output = bench(&[
        "--duration",
        "20ms",
        "--warmup",
        "0s",
        "--contenders",
        "inline,mutex-condvar",
        "--loads",
        "sat",
        "--json",
        "-",
    ]);
    let report = json_of(&output);
    assert_eq!(report["cells"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["loads"], serde_json::json!(["saturation"]));
    for goal in report["goals"].as_array().unwrap() {
        assert!(goal["met"].is_null(), "{goal}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("NOT RUN"), "{stderr}");
}

#[test]
fn bad_options_name_the_fix() {
    for (args, expected) in [
        (vec!["--loads", "fast"], "give a rate per second"),
        (vec!["--duration", "0s"], "a duration of 0"),
        (vec!["--contenders", "rayon"], "crossbeam"),
    ] {
        let output = bench(&args);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
