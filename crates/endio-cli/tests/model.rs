//! `endio model`: the verdicts of every question on every design, as JSON;
//! v6's counterexample to "nothing stranded after a rollback" as text; bad
//! names refused with the accepted ones named.

use std::process::Output;

use serde_json::Value;

mod common;

use common::assert_success;

/// Runs `endio model ARGS...` and returns its output.
fn model(args: &[&str]) -> Output {
    common::endio("model", args)
}

/// The expected verdicts (question, design, case, property, verdict), with
/// the run budget as the model settles it (see
/// `crates/endio-model/tests/run_budget.rs`).
const EXPECTED: &[(&str, &str, &str, &str, &str)] = &[
    // q1, handler mandatory: no reachable state runs a deferred bio without
    // a handler.
    ("q1", "v6", "as designed", "handler-present", "holds"),
    ("q1", "v6-fixed", "as designed", "handler-present", "holds"),
    ("q1", "merged", "as designed", "handler-present", "holds"),
    // q2, run budget: the posted check comes after each batch: bounded only by the batch
    // size; without it unbounded; with a check per handler, one.
    ("q2", "v6", "as designed", "bounded-handler-run", "violated"),
    (
        "q2",
        "v6",
        "without the need_resched() check",
        "bounded-handler-run",
        "violated",
    ),
    (
        "q2",
        "v6",
        "with cond_resched() after each handler",
        "bounded-handler-run",
        "holds",
    ),
    (
        "q2",
        "merged",
        "as designed",
        "bounded-handler-run",
        "violated",
    ),
    (
        "q2",
        "merged",
        "with cond_resched() after each handler",
        "bounded-handler-run",
        "holds",
    ),
    // q3, no sleeping lock in atomic context: v6 takes one on PREEMPT_RT.
    ("q3", "v6", "PREEMPT_RT", "no-sleep-in-atomic", "violated"),
    (
        "q3",
        "v6-fixed",
        "PREEMPT_RT",
        "no-sleep-in-atomic",
        "holds",
    ),
    ("q3", "merged", "PREEMPT_RT", "no-sleep-in-atomic", "holds"),
    ("q3", "v6", "!PREEMPT_RT", "no-sleep-in-atomic", "holds"),
    // q4, nothing stranded after a rollback: v6 strands bios after a
    // rolled-back offline.
    ("q4", "v6", "as designed", "nothing-stranded", "violated"),
    ("q4", "v6-fixed", "as designed", "nothing-stranded", "holds"),
    ("q4", "merged", "as designed", "nothing-stranded", "holds"),
    ("q4", "v6-fixed", "as designed", "exactly-once", "holds"),
    ("q4", "merged", "as designed", "exactly-once", "holds"),
    // q5, the rescuer on another CPU: safe with the rescuer on the pool's
    // CPU; corrupted unbound.
    (
        "q5",
        "v6",
        "rescuer on the pool's CPU",
        "mutual-exclusion",
        "holds",
    ),
    (
        "q5",
        "v6-fixed",
        "rescuer on the pool's CPU",
        "mutual-exclusion",
        "holds",
    ),
    (
        "q5",
        "merged",
        "rescuer on the pool's CPU",
        "mutual-exclusion",
        "holds",
    ),
    (
        "q5",
        "v6",
        "rescuer unbound",
        "mutual-exclusion",
        "violated",
    ),
    (
        "q5",
        "v6",
        "rescuer unbound, llist",
        "mutual-exclusion",
        "holds",
    ),
    // q6, re-deferral bounded: v6 re-defers forever under !PREEMPT_COUNT;
    // the guard terminates.
    (
        "q6",
        "v6",
        "!PREEMPT_COUNT",
        "bounded-redeferral",
        "violated",
    ),
    (
        "q6",
        "v6-fixed",
        "!PREEMPT_COUNT",
        "bounded-redeferral",
        "holds",
    ),
    (
        "q6",
        "merged",
        "!PREEMPT_COUNT",
        "bounded-redeferral",
        "holds",
    ),
];

