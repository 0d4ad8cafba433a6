//! The model of the kernel design: per-CPU lists, the per-CPU work item, its
//! executors (kworkers and the `WQ_MEM_RECLAIM` rescuer), interrupts and
//! other completion contexts, and CPU hotplug.
//!
//! # The code, step by step
//!
//! Each transition is one atomic step of one context. Interrupts and the
//! other completion contexts run `bio_endio()` to its end in one step; they
//! can only start on a CPU whose interrupts are on. Executors run
//! `bio_complete_work_fn()` in steps: take the list; run one handler; check
//! `need_resched()`. Where a question is about the list's mutual exclusion
//! (the rescuer on another CPU) the take is split in two, `local_lock_irq(); list = batch->list;`
//! then `bio_list_init(&batch->list); local_unlock_irq();`, and a context
//! that modifies the list between the two is a fault unless the protection
//! held excludes it: with `local_lock` (not `PREEMPT_RT`) or
//! `local_irq_save()` nothing else runs on the executor's CPU, and with
//! `local_lock` on `PREEMPT_RT` other contexts block on that CPU's
//! spinlock. Either protects only the CPU the executor runs on.
//!
//! The work item follows the workqueue's rules: queueing a disabled work
//! fails; `disable_*_sync()` cancels a pending work and waits for a running
//! one; enabling never queues; a work that is running can be queued again
//! and then runs again after, never concurrently (non-reentrancy).
//!
//! # Where each part lives
//!
//! Each file imports only the ones above it:
//!
//! - `scenario`: what a model is (the design's code, the configuration, the
//!   bios, contexts, executors and hotplug steps that may happen);
//! - `state`: what a state holds, and whether it is quiescent;
//! - `step`: a transition being built, its edge flags and its narration;
//! - `exclusion`: who runs where, and what a held protection keeps out;
//! - `narration`: labels, kernel call names, the model's description;
//! - `completion`: `bio_endio()`, deferral, handlers, queueing the work;
//! - `worker`: `bio_complete_work_fn()` in a kworker or the rescuer;
//! - `hotplug`: the hotplug target's steps;
//! - this file: the transition relation, all of the above in one order.

mod completion;
mod exclusion;
mod hotplug;
mod narration;
mod scenario;
mod state;
mod step;
mod worker;

use crate::explore::{System, Transition};

pub(crate) use scenario::{
    BIOS_MAX, BioSpec, CPUS_MAX, Code, Context, Hotplug, KernelConfig, Protection, ReschedCheck,
    Rescuer, Scenario,
};
#[cfg(test)]
pub(crate) use state::Pending;
use state::{BioState, Cpu, Executor, HotplugPhase, idle};
pub(crate) use state::{State, names};
pub(crate) use step::{CHECKPOINT, REDEFER, WORKER_HANDLER};

impl System for Scenario {
    type State = State;

    fn initial(&self) -> State {
        let mut s = State {
            bios: [BioState::default(); BIOS_MAX],
            cpus: [Cpu::default(); CPUS_MAX],
            rescuer: idle(Executor::Rescuer),
            phase: HotplugPhase::Up,
            fault: None,
        };
        for (b, spec) in self.bios.iter().enumerate() {
            s.bios[b] = BioState {
                in_flight: true,
                flagged: spec.flagged,
                deferred_before: false,
                runs: 0,
            };
        }
        for c in self.cpu_ids() {
            s.cpus[c as usize].worker = idle(Executor::Worker(c));
        }
        s
    }

    fn successors(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        if s.fault.is_some() {
            return;
        }
        // The order only decides which of several shortest counterexamples
        // is shown: hotplug first, then completions, timers, executors.
        self.hotplug_steps(s, narrate, out);
        self.completions(s, narrate, out);
        self.timers(s, narrate, out);
        self.executor_steps(s, narrate, out);
        self.resubmits(s, narrate, out);
    }
}
