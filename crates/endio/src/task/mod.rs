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
//! see `queue.rs`), a worker `W[c]`, a small control block under a mutex
//! that only task-context threads ever take (the drain token and the CPU's
//! state), and the batch being run with a *run word* that says who owns it:
//! the token's holder between handlers, the watchdog once it has revoked a
//! stalled handler, the lock's holder while no one holds the token.
//!
//! Producer (any thread, atomic or not; never blocks, never allocates):
//!
//! 1. P marks the bio deferred and pushes it onto `queue[c]` with one
//!    compare-and-swap.
//! 2. If the compare-and-swap replaced an empty head (the empty→non-empty transition), P
//!    unparks `W[c]`, unless P is `W[c]` itself (it reaps the lane it
//!    drives, see `drive.rs`, or a handler of its own deferred a bio): a
//!    running worker drains before it parks. Otherwise P does nothing
//!    more: the bios already there have woken `W[c]`, which has not yet
//!    taken them.
//! 3. If `queue[c]` is closed (no worker serves `c`), the bio is handed back
//!    and P tries the next CPU in turn; some queue is always open.
//!
//! Worker `W[c]`, a loop:
//!
//! 4. If `queue[c]` is empty, park (or, with an engine lane to drive, sleep
//!    in it: see `drive.rs`); on wakeup go to 4.
//! 5. Ask the pacer how long to let the batch gather (0 for
//!    [`Batching::Immediate`], the fixed delay for [`Batching::Fixed`], a
//!    load-dependent delay for [`Batching::Adaptive`]) and sleep that long.
//! 6. Drain: take the drain token (under the control lock, once per run);
//!    repeatedly take *all* of `queue[c]` (reversed to completion order) into
//!    the batch and run the handlers one by one, until a take finds the queue
//!    empty (go to 4) or the run budget is spent. No lock is taken per
//!    handler: the run word is set to "inside a handler" before each one, and
//!    moved back with one compare-and-swap after it.
//! 7. Budget spent (the run budget, the `need_resched()` analog): count a
//!    requeue, keep the untaken rest in the batch, give the token back,
//!    `yield_now()` and go to 6 without parking.
//!
//! # Why no wakeup is lost
//!
//! 1. Only a worker's take-all (or a close) empties `queue[c]`; call the last
//!    such write before `W[c]` parks in step 4 `N`. `W[c]` parks only after a
//!    read of `queue[c]` returned empty.
//! 2. Every push is a compare-and-swap on the head, so all pushes and takes of `queue[c]`
//!    are totally ordered. The first push after `N` in that order finds the
//!    head empty, so by step 2 it unparks `W[c]`; if `W[c]` made that push
//!    itself, the push comes before `W[c]`'s read in step 4 (one thread),
//!    which then finds the bio.
//! 3. `park`/`unpark` keep a token: an unpark that comes before the park makes
//!    the park return at once; one that comes after wakes it. Either way `W[c]`
//!    runs step 4 again after that push, and finds the bio. A worker that
//!    sleeps in the engine lane it drives instead (`drive.rs`) sleeps only
//!    after it set the lane bell's flag, fenced and found `queue[c]` empty;
//!    the unpark rings that bell after the push and a fence, so one of the
//!    two sees the other (the `EventBell` handshake).
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
//! push order; the batch is run front to back and later takes are appended
//! behind it. So handlers of bios deferred on one CPU run in the order they
//! were deferred.

