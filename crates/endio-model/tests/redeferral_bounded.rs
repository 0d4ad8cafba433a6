//! Re-deferral bounded: under !PREEMPT_COUNT v6 re-defers a self-punting
//! handler forever; with BIO_COMPLETE_IN_TASK as re-entry guard (v6-fixed,
//! merged) it runs once. With PREEMPT_COUNT v6 terminates too.

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn v6_re_defers_forever_without_preempt_count() {
    let report = check(Question::RedeferralBounded, Design::V6, &Config::default());
    let result = report
        .result("!PREEMPT_COUNT", Property::BoundedRedeferral)
        .unwrap();
    assert_eq!(result.verdict, Verdict::Violated);
    let trace = result.counterexample.as_ref().unwrap();
    let cycle = trace.cycle_start.expect("an infinite run is a lasso");
    assert!(trace.steps[cycle].contains("deferred again"), "{trace:#?}");
    assert!(
        trace
            .steps
            .last()
            .unwrap()
            .starts_with("back to the state before step"),
        "{trace:#?}"
    );
    // The handler never runs to its end.
    assert_eq!(
        report.verdict("!PREEMPT_COUNT", Property::ExactlyOnce),
        Some(Verdict::Violated)
    );
}

#[test]
fn the_reentry_guard_terminates() {
    for design in [Design::V6Fixed, Design::Merged] {
        let report = check(Question::RedeferralBounded, design, &Config::default());
        for property in [Property::BoundedRedeferral, Property::ExactlyOnce] {
            assert_eq!(
                report.verdict("!PREEMPT_COUNT", property),
                Some(Verdict::Holds),
                "{design}: {property}"
            );
        }
    }
}

#[test]
fn with_preempt_count_v6_terminates() {
    let report = check(Question::RedeferralBounded, Design::V6, &Config::default());
    for property in [Property::BoundedRedeferral, Property::ExactlyOnce] {
        assert_eq!(
            report.verdict("PREEMPT_COUNT", property),
            Some(Verdict::Holds),
            "{property}"
        );
    }
}
