//! The model of the kernel design: per-CPU lists, the per-CPU work item, its
//! executors (kworkers and the `WQ_MEM_RECLAIM` rescuer), interrupts and
//! other completion contexts, and CPU hotplug.
//!
//! # What a state holds
//!
//! - Per bio: whether the device has yet to complete it, its
//!   `BIO_COMPLETE_IN_TASK` flag, whether it was deferred before, and how
//!   many times its handler ran to the end.
//! - Per CPU: its list (a FIFO `bio_list`, or an llist, whose take-all the
//!   worker reverses into the same order), its work item (`pending`: no,
//!   timer armed, queued on the pool; `disabled`; which executor runs it) and
//!   its bound kworker.
//! - The rescuer, which runs any CPU's work on the pool's CPU or, to show
//!   the difference, on any CPU.
//! - The phase of the hotplug target CPU.
//! - A fault, once a transition broke a safety property; a faulted state has
//!   no successors (what happens after list corruption is undefined).
//!
//! # The code, step by step
//!
//! Each transition is one atomic step of one context. Interrupts and the
//! other completion contexts run `bio_endio()` to its end in one step; they
//! can only start on a CPU whose interrupts are on. Executors run
//! `bio_complete_work_fn()` in steps: take the list; run one handler; check
//! `need_resched()`. Where a question is about the list's mutual exclusion
//! (Q5) the take is split in two, `local_lock_irq(); list = batch->list;`
//! then `bio_list_init(&batch->list); local_unlock_irq();`, and a context
//! that modifies the list between the two is a fault unless the protection
//! held excludes it: with `local_lock` (not `PREEMPT_RT`) or
//! `local_irq_save()` nothing else runs on the executor's CPU, and with
//! `local_lock` on `PREEMPT_RT` other contexts block on that CPU's
//! spinlock. Either protects only the CPU the executor runs on.
//!
//! The work item follows the workqueue's rules: queueing a disabled work
//! fails; `disable_*_sync()` cancels a pending work and waits for a running
//! one; enabling never queues; a work that is running can be queued again
//! and then runs again after, never concurrently (non-reentrancy).

use std::fmt::Write as _;

use crate::explore::{System, Transition};
use crate::report::Property;

/// The most CPUs a model has.
pub(crate) const CPUS_MAX: usize = 3;
/// The most bios a model has.
pub(crate) const BIOS_MAX: usize = 4;

/// Edge flag: the step deferred a bio that had been deferred before.
pub(crate) const REDEFER: u8 = 1 << 0;
/// Edge flag: an executor ran a handler.
pub(crate) const WORKER_HANDLER: u8 = 1 << 1;
/// Edge flag: an executor checked `need_resched()` (or called
/// `cond_resched()`), or its run started or ended (the workqueue calls
/// `cond_resched()` between work items).
pub(crate) const CHECKPOINT: u8 = 1 << 2;

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

impl KernelConfig {
    fn describe(self) -> &'static str {
        match self {
            KernelConfig::Default => "default config (PREEMPT_COUNT, not PREEMPT_RT)",
            KernelConfig::PreemptRt => "PREEMPT_RT",
            KernelConfig::NoPreemptCount => "!PREEMPT_COUNT",
        }
    }
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
    fn may_sleep(self) -> bool {
        self == Context::Task
    }

    fn describe(self) -> &'static str {
        match self {
            Context::HardIrq => "hard IRQ",
            Context::RawSpinlock => "task context under raw_spin_lock()",
            Context::Task => "task context",
        }
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
    pub(crate) kconfig: KernelConfig,
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

/// A sequence of bios, oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BioList {
    ids: [u8; BIOS_MAX],
    len: u8,
}

impl BioList {
    fn push(&mut self, bio: u8) {
        assert!(
            (self.len as usize) < BIOS_MAX,
            "a bio is on one list at a time"
        );
        self.ids[self.len as usize] = bio;
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let bio = self.ids[0];
        self.ids.copy_within(1..self.len as usize, 0);
        self.len -= 1;
        self.ids[self.len as usize] = 0;
        Some(bio)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        self.ids[..self.len as usize].iter().copied()
    }

    fn contains(&self, bio: u8) -> bool {
        self.iter().any(|b| b == bio)
    }

    /// "A, B", or "(empty)".
    fn names(&self) -> String {
        if self.is_empty() {
            return "(empty)".to_owned();
        }
        names(self.iter())
    }
}

