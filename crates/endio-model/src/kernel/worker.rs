//! `bio_complete_work_fn()` run by a kworker or the rescuer: taking the
//! list, running the handlers, the `need_resched()` check.

use super::scenario::{Context, KernelConfig, Protection, ReschedCheck, Rescuer, Scenario};
use super::state::{BioList, Executor, ExecutorState, Pending, State, WorkFnStep, bio_name, idle};
use super::step::{Blocked, CHECKPOINT, Caller, Delay, Step, WORKER_HANDLER};
use crate::explore::Transition;
use crate::property::Property;

impl Scenario {
    /// The executor's run ends.
    pub(super) fn finish_run(step: &mut Step, who: Executor) {
        step.flags |= CHECKPOINT;
        let work = step.state.executor(who).work;
        step.state.cpus[work as usize].running = None;
        *step.state.executor_mut(who) = idle(who);
    }

    /// After taking the list: run its bios, or return if it was empty.
    pub(super) fn after_take(step: &mut Step, who: Executor) {
        if step.state.executor(who).batch.is_empty() {
            step.say(|| ", returns".to_owned());
            Self::finish_run(step, who);
        } else {
            step.state.executor_mut(who).at = WorkFnStep::Handlers;
        }
    }

    /// The top of the loop in `bio_complete_work_fn()`: take the list.
    pub(super) fn take_list(&self, step: &mut Step, who: Executor) -> Result<(), Blocked> {
        let e = *step.state.executor(who);
        let (cpu, work) = (e.cpu, e.work);
        let list = step.state.cpus[work as usize].list;
        if self.code.protection == Protection::Llist || !self.split_list_take {
            step.state.cpus[work as usize].list = BioList::default();
            step.state.executor_mut(who).batch = list;
            step.say(|| {
                let how = if self.code.protection == Protection::Llist {
                    "llist_del_all() "
                } else {
                    ""
                };
                format!("{how}takes cpu{work} list: {}", list.names())
            });
            Self::after_take(step, who);
            return Ok(());
        }
        if let Some(holder) = self.rt_lock_holder(&step.state, cpu)
            && holder != who
        {
            return Err(Blocked);
        }
        if let Some(other) = self.splicer(&step.state, work)
            && other != who
        {
            let label = self.label(&step.state, other);
            step.fault(Property::MutualExclusion, || {
                format!(
                    ": cpu{work}'s list is being taken by the {label} too, without mutual exclusion"
                )
            });
            return Ok(());
        }
        let executor = step.state.executor_mut(who);
        executor.batch = list;
        executor.at = WorkFnStep::Splicing;
        step.say(|| {
            let effect = match (self.code.protection, self.kernel_config) {
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
    pub(super) fn executor_steps(
        &self,
        s: &State,
        narrate: bool,
        out: &mut Vec<Transition<State>>,
    ) {
        for who in self.executors() {
            let e = *s.executor(who);
            if e.at == WorkFnStep::Idle {
                self.starts(s, who, narrate, out);
                continue;
            }
            if !self.can_run(s, e.cpu, Some(who)) {
                continue;
            }
            let label = || self.label(s, who);
            match e.at {
                WorkFnStep::Idle => {}
                WorkFnStep::Splicing => {
                    let mut step = Step::new(s, narrate);
                    step.state.cpus[e.work as usize].list = BioList::default();
                    step.say(|| format!("{}: bio_list_init(&batch->list); unlock", label()));
                    Self::after_take(&mut step, who);
                    step.push(out);
                }
                WorkFnStep::Handlers => {
                    let mut step = Step::new(s, narrate);
                    let executor = step.state.executor_mut(who);
                    let bio = executor
                        .batch
                        .pop_front()
                        .expect("a running batch is not empty");
                    executor.since_check = executor
                        .since_check
                        .saturating_add(1)
                        .min(self.since_check_cap());
                    step.flags |= WORKER_HANDLER;
                    let name = bio_name(bio);
                    step.say(|| format!("{}: runs bio {name}'s bi_end_io", label()));
                    if !self.spec(bio).handler {
                        step.fault(Property::HandlerPresent, || {
                            format!(
                                ": {name} has no bi_end_io, bio->bi_end_io(bio) dereferences NULL"
                            )
                        });
                        step.push(out);
                        continue;
                    }
                    let caller = Caller {
                        kind: Context::Task,
                        cpu: e.cpu,
                        who: Some(who),
                    };
                    if self.run_handler(&mut step, bio, caller).is_err() {
                        continue;
                    }
                    let executor = step.state.executor_mut(who);
                    executor.at = if self.code.resched == ReschedCheck::PerHandler {
                        WorkFnStep::CondResched
                    } else if executor.batch.is_empty() {
                        WorkFnStep::AfterBatch
                    } else {
                        WorkFnStep::Handlers
                    };
                    step.push(out);
                }
                WorkFnStep::CondResched => {
                    let mut step = Step::new(s, narrate);
                    step.flags |= CHECKPOINT;
                    let executor = step.state.executor_mut(who);
                    executor.since_check = 0;
                    executor.at = if executor.batch.is_empty() {
                        WorkFnStep::AfterBatch
                    } else {
                        WorkFnStep::Handlers
                    };
                    step.say(|| format!("{}: cond_resched()", label()));
                    step.push(out);
                }
                WorkFnStep::AfterBatch => self.after_batch(s, who, narrate, out),
            }
        }
    }

    /// The end of the loop body: the `need_resched()` check, or none.
    pub(super) fn after_batch(
        &self,
        s: &State,
        who: Executor,
        narrate: bool,
        out: &mut Vec<Transition<State>>,
    ) {
        let label = || self.label(s, who);
        if self.code.resched == ReschedCheck::None {
            let mut step = Step::new(s, narrate);
            step.say(|| format!("{}: loops, ", label()));
            if self.take_list(&mut step, who).is_ok() {
                step.push(out);
            }
            return;
        }
        let mut step = Step::new(s, narrate);
        step.flags |= CHECKPOINT;
        step.state.executor_mut(who).since_check = 0;
        step.say(|| format!("{}: need_resched() false, loops, ", label()));
        if self.take_list(&mut step, who).is_ok() {
            step.push(out);
        }

        let mut step = Step::new(s, narrate);
        step.state.executor_mut(who).since_check = 0;
        let work = s.executor(who).work;
        step.say(|| format!("{}: need_resched() true, ", label()));
        if s.cpus[work as usize].list.is_empty() {
            step.say(|| "list empty".to_owned());
        } else {
            step.say(|| "list not empty, requeue: ".to_owned());
            self.queue(&mut step, work, Delay::Now);
        }
        step.say(|| ", returns".to_owned());
        Self::finish_run(&mut step, who);
        step.push(out);
    }

    /// An idle executor starts running a queued work item.
    pub(super) fn starts(
        &self,
        s: &State,
        who: Executor,
        narrate: bool,
        out: &mut Vec<Transition<State>>,
    ) {
        for work in self.cpu_ids() {
            let w = &s.cpus[work as usize];
            if w.pending != Pending::Queued || w.running.is_some() || w.disabled {
                continue;
            }
            let places: Vec<u8> = match (who, self.rescuer) {
                (Executor::Worker(c), _) if c == work => vec![c],
                (Executor::Worker(_), _) => continue,
                (Executor::Rescuer, Some(Rescuer::PoolCpu)) => vec![work],
                (Executor::Rescuer, _) => self.cpu_ids().filter(|&c| self.active(s, c)).collect(),
            };
            for cpu in places {
                if !self.active(s, cpu) || !self.can_run(s, cpu, None) {
                    continue;
                }
                let mut step = Step::new(s, narrate);
                step.flags |= CHECKPOINT;
                step.state.cpus[work as usize].pending = Pending::No;
                step.state.cpus[work as usize].running = Some(who);
                *step.state.executor_mut(who) = ExecutorState {
                    at: WorkFnStep::Handlers,
                    cpu,
                    work,
                    batch: BioList::default(),
                    since_check: 0,
                };
                step.say(|| match who {
                    Executor::Worker(_) => format!("cpu{cpu} kworker: bio_complete_work_fn() "),
                    Executor::Rescuer => {
                        let how = if self.rescuer == Some(Rescuer::PoolCpu) {
                            "bound to the pool's CPU"
                        } else {
                            "unbound"
                        };
                        format!("rescuer on cpu{cpu} ({how}) answers cpu{work} pool's mayday: bio_complete_work_fn() ")
                    }
                });
                if self.take_list(&mut step, who).is_ok() {
                    step.push(out);
                }
            }
        }
    }
}
