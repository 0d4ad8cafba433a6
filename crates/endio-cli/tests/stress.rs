//! `endio stress`: every policy completes every bio exactly once, in both
//! output forms, and a bad policy is refused with the accepted forms named.

use std::process::Output;

/// Small enough for a debug build on a 2-CPU machine, large enough that the
/// producers fill their in-flight window and the workers requeue.
const BIOS: u64 = 200_000;

const POLICIES: [&str; 3] = ["immediate", "fixed:1ms", "adaptive"];

mod common;

use common::assert_success;

/// Runs `endio stress ARGS...` and returns its output.
fn stress(args: &[&str]) -> Output {
    common::endio("stress", args)
}

#[test]
fn every_policy_completes_every_bio_once() {
    let bios = BIOS.to_string();
    for policy in POLICIES {
        let output = stress(&["--bios", &bios, "--policy", policy]);
        let stdout = assert_success(&output, policy);
        assert_eq!(
            stdout.lines().next(),
            Some("lost=0 duplicated=0"),
            "{policy}:\n{stdout}"
        );
        assert!(stdout.contains("completions/s"), "{policy}:\n{stdout}");
    }
}

#[test]
fn every_policy_reports_json() {
    let bios = BIOS.to_string();
    for policy in POLICIES {
        let output = stress(&["--bios", &bios, "--policy", policy, "--json"]);
        let stdout = assert_success(&output, policy);
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{policy}: not JSON ({e}):\n{stdout}"));
        assert_eq!(report["lost"], 0, "{policy}: {report}");
        assert_eq!(report["duplicated"], 0, "{policy}: {report}");
        assert_eq!(report["bios"], BIOS, "{policy}: {report}");
        let total = &report["stats"]["total"];
        assert_eq!(total["handlers"], BIOS, "{policy}: {report}");
        assert_eq!(total["deferred"], BIOS, "{policy}: {report}");
        assert_eq!(total["inline"], 0, "{policy}: {report}");
        assert!(
            total["batch_len_mean"].as_f64().unwrap() >= 1.0,
            "{policy}: {report}"
        );
        assert!(
            report["stats"]["per_cpu"].as_array().is_some(),
            "{policy}: {report}"
        );
        for key in [
            "seconds",
            "completions_per_s",
            "ctx_switches_per_completion",
        ] {
            assert!(
                report[key].as_f64().is_some(),
                "{policy}: no {key}: {report}"
            );
        }
        assert!(
            report["policy"]
                .as_str()
                .unwrap()
                .starts_with(policy.split(':').next().unwrap())
        );
    }
}

#[test]
fn a_bad_policy_is_refused_with_the_accepted_forms() {
    let output = stress(&["--bios", "1000", "--policy", "lazy"]);
    assert!(!output.status.success(), "--policy lazy was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for form in ["immediate", "fixed:1ms", "adaptive"] {
        assert!(
            stderr.contains(form),
            "the error does not name {form}:\n{stderr}"
        );
    }
}

#[test]
fn a_bad_count_is_refused_with_the_fix() {
    let output = stress(&["--bios", "ten"]);
    assert!(!output.status.success(), "--bios ten was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("10_000_000"), "{stderr}");
}