/// "A", "B", ... for bio numbers.
pub(crate) fn bio_name(bio: u8) -> char {
    char::from(b'A' + bio)
}

/// "A, B, C".
pub(crate) fn names(bios: impl Iterator<Item = u8>) -> String {
    let mut out = String::new();
    for b in bios {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push(bio_name(b));
    }
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct BioState {
    pub(crate) in_flight: bool,
    flagged: bool,
    deferred_before: bool,
    pub(crate) runs: u8,
}

/// Where an executor is in `bio_complete_work_fn()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum Pc {
    /// Not running the work.
    #[default]
    Idle,
    /// Between `list = batch->list` and `bio_list_init(&batch->list)`, the
    /// lock held.
    Splicing,
    /// Running the handlers of its batch.
    Handlers,
    /// After a handler, before `cond_resched()`.
    CondResched,
    /// The batch done, before the `need_resched()` check.
    AfterBatch,
}

/// A kworker or the rescuer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Exec {
    pc: Pc,
    /// The CPU it runs on.
    cpu: u8,
    /// Whose work item it runs.
    work: u8,
    batch: BioList,
    /// Handlers run since the last check, saturating.
    pub(crate) since_check: u8,
}

/// An executor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Who {
    Worker(u8),
    Rescuer,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum Pending {
    #[default]
    No,
    /// The delay timer is armed.
    Timer,
    /// On the pool's worklist.
    Queued,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Cpu {
    pub(crate) list: BioList,
    pending: Pending,
    disabled: bool,
    running: Option<Who>,
    worker: Exec,
}

/// The hotplug target's phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
enum Phase {
    #[default]
    Up,
    /// down_prep disabled the work and waits for the running instance.
    DownPrepWaiting,
    /// down_prep done; the CPU is still active.
    DownPrepped,
    /// The online callback enabled the work and has yet to check the list.
    OnlineEnabled,
    /// The CPU is offline; the dead callback has not run.
    Offline,
    /// The dead callback drained the list.
    Dead,
}

/// A state of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct State {
    pub(crate) bios: [BioState; BIOS_MAX],
    pub(crate) cpus: [Cpu; CPUS_MAX],
    rescuer: Exec,
    phase: Phase,
    /// The safety property the step into this state broke.
    pub(crate) fault: Option<Property>,
}

impl State {
    fn exec(&self, who: Who) -> &Exec {
        match who {
            Who::Worker(c) => &self.cpus[c as usize].worker,
            Who::Rescuer => &self.rescuer,
        }
    }

    fn exec_mut(&mut self, who: Who) -> &mut Exec {
        match who {
            Who::Worker(c) => &mut self.cpus[c as usize].worker,
            Who::Rescuer => &mut self.rescuer,
        }
    }

    /// Every executor's state.
    pub(crate) fn execs(&self) -> impl Iterator<Item = &Exec> {
        self.cpus.iter().map(|c| &c.worker).chain([&self.rescuer])
    }

    /// Whether `bio` is on a list or in an executor's batch.
    pub(crate) fn queued(&self, bio: u8) -> bool {
        self.cpus.iter().any(|c| c.list.contains(bio))
            || self.execs().any(|e| e.batch.contains(bio))
    }
}

/// A step is not enabled: it would block (on a held lock).
struct Blocked;

/// A completion context: what runs, on which CPU, as which executor.
#[derive(Clone, Copy)]
struct Ctx {
    kind: Context,
    cpu: u8,
    who: Option<Who>,
}

/// A transition being built.
struct Tx {
    s: State,
    flags: u8,
    text: Option<String>,
}

impl Tx {
    fn new(s: &State, narrate: bool) -> Tx {
        Tx {
            s: s.clone(),
            flags: 0,
            text: narrate.then(String::new),
        }
    }

    /// Appends to the narration (only computed when narrating).
    fn say(&mut self, part: impl FnOnce() -> String) {
        if let Some(text) = &mut self.text {
            text.push_str(&part());
        }
    }

    fn fault(&mut self, property: Property, part: impl FnOnce() -> String) {
        self.s.fault = Some(property);
        self.say(part);
    }

    fn push(self, out: &mut Vec<Transition<State>>) {
        out.push(Transition {
            target: self.s,
            flags: self.flags,
            text: self.text.unwrap_or_default(),
        });
    }
}

/// `mod_delayed_work_on()`'s delay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Delay {
    Jiffy,
    Now,
}

