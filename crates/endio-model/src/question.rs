//! The six questions of the review, and the model each one is checked on.
//!
//! Each question gets the smallest model that still shows its answer: the
//! CPUs, bios, completion contexts, executors and hotplug steps it needs and
//! nothing else, so that every question on every design is explored
//! exhaustively in milliseconds. [`Config`] can make them larger.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::Config;
use crate::design::Design;
use crate::kernel::{
    BIOS_MAX, BioSpec, CPUS_MAX, Context, Hotplug, KernelConfig, Protection, ReschedCheck, Rescuer,
    Scenario,
};
use crate::property::Property;

/// One of the six questions of the review of v6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Question {
    /// A deferred bio without `bi_end_io`.
    Q1,
    /// The worker loop monopolising the CPU.
    Q2,
    /// `local_lock` on `PREEMPT_RT` in atomic context.
    Q3,
    /// Bios stranded by a rolled-back CPU offline.
    Q4,
    /// The `WQ_MEM_RECLAIM` rescuer and `local_lock`.
    Q5,
    /// Endless re-deferral without `PREEMPT_COUNT`.
    Q6,
}

/// One exploration to run for a question on a design.
#[derive(Debug)]
pub(crate) struct CaseSpec {
    pub(crate) name: &'static str,
    pub(crate) scenario: Scenario,
    /// The properties the question is about, reported whatever their
    /// verdict.
    pub(crate) properties: &'static [Property],
    /// What the case's verdict rests on, added to the details of its
    /// properties.
    pub(crate) note: Option<&'static str>,
}

const FLAGGED: BioSpec = BioSpec {
    flagged: true,
    handler: true,
    punts: false,
};
const NO_HANDLER: BioSpec = BioSpec {
    flagged: false,
    handler: false,
    punts: false,
};
const PUNTS: BioSpec = BioSpec {
    flagged: false,
    handler: true,
    punts: true,
};

impl Question {
    /// Every question, in order.
    pub const ALL: [Question; 6] = [
        Question::Q1,
        Question::Q2,
        Question::Q3,
        Question::Q4,
        Question::Q5,
        Question::Q6,
    ];

