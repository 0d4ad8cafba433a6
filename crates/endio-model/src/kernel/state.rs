//! What a state of the model holds, and what a state means.
//!
//! - Per bio: whether the device has yet to complete it, its
//!   `BIO_COMPLETE_IN_TASK` flag, whether it was deferred before, and how
//!   many times its handler ran to the end.
//! - Per CPU: its list (a FIFO `bio_list`, or an llist, whose take-all the
//!   worker reverses into the same order), its work item (`pending`: no,
//!   timer armed, queued on the pool; `disabled`; which executor runs it) and
//!   its bound kworker.
//! - The rescuer, which runs any CPU's work on the pool's CPU or, to show
//!   the difference, on any CPU.
//! - The phase of the hotplug target CPU.
//! - A fault, once a transition broke a safety property; a faulted state has
//!   no successors (what happens after list corruption is undefined).

use super::scenario::{BIOS_MAX, CPUS_MAX, Scenario};
use crate::property::Property;

/// A sequence of bios, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BioList {
    ids: [u8; BIOS_MAX],
    len: u8,
}

impl BioList {
    pub(super) fn push(&mut self, bio: u8) {
        assert!(
            (self.len as usize) < BIOS_MAX,
            "a bio is on one list at a time"
        );
        self.ids[self.len as usize] = bio;
        self.len += 1;
    }

    pub(super) fn pop_front(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let bio = self.ids[0];
        self.ids.copy_within(1..self.len as usize, 0);
        self.len -= 1;
        self.ids[self.len as usize] = 0;
        Some(bio)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.ids[..self.len as usize].iter().copied()
    }

    pub(super) fn contains(&self, bio: u8) -> bool {
        self.iter().any(|b| b == bio)
    }

    /// "A, B", or "(empty)".
    pub(super) fn names(&self) -> String {
        if self.is_empty() {
            return "(empty)".to_owned();
        }
        names(self.iter())
    }
}

/// "A", "B", ... for bio numbers.
pub(crate) fn bio_name(bio: u8) -> char {
    char::from(b'A' + bio)
}

/// "A, B, C".
pub(crate) fn names(bios: impl Iterator<Item = u8>) -> String {
    let mut out = String::new();
    for b in bios {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push(bio_name(b));
    }
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BioState {
    pub(crate) in_flight: bool,
    pub(super) flagged: bool,
    pub(super) deferred_before: bool,
    pub(crate) runs: u8,
}

/// Where an executor is in `bio_complete_work_fn()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) enum WorkFnStep {
    /// Not running the work.
    #[default]
    Idle,
    /// Between `list = batch->list` and `bio_list_init(&batch->list)`, the
    /// lock held.
    Splicing,
    /// Running the handlers of its batch.
    Handlers,
    /// After a handler, before `cond_resched()`.
    CondResched,
    /// The batch done, before the `need_resched()` check.
    AfterBatch,
}

/// A kworker or the rescuer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct ExecutorState {
    pub(super) at: WorkFnStep,
    /// The CPU it runs on.
    pub(super) cpu: u8,
    /// Whose work item it runs.
    pub(super) work: u8,
    pub(super) batch: BioList,
    /// Handlers run since the last check, saturating.
    pub(crate) since_check: u8,
}

/// An executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Executor {
    Worker(u8),
    Rescuer,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Pending {
    #[default]
    No,
    /// The delay timer is armed.
    Timer,
    /// On the pool's worklist.
    Queued,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Cpu {
    pub(crate) list: BioList,
    pub(crate) pending: Pending,
    pub(crate) disabled: bool,
    pub(super) running: Option<Executor>,
    pub(super) worker: ExecutorState,
}

/// The hotplug target's phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(super) enum HotplugPhase {
    #[default]
    Up,
    /// down_prep disabled the work and waits for the running instance.
    DownPrepWaiting,
    /// down_prep done; the CPU is still active.
    DownPrepped,
    /// The online callback enabled the work and has yet to check the list.
    OnlineEnabled,
    /// The CPU is offline; the dead callback has not run.
    Offline,
    /// The dead callback drained the list.
    Dead,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    pub(crate) bios: [BioState; BIOS_MAX],
    pub(crate) cpus: [Cpu; CPUS_MAX],
    pub(super) rescuer: ExecutorState,
    pub(super) phase: HotplugPhase,
    /// The safety property the step into this state broke.
    pub(crate) fault: Option<Property>,
}

impl State {
    pub(super) fn executor(&self, who: Executor) -> &ExecutorState {
        match who {
            Executor::Worker(c) => &self.cpus[c as usize].worker,
            Executor::Rescuer => &self.rescuer,
        }
    }

    pub(super) fn executor_mut(&mut self, who: Executor) -> &mut ExecutorState {
        match who {
            Executor::Worker(c) => &mut self.cpus[c as usize].worker,
            Executor::Rescuer => &mut self.rescuer,
        }
    }

    /// Every executor's state.
    pub(crate) fn executor_states(&self) -> impl Iterator<Item = &ExecutorState> {
        self.cpus.iter().map(|c| &c.worker).chain([&self.rescuer])
    }

    /// Whether `bio` is on a list or in an executor's batch.
    pub(crate) fn queued(&self, bio: u8) -> bool {
        self.cpus.iter().any(|c| c.list.contains(bio))
            || self.executor_states().any(|e| e.batch.contains(bio))
    }
}

/// An idle executor, normalised so that idle states compare equal.
pub(super) fn idle(who: Executor) -> ExecutorState {
    match who {
        Executor::Worker(c) => ExecutorState {
            cpu: c,
            work: c,
            ..ExecutorState::default()
        },
        Executor::Rescuer => ExecutorState::default(),
    }
}

impl Scenario {
    /// Whether nothing is left to happen but new submissions and new hotplug
    /// operations: every bio completed by the device, every executor idle,
    /// no work pending or running, the hotplug target up or dead.
    pub(crate) fn quiescent(&self, s: &State) -> bool {
        s.fault.is_none()
            && s.bios[..self.bios.len()].iter().all(|b| !b.in_flight)
            && s.executor_states().all(|e| e.at == WorkFnStep::Idle)
            && s.cpus
                .iter()
                .all(|c| c.pending == Pending::No && c.running.is_none())
            && matches!(s.phase, HotplugPhase::Up | HotplugPhase::Dead)
    }

    /// The bios with a handler that has not run exactly once.
    pub(crate) fn unhandled(&self, s: &State) -> Vec<u8> {
        self.bio_ids()
            .filter(|&b| self.spec(b).handler && s.bios[b as usize].runs != 1)
            .collect()
    }
}