//! # CPU hotplug lifecycle
//!
//! Each CPU is `Online`, `DownPrepared` or `Dead`, driven by
//! [`Completer::cpu_online`], [`Completer::cpu_down_prep`] and
//! [`Completer::cpu_dead`] (the kernel's cpuhp callbacks), called by the
//! hotplug watcher on real CPU events of the machine or by the user.
//! Lifecycle calls are serialised (the kernel's `cpu_hotplug_lock`).
//!
//! 8. `down_prep(c)`: under `c`'s control lock, set `DownPrepared` (work
//!    disabled: no drain of `c` starts, a running one stops at its next
//!    handler boundary), then wait until no thread holds `c`'s drain token
//!    (`disable_delayed_work_sync`). The queue stays open: producers on `c`
//!    keep succeeding, and a push that finds it empty unparks the worker,
//!    which sees the work disabled and parks again. The last online CPU
//!    cannot be prepared for offline.
//! 9. `dead(c)`: under the lock, close the queue (one swap that also takes
//!    what it held), keep that in the control block for the next drain to
//!    put behind its batch, set `Dead`; then drain in the caller's thread.
//!    A push that finds the queue closed gets its bio back and pushes to the
//!    next CPU (step 3).
//! 10. `online(c)`: under the lock, reopen the queue if it was closed, set
//!     `Online`, note whether the batch or queue holds bios; then ask the
//!     worker to re-pin itself (the kernel does not re-pin a thread when its
//!     CPU returns) and unpark it. A rolled-back offline is 8 then 10 without
//!     9.
//!
//! Why nothing is stranded after a rolled-back offline: a bio is pushed
//! either to an open queue or, refused by a closed one, to another (step 3).
//! A bio in an open queue of an `Online` CPU is run by the no-lost-wakeup
//! argument above. A bio pushed while `c` is `DownPrepared` stays in the
//! queue; the state then changes only by 9, which takes and runs it, or by
//! 10, which unparks the worker *after* making the work enabled — this is the
//! requeue the v6 patch lacked: there, the push that found the list empty had
//! its `queue_work` refused (work disabled) and, after the rollback, later
//! pushes found the list non-empty and queued nothing. Here the unpark in 10
//! comes after every such push (they happened before 10 took the lock, or
//! they see the work enabled and unpark themselves), so the worker takes the
//! queue. A closed queue holds nothing: 9 closes and takes in one atomic
//! swap. Nothing runs twice: every path that runs a bio first takes it out of
//! the one list that owned it, under the lock, as the run word's owner or by
//! an atomic swap.
//!
//! # Stall rescue
//!
//! The userspace counterpart of the `WQ_MEM_RECLAIM` rescuer and of
//! concurrency-managed workqueues: a watchdog thread checks each CPU every
//! `stall_timeout / 4`; a drainer that has been inside one handler for
//! `stall_timeout` loses the drain token, and a rescue thread drains the rest
//! of the batch and whatever is queued behind it. The watchdog takes the
//! token with a compare-and-swap of the run word from "inside handler `n`"
//! to idle (each handler has its own sequence number in the word, so it
//! cannot take the token from the next handler by mistake). The stalled
//! drainer, when its handler returns, fails its own compare-and-swap of the
//! word, and touches nothing. Cross-CPU draining by the rescuer is safe by
//! construction: producers touch only the lock-free queue, whose take-all is
//! an atomic swap valid from any thread, and the batch is owned through the
//! run word and the CPU's own mutex, not through a "local" lock that means
//! "this CPU" and so protects nothing against a thread running elsewhere. A
//! rescue does give up the per-CPU ordering for the stalled handler: the
//! rest runs while it is still inside.

pub(crate) mod drive;
mod error;
#[cfg(all(test, loom))]
mod loom_tests;
mod policy;
mod protocol;
mod queue;
#[cfg(all(test, shuttle, not(loom)))]
mod shuttle_tests;
mod stats;
mod watcher;
mod worker;

pub use error::{BuildError, HotplugError};
pub use policy::{Adaptive, Batching, Budget, PanicPolicy, ParseBatchingError};
pub use stats::{CpuStats, Stats, StatsSnapshot};

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::bio::{Bio, BioFlags, EndedBio};
use crate::context::{self, ContextPolicy};
use crate::sync::{Arc, Instant, current_cpu};
use crate::sys;
use protocol::{Config, Shared};

/// What a completion did with the bio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// The handler ran in the calling thread, before the call returned.
    Inline,
    /// The bio was put on this CPU's batch; a worker runs the handler.
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

/// Owns the threads; dropping it stops them.
struct Handle {
    shared: Arc<Shared>,
}

