//! The one copy of the protocol: what happens on defer, drain, requeue,
//! online, down_prep, dead and rescue (the steps are numbered and argued in
//! the docs of `task/mod.rs`). The workers, the watchdog, the hotplug
//! watcher, the public API and the shuttle/loom tests all drive these
//! functions; none re-implements them.
//!
//! This file starts no thread: `cpu_online` and `rescue_stalled` are handed
//! the function that starts a worker or a rescuer (`worker.rs` has them), and
//! the statistics are read and summed in `stats.rs`.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::drive::DriveSlot;
use super::error::HotplugError;
use super::policy::{Batching, Budget, PanicPolicy};
use super::queue::{BioList, Pushed, Queue};
use super::stats::{
    self, CpuStats, DrainCounters, LifecycleCounters, ProducerCounters, Stats, StatsSnapshot,
};
use crate::bio::Bio;
use crate::context::{self, ContextPolicy};
use crate::sync::{
    AtomicBool, AtomicU64, Condvar, FastClock, Mutex, MutexGuard, Ordering, current_cpu, thread,
};

/// State shared by the handle, the workers, the watchdog, the watcher and
/// the producers.
pub(crate) struct Shared {
    /// Indexed by CPU number, sized from the possible CPUs.
    pub(crate) cpus: Box<[PerCpu]>,
    pub(crate) config: Config,
    pub(crate) shutdown: AtomicBool,
    /// Serialises lifecycle operations (the kernel's `cpu_hotplug_lock`).
    lifecycle: Mutex<()>,
    /// Every thread endio started (workers, rescuers, watchdog, watcher);
    /// joined on shutdown (see `worker.rs`).
    pub(crate) threads: Mutex<Vec<thread::JoinHandle<()>>>,
    /// The clock of run budgets and stall detection.
    pub(crate) clock: FastClock,
    /// The stall watchdog, once it runs.
    pub(crate) watchdog: OnceLock<thread::Thread>,
    /// The watchdog ticks fast (a driven lane is busy, or it was nudged).
    pub(crate) watchdog_fast: AtomicBool,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) batching: Batching,
    pub(crate) budget: Budget,
    pub(crate) context_policy: ContextPolicy,
    pub(crate) panic_policy: PanicPolicy,
    pub(crate) pin_workers: bool,
    pub(crate) stall_timeout: Option<Duration>,
    /// `CompleterBuilder::lane_rescue_after`.
    pub(crate) lane_rescue_after: Duration,
}

/// One CPU's batch, worker and counters.
pub(crate) struct PerCpu {
    /// The list and the producer counters share the line producers touch.
    pub(crate) hot: CachePadded<Hot>,
    /// Counters of whoever drains this CPU.
    pub(crate) drain_counters: CachePadded<DrainCounters>,
    /// The batch being run and the word that says who owns it.
    run: CachePadded<Run>,
    pub(crate) control: Mutex<Control>,
    /// Signalled when the drain token is released (for `down_prep`).
    pub(crate) drained: Condvar,
    /// The worker, set before `queue` is first opened (so a producer that
    /// sees the queue open always finds a thread to unpark).
    pub(crate) worker: OnceLock<thread::Thread>,
    /// The worker must pin itself to its CPU again (it came back online).
    pub(crate) repin: AtomicBool,
    /// `Control::state == Online`, for a drain to check at each handler
    /// boundary without the lock (written under it).
    online: AtomicBool,
    pub(crate) lifecycle_counters: LifecycleCounters,
    /// The engine lane the worker drives instead of parking (`drive.rs`).
    pub(crate) drive: DriveSlot,
}

pub(crate) struct Hot {
    pub(crate) queue: Queue,
    pub(crate) counters: ProducerCounters,
}

/// The lifecycle state of a CPU, as the kernel's per-CPU work item sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CpuState {
    /// Work enabled, queue open.
    Online,
    /// `down_prep` ran: work disabled (no drain starts, a running one stops
    /// at the next handler boundary), queue still open (producers on the CPU
    /// keep succeeding).
    DownPrepared,
    /// `dead` ran, or the CPU never had a worker: queue closed, pushes go to
    /// another CPU.
    Dead,
}

