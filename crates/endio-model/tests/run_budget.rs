//! Run budget: how many handlers a worker runs between `need_resched()`
//! checks.
//!
//! One might expect "without the `need_resched()` check a worker's run is
//! bounded only by the batch size, with it by one handler". The code as
//! posted has its check one loop level further out than that: v6 checks
//! `need_resched()` after the inner `while ((bio = bio_list_pop(&list)))`
//! loop, i.e. once per *batch*. So:
//!
//! - with the check as posted, the bound is the batch size: every bio that
//!   was on the list runs back to back (n handlers with n bios in flight, for
//!   every n tried);
//! - without the check, a run is not bounded at all: interrupts refill the
//!   list and the `while (1)` loop takes it again, forever (a reachable
//!   cycle of the state graph), which is worse than "the batch size";
//! - only a check after every handler (`cond_resched()` in the inner loop,
//!   what the reviewer asked for, or endio's per-run budget) bounds it by one
//!   handler.
//!
//! The three designs share the loop, so all three answer the same.

use endio_model::{Bound, Config, Design, Property, Question, Verdict, check};

const AS_DESIGNED: &str = "as designed";
const NO_CHECK: &str = "without the need_resched() check";
const COND_RESCHED: &str = "with cond_resched() after each handler";

fn bound(design: Design, bios: usize, case: &str) -> (Verdict, Option<Bound>) {
    let config = Config {
        bios: Some(bios),
        ..Config::default()
    };
    let report = check(Question::RunBudget, design, &config);
    let result = report
        .result(case, Property::BoundedHandlerRun)
        .expect("checked");
    (result.verdict, result.handlers_between_checks)
}

#[test]
fn run_budget_as_posted_is_the_batch_size() {
    for design in Design::ALL {
        for bios in 2..=4 {
            let n = u32::try_from(bios).unwrap();
            assert_eq!(
                bound(design, bios, AS_DESIGNED),
                (Verdict::Violated, Some(Bound::Finite(n))),
                "{design}, {bios} bios"
            );
        }
        // One bio in flight: a batch of one.
        assert_eq!(
            bound(design, 1, AS_DESIGNED),
            (Verdict::Holds, Some(Bound::Finite(1))),
            "{design}"
        );
    }
}

#[test]
fn run_budget_without_the_check_is_unbounded() {
    for design in Design::ALL {
        for bios in 1..=4 {
            assert_eq!(
                bound(design, bios, NO_CHECK),
                (Verdict::Violated, Some(Bound::Unbounded)),
                "{design}, {bios} bios"
            );
        }
        let report = check(Question::RunBudget, design, &Config::default());
        let trace = report
            .result(NO_CHECK, Property::BoundedHandlerRun)
            .unwrap()
            .counterexample
            .clone()
            .unwrap();
        let cycle = trace.cycle_start.expect("an infinite run is a lasso");
        // The repeating steps (the last line only says where they loop back).
        let repeating = &trace.steps[cycle..trace.steps.len() - 1];
        assert!(
            repeating.iter().any(|s| s.contains("runs bio")),
            "{trace:#?}"
        );
        assert!(
            repeating.iter().all(|s| !s.contains("need_resched()")),
            "{trace:#?}"
        );
    }
}

#[test]
fn run_budget_with_a_check_after_each_handler_is_one() {
    for design in Design::ALL {
        for bios in 1..=4 {
            assert_eq!(
                bound(design, bios, COND_RESCHED),
                (Verdict::Holds, Some(Bound::Finite(1))),
                "{design}, {bios} bios"
            );
        }
    }
}

#[test]
fn run_budget_counterexample_runs_the_whole_batch() {
    let report = check(Question::RunBudget, Design::V6, &Config::default());
    let trace = report
        .result(AS_DESIGNED, Property::BoundedHandlerRun)
        .unwrap()
        .counterexample
        .clone()
        .unwrap();
    let handlers = trace
        .steps
        .iter()
        .filter(|s| s.contains("kworker: runs bio"))
        .count();
    assert_eq!(handlers, 4, "{trace:#?}");
    assert!(
        trace
            .steps
            .last()
            .unwrap()
            .starts_with("4 handlers ran back to back"),
        "{trace:#?}"
    );
}
