//! Task-context completion: per-CPU batches drained by per-CPU workers.
//!
//! This is the mechanism of the kernel patch "block: add task-context bio
//! completion infrastructure", in userspace. [`Completer::endio`] is
//! `bio_endio()`: it runs a bio's handler inline, unless the bio is flagged
//! [`BioFlags::COMPLETE_IN_TASK`] and the calling thread is atomic (see
//! [`context`](crate::context)); then it puts the bio on the batch of the CPU
//! the caller runs on, and that CPU's worker thread (pinned to it) runs the
//! handler later, in task context. No I/O happens in this module.
//!
//! # The protocol
//!
//! Each CPU `c` has a lock-free list `queue[c]` (multi-producer push, take-all;
//! see `queue.rs`), a worker `W[c]`, and a small control block under a mutex
//! that only task-context threads ever take: the batch being run, and the
//! drain token.
//!
//! Producer (any thread, atomic or not; never blocks, never allocates):
//!
//! 1. P marks the bio deferred and pushes it onto `queue[c]` with one CAS.
//! 2. If the CAS replaced an empty head (the empty→non-empty transition), P
//!    unparks `W[c]`. Otherwise P does nothing more: the bios already there
//!    have woken `W[c]`, which has not yet taken them.
//! 3. If `queue[c]` is closed (no worker serves `c`), the bio is handed back
//!    and P tries the next CPU in turn; some queue is always open.
//!
//! Worker `W[c]`, a loop:
//!
//! 4. If `queue[c]` is empty, park; on wakeup go to 4.
//! 5. Ask the pacer how long to let the batch gather (0 for
//!    [`Batching::Immediate`], the fixed delay for [`Batching::Fixed`], a
//!    load-dependent delay for [`Batching::Adaptive`]) and sleep that long.
//! 6. Drain: take the drain token; repeatedly take *all* of `queue[c]`
//!    (reversed to completion order) into the control block and run the
//!    handlers one by one, the control lock released around each handler,
//!    until a take finds the queue empty (go to 4) or the run budget is spent.
//! 7. Budget spent (the `need_resched()` analog, review Q2): count a requeue,
//!    keep the untaken rest in the control block, `yield_now()` and go to 6
//!    without parking.
//!
//! # Why no wakeup is lost
//!
//! 1. Only a worker's take-all (or a close) empties `queue[c]`; call the last
//!    such write before `W[c]` parks in step 4 `N`. `W[c]` parks only after a
//!    read of `queue[c]` returned empty.
//! 2. Every push is a CAS on the head, so all pushes and takes of `queue[c]`
//!    are totally ordered. The first push after `N` in that order finds the
//!    head empty, so by step 2 it unparks `W[c]`.
//! 3. `park`/`unpark` keep a token: an unpark that comes before the park makes
//!    the park return at once; one that comes after wakes it. Either way `W[c]`
//!    runs step 4 again after that push, and finds the bio.
//! 4. A push before `N` in the order was taken by `N` (a take-all takes all),
//!    and runs in that drain.
//! 5. A run that stops on the budget does not park (step 7), so nothing it
//!    left behind waits for a wakeup.
//!
//! Hence every pushed bio is run by a drain that starts after it was pushed.
//! Each handler runs exactly once because a bio is owned by exactly one list
//! at a time (the queue, then one drain's batch) and running consumes it.
//!
//! # Ordering
//!
//! A take-all takes every bio pushed before it, and the list is reversed to
//! push order; the batch in the control block is run front to back and later
//! takes are appended behind it. So handlers of bios deferred on one CPU run in
//! the order they were deferred.

#[cfg(all(test, loom))]
mod loom_tests;
mod policy;
mod queue;
mod stats;

pub use policy::{Adaptive, Batching, Budget, PanicPolicy, ParseBatchingError, parse_duration};
pub use stats::{CpuStats, Stats, StatsSnapshot};

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::bio::{Bio, BioFlags, EndedBio};
use crate::context::{self, ContextPolicy};
use crate::sync::{Arc, AtomicBool, Instant, Mutex, MutexGuard, Ordering, current_cpu, thread};
use crate::sys;
use policy::Pacer;
use queue::{BioList, Pushed, Queue};
use stats::{DrainCounters, ProducerCounters};

/// What a completion did with the bio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The handler ran in the calling thread, before the call returned.
    Inline,
    /// The bio was put on this CPU's batch; its worker runs the handler.
    Deferred {
        /// The CPU whose batch took the bio.
        cpu: usize,
    },
}

