//! What a model is: the design's code, the kernel configuration, the bios,
//! the completion contexts, the executors and the hotplug steps that may
//! happen. Nothing here changes during an exploration.

/// The most CPUs a model has.
pub(crate) const CPUS_MAX: usize = 3;
/// The most bios a model has.
pub(crate) const BIOS_MAX: usize = 4;

/// The kernel configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KernelConfig {
    /// `PREEMPT_COUNT`, not `PREEMPT_RT` (e.g. `PREEMPT_LAZY`).
    Default,
    /// `PREEMPT_RT`: `local_lock_t` is a per-CPU `spinlock_t`, a sleeping
    /// lock.
    PreemptRt,
    /// No `PREEMPT_COUNT`: `bio_in_atomic()` is always true.
    NoPreemptCount,
}

/// What protects a per-CPU list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protection {
    /// `local_lock_irqsave()` / `local_lock_irq()` around a `bio_list`.
    LocalLock,
    /// `local_irq_save()` / `local_irq_disable()` around a `bio_list`.
    LocalIrqSave,
    /// An llist: `llist_add()` and `llist_del_all()`, no lock.
    Llist,
}

/// Where the worker checks whether it should give up the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReschedCheck {
    /// Never: `while (1)` until the list is empty.
    None,
    /// `need_resched()` after each batch (as posted).
    PerBatch,
    /// As posted, and `cond_resched()` after each handler.
    PerHandler,
}

/// The code of one design, as the differences that matter to the model.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Code {
    pub(crate) protection: Protection,
    /// A delayed work with a 1-jiffy delay (`mod_delayed_work_on()`), or a
    /// plain work item (`queue_work_on()`).
    pub(crate) delayed: bool,
    /// The online callback requeues the work if the list is not empty.
    pub(crate) requeue_on_online: bool,
    /// `bio_complete_in_task()` uses `BIO_COMPLETE_IN_TASK` as re-entry
    /// guard.
    pub(crate) reentry_guard: bool,
    pub(crate) resched: ReschedCheck,
}

/// A context that completes a bio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Context {
    /// A hard interrupt that is not threaded (also on `PREEMPT_RT`).
    HardIrq,
    /// A task (or threaded handler) holding a `raw_spinlock_t`.
    RawSpinlock,
    /// A preemptible task.
    Task,
}

impl Context {
    /// Whether the context may sleep (take a sleeping lock).
    pub(super) fn may_sleep(self) -> bool {
        self == Context::Task
    }
}

/// What a bio is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BioSpec {
    /// Submitted with `BIO_COMPLETE_IN_TASK`.
    pub(crate) flagged: bool,
    /// Has a `bi_end_io`.
    pub(crate) handler: bool,
    /// Its `bi_end_io` first calls `bio_complete_in_task()` and returns if
    /// that deferred it.
    pub(crate) punts: bool,
}

/// Where the `WQ_MEM_RECLAIM` rescuer runs a CPU's work item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rescuer {
    /// On the CPU of the pool it answers a mayday for (the workqueue binds
    /// it there).
    PoolCpu,
    /// On any CPU (the reviewer's premise).
    Unbound,
}

/// The hotplug steps of one CPU: down_prep, then a rollback (online) or the
/// offline and the dead callback on the control CPU, then bring-up; again
/// and again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Hotplug {
    pub(crate) cpu: u8,
    pub(crate) control: u8,
    /// Whether an offline can be rolled back after down_prep.
    pub(crate) rollback: bool,
}

/// One model: the code, the configuration and what may happen.
#[derive(Clone, Debug)]
pub(crate) struct Scenario {
    pub(crate) code: Code,
    pub(crate) kernel_config: KernelConfig,
    pub(crate) cpus: usize,
    pub(crate) bios: Vec<BioSpec>,
    /// Bit `c` set: bios may complete on CPU `c`.
    pub(crate) completion_cpus: u8,
    pub(crate) contexts: Vec<Context>,
    /// A bio whose handler ran may be submitted again.
    pub(crate) recycle: bool,
    /// The pools' own kworkers run work items.
    pub(crate) pool_workers: bool,
    pub(crate) rescuer: Option<Rescuer>,
    /// Split the executor's list take in two steps (see the module docs).
    pub(crate) split_list_take: bool,
    pub(crate) hotplug: Option<Hotplug>,
}

impl Scenario {
    /// The cap on an executor's count of handlers since its last check: one
    /// more than any batch can hold.
    pub(crate) fn since_check_cap(&self) -> u8 {
        u8::try_from(self.bios.len() + 1).unwrap_or(u8::MAX)
    }

    pub(super) fn cpu_ids(&self) -> impl Iterator<Item = u8> {
        (0..self.cpus).map(|c| u8::try_from(c).expect("CPUS_MAX is small"))
    }

    pub(super) fn bio_ids(&self) -> impl Iterator<Item = u8> {
        (0..self.bios.len()).map(|b| u8::try_from(b).expect("BIOS_MAX is small"))
    }

    pub(super) fn spec(&self, bio: u8) -> BioSpec {
        self.bios[bio as usize]
    }

    /// `bio_in_atomic()` in `kind`.
    pub(super) fn in_atomic(&self, kind: Context) -> bool {
        self.kernel_config == KernelConfig::NoPreemptCount || kind != Context::Task
    }

    /// Whether the executors' protection turns interrupts off on their CPU.
    pub(super) fn masks_irqs(&self) -> bool {
        match self.code.protection {
            Protection::LocalLock => self.kernel_config != KernelConfig::PreemptRt,
            Protection::LocalIrqSave => true,
            Protection::Llist => false,
        }
    }
}