/// Who drains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The CPU's worker (only while Online).
    Worker,
    /// A rescue thread standing in for a stalled drainer (only while Online).
    Rescuer,
    /// `cpu_dead`, in the caller's thread (only while Dead).
    Dead,
    /// The final drain at shutdown (any state).
    Shutdown,
}

/// The phase of a CPU's drain, in the low bits of [`Run::word`]; the rest of
/// the word is a sequence number that a drain advances when it takes the
/// token and before each handler, so no two handlers share a word.
const PHASE_MASK: u64 = 0b11;
/// Nobody holds the drain token: the holder of the control lock owns the
/// batch.
const IDLE: u64 = 0;
/// The token holder is between handlers and owns the batch.
const BETWEEN: u64 = 1;
/// The token holder is inside a handler; the batch is left alone until the
/// handler returns, so the watchdog can take the token with one
/// compare-and-swap (and so the batch) from a stalled handler.
const IN_HANDLER: u64 = 2;

/// The batch of a CPU and the word that says who owns it.
///
/// A drain takes the token under the control lock, once per run; between
/// its handlers it touches only this: no lock per handler. Before a handler
/// it stores `IN_HANDLER`, after it moves the word back to `BETWEEN` with a
/// compare-and-swap; that fails only if the watchdog moved the word to `IDLE`
/// meanwhile (a revocation, under the control lock), and then the drainer
/// touches nothing more.
struct Run {
    /// `sequence << 2 | phase`.
    word: AtomicU64,
    /// When (in clock ticks) the handler of an `IN_HANDLER` word started.
    handler_since: AtomicU64,
    /// Bios taken from the queue and not yet run, in completion order.
    batch: UnsafeCell<BioList>,
}

// SAFETY: `batch` is touched by one thread at a time: the drain token's
// holder while the word is `BETWEEN`, the holder of the control lock while it
// is `IDLE`; the Release/Acquire pairs of the word and of the lock order each
// hand-over (see `Run`). The rest is atomics.
unsafe impl Sync for Run {}

impl Run {
    fn new() -> Run {
        Run {
            word: AtomicU64::new(IDLE),
            handler_since: AtomicU64::new(0),
            batch: UnsafeCell::new(BioList::new()),
        }
    }

    /// The batch.
    ///
    /// # Safety
    ///
    /// The caller owns it (see `Run`): it holds the drain token and the word
    /// is `BETWEEN`, or it holds the control lock and nobody holds the
    /// token. The reference must not outlive that ownership.
    #[allow(clippy::mut_from_ref)]
    unsafe fn batch(&self) -> &mut BioList {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.batch.get() }
    }
}

/// Lock-protected state of a CPU; only task-context threads take the lock.
#[derive(Debug)]
pub(crate) struct Control {
    /// Bios of a dead CPU's closed queue, for the next drain to put behind
    /// its batch (a drain may hold the batch when the queue closes).
    pending: BioList,
    pub(crate) state: CpuState,
    /// The drain token: at most one thread runs this CPU's handlers. The
    /// role of its holder.
    drainer: Option<Role>,
    /// Threads waiting on `drained` for the token to be released
    /// (`down_prep`); a release signals the condvar only when there are
    /// some (a condvar notify is a system call even with nobody waiting).
    sync_waiters: u32,
}

/// Where a drain calls its boundary function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boundary {
    /// The batch is empty; the queue is taken next.
    Refill,
    /// A handler just returned.
    Between,
}

/// How a drain run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunEnd {
    /// The queue was found empty.
    Empty,
    /// The budget was spent with bios left.
    BudgetSpent,
    /// Another thread holds the drain token.
    Busy,
    /// The CPU's work is disabled (down_prep) or the role may not drain now.
    Disabled,
    /// The drainer stalled inside a handler and its token was given away;
    /// it touched nothing after the handler returned.
    Revoked,
}