/// Completes bios, deferring flagged completions from atomic context to
/// per-CPU workers. Cheap to clone; the workers stop when the last clone is
/// dropped, after running every handler still queued.
///
/// ```
/// use endio::{Bio, BioFlags, Completed, Completer, context};
/// use std::sync::mpsc;
///
/// let completer = Completer::builder().build()?;
/// let (tx, rx) = mpsc::channel();
/// let bio = Bio::nop(move |ended| tx.send(ended.was_deferred()).unwrap())
///     .with_flags(BioFlags::COMPLETE_IN_TASK);
/// let done = {
///     let _atomic = context::atomic(); // e.g. an io_uring reaper
///     completer.endio(bio)
/// };
/// assert!(matches!(done, Completed::Deferred { .. }));
/// assert!(rx.recv()?); // ran later, in a worker
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Completer {
    handle: Arc<Handle>,
}

/// Owns the workers; dropping it stops them.
struct Handle {
    shared: Arc<Shared>,
    workers: Mutex<Vec<thread::JoinHandle<()>>>,
}

/// State shared by the handle, the workers and the producers.
struct Shared {
    /// Indexed by CPU number, sized from the possible CPUs.
    cpus: Box<[PerCpu]>,
    /// The CPUs that have a worker.
    worker_cpus: Vec<usize>,
    config: Config,
    shutdown: AtomicBool,
}

#[derive(Debug, Clone)]
struct Config {
    batching: Batching,
    budget: Budget,
    context_policy: ContextPolicy,
    panic_policy: PanicPolicy,
    pin_workers: bool,
}

/// One CPU's batch, worker and counters.
struct PerCpu {
    /// The list and the producer counters share the line producers touch.
    hot: CachePadded<Hot>,
    /// Counters of whoever drains this CPU.
    drain_counters: CachePadded<DrainCounters>,
    control: Mutex<Control>,
    /// The worker, set before `queue` is opened (so a producer that sees the
    /// queue open always finds a thread to unpark).
    worker: OnceLock<thread::Thread>,
}

struct Hot {
    queue: Queue,
    counters: ProducerCounters,
}

/// Lock-protected state of a CPU; only task-context threads take the lock.
#[derive(Debug)]
struct Control {
    /// Bios taken from the queue and not yet run, in completion order.
    batch: BioList,
    /// A drain is running handlers of this CPU (the drain token).
    draining: bool,
}

/// How a drain run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// The queue was found empty.
    Empty,
    /// The budget was spent with bios left.
    BudgetSpent,
    /// Another thread holds the drain token.
    Busy,
}

impl Completer {
    /// A builder with the defaults: adaptive batching, 1024 handlers or 1 ms
    /// per run, tracked context, panics contained, workers pinned.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Completes `bio` (`bio_endio()`).
    ///
    /// If the bio is flagged [`BioFlags::COMPLETE_IN_TASK`] and the calling
    /// thread is atomic under the context policy, the bio goes onto the batch
    /// of the CPU the caller runs on and its handler runs later in that CPU's
    /// worker; this never blocks and never allocates. Otherwise the handler
    /// runs now, in the calling thread. A panicking handler is contained
    /// either way (see [`PanicPolicy`]).
    pub fn endio(&self, bio: Bio) -> Completed {
        let shared = &*self.handle.shared;
        if bio.flags().contains(BioFlags::COMPLETE_IN_TASK)
            && context::atomic_under(shared.config.context_policy)
        {
            Completed::Deferred {
                cpu: shared.defer(bio),
            }
        } else {
            let cpu = shared.cpu_index(current_cpu());
            stats::add_shared(&shared.cpus[cpu].hot.counters.inline, 1);
            shared.run_contained(bio, cpu);
            Completed::Inline
        }
    }

