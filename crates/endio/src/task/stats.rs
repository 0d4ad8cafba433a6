//! Statistics: per-CPU counters, cheap enough to stay on.
//!
//! Producer-side counters sit on the cache line of the CPU's list head, which
//! a producer on that CPU owns anyway for its push; drain-side counters sit on
//! a line of their own and are written only by whoever holds the CPU's drain
//! token (one thread at a time), with plain relaxed loads and stores.

use crate::sync::{AtomicU64, Ordering};

/// Counters of one CPU, or their total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Bios put on a per-CPU batch (deferred to task context).
    pub deferred: u64,
    /// Bios whose handler ran inline, in the completing thread.
    pub inline: u64,
    /// Deferred bios whose handler has run.
    pub handlers: u64,
    /// Non-empty batches taken by a drain (take-all operations).
    pub batches: u64,
    /// The largest batch taken at once.
    pub batch_len_max: u64,
    /// Runs that ended because the budget was spent (the worker requeued
    /// itself and yielded).
    pub requeues: u64,
    /// Times the worker parked for lack of work and was woken again (each at
    /// most one sleep and wakeup; a producer wakes it on the empty→non-empty
    /// transition only).
    pub wakeups: u64,
    /// Handlers that panicked (contained).
    pub panics: u64,
    /// The most handlers one budgeted run (a worker's or a rescuer's)
    /// executed.
    pub run_len_max: u64,
    /// The longest budgeted run, in nanoseconds.
    pub run_ns_max: u64,
    /// The longest single handler run by a drain, in nanoseconds.
    pub handler_ns_max: u64,
    /// `cpu_online` calls that brought a dead (or never started) CPU online.
    pub onlines: u64,
    /// `cpu_down_prep` calls.
    pub down_preps: u64,
    /// `cpu_dead` calls.
    pub deads: u64,
    /// Rolled-back offlines: `cpu_online` after `cpu_down_prep` without
    /// `cpu_dead`.
    pub rollbacks: u64,
    /// `cpu_online` calls that found bios waiting and requeued the worker
    /// (the fix of review Q4).
    pub requeued_on_online: u64,
    /// Rescue threads started for a drainer stalled in a handler.
    pub rescues: u64,
    /// Handlers run by rescue threads.
    pub rescued: u64,
    /// Handlers run by `cpu_dead` in its caller's thread.
    pub drained: u64,
    /// Deferrals that found their CPU's batch closed and went to another CPU.
    pub redirected: u64,
    /// Times a worker pinned itself to its CPU again after it came back.
    pub repins: u64,
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

    /// Adds `other` into `self`: counters add up, maxima take the larger.
    pub fn accumulate(&mut self, other: &Stats) {
        self.deferred += other.deferred;
        self.inline += other.inline;
        self.handlers += other.handlers;
        self.batches += other.batches;
        self.requeues += other.requeues;
        self.wakeups += other.wakeups;
        self.panics += other.panics;
        self.batch_len_max = self.batch_len_max.max(other.batch_len_max);
        self.run_len_max = self.run_len_max.max(other.run_len_max);
        self.run_ns_max = self.run_ns_max.max(other.run_ns_max);
        self.handler_ns_max = self.handler_ns_max.max(other.handler_ns_max);
        self.onlines += other.onlines;
        self.down_preps += other.down_preps;
        self.deads += other.deads;
        self.rollbacks += other.rollbacks;
        self.requeued_on_online += other.requeued_on_online;
        self.rescues += other.rescues;
        self.rescued += other.rescued;
        self.drained += other.drained;
        self.redirected += other.redirected;
        self.repins += other.repins;
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

/// Counters bumped by producers (any thread on the CPU): atomic adds.
#[derive(Debug, Default)]
pub(crate) struct ProducerCounters {
    pub(crate) deferred: AtomicU64,
    pub(crate) inline: AtomicU64,
    pub(crate) panics: AtomicU64,
}

/// Counters written by the holder of the CPU's drain token only (and
/// `wakeups`, by the worker only).
#[derive(Debug, Default)]
pub(crate) struct DrainCounters {
    pub(crate) handlers: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batch_len_max: AtomicU64,
    pub(crate) requeues: AtomicU64,
    pub(crate) run_len_max: AtomicU64,
    pub(crate) run_ns_max: AtomicU64,
    pub(crate) handler_ns_max: AtomicU64,
    /// Written by the worker thread alone.
    pub(crate) wakeups: AtomicU64,
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

pub(crate) fn snapshot(producer: &ProducerCounters, drain: &DrainCounters) -> Stats {
    // Acquire, and before `deferred`: see `add_single_writer`.
    let handlers = drain.handlers.load(Ordering::Acquire);
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Stats {
        deferred: r(&producer.deferred),
        inline: r(&producer.inline),
        wakeups: r(&drain.wakeups),
        panics: r(&producer.panics),
        handlers,
        batches: r(&drain.batches),
        batch_len_max: r(&drain.batch_len_max),
        requeues: r(&drain.requeues),
        run_len_max: r(&drain.run_len_max),
        run_ns_max: r(&drain.run_ns_max),
        handler_ns_max: r(&drain.handler_ns_max),
        ..Stats::default()
    }
}
