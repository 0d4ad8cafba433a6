//! Unit tests of the kernel model's steps, walked on the scenarios the
//! questions check (here, not in `kernel/`, so that `kernel` does not import
//! `question`, which imports it).

use crate::config::Config;
use crate::design::Design;
use crate::explore::System;
use crate::kernel::{Pending, Scenario, State};
use crate::question::Question;

/// Follows the transitions whose text starts with each of `steps`, from
/// the initial state.
fn walk(scenario: &Scenario, steps: &[&str]) -> State {
    let mut s = scenario.initial();
    for step in steps {
        let mut out = Vec::new();
        scenario.successors(&s, true, &mut out);
        let texts: Vec<&str> = out.iter().map(|t| t.text.as_str()).collect();
        let next = out.iter().position(|t| t.text.starts_with(step));
        let next = next.unwrap_or_else(|| panic!("no step {step:?} among {texts:#?}"));
        s = out.swap_remove(next).target;
    }
    s
}

fn scenario(question: Question, design: Design, config: &Config) -> Scenario {
    question.cases(design, config).remove(0).scenario
}

/// Nothing stranded after a rollback, wider than the review asked: a bio
/// deferred *before* down_prep is stranded too, because
/// disable_delayed_work_sync() cancels the pending work and the rollback
/// does not queue it again.
#[test]
fn v6_strands_a_bio_deferred_before_down_prep() {
    let config = Config {
        bios: Some(1),
        ..Config::default()
    };
    let v6 = scenario(Question::NoStrandedAfterRollback, Design::V6, &config);
    let s = walk(
        &v6,
        &["cpu1 irq: bio A", "cpu1 down_prep", "rollback: cpu1 online"],
    );
    assert!(v6.quiescent(&s));
    assert!(!s.cpus[1].list.is_empty());

    let fixed = scenario(Question::NoStrandedAfterRollback, Design::V6Fixed, &config);
    let s = walk(
        &fixed,
        &[
            "cpu1 irq: bio A",
            "cpu1 down_prep",
            "rollback: cpu1 online",
            "cpu1 online: list not empty",
        ],
    );
    assert!(!fixed.quiescent(&s), "the requeued work is pending");
}

/// down_prep waits for a running work: the hotplug step that ends the
/// wait is not enabled while the work runs.
#[test]
fn disable_sync_waits_for_the_running_work() {
    let v6 = scenario(
        Question::NoStrandedAfterRollback,
        Design::V6,
        &Config::default(),
    );
    let s = walk(
        &v6,
        &[
            "cpu1 irq: bio A",
            "cpu1: the 1-jiffy timer",
            "cpu1 kworker",
            "cpu1 down_prep",
        ],
    );
    let mut out = Vec::new();
    v6.successors(&s, true, &mut out);
    assert!(
        out.iter().all(|t| !t.text.contains("returns")),
        "{:#?}",
        out.iter().map(|t| &t.text).collect::<Vec<_>>()
    );
    let s = walk(
        &v6,
        &[
            "cpu1 irq: bio A",
            "cpu1: the 1-jiffy timer",
            "cpu1 kworker",
            "cpu1 down_prep",
            "cpu1 kworker: runs bio A",
            "cpu1 kworker: need_resched() true",
        ],
    );
    let mut out = Vec::new();
    v6.successors(&s, true, &mut out);
    assert!(out.iter().any(|t| {
        t.text
            .starts_with("cpu1 down_prep: the running instance returned")
    }));
}

/// Queueing a disabled work fails; enabling it does not queue it.
#[test]
fn disabled_work_is_not_queued_and_enable_does_not_queue() {
    let v6 = scenario(
        Question::NoStrandedAfterRollback,
        Design::V6,
        &Config::default(),
    );
    let s = walk(&v6, &["cpu1 down_prep", "cpu1 irq: bio A"]);
    assert_eq!(s.cpus[1].pending, Pending::No);
    let s = walk(&v6, &["cpu1 down_prep", "cpu1 irq: bio A", "rollback"]);
    assert_eq!(s.cpus[1].pending, Pending::No);
    assert!(!s.cpus[1].disabled);
}

/// With the rescuer on the pool's CPU, an interrupt cannot fire on that
/// CPU while the rescuer holds local_lock_irq(): no completion step is
/// enabled mid-splice.
#[test]
fn pool_cpu_rescuer_masks_the_lists_interrupts() {
    let v6 = scenario(Question::RescuerCrossCpu, Design::V6, &Config::default());
    let s = walk(
        &v6,
        &[
            "cpu0 irq: bio A",
            "cpu0: the 1-jiffy timer",
            "rescuer on cpu0",
        ],
    );
    let mut out = Vec::new();
    v6.successors(&s, true, &mut out);
    assert!(
        out.iter().all(|t| !t.text.starts_with("cpu0 irq")),
        "{:#?}",
        out.iter().map(|t| &t.text).collect::<Vec<_>>()
    );
}