    /// From inside a handler: makes sure the rest of the completion, `rest`,
    /// runs in task context (`bio_complete_in_task()`).
    ///
    /// In atomic context the bio is deferred with `rest` as its handler and
    /// [`Completed::Deferred`] is returned; otherwise `rest` runs now and
    /// [`Completed::Inline`] is returned. A bio that has already been deferred
    /// once is never deferred again, whatever the context says (the fix of
    /// review Q6: under [`ContextPolicy::AlwaysAtomic`] a handler that always
    /// asks would otherwise be re-deferred forever).
    ///
    /// ```
    /// use endio::{Bio, Completer, context};
    ///
    /// let completer = Completer::builder().build()?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let punt = completer.clone();
    /// let bio = Bio::nop(move |ended| {
    ///     // Called in atomic context below: move the heavy part to a worker.
    ///     punt.complete_in_task(ended, move |ended| {
    ///         assert!(!context::in_atomic());
    ///         tx.send(ended.was_deferred()).unwrap();
    ///     });
    /// });
    /// {
    ///     let _atomic = context::atomic();
    ///     completer.endio(bio); // not flagged: the first handler runs inline
    /// }
    /// assert!(rx.recv()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn complete_in_task<F>(&self, ended: EndedBio, rest: F) -> Completed
    where
        F: FnOnce(EndedBio) + Send + 'static,
    {
        let shared = &*self.handle.shared;
        if ended.was_deferred() || !context::atomic_under(shared.config.context_policy) {
            rest(ended);
            return Completed::Inline;
        }
        let bio = ended
            .continue_with(rest)
            .with_flags(BioFlags::COMPLETE_IN_TASK);
        Completed::Deferred {
            cpu: shared.defer(bio),
        }
    }

    /// A snapshot of the counters, total and per CPU.
    pub fn stats(&self) -> StatsSnapshot {
        self.handle.shared.stats()
    }

    /// The CPUs that have a worker.
    pub fn worker_cpus(&self) -> &[usize] {
        &self.handle.shared.worker_cpus
    }

    /// The context policy in force.
    pub fn context_policy(&self) -> ContextPolicy {
        self.handle.shared.config.context_policy
    }

    /// The batching policy in force.
    pub fn batching(&self) -> Batching {
        self.handle.shared.config.batching
    }

    /// Waits until every deferred bio's handler has run, polling the
    /// counters; `false` if `timeout` passed first. Meant for tests, tools
    /// and orderly shutdown, not for the I/O path.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stats().total.queued() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

impl fmt::Debug for Completer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.handle.shared;
        f.debug_struct("Completer")
            .field("worker_cpus", &shared.worker_cpus)
            .field("config", &shared.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Index of `cpu` in the per-CPU array (a CPU number beyond the possible
    /// ones, which the kernel never reports, folds into range).
    fn cpu_index(&self, cpu: usize) -> usize {
        if cpu < self.cpus.len() {
            cpu
        } else {
            cpu % self.cpus.len()
        }
    }

    /// Steps 1-3 of the protocol: pushes `bio` onto the batch of the calling
    /// thread's CPU (or the next open one) and wakes its worker on the
    /// empty→non-empty transition. Returns the CPU that took it.
    fn defer(&self, mut bio: Bio) -> usize {
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
                    if let Some(worker) = per_cpu.worker.get() {
                        worker.unpark();
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
                    bio = back;
                    cpu = (cpu + 1) % self.cpus.len();
                    assert!(
                        cpu != first,
                        "endio: every CPU's batch is closed; a Completer always keeps one open"
                    );
                }
            }
        }
    }

