//! `bio_endio()`, `__bio_complete_in_task()`, a bio's handler, and the
//! per-CPU work item's queueing and timer: the producer side.

use super::scenario::{Context, KernelConfig, Protection, Scenario};
use super::state::{BioState, Pending, State, bio_name};
use super::step::{Blocked, Caller, Delay, REDEFER, Step};
use crate::explore::Transition;
use crate::property::Property;

impl Scenario {
    /// Queues `cpu`'s work (`mod_delayed_work_on()` or `queue_work_on()`).
    pub(super) fn queue(&self, step: &mut Step, cpu: u8, delay: Delay) {
        let call = || self.queue_call(cpu, delay);
        let work = &mut step.state.cpus[cpu as usize];
        if work.disabled {
            step.say(|| format!("{} fails: work disabled", call()));
            return;
        }
        if self.code.delayed {
            // mod_delayed_work_on() grabs a pending work back and re-queues
            // it with the new delay.
            work.pending = if delay == Delay::Jiffy {
                Pending::Timer
            } else {
                Pending::Queued
            };
            step.say(|| format!("{} queues the work", call()));
        } else if work.pending != Pending::No {
            step.say(|| format!("{}: already pending", call()));
        } else {
            work.pending = Pending::Queued;
            step.say(|| format!("{} queues the work", call()));
        }
    }

    /// `__bio_complete_in_task(bio)` in `caller`: adds it to `caller.cpu`'s list
    /// and queues the work if the list was empty.
    pub(super) fn defer(&self, step: &mut Step, bio: u8, caller: Caller) -> Result<(), Blocked> {
        let cpu = caller.cpu;
        let name = bio_name(bio);
        if let Some(holder) = self.rt_lock_holder(&step.state, cpu)
            && Some(holder) != caller.who
            && caller.kind.may_sleep()
        {
            return Err(Blocked);
        }
        if self.code.protection == Protection::LocalLock
            && self.kernel_config == KernelConfig::PreemptRt
            && !caller.kind.may_sleep()
        {
            step.fault(Property::NoSleepInAtomic, || {
                format!(
                    ", __bio_complete_in_task(): local_lock_irqsave() is spin_lock() of cpu{cpu}'s local \
                     lock on PREEMPT_RT, a spinlock_t (an rt_mutex, which sleeps when contended): a sleeping \
                     lock taken in {}, which must not sleep",
                    caller.kind.describe()
                )
            });
            return Ok(());
        }
        if let Some(splicer) = self.splicer(&step.state, cpu)
            && Some(splicer) != caller.who
        {
            let (label, at) = (
                self.label(&step.state, splicer),
                step.state.executor(splicer).cpu,
            );
            step.fault(Property::MutualExclusion, || {
                format!(
                    ", deferred: {} on cpu{cpu}, {name} added to cpu{cpu} list while the {label} is between \
                     `list = batch->list` and `bio_list_init(&batch->list)` under {} of cpu{at}: two \
                     contexts modify the list and nothing excludes the other ({name} is lost)",
                    self.producer_lock(),
                    self.worker_lock()
                )
            });
            return Ok(());
        }
        let list = &mut step.state.cpus[cpu as usize].list;
        let was_empty = list.is_empty();
        list.push(bio);
        let again = step.state.bios[bio as usize].deferred_before;
        step.state.bios[bio as usize].deferred_before = true;
        if again {
            step.flags |= REDEFER;
        }
        step.say(|| {
            format!(
                ", {}: added to cpu{cpu} list, {}",
                if again { "deferred again" } else { "deferred" },
                if was_empty {
                    "list was empty, "
                } else {
                    "list not empty, no queue"
                }
            )
        });
        if was_empty {
            self.queue(step, cpu, Delay::Jiffy);
        }
        Ok(())
    }