impl PerCpu {
    /// Wakes the worker, parked on its thread or sleeping in the lane it
    /// drives. Never blocks (allowed in atomic context).
    pub(crate) fn wake_worker(&self) {
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
        self.drive.ring();
    }

    /// Whether the CPU's work is enabled (lock-free read).
    pub(crate) fn is_online(&self) -> bool {
        // Acquire: pairs with the Release store under the lock.
        self.online.load(Ordering::Acquire)
    }

    fn new() -> PerCpu {
        PerCpu {
            hot: CachePadded::new(Hot {
                // Opened once the CPU has a worker.
                queue: Queue::new_closed(),
                counters: ProducerCounters::default(),
            }),
            drain_counters: CachePadded::new(DrainCounters::default()),
            run: CachePadded::new(Run::new()),
            control: Mutex::new(Control {
                pending: BioList::new(),
                state: CpuState::Dead,
                drainer: None,
                sync_waiters: 0,
            }),
            online: AtomicBool::new(false),
            drained: Condvar::new(),
            worker: OnceLock::new(),
            repin: AtomicBool::new(false),
            lifecycle_counters: LifecycleCounters::default(),
            drive: DriveSlot::default(),
        }
    }
}

impl Shared {
    pub(crate) fn new(possible_max: usize, config: Config) -> Shared {
        Shared {
            cpus: (0..=possible_max).map(|_| PerCpu::new()).collect(),
            config,
            shutdown: AtomicBool::new(false),
            lifecycle: Mutex::new(()),
            threads: Mutex::new(Vec::new()),
            clock: FastClock::new(),
            watchdog: OnceLock::new(),
            watchdog_fast: AtomicBool::new(false),
        }
    }

    /// Index of `cpu` in the per-CPU array (a CPU number beyond the possible
    /// ones, which the kernel never reports, folds into range).
    pub(crate) fn cpu_index(&self, cpu: usize) -> usize {
        if cpu < self.cpus.len() {
            cpu
        } else {
            cpu % self.cpus.len()
        }
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        // Acquire: pairs with the Release store in `Handle::drop`.
        self.shutdown.load(Ordering::Acquire)
    }

    /// Steps 1-3 of the protocol: pushes `bio` onto the batch of the calling
    /// thread's CPU (or, if that one is closed, the next open one) and wakes
    /// its worker on the empty→non-empty transition. Returns the CPU that
    /// took it.
    pub(crate) fn defer(&self, mut bio: Bio) -> usize {
        bio.mark_deferred();
        let first = self.cpu_index(current_cpu());
        let mut cpu = first;
        loop {
            let per_cpu = &self.cpus[cpu];
            // Counted before the push so that a snapshot never shows a
            // handler without its deferral (see stats.rs).
            stats::add_shared(&per_cpu.hot.counters.deferred, 1);
            match per_cpu.hot.queue.push(bio) {
                Pushed::WasEmpty => {
                    // The worker pushing onto its own queue (it reaps the
                    // lane it drives, or a handler defers) is awake and
                    // drains before it parks: nothing to wake.
                    if !context::is_worker_of(cpu) {
                        per_cpu.wake_worker();
                    }
                    return cpu;
                }
                Pushed::NotEmpty => return cpu,
                Pushed::Closed(back) => {
                    per_cpu
                        .hot
                        .counters
                        .deferred
                        .fetch_sub(1, Ordering::Relaxed);
                    stats::add_shared(&self.cpus[first].lifecycle_counters.redirected, 1);
                    bio = back;
                    cpu = (cpu + 1) % self.cpus.len();
                    assert!(
                        cpu != first,
                        "endio: every CPU's batch is closed; the lifecycle keeps one CPU online"
                    );
                }
            }
        }
    }

