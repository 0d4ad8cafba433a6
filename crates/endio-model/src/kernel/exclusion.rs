//! Who runs where, and what a held protection keeps from running.

use super::scenario::{KernelConfig, Protection, Scenario};
use super::state::{Pc, Phase, State, Who};

impl Scenario {
    pub(super) fn executors(&self) -> impl Iterator<Item = Who> {
        let workers = if self.pool_workers { self.cpus } else { 0 };
        (0..workers)
            .map(|c| Who::Worker(u8::try_from(c).expect("small")))
            .chain(self.rescuer.map(|_| Who::Rescuer))
    }

    /// The executor that has interrupts off on `cpu`, if any.
    pub(super) fn irqs_off(&self, s: &State, cpu: u8) -> Option<Who> {
        if !self.masks_irqs() {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.cpu == cpu
        })
    }

    /// The executor holding `cpu`'s local lock on `PREEMPT_RT`, if any.
    pub(super) fn rt_lock_holder(&self, s: &State, cpu: u8) -> Option<Who> {
        if self.code.protection != Protection::LocalLock || self.kconfig != KernelConfig::PreemptRt
        {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.cpu == cpu
        })
    }

    /// The executor between taking `list`'s content and re-initialising it.
    pub(super) fn splicer(&self, s: &State, list: u8) -> Option<Who> {
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.work == list
        })
    }

    /// Whether a context other than `me` may run on `cpu` now.
    pub(super) fn can_run(&self, s: &State, cpu: u8, me: Option<Who>) -> bool {
        match self.irqs_off(s, cpu) {
            None => true,
            Some(w) => Some(w) == me,
        }
    }

    /// Whether `cpu` is up (interrupts and tasks can run on it).
    pub(super) fn active(&self, s: &State, cpu: u8) -> bool {
        match self.hotplug {
            Some(h) if h.cpu == cpu => !matches!(s.phase, Phase::Offline | Phase::Dead),
            _ => true,
        }
    }
}
