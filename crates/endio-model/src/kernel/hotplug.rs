//! The hotplug target's steps: down_prep, a rolled-back offline, the
//! offline and the dead callback, bring-up.

use super::scenario::{Context, Hotplug, Scenario};
use super::state::{BioList, Pending, Phase, State, bio_name};
use super::step::{Ctx, Delay, Tx};
use crate::explore::Transition;
use crate::property::Property;

impl Scenario {
    /// The hotplug target's steps.
    pub(super) fn hotplug_steps(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        let Some(Hotplug {
            cpu,
            control,
            rollback,
        }) = self.hotplug
        else {
            return;
        };
        let t = cpu as usize;
        let mut tx = Tx::new(s, narrate);
        match s.phase {
            Phase::Up => {
                if !self.can_run(s, cpu, None) {
                    return;
                }
                let work = &mut tx.s.cpus[t];
                work.disabled = true;
                let canceled = work.pending != Pending::No;
                work.pending = Pending::No;
                let running = work.running.is_some();
                tx.s.phase = if running {
                    Phase::DownPrepWaiting
                } else {
                    Phase::DownPrepped
                };
                tx.say(|| {
                    format!(
                        "cpu{cpu} down_prep: {} disables the work{}{}",
                        self.disable_call(),
                        if canceled {
                            ", cancels the pending work"
                        } else {
                            ""
                        },
                        if running {
                            ", waits for the running instance"
                        } else {
                            ""
                        }
                    )
                });
                tx.push(out);
            }
            Phase::DownPrepWaiting => {
                if s.cpus[t].running.is_some() || !self.can_run(s, cpu, None) {
                    return;
                }
                tx.s.phase = Phase::DownPrepped;
                tx.say(|| {
                    format!(
                        "cpu{cpu} down_prep: the running instance returned, {} returns",
                        self.disable_call()
                    )
                });
                tx.push(out);
            }
            Phase::DownPrepped => {
                if rollback && self.can_run(s, cpu, None) {
                    let mut rollback = Tx::new(s, narrate);
                    rollback.s.cpus[t].disabled = false;
                    if self.code.requeue_on_online {
                        rollback.s.phase = Phase::OnlineEnabled;
                        rollback.say(|| {
                            format!(
                                "rollback: cpu{cpu} online: {} re-enables the work",
                                self.enable_call()
                            )
                        });
                    } else {
                        rollback.s.phase = Phase::Up;
                        let empty = s.cpus[t].list.is_empty();
                        rollback.say(|| {
                            format!(
                                "rollback: cpu{cpu} online re-enables the work, {}",
                                if empty {
                                    "list empty"
                                } else {
                                    "list not empty, nothing queued"
                                }
                            )
                        });
                    }
                    rollback.push(out);
                }
                tx.s.phase = Phase::Offline;
                tx.say(|| format!("cpu{cpu} offline: no more interrupts on cpu{cpu}"));
                tx.push(out);
            }
            Phase::OnlineEnabled => {
                if !self.can_run(s, cpu, None) {
                    return;
                }
                tx.s.phase = Phase::Up;
                if s.cpus[t].list.is_empty() {
                    tx.say(|| format!("cpu{cpu} online: list empty, nothing to requeue"));
                } else {
                    tx.say(|| format!("cpu{cpu} online: list not empty, requeue: "));
                    self.queue(&mut tx, cpu, Delay::Now);
                }
                tx.push(out);
            }
            Phase::Offline => {
                if !self.can_run(s, control, None) {
                    return;
                }
                let list = tx.s.cpus[t].list;
                tx.s.cpus[t].list = BioList::default();
                tx.s.phase = Phase::Dead;
                tx.say(|| {
                    format!(
                        "cpu{cpu} dead (hotplug thread on cpu{control}): drains cpu{cpu} list: {}",
                        list.names()
                    )
                });
                if let Some(other) = self.splicer(s, cpu) {
                    let label = self.label(s, other);
                    tx.fault(Property::MutualExclusion, || {
                        format!(", while the {label} is taking it")
                    });
                    tx.push(out);
                    return;
                }
                for bio in list.iter() {
                    let name = bio_name(bio);
                    tx.say(|| format!("; runs {name}'s bi_end_io"));
                    if !self.spec(bio).handler {
                        tx.fault(Property::HandlerPresent, || {
                            format!(
                                ": {name} has no bi_end_io, bio->bi_end_io(bio) dereferences NULL"
                            )
                        });
                        break;
                    }
                    let ctx = Ctx {
                        kind: Context::Task,
                        cpu: control,
                        who: None,
                    };
                    if self.run_handler(&mut tx, bio, ctx).is_err() {
                        return;
                    }
                    if tx.s.fault.is_some() {
                        break;
                    }
                }
                tx.push(out);
            }
            Phase::Dead => {
                tx.s.cpus[t].disabled = false;
                tx.s.phase = if self.code.requeue_on_online {
                    Phase::OnlineEnabled
                } else {
                    Phase::Up
                };
                tx.say(|| {
                    format!(
                        "cpu{cpu} online (bring-up): {} enables the work",
                        self.enable_call()
                    )
                });
                tx.push(out);
            }
        }
    }
}