    /// "q1" to "q6".
    pub fn id(self) -> &'static str {
        match self {
            Question::Q1 => "q1",
            Question::Q2 => "q2",
            Question::Q3 => "q3",
            Question::Q4 => "q4",
            Question::Q5 => "q5",
            Question::Q6 => "q6",
        }
    }

    /// The question in one line.
    pub fn title(self) -> &'static str {
        match self {
            Question::Q1 => "Can a deferred bio without bi_end_io be run (NULL dereference)?",
            Question::Q2 => {
                "Can the worker's loop monopolise the CPU (no cond_resched() between handlers)?"
            }
            Question::Q3 => "Is local_lock_irqsave() safe in atomic context on PREEMPT_RT?",
            Question::Q4 => "Can a rolled-back CPU offline strand deferred bios?",
            Question::Q5 => {
                "Does the WQ_MEM_RECLAIM rescuer break the local_lock_irq() protection?"
            }
            Question::Q6 => "Does bio_complete_in_task() re-defer forever without PREEMPT_COUNT?",
        }
    }

    /// What the reviewer asked, in short.
    pub fn reviewer(self) -> &'static str {
        match self {
            Question::Q1 => {
                "bio_complete_work_fn() and the dead callback call bio->bi_end_io(bio) without the NULL check \
                 of bio_endio(); a flagged bio without bi_end_io (some flush or discard bios) would oops."
            }
            Question::Q2 => {
                "With the 1-jiffy delay tens of thousands of bios can accumulate; running the whole batch \
                 without cond_resched() could cause latency spikes or watchdog warnings on non-preemptible \
                 kernels."
            }
            Question::Q3 => {
                "On PREEMPT_RT local_lock_t is a per-CPU spinlock_t, a sleeping rt_mutex, and \
                 __bio_complete_in_task() runs exactly when bio_in_atomic() is true (hard IRQ, under a \
                 raw_spinlock_t): \"Invalid wait context\". Would an llist be more appropriate?"
            }
            Question::Q4 => {
                "down_prep disables the work while the CPU still completes bios; the first finds the list empty \
                 but cannot queue the disabled work. If the offline is rolled back, online re-enables the work \
                 without queueing it, later completions see a non-empty list and do not queue: the bios are \
                 stranded."
            }
            Question::Q5 => {
                "The WQ_MEM_RECLAIM rescuer runs per-CPU work unbound: on CPU B it takes B's local lock while \
                 splicing CPU A's list, and an interrupt on A takes A's lock and adds to the same list: list \
                 corruption."
            }
            Question::Q6 => {
                "Without PREEMPT_COUNT bio_in_atomic() is always true, also in the worker: a bi_end_io that calls \
                 bio_complete_in_task() is deferred again every time the worker runs it, a permanent offloading \
                 loop."
            }
        }
    }

    /// What the author answered, in short.
    pub fn author(self) -> &'static str {
        match self {
            Question::Q1 => {
                "Not an issue: every bio that reaches this point has bi_end_io set; there is no point in \
                 deferring a bio without a completion handler."
            }
            Question::Q2 => {
                "Unnecessary: with PREEMPT_LAZY as the default the worker is preemptible."
            }
            Question::Q3 => {
                "Legit: switch to local_irq_save(), as the per-CPU bio allocation cache does (not \
                 raw_spinlock_t, which costs on !PREEMPT_RT)."
            }
            Question::Q4 => "Legit: requeue the work on CPU online if the list is not empty.",
            Question::Q5 => "Not an issue: the rescuer runs on the same CPU, not unbound.",
            Question::Q6 => {
                "Legit: use BIO_COMPLETE_IN_TASK as re-entry guard: bio_complete_in_task() returns false if it \
                 is set, else sets it and defers."
            }
        }
    }

    /// What the model settles, and on what it rests.
    pub fn finding(self) -> &'static str {
        match self {
            Question::Q1 => {
                "The author's answer holds: no reachable state runs a deferred bio without a handler, in any \
                 design. A bio reaches a list only through bio_endio() with BIO_COMPLETE_IN_TASK set, which \
                 submitters set together with their bi_end_io, or through bio_complete_in_task(), which is \
                 called from inside a bi_end_io; the model completes a flagged bio, a bio without bi_end_io \
                 and a bio whose handler punts itself, in hard IRQ and in task context on both CPUs, across \
                 CPU offlines whose dead callback drains the list, and bring-ups. In the kernel this rests on a convention of \
                 the submitters (flag a bio without bi_end_io and the model finds the NULL dereference within \
                 four steps); in endio it is unrepresentable: a Bio cannot be built without a handler, nor \
                 completed again once ended (compile_fail doctests in crates/endio/src/bio.rs)."
            }
            Question::Q2 => {
                "The posted worker checks need_resched() after each batch, not after each handler: between two \
                 checks it runs a whole batch, every bio that was on the list (here all bios in flight; the \
                 bound grows with them, 1 to 4 tried). Without that check a run is not bounded at all: \
                 interrupts refill the list and the while (1) loop takes it again, forever (a reachable \
                 cycle). Only a check after every handler (cond_resched() in the inner loop, or endio's \
                 budget) bounds it by one handler. All three designs share the loop. Whether a long batch \
                 hurts depends on preemption: with PREEMPT_LAZY, PREEMPT_FULL or PREEMPT_RT the scheduler \
                 preempts the kworker between handlers anyway (the author's answer holds there); without \
                 kernel preemption (PREEMPT_NONE/VOLUNTARY, the reviewer's case) the batch runs to its end."
            }
            Question::Q3 => {
                "The reviewer is right about v6: on PREEMPT_RT its first deferral from a non-threaded hard IRQ \
                 or under raw_spin_lock() takes local_lock_irqsave(), a sleeping spinlock_t. local_irq_save() \
                 (v6-fixed, merged) takes no lock, and neither does an llist (the reviewer's suggestion). \
                 Without PREEMPT_RT local_lock_irqsave() is local_irq_save() plus lockdep, and v6 is fine."
            }
            Question::Q4 => {
                "The reviewer is right about v6: after down_prep and a rolled-back offline, bios stay on the \
                 list with the work idle and enabled, forever. It is wider than described: \
                 disable_delayed_work_sync() also cancels a pending work, so a bio deferred just before \
                 down_prep is stranded the same way. v6-fixed and merged requeue on online: in every quiescent \
                 state the lists are empty and every handler ran once, across rollbacks, offline + dead drains \
                 and bring-ups."
            }
            Question::Q5 => {
                "The author's answer holds, and it relies on this workqueue guarantee: a per-CPU (WQ_PERCPU) \
                 workqueue's rescuer runs a work item on the CPU of the pool it was queued on: when the \
                 rescuer answers a pool's mayday it attaches to that pool and is bound to the pool's CPU \
                 (worker_attach_to_pool()), like the pool's own kworkers. So the worker's local_lock_irq() \
                 (or local_irq_disable()) turns off the interrupts of the list's own CPU and no interrupt can \
                 add to the list mid-splice. The guarantee holds while the pool is bound to its CPU; a CPU \
                 going down disassociates its pool and the workers then run unbound, which is why down_prep \
                 disables the work (it runs before the workqueue's own offline callback). With an unbound \
                 rescuer (the reviewer's premise) any CPU-local protection fails, local_lock and \
                 local_irq_save() alike: an interrupt on the list's CPU adds a bio between `list = \
                 batch->list` and `bio_list_init()`, and that bio is lost. An llist would be safe even then."
            }
            Question::Q6 => {
                "The reviewer is right about v6: under !PREEMPT_COUNT a handler that calls \
                 bio_complete_in_task() is re-deferred forever (a reachable cycle: the worker runs it, it \
                 defers itself, the worker runs it again). With the flag as re-entry guard (v6-fixed, merged) \
                 a bio is deferred at most once and its handler then runs. With PREEMPT_COUNT the kworker is \
                 preemptible, bio_in_atomic() is false there, and v6 terminates too."
            }
        }
    }

    /// The smallest CPU and bio counts that show the answer, and their
    /// defaults.
    fn sizes(self) -> Sizes {
        match self {
            // Two CPUs: bios complete on either, one of them goes down.
            // Three bios: one of each kind.
            Question::Q1 => Sizes {
                cpus: (2, 2),
                bios: (3, 3),
            },
            // One CPU; four bios: the batch can hold all of them.
            Question::Q2 => Sizes {
                cpus: (1, 1),
                bios: (1, 4),
            },
            Question::Q3 => Sizes {
                cpus: (1, 1),
                bios: (1, 1),
            },
            // cpu1 goes down, cpu0 runs the dead callback; two bios: one
            // before and one after the rollback.
            Question::Q4 => Sizes {
                cpus: (2, 2),
                bios: (1, 2),
            },
            // The list's CPU and another for the rescuer; two bios: one the
            // rescuer takes, one an interrupt adds meanwhile.
            Question::Q5 => Sizes {
                cpus: (2, 2),
                bios: (2, 2),
            },
            Question::Q6 => Sizes {
                cpus: (1, 1),
                bios: (1, 1),
            },
        }
    }

    /// The cases to explore for this question on `design`.
    pub(crate) fn cases(self, design: Design, config: &Config) -> Vec<CaseSpec> {
        let sizes = self.sizes();
        let cpus = config
            .cpus
            .unwrap_or(sizes.cpus.1)
            .clamp(sizes.cpus.0, CPUS_MAX);
        let bios = config
            .bios
            .unwrap_or(sizes.bios.1)
            .clamp(sizes.bios.0, BIOS_MAX);
        let all_cpus = u8::try_from((1_u32 << cpus) - 1).expect("CPUS_MAX is small");
        let code = design.code();
        let base = Scenario {
            code,
            kernel_config: KernelConfig::Default,
            cpus,
            bios: vec![FLAGGED; bios],
            completion_cpus: all_cpus,
            contexts: vec![Context::HardIrq],
            recycle: false,
            pool_workers: true,
            rescuer: None,
            split_list_take: false,
            hotplug: None,
        };
        let case = |name, scenario, properties| CaseSpec {
            name,
            scenario,
            properties,
            note: None,
        };
        match self {
            Question::Q1 => {
                let kinds = [FLAGGED, NO_HANDLER, PUNTS, FLAGGED];
                vec![case(
                    "as designed",
                    Scenario {
                        bios: kinds.iter().copied().cycle().take(bios).collect(),
                        contexts: vec![Context::HardIrq, Context::Task],
                        // The dead callback's drain is a path of its own;
                        // rollbacks are Q4's business.
                        hotplug: Some(Hotplug {
                            cpu: 1,
                            control: 0,
                            rollback: false,
                        }),
                        ..base
                    },
                    &[Property::HandlerPresent, Property::ExactlyOnce],
                )]
            }
            Question::Q2 => {
                let with = |resched| Scenario {
                    code: crate::kernel::Code { resched, ..code },
                    recycle: true,
                    ..base.clone()
                };
                vec![
                    case(
                        "as designed",
                        with(code.resched),
                        &[Property::BoundedHandlerRun],
                    ),
                    case(
                        "without the need_resched() check",
                        with(ReschedCheck::None),
                        &[Property::BoundedHandlerRun],
                    ),
                    case(
                        "with cond_resched() after each handler",
                        with(ReschedCheck::PerHandler),
                        &[Property::BoundedHandlerRun],
                    ),
                ]
            }
            Question::Q3 => {
                let rt = Scenario {
                    kernel_config: KernelConfig::PreemptRt,
                    contexts: vec![Context::HardIrq, Context::RawSpinlock, Context::Task],
                    ..base
                };
                let llist = Scenario {
                    code: crate::kernel::Code {
                        protection: Protection::Llist,
                        ..code
                    },
                    ..rt.clone()
                };
                let default = Scenario {
                    kernel_config: KernelConfig::Default,
                    ..rt.clone()
                };
                vec![
                    case("PREEMPT_RT", rt, &[Property::NoSleepInAtomic]),
                    case(
                        "PREEMPT_RT with an llist",
                        llist,
                        &[Property::NoSleepInAtomic],
                    ),
                    case("!PREEMPT_RT", default, &[Property::NoSleepInAtomic]),
                ]
            }
            Question::Q4 => vec![case(
                "as designed",
                Scenario {
                    completion_cpus: 1 << 1,
                    hotplug: Some(Hotplug {
                        cpu: 1,
                        control: 0,
                        rollback: true,
                    }),
                    ..base
                },
                &[Property::NothingStranded, Property::ExactlyOnce],
            )],
            Question::Q5 => {
                let with = |rescuer, protection| Scenario {
                    code: crate::kernel::Code { protection, ..code },
                    completion_cpus: 1,
                    rescuer: Some(rescuer),
                    split_list_take: true,
                    ..base.clone()
                };
                let pool_cpu = CaseSpec {
                    note: Some(
                        "the workqueue guarantee relied on: a per-CPU workqueue's rescuer runs the work on the \
                         pool's CPU (it is bound to the CPU of the pool whose mayday it answers), so the worker's \
                         lock masks the interrupts of the list's own CPU",
                    ),
                    ..case(
                        "rescuer on the pool's CPU",
                        with(Rescuer::PoolCpu, code.protection),
                        &[Property::MutualExclusion],
                    )
                };
                vec![
                    pool_cpu,
                    case(
                        "rescuer unbound",
                        with(Rescuer::Unbound, code.protection),
                        &[Property::MutualExclusion],
                    ),
                    case(
                        "rescuer unbound, llist",
                        with(Rescuer::Unbound, Protection::Llist),
                        &[Property::MutualExclusion],
                    ),
                ]
            }
            Question::Q6 => {
                let no_count = Scenario {
                    kernel_config: KernelConfig::NoPreemptCount,
                    bios: vec![PUNTS; bios],
                    ..base
                };
                let count = Scenario {
                    kernel_config: KernelConfig::Default,
                    ..no_count.clone()
                };
                vec![
                    case(
                        "!PREEMPT_COUNT",
                        no_count,
                        &[Property::BoundedRedeferral, Property::ExactlyOnce],
                    ),
                    case(
                        "PREEMPT_COUNT",
                        count,
                        &[Property::BoundedRedeferral, Property::ExactlyOnce],
                    ),
                ]
            }
        }
    }
}

/// (minimum, default) CPU and bio counts of a question's model.
struct Sizes {
    cpus: (usize, usize),
    bios: (usize, usize),
}

impl fmt::Display for Question {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// An unknown question name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownQuestion(pub String);

impl fmt::Display for UnknownQuestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown question {:?}; the questions are q1 to q6",
            self.0
        )
    }
}

impl std::error::Error for UnknownQuestion {}

impl FromStr for Question {
    type Err = UnknownQuestion;

    fn from_str(s: &str) -> Result<Question, UnknownQuestion> {
        Question::ALL
            .into_iter()
            .find(|q| q.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownQuestion(s.to_owned()))
    }
}
