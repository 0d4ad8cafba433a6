//! Explicit-state model checking of the task-context bio completion design.
//!
//! The review of the Linux patch "block: add task-context bio completion
//! infrastructure" (v6) asked six questions, each answered "legit" or "not
//! an issue" by argument. This crate settles them mechanically, each as the
//! property it is about (the table below). For
//! each [`Question`] and [`Design`] ([`Design::V6`] as posted,
//! [`Design::V6Fixed`] with the fixes the author accepted, [`Design::Merged`]
//! as merged for Linux 7.3) [`check`] explores every reachable state of a
//! small model of the kernel code and returns a [`Report`]: a [`Verdict`] per
//! [`Property`], the states explored, the time, and for every violation a
//! shortest counterexample ([`Trace`]) as numbered steps in kernel terms.
//!
//! ```
//! use endio_model::{Config, Design, Property, Question, Verdict, check};
//!
//! let report = check(Question::NoStrandedAfterRollback, Design::V6, &Config::default());
//! let stranded = report.result("as designed", Property::NothingStranded).unwrap();
//! assert_eq!(stranded.verdict, Verdict::Violated);
//! let steps = &stranded.counterexample.as_ref().unwrap().steps;
//! assert!(steps.iter().any(|s| s.starts_with("rollback: cpu1 online")));
//! ```
//!
//! # The model
//!
//! 1. A state holds, per bio, whether the device has yet to complete it, its
//!    `BIO_COMPLETE_IN_TASK` flag and how often its handler ran; per CPU, its
//!    list, its work item (idle, timer armed, queued; disabled; run by whom)
//!    and its kworker; the `WQ_MEM_RECLAIM` rescuer; the phase of the CPU
//!    being hotplugged.
//! 2. A transition is one atomic step of one context: an interrupt (or a
//!    task under `raw_spin_lock()`, or a preemptible task) running
//!    `bio_endio()`; a delay timer expiring; a kworker or the rescuer taking
//!    the list, running one handler, or checking `need_resched()` (both
//!    outcomes); a hotplug step (down_prep, rollback online, offline, dead,
//!    bring-up online). Protections decide which steps are enabled: with
//!    `local_lock` (not `PREEMPT_RT`) or `local_irq_save()` held nothing
//!    else runs on that CPU; on `PREEMPT_RT` `local_lock` is a sleeping
//!    per-CPU spinlock that blocks other tasks and must not be taken where
//!    sleeping is forbidden.
//! 3. Exploration is breadth first with a hash set of states and parent
//!    pointers, so the first violating state found is a nearest one and the
//!    path to it is a shortest counterexample. A configurable bound on the
//!    number of states stops it; a property not violated within the bound
//!    is then reported as [`Verdict::BoundReached`], never as holding.
//! 4. Safety properties are checked on every state; "nothing stranded" and
//!    "exactly once" on every quiescent state (nothing left to happen but
//!    new bios and new hotplug operations), "exactly once" also by requiring
//!    that a quiescent state stays reachable from every state; "no unbounded
//!    re-deferral" and the handler count between `need_resched()` checks are
//!    reachable cycles of the state graph (strongly connected components).
//!
//! Each question is checked on the smallest model that shows its answer
//! (one to two CPUs, one to four bios, only the contexts, executors and
//! hotplug steps it needs), so all questions on all designs take well under
//! a second; [`Config`] can make the models larger.
//!
//! # The review's questions and the properties they check
//!
//! This is the one place that maps the review's numbering to names; the
//! rest of endio speaks of the properties. `--question` is the selector of
//! `endio model` (the name works too); the tests of each are
//! `crates/endio-model/tests/<name>.rs` (`_` for `-`), and `endio model
//! --design endio`
//! lists endio's own tests of the same property.
//!
//! | `--question` | [`Question`] (name) | the review asked | [`Property`] checked | the model finds |
//! |---|---|---|---|---|
//! | `q1` | [`HandlerMandatory`](Question::HandlerMandatory) (`handler-mandatory`) | can a deferred bio without `bi_end_io` be run? | [`HandlerPresent`](Property::HandlerPresent), [`ExactlyOnce`](Property::ExactlyOnce) | no reachable state runs one, in any design (and endio's `Bio` makes one unrepresentable) |
//! | `q2` | [`RunBudget`](Question::RunBudget) (`run-budget`) | can the worker's loop monopolise the CPU? | [`BoundedHandlerRun`](Property::BoundedHandlerRun) | the posted `need_resched()` check comes after each *batch*: between two checks the worker runs every bio that was on the list; without the check a run is unbounded (interrupts refill the list, the loop takes it again); only a check after every handler bounds it by one |
//! | `q3` | [`NoSleepingLockInAtomic`](Question::NoSleepingLockInAtomic) (`no-sleeping-lock-in-atomic`) | is `local_lock_irqsave()` safe in atomic context on `PREEMPT_RT`? | [`NoSleepInAtomic`](Property::NoSleepInAtomic) | v6 takes a sleeping lock in hard IRQ context; v6-fixed and merged do not |
//! | `q4` | [`NoStrandedAfterRollback`](Question::NoStrandedAfterRollback) (`no-stranded-after-rollback`) | can a rolled-back CPU offline strand deferred bios? | [`NothingStranded`](Property::NothingStranded), [`ExactlyOnce`](Property::ExactlyOnce) | v6 strands them (also bios deferred *before* down_prep, whose pending work down_prep cancels); v6-fixed and merged do not |
//! | `q5` | [`RescuerCrossCpu`](Question::RescuerCrossCpu) (`rescuer-cross-cpu`) | does the `WQ_MEM_RECLAIM` rescuer, on another CPU, break the list's protection? | [`MutualExclusion`](Property::MutualExclusion) | no: the workqueue binds a per-CPU workqueue's rescuer to the CPU of the pool whose mayday it answers; an unbound rescuer would break any CPU-local protection (`local_lock` and `local_irq_save()` alike), an llist would not |
//! | `q6` | [`RedeferralBounded`](Question::RedeferralBounded) (`redeferral-bounded`) | does `bio_complete_in_task()` re-defer forever without `PREEMPT_COUNT`? | [`BoundedRedeferral`](Property::BoundedRedeferral), [`ExactlyOnce`](Property::ExactlyOnce) | v6 does; with `BIO_COMPLETE_IN_TASK` as re-entry guard v6-fixed and merged terminate |
//!
//! See [`Question::finding`] for each in full, and [`Question::reviewer`]
//! and [`Question::author`] for the exchange.

mod check;
mod config;
mod design;
mod explore;
mod kernel;
#[cfg(test)]
mod kernel_tests;
mod property;
mod question;
mod report;

pub use config::Config;
pub use design::{Design, UnknownDesign};
pub use property::Property;
pub use question::{Question, UnknownQuestion};
pub use report::{Bound, Case, PropertyResult, Report, Trace, Verdict};

/// Checks `question` on `design`: explores each of the question's cases and
/// decides its properties.
pub fn check(question: Question, design: Design, config: &Config) -> Report {
    let cases = question
        .cases(design, config)
        .iter()
        .map(|spec| check::run(spec, config))
        .collect();
    Report {
        question,
        design,
        cases,
    }
}
