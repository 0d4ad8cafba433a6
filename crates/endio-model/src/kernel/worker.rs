//! `bio_complete_work_fn()` run by a kworker or the rescuer: taking the
//! list, running the handlers, the `need_resched()` check.

use super::scenario::{Context, KernelConfig, Protection, ReschedCheck, Rescuer, Scenario};
use super::state::{BioList, Exec, Pc, Pending, State, Who, bio_name, idle};
use super::step::{Blocked, CHECKPOINT, Ctx, Delay, Tx, WORKER_HANDLER};
use crate::explore::Transition;
use crate::property::Property;

impl Scenario {
    /// The executor's run ends.
    pub(super) fn finish_run(tx: &mut Tx, who: Who) {
        tx.flags |= CHECKPOINT;
        let work = tx.s.exec(who).work;
        tx.s.cpus[work as usize].running = None;
        *tx.s.exec_mut(who) = idle(who);
    }

    /// After taking the list: run its bios, or return if it was empty.
    pub(super) fn after_take(tx: &mut Tx, who: Who) {
        if tx.s.exec(who).batch.is_empty() {
            tx.say(|| ", returns".to_owned());
            Self::finish_run(tx, who);
        } else {
            tx.s.exec_mut(who).pc = Pc::Handlers;
        }
    }

    /// The top of the loop in `bio_complete_work_fn()`: take the list.
    pub(super) fn take_list(&self, tx: &mut Tx, who: Who) -> Result<(), Blocked> {
        let e = *tx.s.exec(who);
        let (cpu, work) = (e.cpu, e.work);
        let list = tx.s.cpus[work as usize].list;
        if self.code.protection == Protection::Llist || !self.split_list_take {
            tx.s.cpus[work as usize].list = BioList::default();
            tx.s.exec_mut(who).batch = list;
            tx.say(|| {
                let how = if self.code.protection == Protection::Llist {
                    "llist_del_all() "
                } else {
                    ""
                };
                format!("{how}takes cpu{work} list: {}", list.names())
            });
            Self::after_take(tx, who);
            return Ok(());
        }
        if let Some(holder) = self.rt_lock_holder(&tx.s, cpu)
            && holder != who
        {
            return Err(Blocked);
        }
        if let Some(other) = self.splicer(&tx.s, work)
            && other != who
        {
            let label = self.label(&tx.s, other);
            tx.fault(Property::MutualExclusion, || {
                format!(
                    ": cpu{work}'s list is being taken by the {label} too, without mutual exclusion"
                )
            });
            return Ok(());
        }
        let exec = tx.s.exec_mut(who);
        exec.batch = list;
        exec.pc = Pc::Splicing;
        tx.say(|| {
            let effect = match (self.code.protection, self.kconfig) {
                (Protection::LocalLock, KernelConfig::PreemptRt) => {
                    format!("spin_lock() of cpu{cpu}'s local lock")
                }
                _ if cpu == work => format!("interrupts off on cpu{cpu}"),
                _ => format!("interrupts off on cpu{cpu} only"),
            };
            format!(
                "{} ({effect}); list = cpu{work} list: {}",
                self.worker_lock(),
                list.names()
            )
        });
        Ok(())
    }

    /// The executors' steps.
    pub(super) fn exec_steps(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        for who in self.executors() {
            let e = *s.exec(who);
            if e.pc == Pc::Idle {
                self.starts(s, who, narrate, out);
                continue;
            }
            if !self.can_run(s, e.cpu, Some(who)) {
                continue;
            }
            let label = || self.label(s, who);
            match e.pc {
                Pc::Idle => {}
                Pc::Splicing => {
                    let mut tx = Tx::new(s, narrate);
                    tx.s.cpus[e.work as usize].list = BioList::default();
                    tx.say(|| format!("{}: bio_list_init(&batch->list); unlock", label()));
                    Self::after_take(&mut tx, who);
                    tx.push(out);
                }
                Pc::Handlers => {
                    let mut tx = Tx::new(s, narrate);
                    let exec = tx.s.exec_mut(who);
                    let bio = exec
                        .batch
                        .pop_front()
                        .expect("a running batch is not empty");
                    exec.since_check = exec
                        .since_check
                        .saturating_add(1)
                        .min(self.since_check_cap());
                    tx.flags |= WORKER_HANDLER;
                    let name = bio_name(bio);
                    tx.say(|| format!("{}: runs bio {name}'s bi_end_io", label()));
                    if !self.spec(bio).handler {
                        tx.fault(Property::HandlerPresent, || {
                            format!(
                                ": {name} has no bi_end_io, bio->bi_end_io(bio) dereferences NULL"
                            )
                        });
                        tx.push(out);
                        continue;
                    }
                    let ctx = Ctx {
                        kind: Context::Task,
                        cpu: e.cpu,
                        who: Some(who),
                    };
                    if self.run_handler(&mut tx, bio, ctx).is_err() {
                        continue;
                    }
                    let exec = tx.s.exec_mut(who);
                    exec.pc = if self.code.resched == ReschedCheck::PerHandler {
                        Pc::CondResched
                    } else if exec.batch.is_empty() {
                        Pc::AfterBatch
                    } else {
                        Pc::Handlers
                    };
                    tx.push(out);
                }
                Pc::CondResched => {
                    let mut tx = Tx::new(s, narrate);
                    tx.flags |= CHECKPOINT;
                    let exec = tx.s.exec_mut(who);
                    exec.since_check = 0;
                    exec.pc = if exec.batch.is_empty() {
                        Pc::AfterBatch
                    } else {
                        Pc::Handlers
                    };
                    tx.say(|| format!("{}: cond_resched()", label()));
                    tx.push(out);
                }
                Pc::AfterBatch => self.after_batch(s, who, narrate, out),
            }
        }
    }

