//! Executor runs where, and what a held protection keeps from running.

use super::scenario::{KernelConfig, Protection, Scenario};
use super::state::{Executor, HotplugPhase, State, WorkFnStep};

impl Scenario {
    pub(super) fn executors(&self) -> impl Iterator<Item = Executor> {
        let workers = if self.pool_workers { self.cpus } else { 0 };
        (0..workers)
            .map(|c| Executor::Worker(u8::try_from(c).expect("small")))
            .chain(self.rescuer.map(|_| Executor::Rescuer))
    }

    /// The executor that has interrupts off on `cpu`, if any.
    pub(super) fn irqs_off(&self, s: &State, cpu: u8) -> Option<Executor> {
        if !self.masks_irqs() {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.executor(w);
            e.at == WorkFnStep::Splicing && e.cpu == cpu
        })
    }

    /// The executor holding `cpu`'s local lock on `PREEMPT_RT`, if any.
    pub(super) fn rt_lock_holder(&self, s: &State, cpu: u8) -> Option<Executor> {
        if self.code.protection != Protection::LocalLock
            || self.kernel_config != KernelConfig::PreemptRt
        {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.executor(w);
            e.at == WorkFnStep::Splicing && e.cpu == cpu
        })
    }

    /// The executor between taking `list`'s content and re-initialising it.
    pub(super) fn splicer(&self, s: &State, list: u8) -> Option<Executor> {
        self.executors().find(|&w| {
            let e = s.executor(w);
            e.at == WorkFnStep::Splicing && e.work == list
        })
    }

    /// Whether a context other than `me` may run on `cpu` now.
    pub(super) fn can_run(&self, s: &State, cpu: u8, me: Option<Executor>) -> bool {
        match self.irqs_off(s, cpu) {
            None => true,
            Some(w) => Some(w) == me,
        }
    }

    /// Whether `cpu` is up (interrupts and tasks can run on it).
    pub(super) fn active(&self, s: &State, cpu: u8) -> bool {
        match self.hotplug {
            Some(h) if h.cpu == cpu => {
                !matches!(s.phase, HotplugPhase::Offline | HotplugPhase::Dead)
            }
            _ => true,
        }
    }
}
