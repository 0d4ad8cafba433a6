//! `endio-harness protocol-checks`: every property has a check, named by
//! the per-property tests' own names; bad selectors are refused with the
//! accepted ones named. (Running the checks builds the loom and shuttle
//! configurations, minutes of work: `ci/test.sh` runs those tests itself.)

use std::process::{Command, Output};

/// Runs `endio-harness protocol-checks ARGS...`.
fn protocol_checks(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_endio-harness"))
        .arg("protocol-checks")
        .args(args)
        .output()
        .expect("the endio-harness binary runs")
}

#[test]
fn list_names_a_check_of_every_property() {
    let output = protocol_checks(&["--list"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    for name in [
        "handler-mandatory",
        "run-budget",
        "no-sleeping-lock-in-atomic",
        "no-stranded-after-rollback",
        "rescuer-cross-cpu",
        "redeferral-bounded",
    ] {
        assert!(stdout.contains(&format!("({name})")), "{name}: {stdout}");
    }
    for command in [
        "cargo test -p endio --release --test run_budget",
        "cargo test -p endio --release --test producer_never_blocks",
        "cargo test -p endio --release --test redeferral_bounded",
        "bash ci/loom.sh",
        "bash ci/shuttle.sh",
    ] {
        assert!(stdout.contains(command), "{command}: {stdout}");
    }
}

#[test]
fn one_question_lists_its_checks_only() {
    let output = protocol_checks(&["--list", "--question", "run-budget"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("--test run_budget"), "{stdout}");
    assert!(!stdout.contains("shuttle"), "{stdout}");
}

#[test]
fn bad_questions_are_refused() {
    let output = protocol_checks(&["--question", "q9"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("q1 to q6 or all"), "{stderr}");
}

#[test]
fn a_directory_that_is_no_checkout_is_named() {
    let output = protocol_checks(&["--question", "q1", "--checkout", "/"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--checkout"), "{stderr}");
}