    /// The end of the loop body: the `need_resched()` check, or none.
    pub(super) fn after_batch(
        &self,
        s: &State,
        who: Who,
        narrate: bool,
        out: &mut Vec<Transition<State>>,
    ) {
        let label = || self.label(s, who);
        if self.code.resched == ReschedCheck::None {
            let mut tx = Tx::new(s, narrate);
            tx.say(|| format!("{}: loops, ", label()));
            if self.take_list(&mut tx, who).is_ok() {
                tx.push(out);
            }
            return;
        }
        let mut tx = Tx::new(s, narrate);
        tx.flags |= CHECKPOINT;
        tx.s.exec_mut(who).since_check = 0;
        tx.say(|| format!("{}: need_resched() false, loops, ", label()));
        if self.take_list(&mut tx, who).is_ok() {
            tx.push(out);
        }

        let mut tx = Tx::new(s, narrate);
        tx.s.exec_mut(who).since_check = 0;
        let work = s.exec(who).work;
        tx.say(|| format!("{}: need_resched() true, ", label()));
        if s.cpus[work as usize].list.is_empty() {
            tx.say(|| "list empty".to_owned());
        } else {
            tx.say(|| "list not empty, requeue: ".to_owned());
            self.queue(&mut tx, work, Delay::Now);
        }
        tx.say(|| ", returns".to_owned());
        Self::finish_run(&mut tx, who);
        tx.push(out);
    }

    /// An idle executor starts running a queued work item.
    pub(super) fn starts(
        &self,
        s: &State,
        who: Who,
        narrate: bool,
        out: &mut Vec<Transition<State>>,
    ) {
        for work in self.cpu_ids() {
            let w = &s.cpus[work as usize];
            if w.pending != Pending::Queued || w.running.is_some() || w.disabled {
                continue;
            }
            let places: Vec<u8> = match (who, self.rescuer) {
                (Who::Worker(c), _) if c == work => vec![c],
                (Who::Worker(_), _) => continue,
                (Who::Rescuer, Some(Rescuer::PoolCpu)) => vec![work],
                (Who::Rescuer, _) => self.cpu_ids().filter(|&c| self.active(s, c)).collect(),
            };
            for cpu in places {
                if !self.active(s, cpu) || !self.can_run(s, cpu, None) {
                    continue;
                }
                let mut tx = Tx::new(s, narrate);
                tx.flags |= CHECKPOINT;
                tx.s.cpus[work as usize].pending = Pending::No;
                tx.s.cpus[work as usize].running = Some(who);
                *tx.s.exec_mut(who) = Exec {
                    pc: Pc::Handlers,
                    cpu,
                    work,
                    batch: BioList::default(),
                    since_check: 0,
                };
                tx.say(|| match who {
                    Who::Worker(_) => format!("cpu{cpu} kworker: bio_complete_work_fn() "),
                    Who::Rescuer => {
                        let how = if self.rescuer == Some(Rescuer::PoolCpu) {
                            "bound to the pool's CPU"
                        } else {
                            "unbound"
                        };
                        format!("rescuer on cpu{cpu} ({how}) answers cpu{work} pool's mayday: bio_complete_work_fn() ")
                    }
                });
                if self.take_list(&mut tx, who).is_ok() {
                    tx.push(out);
                }
            }
        }
    }
}