    /// `bio->bi_end_io(bio)` in `caller`.
    pub(super) fn run_handler(
        &self,
        step: &mut Step,
        bio: u8,
        caller: Caller,
    ) -> Result<(), Blocked> {
        if self.spec(bio).punts {
            let atomic = self.in_atomic(caller.kind);
            let why = || {
                if self.kernel_config == KernelConfig::NoPreemptCount
                    && caller.kind == Context::Task
                {
                    " (!PREEMPT_COUNT: always)"
                } else {
                    ""
                }
            };
            let defers = if self.code.reentry_guard && step.state.bios[bio as usize].flagged {
                step.say(|| "; it calls bio_complete_in_task(): BIO_COMPLETE_IN_TASK set, returns false, the handler runs".to_owned());
                false
            } else if !atomic {
                step.say(|| {
                    "; it calls bio_complete_in_task(): bio_in_atomic() false, the handler runs"
                        .to_owned()
                });
                false
            } else {
                if self.code.reentry_guard {
                    step.state.bios[bio as usize].flagged = true;
                }
                step.say(|| {
                    format!(
                        "; it calls bio_complete_in_task(): bio_in_atomic() true{}{}",
                        why(),
                        if self.code.reentry_guard {
                            ", sets BIO_COMPLETE_IN_TASK"
                        } else {
                            ""
                        }
                    )
                });
                true
            };
            if defers {
                return self.defer(step, bio, caller);
            }
        }
        let runs = &mut step.state.bios[bio as usize].runs;
        *runs = runs.saturating_add(1);
        if *runs > 1 {
            let name = bio_name(bio);
            step.fault(Property::ExactlyOnce, || {
                format!(": {name}'s handler runs a second time")
            });
        }
        Ok(())
    }

    /// `bio_endio(bio)` in `caller`.
    pub(super) fn complete(&self, step: &mut Step, bio: u8, caller: Caller) -> Result<(), Blocked> {
        let name = bio_name(bio);
        step.state.bios[bio as usize].in_flight = false;
        step.say(|| {
            format!(
                "{}: bio {name} completes",
                Self::caller_label(caller.kind, caller.cpu)
            )
        });
        if step.state.bios[bio as usize].flagged && self.in_atomic(caller.kind) {
            self.defer(step, bio, caller)
        } else if self.spec(bio).handler {
            step.say(|| ", bi_end_io runs inline".to_owned());
            self.run_handler(step, bio, caller)
        } else {
            step.say(|| ", no bi_end_io: nothing to run".to_owned());
            Ok(())
        }
    }

    /// in-flight bio.
    pub(super) fn completions(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        for bio in self.bio_ids() {
            if !s.bios[bio as usize].in_flight {
                continue;
            }
            for cpu in self.cpu_ids() {
                if self.completion_cpus & (1 << cpu) == 0
                    || !self.active(s, cpu)
                    || !self.can_run(s, cpu, None)
                {
                    continue;
                }
                for &kind in &self.contexts {
                    let mut step = Step::new(s, narrate);
                    if self
                        .complete(
                            &mut step,
                            bio,
                            Caller {
                                kind,
                                cpu,
                                who: None,
                            },
                        )
                        .is_ok()
                    {
                        step.push(out);
                    }
                }
            }
        }
    }

    /// The delay timers of delayed work items.
    pub(super) fn timers(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        for cpu in self.cpu_ids() {
            if s.cpus[cpu as usize].pending == Pending::Timer {
                let mut step = Step::new(s, narrate);
                step.state.cpus[cpu as usize].pending = Pending::Queued;
                step.say(|| {
                    format!(
                        "cpu{cpu}: the 1-jiffy timer expires, the work is queued on cpu{cpu}'s pool"
                    )
                });
                step.push(out);
            }
        }
    }

    /// Bios whose handler ran are submitted again.
    pub(super) fn resubmits(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        if !self.recycle {
            return;
        }
        for bio in self.bio_ids() {
            let b = s.bios[bio as usize];
            let spec = self.spec(bio);
            if b.in_flight || s.queued(bio) || (spec.handler && b.runs != 1) {
                continue;
            }
            let mut step = Step::new(s, narrate);
            step.state.bios[bio as usize] = BioState {
                in_flight: true,
                flagged: spec.flagged,
                deferred_before: false,
                runs: 0,
            };
            step.say(|| format!("bio {} is submitted again", bio_name(bio)));
            step.push(out);
        }
    }
}