impl Scenario {
    /// The cap on an executor's count of handlers since its last check: one
    /// more than any batch can hold.
    pub(crate) fn since_check_cap(&self) -> u8 {
        u8::try_from(self.bios.len() + 1).unwrap_or(u8::MAX)
    }

    fn cpu_ids(&self) -> impl Iterator<Item = u8> {
        (0..self.cpus).map(|c| u8::try_from(c).expect("CPUS_MAX is small"))
    }

    fn bio_ids(&self) -> impl Iterator<Item = u8> {
        (0..self.bios.len()).map(|b| u8::try_from(b).expect("BIOS_MAX is small"))
    }

    fn spec(&self, bio: u8) -> BioSpec {
        self.bios[bio as usize]
    }

    /// `bio_in_atomic()` in `kind`.
    fn in_atomic(&self, kind: Context) -> bool {
        self.kconfig == KernelConfig::NoPreemptCount || kind != Context::Task
    }

    /// Whether the executors' protection turns interrupts off on their CPU.
    fn masks_irqs(&self) -> bool {
        match self.code.protection {
            Protection::LocalLock => self.kconfig != KernelConfig::PreemptRt,
            Protection::LocalIrqSave => true,
            Protection::Llist => false,
        }
    }

    fn executors(&self) -> impl Iterator<Item = Who> {
        let workers = if self.pool_workers { self.cpus } else { 0 };
        (0..workers)
            .map(|c| Who::Worker(u8::try_from(c).expect("small")))
            .chain(self.rescuer.map(|_| Who::Rescuer))
    }

