//! No sleeping lock in atomic context: on PREEMPT_RT v6 takes a sleeping
//! lock (local_lock_t is a per-CPU spinlock_t there) in a context that must
//! not sleep; v6-fixed and merged (local_irq_save()) do not, nor does an
//! llist; without PREEMPT_RT v6 is fine.

use endio_model::{Config, Design, Property, Question, Verdict, check};

#[test]
fn v6_sleeps_in_hard_irq_on_preempt_rt() {
    let report = check(
        Question::NoSleepingLockInAtomic,
        Design::V6,
        &Config::default(),
    );
    let result = report
        .result("PREEMPT_RT", Property::NoSleepInAtomic)
        .unwrap();
    assert_eq!(result.verdict, Verdict::Violated);
    let steps = &result.counterexample.as_ref().unwrap().steps;
    assert_eq!(steps.len(), 1, "{steps:#?}");
    assert!(
        steps[0].starts_with("cpu0 irq: bio A completes"),
        "{steps:#?}"
    );
    assert!(
        steps[0].contains("local_lock_irqsave()") && steps[0].contains("hard IRQ"),
        "{steps:#?}"
    );
}

#[test]
fn fixed_and_merged_take_no_sleeping_lock() {
    for design in [Design::V6Fixed, Design::Merged] {
        let report = check(Question::NoSleepingLockInAtomic, design, &Config::default());
        assert_eq!(
            report.verdict("PREEMPT_RT", Property::NoSleepInAtomic),
            Some(Verdict::Holds),
            "{design}"
        );
    }
}

#[test]
fn llist_and_non_rt_are_fine_for_every_design() {
    for design in Design::ALL {
        let report = check(Question::NoSleepingLockInAtomic, design, &Config::default());
        for case in ["PREEMPT_RT with an llist", "!PREEMPT_RT"] {
            assert_eq!(
                report.verdict(case, Property::NoSleepInAtomic),
                Some(Verdict::Holds),
                "{design}: {case}"
            );
        }
    }
}