impl Completer {
    /// A builder with the defaults: adaptive batching, 1024 handlers or 1 ms
    /// per run, tracked context, panics contained, workers pinned, stall
    /// rescue after 200 ms, the hotplug watcher on.
    pub fn builder() -> CompleterBuilder {
        CompleterBuilder::default()
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
    /// once is never deferred again, whatever the context says, so
    /// re-deferral is bounded: under [`ContextPolicy::AlwaysAtomic`] a
    /// handler that always asks would otherwise be re-deferred forever.
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

    /// `cpu_online`: enables `cpu`'s work, starting its worker if it never
    /// had one, re-pins the worker, and requeues it if bios are waiting.
    /// Calling it for an online CPU does nothing.
    pub fn cpu_online(&self, cpu: usize) -> Result<(), HotplugError> {
        worker::cpu_online(&self.handle.shared, cpu, true)
    }

    /// `cpu_down_prep`: disables `cpu`'s work and waits until no drain of it
    /// is running. Bios completed on `cpu` afterwards are kept for
    /// [`Completer::cpu_dead`] or, if the offline is rolled back,
    /// [`Completer::cpu_online`].
    pub fn cpu_down_prep(&self, cpu: usize) -> Result<(), HotplugError> {
        self.handle.shared.cpu_down_prep(cpu)
    }

    /// `cpu_dead`: runs every bio left on `cpu`'s batch in the calling
    /// thread, which must be task context, and sends later completions on
    /// `cpu` to another CPU. Returns how many handlers it ran.
    pub fn cpu_dead(&self, cpu: usize) -> Result<u64, HotplugError> {
        self.handle.shared.cpu_dead(cpu)
    }

    /// Lets `cpu`'s worker drive `lane` when it has nothing to run
    /// (`drive.rs`); `false` if it cannot: it drives another lane, it is
    /// not pinned, or no watchdog runs (which takes a lane from a worker
    /// stuck in a handler).
    pub(crate) fn attach_lane(&self, cpu: usize, lane: Arc<dyn drive::Drive>) -> bool {
        let shared = &*self.handle.shared;
        if !shared.config.pin_workers || shared.config.stall_timeout.is_none() {
            return false;
        }
        let Some(per_cpu) = shared.cpus.get(cpu) else {
            return false;
        };
        let Some(worker) = per_cpu.worker.get() else {
            return false;
        };
        let attached = per_cpu.drive.attach(lane, worker);
        if attached {
            per_cpu.wake_worker();
        }
        attached
    }

    /// An I/O was queued on a lane whose worker is outside it: the watchdog
    /// watches closely from now on (the worker may be stuck in a handler).
    pub(crate) fn nudge_watchdog(&self) {
        self.handle.shared.nudge_watchdog();
    }

    /// Stops `cpu`'s worker from driving the lane `key` (if it is the one
    /// attached); the worker lets go of it at once.
    pub(crate) fn detach_lane(&self, cpu: usize, key: usize) {
        if let Some(per_cpu) = self.handle.shared.cpus.get(cpu) {
            per_cpu.drive.detach(key);
        }
    }

    /// The CPUs whose work is enabled now.
    pub fn online_cpus(&self) -> Vec<usize> {
        self.handle.shared.online_cpus()
    }

    /// A snapshot of the counters, total and per CPU.
    pub fn stats(&self) -> StatsSnapshot {
        self.handle.shared.stats()
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
        f.debug_struct("Completer")
            .field("shared", &self.handle.shared)
            .finish()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        worker::shut_down(&self.shared);
    }
}

/// Builds a [`Completer`].
#[derive(Debug, Clone)]
pub struct CompleterBuilder {
    config: Config,
    sysfs_root: PathBuf,
    hotplug_watcher: bool,
}

impl Default for CompleterBuilder {
    fn default() -> CompleterBuilder {
        CompleterBuilder {
            config: Config {
                batching: Batching::default(),
                budget: Budget::default(),
                context_policy: ContextPolicy::default(),
                panic_policy: PanicPolicy::default(),
                pin_workers: true,
                stall_timeout: Some(Duration::from_millis(200)),
                lane_rescue_after: drive::RESCUE_AFTER,
            },
            sysfs_root: PathBuf::from("/sys"),
            hotplug_watcher: true,
        }
    }
}

impl CompleterBuilder {
    /// The batching policy (default: [`Batching::Adaptive`]).
    pub fn batching(mut self, batching: Batching) -> CompleterBuilder {
        self.config.batching = batching;
        self
    }