    /// Runs one handler, containing a panic according to the policy.
    pub(crate) fn run_contained(&self, bio: Bio, cpu: usize) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| bio.run_handler()));
        if let Err(payload) = outcome {
            stats::add_shared(&self.cpus[cpu].drain_counters.panics, 1);
            let message = panic_message(payload.as_ref());
            match self.config.panic_policy {
                PanicPolicy::Contain => tracing::error!(
                    cpu,
                    message,
                    "a bio handler panicked; the panic is contained and the other handlers run"
                ),
                PanicPolicy::Abort => {
                    tracing::error!(
                        cpu,
                        message,
                        "a bio handler panicked; aborting (PanicPolicy::Abort)"
                    );
                    std::process::abort();
                }
            }
        }
    }

    pub(crate) fn lock_control(&self, cpu: usize) -> MutexGuard<'_, Control> {
        self.cpus[cpu].control.lock()
    }

    /// Step 6: one drain run of `cpu`'s batch in the calling thread as
    /// `role`, under `budget` (`None`: until empty). Counts what it does.
    ///
    /// The control lock is taken twice per run (the token is taken and
    /// given back), not per handler: between handlers the drainer owns the
    /// batch through the run word (see `Run`).
    pub(crate) fn drain(&self, cpu: usize, role: Role, budget: Option<Budget>) -> (RunEnd, u64) {
        self.drain_with(cpu, role, budget, &mut |_| {})
    }

    /// [`drain`](Self::drain), calling `boundary` outside any handler:
    /// before each take of the queue and after each handler (a worker
    /// issues there what its handlers submitted, and reaps its lane).
    pub(crate) fn drain_with(
        &self,
        cpu: usize,
        role: Role,
        budget: Option<Budget>,
        boundary: &mut dyn FnMut(Boundary),
    ) -> (RunEnd, u64) {
        let per_cpu = &self.cpus[cpu];
        let counters = &*per_cpu.drain_counters;
        let run = &*per_cpu.run;
        let mut control = self.lock_control(cpu);
        if !may_drain(role, control.state) {
            return (RunEnd::Disabled, 0);
        }
        if control.drainer.is_some() {
            return (RunEnd::Busy, 0);
        }
        control.drainer = Some(role);
        // Relaxed: the word changes only under the lock while it is IDLE.
        let mut seq = (run.word.load(Ordering::Relaxed) >> 2) + 1;
        run.word.store(seq << 2 | BETWEEN, Ordering::Relaxed);
        // Behind the batch: an interrupted run's rest is older than what the
        // queue held when it closed.
        let pending = std::mem::replace(&mut control.pending, BioList::new());
        // SAFETY: we hold the token and the word is BETWEEN.
        unsafe { run.batch() }.append(pending);
        drop(control);
        let clock = &self.clock;
        let time_max_ns = budget.map_or(u64::MAX, |b| nanos(b.time_max));
        let start = clock.ticks();
        let mut last = start;
        let mut ran: u64 = 0;
        let mut handler_ns_max: u64 = 0;
        let end = loop {
            // A down_prep stops a worker or rescuer at a handler boundary.
            if !self.may_drain_now(cpu, role) {
                break RunEnd::Disabled;
            }
            // SAFETY: we hold the token and the word is BETWEEN; the
            // reference ends before the word leaves BETWEEN.
            let mut batch = unsafe { run.batch() };
            if batch.is_empty() {
                boundary(Boundary::Refill);
                // SAFETY: as above; the boundary does not touch the batch.
                batch = unsafe { run.batch() };
                let taken = per_cpu.hot.queue.take_all();
                if taken.is_empty() {
                    break RunEnd::Empty;
                }
                stats::add_single_writer(&counters.batches, 1);
                stats::max_single_writer(&counters.batch_len_max, taken.len() as u64);
                *batch = taken;
            }
            if let Some(budget) = budget
                && (ran >= u64::from(budget.handlers_max)
                    || clock.nanos_between(start, last) >= time_max_ns)
            {
                break RunEnd::BudgetSpent;
            }
            let Some(bio) = batch.pop_front() else {
                continue;
            };
            #[cfg(all(test, shuttle, not(loom)))]
            if let Some(on_pop) = ON_POP.get() {
                on_pop(cpu, role);
            }
            seq += 1;
            let inside = seq << 2 | IN_HANDLER;
            run.handler_since.store(last, Ordering::Relaxed);
            // Release: the batch as we leave it, and the start time, reach
            // the watchdog that takes the token from this word.
            run.word.store(inside, Ordering::Release);
            context::with_draining_cpu(cpu, || self.run_contained(bio, cpu));
            // Acquire on failure: the revocation is seen before we return.
            if run
                .word
                .compare_exchange(
                    inside,
                    seq << 2 | BETWEEN,
                    Ordering::Acquire,
                    Ordering::Acquire,
                )
                .is_err()
            {
                // Revoked while in the handler: someone else drains now.
                self.count_handlers(cpu, role, ran + 1);
                return (RunEnd::Revoked, ran + 1);
            }
            let now = clock.ticks();
            handler_ns_max = handler_ns_max.max(clock.nanos_between(last, now));
            last = now;
            ran += 1;
            boundary(Boundary::Between);
        };
        // Still the token holder: the single-writer counters are ours.
        if end == RunEnd::BudgetSpent {
            stats::add_single_writer(&counters.requeues, 1);
        }
        // Runs under a budget only: `cpu_dead` and shutdown drain everything.
        if budget.is_some() {
            stats::max_single_writer(&counters.run_len_max, ran);
            stats::max_single_writer(&counters.run_ns_max, clock.nanos_between(start, last));
        }
        stats::max_single_writer(&counters.handler_ns_max, handler_ns_max);
        // Counted before the token goes, so that whoever sees the drain over
        // (down_prep, a test waiting for quiescence) sees its handlers too.
        self.count_handlers(cpu, role, ran);
        let mut control = self.lock_control(cpu);
        // The batch goes back to the lock's holders (the lock's release
        // publishes what we did to it).
        run.word.store(seq << 2 | IDLE, Ordering::Relaxed);
        control.drainer = None;
        let wake = control.sync_waiters > 0;
        drop(control);
        if wake {
            per_cpu.drained.notify_all();
        }
        (end, ran)
    }

    /// Whether `role` may go on draining `cpu` at a handler boundary,
    /// without the lock: only `down_prep` (`Online` → `DownPrepared`) can
    /// disable a running drain (a dead CPU's drain and the shutdown drain
    /// cannot be disabled while they run).
    fn may_drain_now(&self, cpu: usize, role: Role) -> bool {
        match role {
            // Acquire: pairs with the Release store under the lock.
            Role::Worker | Role::Rescuer => self.cpus[cpu].online.load(Ordering::Acquire),
            Role::Dead | Role::Shutdown => true,
        }
    }

    /// Sets the state of `cpu`, whose control lock `control` is.
    fn set_state(&self, cpu: usize, control: &mut Control, state: CpuState) {
        control.state = state;
        self.cpus[cpu]
            .online
            .store(state == CpuState::Online, Ordering::Release);
    }

    /// Whether `cpu`'s batch holds bios, under its control lock `control`
    /// (a running drain's batch counts as holding some).
    fn batch_held(&self, cpu: usize, control: &Control) -> bool {
        if !control.pending.is_empty() || control.drainer.is_some() {
            return true;
        }
        // SAFETY: we hold the control lock and nobody holds the token.
        !unsafe { self.cpus[cpu].run.batch() }.is_empty()
    }

    /// Counts `n` handlers run by one drain run, once per run (a run is at
    /// most one budget long).
    fn count_handlers(&self, cpu: usize, role: Role, n: u64) {
        if n == 0 {
            return;
        }
        let per_cpu = &self.cpus[cpu];
        // Any drainer may count, a revoked one included: an atomic add.
        // Release: see `stats::add_single_writer`.
        per_cpu
            .drain_counters
            .handlers
            .fetch_add(n, Ordering::Release);
        match role {
            Role::Rescuer => stats::add_shared(&per_cpu.lifecycle_counters.rescued, n),
            Role::Dead => stats::add_shared(&per_cpu.lifecycle_counters.drained, n),
            Role::Worker | Role::Shutdown => {}
        }
    }

    fn lock_lifecycle(&self) -> MutexGuard<'_, ()> {
        self.lifecycle.lock()
    }

    fn check_cpu(&self, cpu: usize) -> Result<(), HotplugError> {
        if cpu < self.cpus.len() {
            Ok(())
        } else {
            Err(HotplugError::NoSuchCpu {
                cpu,
                possible: self.cpus.len(),
            })
        }
    }

    /// Step 10, `cpu_online`: enables the CPU's work (first starting its
    /// worker with `start_worker` if it never had one) and unparks the
    /// worker, so that bios left in its batch or queue by a rolled-back
    /// offline, which no push would wake a worker for, are run (counted in
    /// `requeued_on_online`). `counted`: whether this is a hotplug event (the
    /// CPUs online at start are not).
    pub(crate) fn cpu_online(
        &self,
        cpu: usize,
        counted: bool,
        start_worker: impl FnOnce() -> io::Result<thread::Thread>,
    ) -> Result<(), HotplugError> {
        self.check_cpu(cpu)?;
        let _lifecycle = self.lock_lifecycle();
        let per_cpu = &self.cpus[cpu];
        if per_cpu.worker.get().is_none() {
            // Registered before the queue opens below: a producer that sees
            // the queue open always finds a thread to unpark.
            let worker = start_worker().map_err(|source| HotplugError::Spawn { cpu, source })?;
            let _ = per_cpu.worker.set(worker);
        }
        let counters = &per_cpu.lifecycle_counters;
        let mut control = self.lock_control(cpu);
        match control.state {
            CpuState::Online => return Ok(()),
            CpuState::DownPrepared => stats::add_shared(&counters.rollbacks, 1),
            CpuState::Dead => {
                per_cpu.hot.queue.open();
                if counted {
                    stats::add_shared(&counters.onlines, 1);
                    // The CPU was away: the kernel broke the worker's
                    // affinity and does not restore it. Release: the
                    // worker's Acquire swap sees the state change too.
                    per_cpu.repin.store(true, Ordering::Release);
                }
            }
        }
        self.set_state(cpu, &mut control, CpuState::Online);
        let pending = self.batch_held(cpu, &control) || !per_cpu.hot.queue.is_empty();
        drop(control);
        if pending {
            stats::add_shared(&counters.requeued_on_online, 1);
        }
        per_cpu.wake_worker();
        Ok(())
    }

    /// `cpu_down_prep`: disables the CPU's work and waits until no drain of
    /// it is in progress (`disable_delayed_work_sync`). Producers on the CPU
    /// keep succeeding; what they push waits for `cpu_dead` or `cpu_online`.
    pub(crate) fn cpu_down_prep(&self, cpu: usize) -> Result<(), HotplugError> {
        self.check_cpu(cpu)?;
        let _lifecycle = self.lock_lifecycle();
        let others_online = (0..self.cpus.len())
            .filter(|&c| c != cpu && self.lock_control(c).state == CpuState::Online)
            .count();
        let per_cpu = &self.cpus[cpu];
        let mut control = self.lock_control(cpu);
        if control.state != CpuState::Online {
            return Err(HotplugError::NotOnline { cpu });
        }
        if others_online == 0 {
            return Err(HotplugError::LastCpu { cpu });
        }
        self.set_state(cpu, &mut control, CpuState::DownPrepared);
        stats::add_shared(&per_cpu.lifecycle_counters.down_preps, 1);
        // A worker sleeping in the lane it drives hands the lane to its
        // reserve once it sees the work disabled.
        per_cpu.drive.ring();
        // A drain in progress stops at its next handler boundary; a stalled
        // one is revoked by the watchdog, which releases the token too.
        control.sync_waiters += 1;
        while control.drainer.is_some() {
            control = per_cpu.drained.wait(control);
        }
        control.sync_waiters -= 1;
        Ok(())
    }

    /// `cpu_dead`: closes the CPU's queue and runs everything it held in the
    /// calling thread (task context). Later pushes on that CPU go elsewhere.
    pub(crate) fn cpu_dead(&self, cpu: usize) -> Result<u64, HotplugError> {
        self.check_cpu(cpu)?;
        let _lifecycle = self.lock_lifecycle();
        let per_cpu = &self.cpus[cpu];
        {
            let mut control = self.lock_control(cpu);
            if control.state != CpuState::DownPrepared {
                return Err(HotplugError::NotDownPrepared { cpu });
            }
            let rest = per_cpu.hot.queue.close();
            control.pending.append(rest);
            self.set_state(cpu, &mut control, CpuState::Dead);
        }
        stats::add_shared(&per_cpu.lifecycle_counters.deads, 1);
        let mut total = 0;
        loop {
            // Busy only while a revoked rescue is being handed over; the
            // token is released within one handler.
            match self.drain(cpu, Role::Dead, None) {
                (RunEnd::Busy, _) => thread::yield_now(),
                (_, ran) => {
                    total += ran;
                    return Ok(total);
                }
            }
        }
    }

    /// The watchdog's check (the workqueue rescuer's trigger): every drainer
    /// that has been inside one handler for `stall_timeout` or longer loses
    /// its token, and if its CPU is online and has work left,
    /// `start_rescuer(cpu)` starts a rescue thread that drains it. Returns
    /// the number of rescues started.
    pub(crate) fn rescue_stalled(
        &self,
        now: u64,
        stall_timeout: Duration,
        mut start_rescuer: impl FnMut(usize) -> io::Result<()>,
    ) -> usize {
        let stall_ns = nanos(stall_timeout);
        let mut rescues = 0;
        for (cpu, per_cpu) in self.cpus.iter().enumerate() {
            let mut control = self.lock_control(cpu);
            let run = &*per_cpu.run;
            // Acquire: the start time stored before the word, and the batch
            // as the drainer left it, if the token is ours below.
            let word = run.word.load(Ordering::Acquire);
            if word & PHASE_MASK != IN_HANDLER {
                continue;
            }
            let since = run.handler_since.load(Ordering::Relaxed);
            if self.clock.nanos_between(since, now) < stall_ns {
                continue;
            }
            // The same word is the same handler (the sequence), still inside:
            // the token is ours unless it has just returned.
            if run
                .word
                .compare_exchange(
                    word,
                    (word & !PHASE_MASK) | IDLE,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            let role = control.drainer.take();
            tracing::debug!(
                cpu,
                ?role,
                ?stall_timeout,
                "a drainer is stalled inside a handler; rescuing its CPU"
            );
            // A revoked worker is no longer inside a handler as the run word
            // tells it (the lane rescue looks there): its lane goes to the
            // lane's reserve now, I/O or not.
            if role == Some(Role::Worker) {
                per_cpu.drive.rescue(true, || {
                    stats::add_shared(&per_cpu.lifecycle_counters.lane_rescues, 1);
                });
            }
            let work_left = self.batch_held(cpu, &control) || !per_cpu.hot.queue.is_empty();
            let online = control.state == CpuState::Online;
            let wake = control.sync_waiters > 0;
            drop(control);
            if wake {
                per_cpu.drained.notify_all();
            }
            if online && work_left {
                stats::add_shared(&per_cpu.lifecycle_counters.rescues, 1);
                if let Err(e) = start_rescuer(cpu) {
                    tracing::error!(cpu, error = %e, "cannot start an endio rescue thread; the stalled CPU's batch waits for its worker");
                }
                rescues += 1;
            }
        }
        rescues
    }

    /// The watchdog's check of driven lanes (`drive.rs`, step 3): a worker
    /// that has been inside one handler for `lane_rescue_after` or longer
    /// loses its lane to the lane's reserve, if the lane has I/O.
    /// Returns whether any driven lane is busy (the watchdog then ticks
    /// faster) and how many lanes it took.
    pub(crate) fn rescue_lanes(&self, now: u64) -> (bool, usize) {
        let after_ns = nanos(self.config.lane_rescue_after);
        let mut busy = false;
        let mut taken = 0;
        for per_cpu in self.cpus.iter() {
            if !per_cpu.drive.busy() {
                continue;
            }
            busy = true;
            let run = &*per_cpu.run;
            if run.word.load(Ordering::Acquire) & PHASE_MASK != IN_HANDLER {
                continue;
            }
            let since = run.handler_since.load(Ordering::Relaxed);
            if self.clock.nanos_between(since, now) >= after_ns
                && per_cpu.drive.rescue(false, || {
                    stats::add_shared(&per_cpu.lifecycle_counters.lane_rescues, 1);
                })
            {
                taken += 1;
            }
        }
        (busy, taken)
    }

    /// Tells the watchdog to tick fast from now on (`rescue_lanes`): a
    /// driven lane has I/O while its worker may be about to block. Costs a
    /// load when it already does; never blocks.
    pub(crate) fn nudge_watchdog(&self) {
        if !self.watchdog_fast.load(Ordering::Relaxed)
            && !self.watchdog_fast.swap(true, Ordering::Relaxed)
            && let Some(watchdog) = self.watchdog.get()
        {
            watchdog.unpark();
        }
    }

    /// The CPUs whose work is enabled.
    pub(crate) fn online_cpus(&self) -> Vec<usize> {
        (0..self.cpus.len())
            .filter(|&c| self.lock_control(c).state == CpuState::Online)
            .collect()
    }

    /// The counters of every CPU that has seen activity or has a worker,
    /// and their total.
    pub(crate) fn stats(&self) -> StatsSnapshot {
        let per_cpu = self
            .cpus
            .iter()
            .enumerate()
            .map(|(cpu, per_cpu)| CpuStats {
                cpu,
                stats: per_cpu.stats(),
            })
            .filter(|c| c.stats != Stats::default() || self.cpus[c.cpu].worker.get().is_some())
            .collect();
        StatsSnapshot::from_per_cpu(per_cpu)
    }

    /// Tells every thread to stop (they check between steps).
    pub(crate) fn stop(&self) {
        // Release: the threads' Acquire loads see everything before it.
        self.shutdown.store(true, Ordering::Release);
    }

    /// The final drain, once the threads are stopped: every CPU's batch and
    /// queue run in the calling thread, whatever its state.
    pub(crate) fn drain_all(&self) {
        let me = thread::current().id();
        for (cpu, per_cpu) in self.cpus.iter().enumerate() {
            while self.drain(cpu, Role::Shutdown, None).0 == RunEnd::Busy {
                if per_cpu.worker.get().map(|t| t.id()) == Some(me) {
                    break;
                }
                thread::yield_now();
            }
        }
    }
}

impl PerCpu {
    /// This CPU's counters.
    fn stats(&self) -> Stats {
        Stats::read(
            &self.hot.counters,
            &self.drain_counters,
            &self.lifecycle_counters,
        )
    }
}

/// The test hook of the shuttle tests: called each time a drain takes a bio
/// off a CPU's batch, with the CPU and the drainer's role.
#[cfg(all(test, shuttle, not(loom)))]
pub(crate) static ON_POP: OnceLock<fn(usize, Role)> = OnceLock::new();

/// Whether `role` may drain a CPU in `state`.
fn may_drain(role: Role, state: CpuState) -> bool {
    match role {
        Role::Worker | Role::Rescuer => state == CpuState::Online,
        Role::Dead => state == CpuState::Dead,
        Role::Shutdown => true,
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(a panic payload that is not a string)"
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("cpus", &self.cpus.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