    /// Runs one handler, containing a panic according to the policy.
    fn run_contained(&self, bio: Bio, cpu: usize) {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| bio.run_handler()));
        if let Err(payload) = outcome {
            stats::add_shared(&self.cpus[cpu].hot.counters.panics, 1);
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

    fn lock_control(&self, cpu: usize) -> MutexGuard<'_, Control> {
        // A poisoned lock can only come from a panic in endio's own code
        // between lock and unlock (handlers run unlocked); the state is
        // still consistent at every unlock point, so go on.
        self.cpus[cpu]
            .control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Step 6: one drain run of `cpu`'s batch in the calling thread, under
    /// `budget` (`None`: until empty). Counts everything it does.
    fn drain(&self, cpu: usize, budget: Option<Budget>) -> (RunEnd, u64) {
        let per_cpu = &self.cpus[cpu];
        let counters = &*per_cpu.drain_counters;
        let mut control = self.lock_control(cpu);
        if control.draining {
            return (RunEnd::Busy, 0);
        }
        control.draining = true;
        let start = Instant::now();
        let mut last = start;
        let mut ran: u64 = 0;
        let mut handler_ns_max: u64 = 0;
        let end = loop {
            if control.batch.is_empty() {
                let taken = per_cpu.hot.queue.take_all();
                if taken.is_empty() {
                    break RunEnd::Empty;
                }
                stats::add_single_writer(&counters.batches, 1);
                stats::max_single_writer(&counters.batch_len_max, taken.len() as u64);
                control.batch = taken;
            }
            if let Some(budget) = budget
                && (ran >= u64::from(budget.handlers_max)
                    || last.duration_since(start) >= budget.time_max)
            {
                break RunEnd::BudgetSpent;
            }
            let Some(bio) = control.batch.pop_front() else {
                continue;
            };
            drop(control);
            self.run_contained(bio, cpu);
            let now = Instant::now();
            handler_ns_max = handler_ns_max.max(nanos(now.duration_since(last)));
            last = now;
            ran += 1;
            stats::add_single_writer(&counters.handlers, 1);
            control = self.lock_control(cpu);
        };
        control.draining = false;
        drop(control);
        if end == RunEnd::BudgetSpent {
            stats::add_single_writer(&counters.requeues, 1);
        }
        stats::max_single_writer(&counters.run_len_max, ran);
        stats::max_single_writer(&counters.run_ns_max, nanos(last.duration_since(start)));
        stats::max_single_writer(&counters.handler_ns_max, handler_ns_max);
        (end, ran)
    }

    fn stats(&self) -> StatsSnapshot {
        let mut total = Stats::default();
        let mut per_cpu = Vec::new();
        for (cpu, pc) in self.cpus.iter().enumerate() {
            let s = stats::snapshot(&pc.hot.counters, &pc.drain_counters);
            if s != Stats::default() || self.worker_cpus.contains(&cpu) {
                per_cpu.push(CpuStats { cpu, stats: s });
            }
            total.accumulate(&s);
        }
        StatsSnapshot { total, per_cpu }
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

/// The worker of `cpu`: steps 4-7 of the protocol.
fn worker_main(shared: Arc<Shared>, cpu: usize) {
    context::become_task_worker();
    if shared.config.pin_workers
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        tracing::warn!(cpu, error = %e, "endio worker could not pin itself to its CPU; it runs unpinned");
    }
    // Short batching delays must not be stretched by the 50 µs default slack.
    let _ = sys::set_timer_slack_ns(1_000);
    let per_cpu = &shared.cpus[cpu];
    let mut pacer = Pacer::new(shared.config.batching);
    let mut requeued = false;
    // Acquire: pairs with the Release store in `Handle::drop`.
    while !shared.shutdown.load(Ordering::Acquire) {
        if !requeued {
            // Step 4.
            if per_cpu.hot.queue.is_empty() {
                thread::park();
                stats::add_single_writer(&per_cpu.drain_counters.wakeups, 1);
                continue;
            }
            // Step 5.
            let now = Instant::now();
            let delay = pacer.delay_at_wakeup(now);
            if !delay.is_zero() {
                sleep_until(&shared, now + delay);
            }
        }
        // Steps 6 and 7.
        let (end, ran) = shared.drain(cpu, Some(shared.config.budget));
        pacer.ran(ran);
        requeued = end == RunEnd::BudgetSpent;
        if requeued {
            thread::yield_now();
        }
    }
    // Shutdown: run what is left (the handle drains again after joining).
    shared.drain(cpu, None);
}

/// Sleeps until `deadline` or shutdown, whichever comes first.
fn sleep_until(shared: &Shared, deadline: Instant) {
    loop {
        let now = Instant::now();
        // Acquire: as in `worker_main`.
        if now >= deadline || shared.shutdown.load(Ordering::Acquire) {
            return;
        }
        thread::park_timeout(deadline - now);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Release: the workers' Acquire loads see everything before it.
        self.shared.shutdown.store(true, Ordering::Release);
        for &cpu in &self.shared.worker_cpus {
            if let Some(worker) = self.shared.cpus[cpu].worker.get() {
                worker.unpark();
            }
        }
        let me = thread::current().id();
        let workers = std::mem::take(
            &mut *self
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for worker in workers {
            // The last clone can be dropped by a handler on a worker; that
            // worker finishes its loop on its own.
            if worker.thread().id() != me {
                let _ = worker.join();
            }
        }
        // Whatever raced with the workers' last drains runs here.
        for (cpu, per_cpu) in self.shared.cpus.iter().enumerate() {
            while self.shared.drain(cpu, None).0 == RunEnd::Busy {
                // Busy with us inside one of its handlers: that worker runs
                // its own final drain once we return.
                if per_cpu.worker.get().map(|t| t.id()) == Some(me) {
                    break;
                }
                thread::yield_now();
            }
        }
    }
}

/// Builds a [`Completer`].
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
    sysfs_root: PathBuf,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            config: Config {
                batching: Batching::default(),
                budget: Budget::default(),
                context_policy: ContextPolicy::default(),
                panic_policy: PanicPolicy::default(),
                pin_workers: true,
            },
            sysfs_root: PathBuf::from("/sys"),
        }
    }
}