#[test]
fn all_designs_json_verdicts() {
    let output = model(&["--design", "all", "--json"]);
    let stdout = assert_success(&output, "model --design all --json");
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"));
    let results = report["results"].as_array().expect("results");
    assert_eq!(report["questions"].as_array().map(Vec::len), Some(6));
    for &(question, design, case, property, verdict) in EXPECTED {
        let row = results
            .iter()
            .find(|r| {
                r["question"] == question
                    && r["design"] == design
                    && r["case"] == case
                    && r["property"] == property
            })
            .unwrap_or_else(|| panic!("no result for {question} {design} {case:?} {property}"));
        assert_eq!(
            row["verdict"], verdict,
            "{question} {design} {case:?} {property}: {row:#}"
        );
        assert!(row["states"].as_u64().unwrap() > 0);
        if verdict == "violated" {
            assert!(
                !row["counterexample"]["steps"]
                    .as_array()
                    .unwrap()
                    .is_empty(),
                "{row:#}"
            );
        } else {
            assert!(row["counterexample"].is_null(), "{row:#}");
        }
    }
    // Every design of every question was checked, and nothing hit the bound.
    for design in ["v6", "v6-fixed", "merged"] {
        for question in ["q1", "q2", "q3", "q4", "q5", "q6"] {
            assert!(
                results
                    .iter()
                    .any(|r| r["question"] == question && r["design"] == design),
                "{question} {design}"
            );
        }
    }
    assert!(results.iter().all(|r| r["verdict"] != "bound-reached"));
    // The run budget's bounds: the batch size as posted, none without the check.
    let run_budget = |case: &str| {
        results
            .iter()
            .find(|r| r["question"] == "q2" && r["design"] == "v6" && r["case"] == case)
            .map(|r| r["handlers_between_checks"].clone())
            .unwrap()
    };
    assert_eq!(run_budget("as designed"), 4);
    assert_eq!(run_budget("without the need_resched() check"), "unbounded");
    assert_eq!(run_budget("with cond_resched() after each handler"), 1);
}

#[test]
fn no_stranded_after_rollback_v6_counterexample_has_a_rollback() {
    let output = model(&["--question", "q4", "--design", "v6"]);
    let stdout = assert_success(&output, "model --question q4 --design v6");
    assert!(stdout.contains("QUESTION"), "{stdout}");
    assert!(stdout.contains("counterexample:"), "{stdout}");
    assert!(
        stdout.contains("1. cpu1 down_prep: disable_delayed_work_sync() disables the work"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("rollback: cpu1 online re-enables the work, list not empty, nothing queued"),
        "{stdout}"
    );
    assert!(
        stdout.contains("quiescent: A, B on cpu1's list stranded"),
        "{stdout}"
    );
    // Rows of the design asked for only.
    let designs: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("q4 "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(
        !designs.is_empty() && designs.iter().all(|&d| d == "v6"),
        "{stdout}"
    );
}

#[test]
fn rescuer_cross_cpu_names_the_workqueue_guarantee() {
    let output = model(&["--question", "q5"]);
    let stdout = assert_success(&output, "model --question q5");
    assert!(
        stdout.contains("rescuer runs a work item on the CPU of the pool"),
        "{stdout}"
    );
}

#[test]
fn small_bound_reads_bound_reached() {
    let output = model(&[
        "--question",
        "q4",
        "--design",
        "merged",
        "--max-states",
        "10",
        "--json",
    ]);
    let stdout = assert_success(&output, "model --max-states 10");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(
        results.iter().all(|r| r["verdict"] == "bound-reached"),
        "{stdout}"
    );
}

#[test]
fn bad_names_are_refused() {
    let output = model(&["--design", "v7"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("v6, v6-fixed, merged or all"), "{stderr}");
    // endio's own protocol is the harness's to check; the error says so.
    let output = model(&["--design", "endio"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("endio-harness -- protocol-checks"),
        "{stderr}"
    );
    let output = model(&["--question", "q9"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("q1 to q6 or all"), "{stderr}");
}