    /// The executor that has interrupts off on `cpu`, if any.
    fn irqs_off(&self, s: &State, cpu: u8) -> Option<Who> {
        if !self.masks_irqs() {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.cpu == cpu
        })
    }

    /// The executor holding `cpu`'s local lock on `PREEMPT_RT`, if any.
    fn rt_lock_holder(&self, s: &State, cpu: u8) -> Option<Who> {
        if self.code.protection != Protection::LocalLock || self.kconfig != KernelConfig::PreemptRt
        {
            return None;
        }
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.cpu == cpu
        })
    }

    /// The executor between taking `list`'s content and re-initialising it.
    fn splicer(&self, s: &State, list: u8) -> Option<Who> {
        self.executors().find(|&w| {
            let e = s.exec(w);
            e.pc == Pc::Splicing && e.work == list
        })
    }

    /// Whether a context other than `me` may run on `cpu` now.
    fn can_run(&self, s: &State, cpu: u8, me: Option<Who>) -> bool {
        match self.irqs_off(s, cpu) {
            None => true,
            Some(w) => Some(w) == me,
        }
    }

    /// Whether `cpu` is up (interrupts and tasks can run on it).
    fn active(&self, s: &State, cpu: u8) -> bool {
        match self.hotplug {
            Some(h) if h.cpu == cpu => !matches!(s.phase, Phase::Offline | Phase::Dead),
            _ => true,
        }
    }

    fn label(&self, s: &State, who: Who) -> String {
        match who {
            Who::Worker(c) => format!("cpu{c} kworker"),
            Who::Rescuer => format!("rescuer on cpu{}", s.rescuer.cpu),
        }
    }

    fn ctx_label(kind: Context, cpu: u8) -> String {
        match kind {
            Context::HardIrq => format!("cpu{cpu} irq"),
            Context::RawSpinlock => format!("cpu{cpu} task under raw_spin_lock()"),
            Context::Task => format!("cpu{cpu} task"),
        }
    }

    fn queue_call(&self, cpu: u8, delay: Delay) -> String {
        match (self.code.delayed, delay) {
            (true, Delay::Jiffy) => format!("mod_delayed_work_on(cpu{cpu}, 1 jiffy)"),
            (true, Delay::Now) => format!("mod_delayed_work_on(cpu{cpu}, 0)"),
            (false, _) => format!("queue_work_on(cpu{cpu})"),
        }
    }

    fn producer_lock(&self) -> &'static str {
        match self.code.protection {
            Protection::LocalLock => "local_lock_irqsave()",
            Protection::LocalIrqSave => "local_irq_save()",
            Protection::Llist => "llist_add()",
        }
    }

    fn worker_lock(&self) -> &'static str {
        match self.code.protection {
            Protection::LocalLock => "local_lock_irq()",
            Protection::LocalIrqSave => "local_irq_disable()",
            Protection::Llist => "llist_del_all()",
        }
    }

    fn enable_call(&self) -> &'static str {
        if self.code.delayed {
            "enable_delayed_work()"
        } else {
            "enable_work()"
        }
    }

    fn disable_call(&self) -> &'static str {
        if self.code.delayed {
            "disable_delayed_work_sync()"
        } else {
            "disable_work_sync()"
        }
    }

    /// Queues `cpu`'s work (`mod_delayed_work_on()` or `queue_work_on()`).
    fn queue(&self, tx: &mut Tx, cpu: u8, delay: Delay) {
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
    fn defer(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
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
    fn run_handler(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
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
    fn complete(&self, tx: &mut Tx, bio: u8, ctx: Ctx) -> Result<(), Blocked> {
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

    /// The executor's run ends.
    fn finish_run(tx: &mut Tx, who: Who) {
        tx.flags |= CHECKPOINT;
        let work = tx.s.exec(who).work;
        tx.s.cpus[work as usize].running = None;
        *tx.s.exec_mut(who) = idle(who);
    }

    /// After taking the list: run its bios, or return if it was empty.
    fn after_take(tx: &mut Tx, who: Who) {
        if tx.s.exec(who).batch.is_empty() {
            tx.say(|| ", returns".to_owned());
            Self::finish_run(tx, who);
        } else {
            tx.s.exec_mut(who).pc = Pc::Handlers;
        }
    }

    /// The top of the loop in `bio_complete_work_fn()`: take the list.
    fn take_list(&self, tx: &mut Tx, who: Who) -> Result<(), Blocked> {
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

    /// Transitions of the completion contexts: `bio_endio()` of an
    /// in-flight bio.
    fn completions(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
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
    fn timers(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
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

    /// The executors' steps.
    fn exec_steps(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
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
    fn after_batch(&self, s: &State, who: Who, narrate: bool, out: &mut Vec<Transition<State>>) {
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
    fn starts(&self, s: &State, who: Who, narrate: bool, out: &mut Vec<Transition<State>>) {
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

    /// The hotplug target's steps.
    fn hotplug_steps(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
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

    /// Bios whose handler ran are submitted again.
    fn resubmits(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
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

    /// Whether nothing is left to happen but new submissions and new hotplug
    /// operations: every bio completed by the device, every executor idle,
    /// no work pending or running, the hotplug target up or dead.
    pub(crate) fn quiescent(&self, s: &State) -> bool {
        s.fault.is_none()
            && s.bios[..self.bios.len()].iter().all(|b| !b.in_flight)
            && s.execs().all(|e| e.pc == Pc::Idle)
            && s.cpus
                .iter()
                .all(|c| c.pending == Pending::No && c.running.is_none())
            && matches!(s.phase, Phase::Up | Phase::Dead)
    }

    /// The bios with a handler that has not run exactly once.
    pub(crate) fn unhandled(&self, s: &State) -> Vec<u8> {
        self.bio_ids()
            .filter(|&b| self.spec(b).handler && s.bios[b as usize].runs != 1)
            .collect()
    }

    /// A description of the model, for the report.
    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "{}; {} CPU{}; ",
            self.kconfig.describe(),
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

/// An idle executor, normalised so that idle states compare equal.
fn idle(who: Who) -> Exec {
    match who {
        Who::Worker(c) => Exec {
            cpu: c,
            work: c,
            ..Exec::default()
        },
        Who::Rescuer => Exec::default(),
    }
}

impl System for Scenario {
    type State = State;

    fn initial(&self) -> State {
        let mut s = State {
            bios: [BioState::default(); BIOS_MAX],
            cpus: [Cpu::default(); CPUS_MAX],
            rescuer: idle(Who::Rescuer),
            phase: Phase::Up,
            fault: None,
        };
        for (b, spec) in self.bios.iter().enumerate() {
            s.bios[b] = BioState {
                in_flight: true,
                flagged: spec.flagged,
                deferred_before: false,
                runs: 0,
            };
        }
        for c in self.cpu_ids() {
            s.cpus[c as usize].worker = idle(Who::Worker(c));
        }
        s
    }

    fn successors(&self, s: &State, narrate: bool, out: &mut Vec<Transition<State>>) {
        if s.fault.is_some() {
            return;
        }
        // The order only decides which of several shortest counterexamples
        // is shown: hotplug first, then completions, timers, executors.
        self.hotplug_steps(s, narrate, out);
        self.completions(s, narrate, out);
        self.timers(s, narrate, out);
        self.exec_steps(s, narrate, out);
        self.resubmits(s, narrate, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use crate::design::Design;
    use crate::question::Question;

    /// Follows the transitions whose text starts with each of `steps`, from
    /// the initial state.
    fn walk(scenario: &Scenario, steps: &[&str]) -> State {
        let mut s = scenario.initial();
        for step in steps {
            let mut out = Vec::new();
            scenario.successors(&s, true, &mut out);
            let texts: Vec<&str> = out.iter().map(|t| t.text.as_str()).collect();
            let next = out.iter().position(|t| t.text.starts_with(step));
            let next = next.unwrap_or_else(|| panic!("no step {step:?} among {texts:#?}"));
            s = out.swap_remove(next).target;
        }
        s
    }

    fn scenario(question: Question, design: Design, config: &Config) -> Scenario {
        question.cases(design, config).remove(0).scenario
    }

    /// Q4, wider than the review: a bio deferred *before* down_prep is
    /// stranded too, because disable_delayed_work_sync() cancels the pending
    /// work and the rollback does not queue it again.
    #[test]
    fn v6_strands_a_bio_deferred_before_down_prep() {
        let config = Config {
            bios: Some(1),
            ..Config::default()
        };
        let v6 = scenario(Question::Q4, Design::V6, &config);
        let s = walk(
            &v6,
            &["cpu1 irq: bio A", "cpu1 down_prep", "rollback: cpu1 online"],
        );
        assert!(v6.quiescent(&s));
        assert!(!s.cpus[1].list.is_empty());

        let fixed = scenario(Question::Q4, Design::V6Fixed, &config);
        let s = walk(
            &fixed,
            &[
                "cpu1 irq: bio A",
                "cpu1 down_prep",
                "rollback: cpu1 online",
                "cpu1 online: list not empty",
            ],
        );
        assert!(!fixed.quiescent(&s), "the requeued work is pending");
    }

    /// down_prep waits for a running work: the hotplug step that ends the
    /// wait is not enabled while the work runs.
    #[test]
    fn disable_sync_waits_for_the_running_work() {
        let v6 = scenario(Question::Q4, Design::V6, &Config::default());
        let s = walk(
            &v6,
            &[
                "cpu1 irq: bio A",
                "cpu1: the 1-jiffy timer",
                "cpu1 kworker",
                "cpu1 down_prep",
            ],
        );
        let mut out = Vec::new();
        v6.successors(&s, true, &mut out);
        assert!(
            out.iter().all(|t| !t.text.contains("returns")),
            "{:#?}",
            out.iter().map(|t| &t.text).collect::<Vec<_>>()
        );
        let s = walk(
            &v6,
            &[
                "cpu1 irq: bio A",
                "cpu1: the 1-jiffy timer",
                "cpu1 kworker",
                "cpu1 down_prep",
                "cpu1 kworker: runs bio A",
                "cpu1 kworker: need_resched() true",
            ],
        );
        let mut out = Vec::new();
        v6.successors(&s, true, &mut out);
        assert!(out.iter().any(|t| {
            t.text
                .starts_with("cpu1 down_prep: the running instance returned")
        }));
    }

    /// Queueing a disabled work fails; enabling it does not queue it.
    #[test]
    fn disabled_work_is_not_queued_and_enable_does_not_queue() {
        let v6 = scenario(Question::Q4, Design::V6, &Config::default());
        let s = walk(&v6, &["cpu1 down_prep", "cpu1 irq: bio A"]);
        assert_eq!(s.cpus[1].pending, Pending::No);
        let s = walk(&v6, &["cpu1 down_prep", "cpu1 irq: bio A", "rollback"]);
        assert_eq!(s.cpus[1].pending, Pending::No);
        assert!(!s.cpus[1].disabled);
    }

    /// With the rescuer on the pool's CPU, an interrupt cannot fire on that
    /// CPU while the rescuer holds local_lock_irq(): no completion step is
    /// enabled mid-splice.
    #[test]
    fn pool_cpu_rescuer_masks_the_lists_interrupts() {
        let v6 = scenario(Question::Q5, Design::V6, &Config::default());
        let s = walk(
            &v6,
            &[
                "cpu0 irq: bio A",
                "cpu0: the 1-jiffy timer",
                "rescuer on cpu0",
            ],
        );
        let mut out = Vec::new();
        v6.successors(&s, true, &mut out);
        assert!(
            out.iter().all(|t| !t.text.starts_with("cpu0 irq")),
            "{:#?}",
            out.iter().map(|t| &t.text).collect::<Vec<_>>()
        );
    }
}
