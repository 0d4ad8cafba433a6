//! Statistics: per-CPU counters, cheap enough to stay on, declared once.
//!
//! Each CPU's counters come in three groups, each on the cache line of the
//! threads that write it:
//!
//! - producer counters, on the line of the CPU's list head, which a producer
//!   on that CPU owns anyway for its push;
//! - drain counters, on a line of their own, written by whoever holds the
//!   CPU's drain token (one thread at a time: plain relaxed loads and
//!   stores), `wakeups` by the worker alone, and `handlers` and `panics` with
//!   an atomic add (a revoked drainer counts its last handler too, and an
//!   inline completion whose handler panicked counts the panic);
//! - lifecycle counters, bumped by hotplug calls, rescues and the rare
//!   redirected push.

use crate::sync::{AtomicU64, Ordering};

crate::counters::counters! {
    /// Counters of one CPU, or their total.
    pub struct Stats {
        /// Counters bumped by producers (any thread on the CPU): atomic adds.
        ProducerCounters {
            /// Bios put on a per-CPU batch (deferred to task context).
            deferred: sum,
            /// Bios whose handler ran inline, in the completing thread.
            inline: sum,
        }
        /// Counters written by the holder of the CPU's drain token (see the
        /// module docs for the exceptions).
        DrainCounters {
            /// Deferred bios whose handler has run.
            handlers: sum,
            /// Non-empty batches taken by a drain (take-all operations).
            batches: sum,
            /// The largest batch taken at once.
            batch_len_max: max,
            /// Runs that ended because the budget was spent (the worker
            /// requeued itself and yielded).
            requeues: sum,
            /// Times the worker parked for lack of work and was woken again
            /// (each at most one sleep and wakeup; a producer wakes it on the
            /// empty→non-empty transition only).
            wakeups: sum,
            /// Handlers that panicked (contained).
            panics: sum,
            /// The most handlers one budgeted run (a worker's or a
            /// rescuer's) executed.
            run_len_max: max,
            /// The longest budgeted run, in nanoseconds.
            run_ns_max: max,
            /// The longest single handler run by a drain, in nanoseconds.
            handler_ns_max: max,
        }
        /// Counters of lifecycle events, rescues and dead-CPU drains.
        LifecycleCounters {
            /// `cpu_online` calls that brought a dead (or never started) CPU
            /// online.
            onlines: sum,
            /// `cpu_down_prep` calls.
            down_preps: sum,
            /// `cpu_dead` calls.
            deads: sum,
            /// Rolled-back offlines: `cpu_online` after `cpu_down_prep`
            /// without `cpu_dead`.
            rollbacks: sum,
            /// `cpu_online` calls that found bios waiting and requeued the
            /// worker (so nothing is stranded after a rolled-back offline).
            requeued_on_online: sum,
            /// Rescue threads started for a drainer stalled in a handler.
            rescues: sum,
            /// Handlers run by rescue threads.
            rescued: sum,
            /// Times the watchdog took the engine lane a worker drives from
            /// it, because it stayed inside one handler while the lane had
            /// I/O (the lane's own thread drove it from then on).
            lane_rescues: sum,
            /// Handlers run by `cpu_dead` in its caller's thread.
            drained: sum,
            /// Deferrals that found their CPU's batch closed and went to
            /// another CPU.
            redirected: sum,
            /// Times a worker pinned itself to its CPU again after it came
            /// back.
            repins: sum,
        }
    }
}

impl Stats {
    /// Mean batch length (`handlers / batches`), 0 when nothing ran.
    pub fn batch_len_mean(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.handlers as f64 / self.batches as f64
        }
    }

    /// Deferred bios whose handler has not run yet.
    pub fn queued(&self) -> u64 {
        self.deferred.saturating_sub(self.handlers)
    }

    /// The counters of one CPU, read from its three groups.
    pub(crate) fn read(
        producer: &ProducerCounters,
        drain: &DrainCounters,
        lifecycle: &LifecycleCounters,
    ) -> Stats {
        let mut stats = Stats::default();
        // The drain side first, so `handlers` (Acquire) is read before
        // `deferred`: see `add_single_writer`.
        drain.read_into(&mut stats);
        producer.read_into(&mut stats);
        lifecycle.read_into(&mut stats);
        stats
    }
}

/// The stats of one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CpuStats {
    /// The CPU number.
    pub cpu: usize,
    /// Its counters.
    #[serde(flatten)]
    pub stats: Stats,
}

/// A snapshot of all counters: the total and each CPU's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Sum (and maxima) over all CPUs.
    pub total: Stats,
    /// One entry per CPU that has seen any activity or has a worker.
    pub per_cpu: Vec<CpuStats>,
}

impl StatsSnapshot {
    /// The snapshot of the CPUs `per_cpu` lists; the CPUs it leaves out must
    /// have all counters at zero, so the total is theirs too.
    pub(crate) fn from_per_cpu(per_cpu: Vec<CpuStats>) -> StatsSnapshot {
        let mut total = Stats::default();
        for cpu in &per_cpu {
            total.accumulate(&cpu.stats);
        }
        StatsSnapshot { total, per_cpu }
    }
}

/// Adds to a counter that has a single writer at a time (no read-modify-write
/// needed; the writer's hand-over goes through a mutex).
pub(crate) fn add_single_writer(counter: &AtomicU64, by: u64) {
    // Release: a snapshot that reads `handlers` with Acquire then sees every
    // `deferred` increment that preceded those handlers, so it never shows
    // more handlers than deferrals.
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Release);
}

/// Raises a single-writer maximum.
pub(crate) fn max_single_writer(counter: &AtomicU64, value: u64) {
    if value > counter.load(Ordering::Relaxed) {
        counter.store(value, Ordering::Relaxed);
    }
}

/// Adds to a counter with many writers.
pub(crate) fn add_shared(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
