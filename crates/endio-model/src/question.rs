//! The questions the model settles, and the model each one is checked on.
//!
//! Each question gets the smallest model that still shows its answer: the
//! CPUs, bios, completion contexts, executors and hotplug steps it needs and
//! nothing else, so that every question on every design is explored
//! exhaustively in milliseconds. [`Config`] can make them larger.
//!
//! What was asked and answered, and what the model finds, is prose kept in
//! one text file per question, `questions/<name>.txt`, one `title:`,
//! `reviewer:`, `author:` and `finding:` line each.

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

/// A question the model settles, named for the property whose answer it
/// wants. The crate docs map each to the seed review's question and to
/// endio's tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Question {
    /// Can a deferred bio without `bi_end_io` be run?
    #[serde(rename = "q1")]
    HandlerMandatory,
    /// How many handlers does the worker run before it checks whether to
    /// give up the CPU?
    #[serde(rename = "q2")]
    RunBudget,
    /// Is a sleeping lock taken in atomic context (`local_lock` on
    /// `PREEMPT_RT`)?
    #[serde(rename = "q3")]
    NoSleepingLockInAtomic,
    /// Can a rolled-back CPU offline strand deferred bios?
    #[serde(rename = "q4")]
    NoStrandedAfterRollback,
    /// Can the `WQ_MEM_RECLAIM` rescuer, running on another CPU, break the
    /// list's protection?
    #[serde(rename = "q5")]
    RescuerCrossCpu,
    /// Is a bio re-deferred without bound when `bio_in_atomic()` is always
    /// true (`!PREEMPT_COUNT`)?
    #[serde(rename = "q6")]
    RedeferralBounded,
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
        Question::HandlerMandatory,
        Question::RunBudget,
        Question::NoSleepingLockInAtomic,
        Question::NoStrandedAfterRollback,
        Question::RescuerCrossCpu,
        Question::RedeferralBounded,
    ];

    /// The short selector, "q1" to "q6", numbered as the seed review numbers
    /// its questions (`endio model --question q4`).
    pub fn id(self) -> &'static str {
        match self {
            Question::HandlerMandatory => "q1",
            Question::RunBudget => "q2",
            Question::NoSleepingLockInAtomic => "q3",
            Question::NoStrandedAfterRollback => "q4",
            Question::RescuerCrossCpu => "q5",
            Question::RedeferralBounded => "q6",
        }
    }

    /// The name of the property the question is about, as its text file and
    /// endio's tests are named ("run-budget").
    pub fn name(self) -> &'static str {
        match self {
            Question::HandlerMandatory => "handler-mandatory",
            Question::RunBudget => "run-budget",
            Question::NoSleepingLockInAtomic => "no-sleeping-lock-in-atomic",
            Question::NoStrandedAfterRollback => "no-stranded-after-rollback",
            Question::RescuerCrossCpu => "rescuer-cross-cpu",
            Question::RedeferralBounded => "redeferral-bounded",
        }
    }

    /// The question's text file.
    fn text(self) -> &'static str {
        match self {
            Question::HandlerMandatory => include_str!("../questions/handler-mandatory.txt"),
            Question::RunBudget => include_str!("../questions/run-budget.txt"),
            Question::NoSleepingLockInAtomic => {
                include_str!("../questions/no-sleeping-lock-in-atomic.txt")
            }
            Question::NoStrandedAfterRollback => {
                include_str!("../questions/no-stranded-after-rollback.txt")
            }
            Question::RescuerCrossCpu => include_str!("../questions/rescuer-cross-cpu.txt"),
            Question::RedeferralBounded => include_str!("../questions/redeferral-bounded.txt"),
        }
    }

    /// The line of the question's text file that starts with `key: `.
    fn line(self, key: &str) -> &'static str {
        self.text()
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(": "))
            .unwrap_or_else(|| panic!("questions/{}.txt has no {key:?} line", self.name()))
    }

    /// The question in one line.
    pub fn title(self) -> &'static str {
        self.line("title")
    }

    /// What the reviewer asked, in short.
    pub fn reviewer(self) -> &'static str {
        self.line("reviewer")
    }

    /// What the author answered, in short.
    pub fn author(self) -> &'static str {
        self.line("author")
    }

    /// What the model settles, and on what it rests.
    pub fn finding(self) -> &'static str {
        self.line("finding")
    }

    /// The smallest CPU and bio counts that show the answer, and their
    /// defaults.
    fn sizes(self) -> Sizes {
        match self {
            // Two CPUs: bios complete on either, one of them goes down.
            // Three bios: one of each kind.
            Question::HandlerMandatory => Sizes {
                cpus: (2, 2),
                bios: (3, 3),
            },
            // One CPU; four bios: the batch can hold all of them.
            Question::RunBudget => Sizes {
                cpus: (1, 1),
                bios: (1, 4),
            },
            Question::NoSleepingLockInAtomic => Sizes {
                cpus: (1, 1),
                bios: (1, 1),
            },
            // cpu1 goes down, cpu0 runs the dead callback; two bios: one
            // before and one after the rollback.
            Question::NoStrandedAfterRollback => Sizes {
                cpus: (2, 2),
                bios: (1, 2),
            },
            // The list's CPU and another for the rescuer; two bios: one the
            // rescuer takes, one an interrupt adds meanwhile.
            Question::RescuerCrossCpu => Sizes {
                cpus: (2, 2),
                bios: (2, 2),
            },
            Question::RedeferralBounded => Sizes {
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
            Question::HandlerMandatory => {
                let kinds = [FLAGGED, NO_HANDLER, PUNTS, FLAGGED];
                vec![case(
                    "as designed",
                    Scenario {
                        bios: kinds.iter().copied().cycle().take(bios).collect(),
                        contexts: vec![Context::HardIrq, Context::Task],
                        // The dead callback's drain is a path of its own;
                        // rollbacks are checked by NoStrandedAfterRollback.
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
            Question::RunBudget => {
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
            Question::NoSleepingLockInAtomic => {
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
            Question::NoStrandedAfterRollback => vec![case(
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
            Question::RescuerCrossCpu => {
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
            Question::RedeferralBounded => {
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

/// The selector, "q1" to "q6".
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
            "unknown question {:?}; the questions are q1 to q6, or by name {}",
            self.0,
            Question::ALL.map(Question::name).join(", ")
        )
    }
}

impl std::error::Error for UnknownQuestion {}

impl FromStr for Question {
    type Err = UnknownQuestion;

    fn from_str(s: &str) -> Result<Question, UnknownQuestion> {
        Question::ALL
            .into_iter()
            .find(|q| q.id().eq_ignore_ascii_case(s) || q.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownQuestion(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every question's text file has each line, and nothing else.
    #[test]
    fn every_question_has_its_text() {
        for question in Question::ALL {
            for text in [
                question.title(),
                question.reviewer(),
                question.author(),
                question.finding(),
            ] {
                assert!(!text.is_empty(), "{}", question.name());
            }
            let keys: Vec<&str> = question
                .text()
                .lines()
                .filter(|l| !l.is_empty())
                .filter_map(|l| l.split_once(": ").map(|(key, _)| key))
                .collect();
            assert_eq!(keys, ["title", "reviewer", "author", "finding"]);
        }
    }
}