    /// The run budget of a worker (default: 1024 handlers or 1 ms).
    pub fn budget(mut self, budget: Budget) -> CompleterBuilder {
        self.config.budget = budget;
        self
    }

    /// How atomic context is decided (default: [`ContextPolicy::Tracked`]).
    pub fn context_policy(mut self, policy: ContextPolicy) -> CompleterBuilder {
        self.config.context_policy = policy;
        self
    }

    /// What a panicking handler does (default: [`PanicPolicy::Contain`]).
    pub fn panic_policy(mut self, policy: PanicPolicy) -> CompleterBuilder {
        self.config.panic_policy = policy;
        self
    }

    /// Whether workers pin themselves to their CPU (default: yes).
    pub fn pin_workers(mut self, pin: bool) -> CompleterBuilder {
        self.config.pin_workers = pin;
        self
    }

    /// How long a drainer may stay inside one handler before the rest of
    /// its batch is handed to a rescue thread (default: 200 ms); `None`
    /// turns rescue off.
    pub fn stall_timeout(mut self, timeout: Option<Duration>) -> CompleterBuilder {
        self.config.stall_timeout = timeout;
        self
    }

    /// How long a worker that drives its CPU's engine lane (see
    /// `EngineBuilder::worker_driven`) may stay inside one handler while
    /// that lane has I/O, before the lane's own thread takes the lane over
    /// so its I/O goes on (default: 1 ms). The watchdog looks this often
    /// while such a lane is busy. A blocking call of the engine inside a
    /// handler drives the lane itself and needs no takeover.
    pub fn lane_rescue_after(mut self, after: Duration) -> CompleterBuilder {
        self.config.lane_rescue_after = after;
        self
    }

    /// Whether a watcher thread follows the machine's CPU hotplug events and
    /// drives the lifecycle (default: yes).
    pub fn hotplug_watcher(mut self, on: bool) -> CompleterBuilder {
        self.hotplug_watcher = on;
        self
    }

    /// Where sysfs is mounted (default: `/sys`); the possible and online CPU
    /// lists are read below it.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> CompleterBuilder {
        self.sysfs_root = root.into();
        self
    }

    /// Starts one worker per online CPU, the stall watchdog and the hotplug
    /// watcher.
    pub fn build(self) -> Result<Completer, BuildError> {
        let CompleterBuilder {
            config,
            sysfs_root,
            hotplug_watcher,
        } = self;
        if config.budget.handlers_max == 0 || config.budget.time_max.is_zero() {
            return Err(BuildError::Invalid(format!(
                "a run budget of {:?} lets a worker run nothing; give at least one handler and a non-zero time",
                config.budget
            )));
        }
        if config.lane_rescue_after.is_zero() {
            return Err(BuildError::Invalid(
                "a lane rescue after zero takes every driven lane from its worker; give a duration such as 1 ms".into(),
            ));
        }
        if config.stall_timeout.is_some_and(|t| t.is_zero()) {
            return Err(BuildError::Invalid(
                "a stall timeout of zero rescues every handler; give a duration or None".into(),
            ));
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
        let stall_timeout = config.stall_timeout;
        let shared = Arc::new(Shared::new(last, config));
        // From here on, dropping the handle stops whatever was started.
        let handle = Handle {
            shared: Arc::clone(&shared),
        };
        for &cpu in online.iter().filter(|&&c| c <= last) {
            worker::cpu_online(&shared, cpu, false)?;
        }
        if let Some(timeout) = stall_timeout {
            let watchdog = worker::spawn(&shared, "endio-watchdog".to_owned(), move |s| {
                worker::watchdog_main(&s, timeout)
            })
            .map_err(|source| BuildError::Thread {
                what: "watchdog",
                source,
            })?;
            let _ = shared.watchdog.set(watchdog);
        }
        if hotplug_watcher {
            watcher::start(&shared, sysfs_root, online).map_err(|source| BuildError::Thread {
                what: "hotplug watcher",
                source,
            })?;
        }
        Ok(Completer {
            handle: Arc::new(handle),
        })
    }
}
