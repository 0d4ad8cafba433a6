//! The words of the model: labels of contexts and executors, the kernel
//! calls each design makes, and the description of a model for the report.

use std::fmt::Write as _;

use super::scenario::{
    BioSpec, Context, KernelConfig, Protection, ReschedCheck, Rescuer, Scenario,
};
use super::state::{Executor, State, names};
use super::step::Delay;

impl KernelConfig {
    pub(super) fn describe(self) -> &'static str {
        match self {
            KernelConfig::Default => "default config (PREEMPT_COUNT, not PREEMPT_RT)",
            KernelConfig::PreemptRt => "PREEMPT_RT",
            KernelConfig::NoPreemptCount => "!PREEMPT_COUNT",
        }
    }
}

impl Context {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Context::HardIrq => "hard IRQ",
            Context::RawSpinlock => "task context under raw_spin_lock()",
            Context::Task => "task context",
        }
    }
}

impl Scenario {
    pub(super) fn label(&self, s: &State, who: Executor) -> String {
        match who {
            Executor::Worker(c) => format!("cpu{c} kworker"),
            Executor::Rescuer => format!("rescuer on cpu{}", s.rescuer.cpu),
        }
    }

    pub(super) fn caller_label(kind: Context, cpu: u8) -> String {
        match kind {
            Context::HardIrq => format!("cpu{cpu} irq"),
            Context::RawSpinlock => format!("cpu{cpu} task under raw_spin_lock()"),
            Context::Task => format!("cpu{cpu} task"),
        }
    }

    pub(super) fn queue_call(&self, cpu: u8, delay: Delay) -> String {
        match (self.code.delayed, delay) {
            (true, Delay::Jiffy) => format!("mod_delayed_work_on(cpu{cpu}, 1 jiffy)"),
            (true, Delay::Now) => format!("mod_delayed_work_on(cpu{cpu}, 0)"),
            (false, _) => format!("queue_work_on(cpu{cpu})"),
        }
    }

    pub(super) fn producer_lock(&self) -> &'static str {
        match self.code.protection {
            Protection::LocalLock => "local_lock_irqsave()",
            Protection::LocalIrqSave => "local_irq_save()",
            Protection::Llist => "llist_add()",
        }
    }

    pub(super) fn worker_lock(&self) -> &'static str {
        match self.code.protection {
            Protection::LocalLock => "local_lock_irq()",
            Protection::LocalIrqSave => "local_irq_disable()",
            Protection::Llist => "llist_del_all()",
        }
    }

    pub(super) fn enable_call(&self) -> &'static str {
        if self.code.delayed {
            "enable_delayed_work()"
        } else {
            "enable_work()"
        }
    }

    pub(super) fn disable_call(&self) -> &'static str {
        if self.code.delayed {
            "disable_delayed_work_sync()"
        } else {
            "disable_work_sync()"
        }
    }

    /// A description of the model, for the report.
    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "{}; {} CPU{}; ",
            self.kernel_config.describe(),
            self.cpus,
            if self.cpus == 1 { "" } else { "s" }
        );
        // Bios, grouped by kind.
        let kinds: [(BioSpec, &str); 4] = [
            (
                BioSpec {
                    flagged: true,
                    handler: true,
                    punts: false,
                },
                "BIO_COMPLETE_IN_TASK",
            ),
            (
                BioSpec {
                    flagged: false,
                    handler: false,
                    punts: false,
                },
                "no bi_end_io",
            ),
            (
                BioSpec {
                    flagged: false,
                    handler: true,
                    punts: true,
                },
                "bi_end_io calls bio_complete_in_task()",
            ),
            (
                BioSpec {
                    flagged: true,
                    handler: false,
                    punts: false,
                },
                "BIO_COMPLETE_IN_TASK, no bi_end_io",
            ),
        ];
        let mut groups = Vec::new();
        for (kind, what) in kinds {
            let ids: Vec<u8> = self.bio_ids().filter(|&b| self.spec(b) == kind).collect();
            if !ids.is_empty() {
                groups.push(format!("{} ({what})", names(ids.into_iter())));
            }
        }
        let _ = write!(
            out,
            "bio{} {}",
            if self.bios.len() == 1 { "" } else { "s" },
            groups.join(", ")
        );
        let contexts: Vec<&str> = self.contexts.iter().map(|c| c.describe()).collect();
        let cpus: Vec<String> = self
            .cpu_ids()
            .filter(|c| self.completion_cpus & (1 << c) != 0)
            .map(|c| format!("cpu{c}"))
            .collect();
        let _ = write!(
            out,
            " complete in {} on {}",
            contexts.join(" or "),
            cpus.join(" or ")
        );
        if self.recycle {
            out.push_str(" and are submitted again after their handler ran");
        }
        let protection = match self.code.protection {
            Protection::LocalLock => "local_lock",
            Protection::LocalIrqSave => "local_irq_save()",
            Protection::Llist => "llist",
        };
        let _ = write!(out, "; lists under {protection}");
        let work = if self.code.delayed {
            "delayed work (1 jiffy)"
        } else {
            "work item"
        };
        let _ = write!(out, "; per-CPU {work}");
        if self.pool_workers {
            out.push_str(" run by the pool's kworker");
        }
        match self.rescuer {
            Some(Rescuer::PoolCpu) => {
                out.push_str(", or by the WQ_MEM_RECLAIM rescuer on the pool's CPU")
            }
            Some(Rescuer::Unbound) => {
                out.push_str(", or by the WQ_MEM_RECLAIM rescuer on any CPU (unbound)")
            }
            None => {}
        }
        out.push_str(match self.code.resched {
            ReschedCheck::None => "; worker loops without a need_resched() check",
            ReschedCheck::PerBatch => "; worker checks need_resched() after each batch",
            ReschedCheck::PerHandler => "; worker checks need_resched() after each batch and calls cond_resched() after each handler",
        });
        if self.split_list_take && self.code.protection != Protection::Llist {
            out.push_str("; the worker's list take is two steps (lock, list = batch->list | bio_list_init, unlock)");
        }
        if let Some(h) = self.hotplug {
            let _ = write!(
                out,
                "; cpu{} hotplug, repeatedly: down_prep, then {}offline + dead (on cpu{}) + bring-up",
                h.cpu,
                if h.rollback {
                    "rollback (online) or "
                } else {
                    ""
                },
                h.control
            );
        }
        out
    }
}