/// Why a [`Completer`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The CPU lists could not be read.
    #[error(
        "cannot learn the machine's CPUs from {root}: {source}; mount sysfs at /sys or point Builder::sysfs_root at a copy"
    )]
    Cpus {
        /// The sysfs root that was read.
        root: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A worker thread could not be started.
    #[error(
        "cannot start the endio worker for CPU {cpu}: {source}; raise the thread limit (ulimit -u) or free memory"
    )]
    Spawn {
        /// The CPU the worker was for.
        cpu: usize,
        /// What went wrong.
        source: io::Error,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Builder {
    /// The batching policy (default: [`Batching::Adaptive`]).
    pub fn batching(mut self, batching: Batching) -> Builder {
        self.config.batching = batching;
        self
    }

    /// The run budget of a worker (default: 1024 handlers or 1 ms).
    pub fn budget(mut self, budget: Budget) -> Builder {
        self.config.budget = budget;
        self
    }

    /// How atomic context is decided (default: [`ContextPolicy::Tracked`]).
    pub fn context_policy(mut self, policy: ContextPolicy) -> Builder {
        self.config.context_policy = policy;
        self
    }

    /// What a panicking handler does (default: [`PanicPolicy::Contain`]).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> Builder {
        self.config.panic_policy = policy;
        self
    }

    /// Whether workers pin themselves to their CPU (default: yes).
    pub fn pin_workers(mut self, pin: bool) -> Builder {
        self.config.pin_workers = pin;
        self
    }

    /// Where sysfs is mounted (default: `/sys`); the possible and online CPU
    /// lists are read below it.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> Builder {
        self.sysfs_root = root.into();
        self
    }

    /// Starts one worker per online CPU.
    pub fn build(self) -> Result<Completer, BuildError> {
        let Builder { config, sysfs_root } = self;
        if config.budget.handlers_max == 0 || config.budget.time_max.is_zero() {
            return Err(BuildError::Invalid(format!(
                "a run budget of {:?} lets a worker run nothing; give at least one handler and a non-zero time",
                config.budget
            )));
        }
        let cpus_err = |source| BuildError::Cpus {
            root: sysfs_root.clone(),
            source,
        };
        let possible = sys::read_cpu_list(&sysfs_root, "possible").map_err(cpus_err)?;
        let online = sys::read_cpu_list(&sysfs_root, "online").map_err(cpus_err)?;
        let (Some(&last), false) = (possible.last(), online.is_empty()) else {
            return Err(cpus_err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the possible or online CPU list is empty",
            )));
        };
        let worker_cpus: Vec<usize> = online.into_iter().filter(|&c| c <= last).collect();
        let cpus = (0..=last)
            .map(|_| PerCpu {
                hot: CachePadded::new(Hot {
                    // Opened once the CPU's worker is registered.
                    queue: Queue::new_closed(),
                    counters: ProducerCounters::default(),
                }),
                drain_counters: CachePadded::new(DrainCounters::default()),
                control: Mutex::new(Control {
                    batch: BioList::new(),
                    draining: false,
                }),
                worker: OnceLock::new(),
            })
            .collect();
        let shared = Arc::new(Shared {
            cpus,
            worker_cpus: worker_cpus.clone(),
            config,
            shutdown: AtomicBool::new(false),
        });
        let handle = Handle {
            shared: Arc::clone(&shared),
            workers: Mutex::new(Vec::new()),
        };
        for &cpu in &worker_cpus {
            let worker_shared = Arc::clone(&shared);
            let join = thread::Builder::new()
                .name(format!("endio-worker/{cpu}"))
                .spawn(move || worker_main(worker_shared, cpu))
                .map_err(|source| BuildError::Spawn { cpu, source })?;
            let per_cpu = &shared.cpus[cpu];
            let _ = per_cpu.worker.set(join.thread().clone());
            per_cpu.hot.queue.open();
            handle
                .workers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(join);
        }
        Ok(Completer {
            handle: Arc::new(handle),
        })
    }
}
