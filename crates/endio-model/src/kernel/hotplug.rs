//! The hotplug target's steps: down_prep, a rolled-back offline, the
//! offline and the dead callback, bring-up.

use super::scenario::{Context, Hotplug, Scenario};
use super::state::{BioList, HotplugPhase, Pending, State, bio_name};
use super::step::{Caller, Delay, Step};
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
        let target = cpu as usize;
        let mut step = Step::new(s, narrate);
        match s.phase {
            HotplugPhase::Up => {
                if !self.can_run(s, cpu, None) {
                    return;
                }
                let work = &mut step.state.cpus[target];
                work.disabled = true;
                let canceled = work.pending != Pending::No;
                work.pending = Pending::No;
                let running = work.running.is_some();
                step.state.phase = if running {
                    HotplugPhase::DownPrepWaiting
                } else {
                    HotplugPhase::DownPrepped
                };
                step.say(|| {
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
                step.push(out);
            }
            HotplugPhase::DownPrepWaiting => {
                if s.cpus[target].running.is_some() || !self.can_run(s, cpu, None) {
                    return;
                }
                step.state.phase = HotplugPhase::DownPrepped;
                step.say(|| {
                    format!(
                        "cpu{cpu} down_prep: the running instance returned, {} returns",
                        self.disable_call()
                    )
                });
                step.push(out);
            }
            HotplugPhase::DownPrepped => {
                if rollback && self.can_run(s, cpu, None) {
                    let mut rollback = Step::new(s, narrate);
                    rollback.state.cpus[target].disabled = false;
                    if self.code.requeue_on_online {
                        rollback.state.phase = HotplugPhase::OnlineEnabled;
                        rollback.say(|| {
                            format!(
                                "rollback: cpu{cpu} online: {} re-enables the work",
                                self.enable_call()
                            )
                        });
                    } else {
                        rollback.state.phase = HotplugPhase::Up;
                        let empty = s.cpus[target].list.is_empty();
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
                step.state.phase = HotplugPhase::Offline;
                step.say(|| format!("cpu{cpu} offline: no more interrupts on cpu{cpu}"));
                step.push(out);
            }
            HotplugPhase::OnlineEnabled => {
                if !self.can_run(s, cpu, None) {
                    return;
                }
                step.state.phase = HotplugPhase::Up;
                if s.cpus[target].list.is_empty() {
                    step.say(|| format!("cpu{cpu} online: list empty, nothing to requeue"));
                } else {
                    step.say(|| format!("cpu{cpu} online: list not empty, requeue: "));
                    self.queue(&mut step, cpu, Delay::Now);
                }
                step.push(out);
            }
            HotplugPhase::Offline => {
                if !self.can_run(s, control, None) {
                    return;
                }
                let list = step.state.cpus[target].list;
                step.state.cpus[target].list = BioList::default();
                step.state.phase = HotplugPhase::Dead;
                step.say(|| {
                    format!(
                        "cpu{cpu} dead (hotplug thread on cpu{control}): drains cpu{cpu} list: {}",
                        list.names()
                    )
                });
                if let Some(other) = self.splicer(s, cpu) {
                    let label = self.label(s, other);
                    step.fault(Property::MutualExclusion, || {
                        format!(", while the {label} is taking it")
                    });
                    step.push(out);
                    return;
                }
                for bio in list.iter() {
                    let name = bio_name(bio);
                    step.say(|| format!("; runs {name}'s bi_end_io"));
                    if !self.spec(bio).handler {
                        step.fault(Property::HandlerPresent, || {
                            format!(
                                ": {name} has no bi_end_io, bio->bi_end_io(bio) dereferences NULL"
                            )
                        });
                        break;
                    }
                    let caller = Caller {
                        kind: Context::Task,
                        cpu: control,
                        who: None,
                    };
                    if self.run_handler(&mut step, bio, caller).is_err() {
                        return;
                    }
                    if step.state.fault.is_some() {
                        break;
                    }
                }
                step.push(out);
            }
            HotplugPhase::Dead => {
                step.state.cpus[target].disabled = false;
                step.state.phase = if self.code.requeue_on_online {
                    HotplugPhase::OnlineEnabled
                } else {
                    HotplugPhase::Up
                };
                step.say(|| {
                    format!(
                        "cpu{cpu} online (bring-up): {} enables the work",
                        self.enable_call()
                    )
                });
                step.push(out);
            }
        }
    }
}
