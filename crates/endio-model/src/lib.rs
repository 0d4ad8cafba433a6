//! Explicit-state model checking of the task-context bio completion design.
//!
//! The seed of endio is a review of the Linux patch "block: add task-context
//! bio completion infrastructure" (v6): six questions, each answered "legit"
//! or "not an issue" by argument. This crate settles them mechanically. For
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
//! let report = check(Question::Q4, Design::V6, &Config::default());
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
//! # Findings
//!
//! - Q1: no reachable state runs a deferred bio without a handler (and
//!   endio's `Bio` makes one unrepresentable).
//! - Q2: the posted `need_resched()` check comes after each *batch*: between
//!   two checks the worker runs every bio that was on the list, a count that
//!   grows with the bios in flight. Without the check a run is unbounded (a
//!   cycle: interrupts refill the list, the loop takes it again); only a
//!   check after every handler bounds it by one. This differs from the
//!   expectation written in the issue ("without the check bounded only by
//!   the batch size, with it by one handler"), which put the posted check
//!   one loop level further in than the code has it.
//! - Q3: on `PREEMPT_RT` v6 takes a sleeping lock in hard IRQ context;
//!   v6-fixed and merged do not.
//! - Q4: v6 strands bios after a rolled-back offline (also bios deferred
//!   *before* down_prep, whose pending work down_prep cancels); v6-fixed
//!   and merged do not.
//! - Q5: with the rescuer on the pool's CPU there is no race: the author
//!   relied on the workqueue binding a per-CPU workqueue's rescuer to the
//!   CPU of the pool whose mayday it answers. With an unbound rescuer any
//!   CPU-local protection (`local_lock` and `local_irq_save()` alike) lets
//!   an interrupt add to the list mid-splice; an llist would not.
//! - Q6: under `!PREEMPT_COUNT` v6 re-defers forever; v6-fixed terminates.
//!
//! See [`Question::finding`] for each in full.

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
