//! `bio_endio()`, `__bio_complete_in_task()`, a bio's handler, and the
//! per-CPU work item's queueing and timer: the producer side.

use super::scenario::{Context, KernelConfig, Protection, Scenario};
use super::state::{BioState, Pending, State, bio_name};
use super::step::{Blocked, Ctx, Delay, REDEFER, Tx};
use crate::explore::Transition;
use crate::property::Property;

impl Scenario {
    /// Queues `cpu`'s work (`mod_delayed_work_on()` or `queue_work_on()`).
    pub(super) fn queue(&self, tx: &mut Tx, cpu: u8, delay: Delay) {
        let call = || self.queue_call(cpu, delay);
        let work = &mut tx.s.cpus[cpu as usize];
        if work.disabled {
            tx.say(|| format!("{} fails: work disabled", call()));
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
            tx.say(|| format!("{} queues the work", call()));
        } else if work.pending != Pending::No {
            tx.say(|| format!("{}: already pending", call()));
        } else {
            work.pending = Pending::Queued;
            tx.say(|| format!("{} queues the work", call()));
        }
    }

    /// `__bio_complete_in_task(bio)` in `ctx`: adds it to `ctx.cpu`'s list
    /// and queues the work if the list was empty.
    pub(super) fn defer(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
        let cpu = ctx.cpu;
        let name = bio_name(bio);
        if let Some(holder) = self.rt_lock_holder(&tx.s, cpu)
            && Some(holder) != ctx.who
            && ctx.kind.may_sleep()
        {
            return Err(Blocked);
        }
        if self.code.protection == Protection::LocalLock
            && self.kconfig == KernelConfig::PreemptRt
            && !ctx.kind.may_sleep()
        {
            tx.fault(Property::NoSleepInAtomic, || {
                format!(
                    ", __bio_complete_in_task(): local_lock_irqsave() is spin_lock() of cpu{cpu}'s local \
                     lock on PREEMPT_RT, a spinlock_t (an rt_mutex, which sleeps when contended): a sleeping \
                     lock taken in {}, which must not sleep",
                    ctx.kind.describe()
                )
            });
            return Ok(());
        }
        if let Some(splicer) = self.splicer(&tx.s, cpu)
            && Some(splicer) != ctx.who
        {
            let (label, at) = (self.label(&tx.s, splicer), tx.s.exec(splicer).cpu);
            tx.fault(Property::MutualExclusion, || {
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
        let list = &mut tx.s.cpus[cpu as usize].list;
        let was_empty = list.is_empty();
        list.push(bio);
        let again = tx.s.bios[bio as usize].deferred_before;
        tx.s.bios[bio as usize].deferred_before = true;
        if again {
            tx.flags |= REDEFER;
        }
        tx.say(|| {
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
            self.queue(tx, cpu, Delay::Jiffy);
        }
        Ok(())
    }

    /// `bio->bi_end_io(bio)` in `ctx`.
    pub(super) fn run_handler(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
        if self.spec(bio).punts {
            let atomic = self.in_atomic(ctx.kind);
            let why = || {
                if self.kconfig == KernelConfig::NoPreemptCount && ctx.kind == Context::Task {
                    " (!PREEMPT_COUNT: always)"
                } else {
                    ""
                }
            };
            let defers = if self.code.reentry_guard && tx.s.bios[bio as usize].flagged {
                tx.say(|| "; it calls bio_complete_in_task(): BIO_COMPLETE_IN_TASK set, returns false, the handler runs".to_owned());
                false
            } else if !atomic {
                tx.say(|| {
                    "; it calls bio_complete_in_task(): bio_in_atomic() false, the handler runs"
                        .to_owned()
                });
                false
            } else {
                if self.code.reentry_guard {
                    tx.s.bios[bio as usize].flagged = true;
                }
                tx.say(|| {
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
                return self.defer(tx, bio, ctx);
            }
        }
        let runs = &mut tx.s.bios[bio as usize].runs;
        *runs = runs.saturating_add(1);
        if *runs > 1 {
            let name = bio_name(bio);
            tx.fault(Property::ExactlyOnce, || {
                format!(": {name}'s handler runs a second time")
            });
        }
        Ok(())
    }

    /// `bio_endio(bio)` in `ctx`.
    pub(super) fn complete(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
        let name = bio_name(bio);
        tx.s.bios[bio as usize].in_flight = false;
        tx.say(|| {
            format!(
                "{}: bio {name} completes",
                Self::ctx_label(ctx.kind, ctx.cpu)
            )
        });
        if tx.s.bios[bio as usize].flagged && self.in_atomic(ctx.kind) {
            self.defer(tx, bio, ctx)
        } else if self.spec(bio).handler {
            tx.say(|| ", bi_end_io runs inline".to_owned());
            self.run_handler(tx, bio, ctx)
        } else {
            tx.say(|| ", no bi_end_io: nothing to run".to_owned());
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
                    let mut tx = Tx::new(s, narrate);
                    if self
                        .complete(
                            &mut tx,
                            bio,
                            Ctx {
                                kind,
                                cpu,
                                who: None,
                            },
                        )
                        .is_ok()
                    {
                        tx.push(out);
                    }
                }
            }
        }
    }

    /// The delay timers of delayed work items.
    pub(super) fn timers(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        for cpu in self.cpu_ids() {
            if s.cpus[cpu as usize].pending == Pending::Timer {
                let mut tx = Tx::new(s, narrate);
                tx.s.cpus[cpu as usize].pending = Pending::Queued;
                tx.say(|| {
                    format!(
                        "cpu{cpu}: the 1-jiffy timer expires, the work is queued on cpu{cpu}'s pool"
                    )
                });
                tx.push(out);
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
            let mut tx = Tx::new(s, narrate);
            tx.s.bios[bio as usize] = BioState {
                in_flight: true,
                flagged: spec.flagged,
                deferred_before: false,
                runs: 0,
            };
            tx.say(|| format!("bio {} is submitted again", bio_name(bio)));
            tx.push(out);
        }
    }
}
