//! Nothing stranded after a rolled-back offline: v6 strands bios after a
//! rolled-back CPU offline; v6-fixed and merged, which requeue the work on
//! online, do not.

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn v6_strands_bios_after_a_rollback() {
    let report = check(
        Question::NoStrandedAfterRollback,
        Design::V6,
        &Config::default(),
    );
    for property in [Property::NothingStranded, Property::ExactlyOnce] {
        assert_eq!(
            report.verdict("as designed", property),
            Some(Verdict::Violated),
            "{property}"
        );
    }
    let trace = report
        .result("as designed", Property::NothingStranded)
        .unwrap()
        .counterexample
        .clone()
        .unwrap();
    // The shortest way to strand bios, step for step.
    let expected = [
        "cpu1 down_prep: disable_delayed_work_sync() disables the work",
        "cpu1 irq: bio A completes, deferred: added to cpu1 list, list was empty, mod_delayed_work_on(cpu1, 1 jiffy) fails: work disabled",
        "rollback: cpu1 online re-enables the work, list not empty, nothing queued",
        "cpu1 irq: bio B completes, deferred: added to cpu1 list, list not empty, no queue",
        "quiescent: A, B on cpu1's list stranded, the work idle: nothing will run them",
    ];
    assert_eq!(trace.steps, expected);
    assert_eq!(trace.cycle_start, None);
}

#[test]
fn fixed_and_merged_strand_nothing() {
    for design in [Design::V6Fixed, Design::Merged] {
        let report = check(
            Question::NoStrandedAfterRollback,
            design,
            &Config::default(),
        );
        for property in [Property::NothingStranded, Property::ExactlyOnce] {
            let result = report.result("as designed", property).unwrap();
            assert_eq!(
                result.verdict,
                Verdict::Holds,
                "{design}: {property}: {}",
                result.detail
            );
            // Not vacuous: quiescent states were reached and checked.
            assert!(
                !result.detail.starts_with("0 quiescent"),
                "{design}: {}",
                result.detail
            );
        }
        assert!(
            report.results().all(|(_, r)| r.verdict == Verdict::Holds),
            "{design}: {report:#?}"
        );
    }
}

#[test]
fn three_cpus_agree() {
    let config = Config {
        cpus: Some(3),
        ..Config::default()
    };
    assert_eq!(
        check(Question::NoStrandedAfterRollback, Design::V6, &config)
            .verdict("as designed", Property::NothingStranded),
        Some(Verdict::Violated)
    );
    for design in [Design::V6Fixed, Design::Merged] {
        let report = check(Question::NoStrandedAfterRollback, design, &config);
        assert_eq!(
            report.verdict("as designed", Property::NothingStranded),
            Some(Verdict::Holds),
            "{design}"
        );
    }
}
