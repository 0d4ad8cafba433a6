//! A lane: the path from submitters to one backend thread (or pool): its
//! in-flight slots, its inbox and its doorbell; and a device's in-flight
//! count. Nothing here knows what a request is.
//!
//! # Invariants
//!
//! 1. A request enters a lane only with a slot of that lane: the submitter
//!    takes the slot first ([`Slots::try_acquire`]), then pushes. The inbox
//!    has as many places as the lane has slots, so the push cannot fail, and
//!    the requests of a lane (queued, in the kernel, being completed) never
//!    outnumber its slots. That bounds the io_uring submission and
//!    completion queues too (see `uring.rs`).
//! 2. A slot is given back by the lane's driver (its backend thread, or
//!    the CPU's worker driving it) once the request's result is known,
//!    *before* the handler runs, so a handler that resubmits from there
//!    (atomic context, which may not wait) finds room. The one
//!    exception is a write whose caller waits for its write-back (flagged
//!    `WAIT_WRITEBACK`, or a dontcache write on a device that waits per
//!    write): its slot carries the write-back stage that follows it and is
//!    given back when that completes (`writeback.rs`), so those waits are
//!    bounded by the lane's slots too. The kick or batch wait of a batched
//!    dontcache write is endio's own I/O: its write's slot is given back
//!    at once, and the device's dontcache backlog bounds such stages
//!    (`dontcache/batch.rs`).
//! 3. Waits are futex waits with a timeout and a re-check: a lost wakeup
//!    would cost at most one timeout, and the argument below shows there is
//!    none; nothing spins. The null backend's thread, when it just handed
//!    handlers to the completer, and the io_uring reaper, when it did so
//!    and has nothing left in the kernel, yield at most [`YIELDS_BEFORE_SLEEP`]
//!    times before it sleeps, then sleeps as before: the handshake is
//!    unchanged. (A lane the CPU's worker drives needs no such yield: the
//!    handlers run in the thread that sleeps in the lane.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use crate::sys;
use crate::task::drive::{DriveOwner, EventBell};

/// In-flight slots of a lane: a counting semaphore on a futex word.
#[derive(Debug)]
pub(crate) struct Slots {
    free: AtomicU32,
    capacity: u32,
    /// Submitters sleeping in `wait`; the releaser wakes only if non-zero.
    waiters: AtomicU32,
}

impl Slots {
    pub(crate) fn new(capacity: u32) -> Slots {
        Slots {
            free: AtomicU32::new(capacity),
            capacity,
            waiters: AtomicU32::new(0),
        }
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Takes a slot if one is free; never blocks.
    pub(crate) fn try_acquire(&self) -> bool {
        let mut free = self.free.load(Ordering::Relaxed);
        loop {
            if free == 0 {
                return false;
            }
            // SeqCst: ordered before the submitter's load of `closed` (the
            // shutdown argument in `mod.rs`).
            match self.free.compare_exchange_weak(
                free,
                free - 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => free = now,
            }
        }
    }

    /// Gives back `n` slots and wakes sleeping submitters.
    ///
    /// No lost wakeup: a waiter increments `waiters` and then sleeps only
    /// while `free` is 0 (checked atomically by the kernel). Both sides are
    /// SeqCst, so either this load sees the waiter, or the waiter's check
    /// comes after this `fetch_add` in the total order and sees `free > 0`.
    pub(crate) fn release(&self, n: u32) {
        if n == 0 {
            return;
        }
        let before = self.free.fetch_add(n, Ordering::SeqCst);
        debug_assert!(
            before.saturating_add(n) <= self.capacity,
            "slots given back that were not taken"
        );
        if self.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&self.free, u32::MAX);
        }
    }

    /// Sleeps until a slot may be free, at most `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        if self.free.load(Ordering::SeqCst) == 0 {
            sys::futex_wait(&self.free, 0, timeout);
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether no request holds a slot.
    pub(crate) fn all_free(&self) -> bool {
        // SeqCst: the other half of the shutdown argument in `mod.rs`.
        self.free.load(Ordering::SeqCst) == self.capacity
    }

    /// Slots taken (requests queued, in the kernel, or being completed).
    pub(crate) fn in_use(&self) -> u32 {
        self.capacity
            .saturating_sub(self.free.load(Ordering::Relaxed))
    }
}

/// Yields a backend thread makes before it sleeps when a submission is
/// expected: it just completed requests whose handlers are deferred to the
/// completer worker of its CPU (`COMPLETE_IN_TASK`) (the io_uring reaper:
/// and left nothing in the kernel), and such a handler
/// often resubmits within the worker's run. Sleeping instead makes the
/// worker's first resubmit ring the bell, and the woken thread preempts the
/// worker on their shared CPU to take that one request: a wakeup and two
/// context switches per I/O instead of per batch. While the thread yields
/// it is not asleep, so the worker's pushes ring nothing, and the thread
/// finds them all in the inbox. Bounded: after these yields it sleeps as
/// before (nothing spins).
pub(crate) const YIELDS_BEFORE_SLEEP: u32 = 4;

/// Yields up to [`YIELDS_BEFORE_SLEEP`] times, until `has_work()`; returns
/// whether it found work.
pub(crate) fn yield_for_work(has_work: impl Fn() -> bool) -> bool {
    (0..YIELDS_BEFORE_SLEEP).any(|_| {
        std::thread::yield_now();
        has_work()
    })
}

/// Wakes a backend thread that sleeps on a futex word (the thread-pool and
/// null backends).
///
/// Consumer: `sleepers += 1; seq0 = seq; fence; if no work { futex_wait(seq,
/// seq0) }; sleepers -= 1`. Producer: `push; fence; if sleepers > 0 { seq +=
/// 1; futex_wake }`. If the producer's load misses the sleeper, the
/// sleeper's fence comes after the producer's in the SeqCst order and its
/// work check sees the push; if it sees the sleeper, the `seq` bump either
/// precedes the sleeper's read of `seq` (then the push happens-before its
/// work check) or makes its `futex_wait` return.
#[derive(Debug, Default)]
pub(crate) struct Doorbell {
    seq: AtomicU32,
    sleepers: AtomicU32,
}

impl Doorbell {
    /// After a push: wakes one sleeper, if any.
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            self.seq.fetch_add(1, Ordering::SeqCst);
            sys::futex_wake(&self.seq, 1);
        }
    }

    /// Wakes every sleeper (shutdown).
    pub(crate) fn ring_all(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake(&self.seq, u32::MAX);
    }

    /// Sleeps unless `has_work()`, at most `timeout`.
    pub(crate) fn sleep(&self, has_work: impl Fn() -> bool, timeout: Duration) {
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let seq = self.seq.load(Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !has_work() {
            sys::futex_wait(&self.seq, seq, timeout);
        }
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a lane's thread is woken: a futex word (the thread-pool backend, and
/// a null lane no worker may drive), or an eventfd with a sleeping flag
/// ([`EventBell`]), which an io_uring ring waits on with a read in flight.
/// While a completer worker drives the lane (`task::drive`), the producers
/// of that worker's queue ring the lane's event bell too.
#[derive(Debug)]
pub(crate) enum Bell {
    Futex(Doorbell),
    Event(Arc<EventBell>),
}

impl Bell {
    pub(crate) fn ring(&self) {
        match self {
            Bell::Futex(d) => d.ring(),
            Bell::Event(e) => e.ring(),
        }
    }

    pub(crate) fn ring_all(&self) {
        match self {
            Bell::Futex(d) => d.ring_all(),
            Bell::Event(e) => e.ring_always(),
        }
    }

    pub(crate) fn doorbell(&self) -> &Doorbell {
        match self {
            Bell::Futex(d) => d,
            Bell::Event(_) => unreachable!("an event lane has no futex doorbell"),
        }
    }

    pub(crate) fn event(&self) -> &EventBell {
        match self {
            Bell::Event(e) => e,
            Bell::Futex(_) => unreachable!("a futex lane has no eventfd"),
        }
    }

    pub(crate) fn event_arc(&self) -> Arc<EventBell> {
        match self {
            Bell::Event(e) => Arc::clone(e),
            Bell::Futex(_) => unreachable!("a futex lane has no eventfd"),
        }
    }

    /// Sleeps unless `has_work()`, at most `timeout` (a thread that does
    /// not wait in a ring: the null backend's).
    pub(crate) fn sleep(&self, has_work: impl Fn() -> bool, timeout: Duration) {
        match self {
            Bell::Futex(d) => d.sleep(has_work, timeout),
            Bell::Event(e) => {
                if e.prepare_sleep(has_work) {
                    e.efd().wait(timeout);
                    e.woke();
                }
            }
        }
    }
}

/// One lane: slots, the inbox and the bell of one backend thread (or of the
/// pool), and who drives it (`task::drive`: its own thread, the *reserve*,
/// or the completer worker of its CPU).
#[derive(Debug)]
pub(crate) struct Lane<R> {
    /// The CPU the lane's thread is pinned to (`None`: unpinned pool).
    pub(crate) cpu: Option<usize>,
    pub(crate) slots: Slots,
    pub(crate) inbox: ArrayQueue<R>,
    pub(crate) bell: Bell,
    /// Whether the lane is attached to its CPU's completer worker, which
    /// then drives it when it has nothing to run (set before the lane's
    /// thread starts, never cleared: an evicted lane stays marked).
    pub(crate) driven: AtomicBool,
    pub(crate) owner: DriveOwner,
    /// Who completed the lane's requests.
    pub(crate) completions: DriveCounters,
    /// The ring's use of the registered buffer pool.
    pub(crate) buffers: RingBuffers,
}

/// How a lane's ring uses the engine's registered buffer pool.
#[derive(Debug, Default)]
pub(crate) struct RingBuffers {
    /// 1 once the ring registered the pool.
    pub(crate) registered: AtomicU32,
    /// I/Os issued on a registered buffer.
    pub(crate) fixed_ios: std::sync::atomic::AtomicU64,
}

/// The registered buffer pool of an engine, as
/// [`Engine::buffer_stats`](crate::Engine::buffer_stats) reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BufferStats {
    /// Its size (0: the engine has none).
    pub pool_bytes: u64,
    /// Bytes in buffers handed out now.
    pub in_use_bytes: u64,
    /// Rings that registered it.
    pub rings_registered: u64,
    /// I/Os issued on its buffers as `READ_FIXED` or `WRITE_FIXED`.
    pub fixed_ios: u64,
}

impl<R> Lane<R> {
    pub(crate) fn new(cpu: Option<usize>, depth: u32, bell: Bell) -> Lane<R> {
        Lane {
            cpu,
            slots: Slots::new(depth),
            inbox: ArrayQueue::new(depth as usize),
            bell,
            driven: AtomicBool::new(false),
            owner: DriveOwner::default(),
            completions: DriveCounters::default(),
            buffers: RingBuffers::default(),
        }
    }

    /// The lane's identity, as `task::drive` compares lanes.
    pub(crate) fn key(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

crate::counters::counters! {
    /// Who drove the engine's lanes (`Engine::drive_stats`): the completer
    /// worker of each lane's CPU, or the lane's own thread (see
    /// `EngineBuilder::worker_driven`).
    pub struct DriveStats / DriveCounters {
        /// Requests completed by a completer worker driving the lane of its
        /// CPU (their deferred handlers ran in the same thread).
        worker_completions,
        /// Requests completed by a lane's own thread (its io_uring reaper
        /// or null-device interrupt thread).
        reaper_completions,
        /// Times a lane's own thread took the lane over from the worker: a
        /// worker stuck inside a handler while the lane had I/O, its CPU
        /// going down, shutdown.
        takeovers,
        /// Times a lane's own thread gave the lane back to the worker.
        handbacks,
    }
}

/// Who drives a lane in a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// The completer worker of the lane's CPU.
    Worker,
    /// The lane's own thread.
    Reaper,
}

impl DriveCounters {
    /// `n` requests completed by `by`.
    pub(crate) fn by(&self, by: Driver, n: usize) {
        if n == 0 {
            return;
        }
        let counter = match by {
            Driver::Worker => &self.worker_completions,
            Driver::Reaper => &self.reaper_completions,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn taken_over(&self) {
        self.takeovers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handed_back(&self) {
        self.handbacks.fetch_add(1, Ordering::Relaxed);
    }
}

/// In-flight I/O of one device, for `Device::drain`.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    count: AtomicU32,
    drainers: AtomicU32,
}

impl Inflight {
    pub(crate) fn add(&self) {
        // SeqCst like every access of `count`, so the zero-crossing argument
        // of `done` needs no case analysis.
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// One I/O is done (or was refused after `add`). Wakes drainers when the
    /// count reaches zero; the SeqCst pair `count`/`drainers` is the same
    /// argument as in [`Slots::release`].
    pub(crate) fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.drainers.load(Ordering::SeqCst) > 0
        {
            sys::futex_wake(&self.count, u32::MAX);
        }
    }

    pub(crate) fn get(&self) -> u32 {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the count is zero; `false` if `timeout` passed first
    /// (`None`: no limit).
    pub(crate) fn wait_zero(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        self.drainers.fetch_add(1, Ordering::SeqCst);
        let drained = loop {
            let count = self.count.load(Ordering::SeqCst);
            if count == 0 {
                break true;
            }
            // Each sleep is bounded, so a count that falls to zero and rises
            // again before we look (concurrent submitters) costs at most one
            // period before the next look.
            let mut period = Duration::from_millis(100);
            if let Some(deadline) = deadline {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break false;
                }
                period = period.min(deadline - now);
            }
            sys::futex_wait(&self.count, count, period);
        };
        self.drainers.fetch_sub(1, Ordering::SeqCst);
        drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_and_wake() {
        let slots = Arc::new(Slots::new(2));
        assert!(slots.try_acquire());
        assert!(slots.try_acquire());
        assert!(!slots.try_acquire());
        assert_eq!(slots.in_use(), 2);
        let waiter = {
            let slots = Arc::clone(&slots);
            std::thread::spawn(move || {
                while !slots.try_acquire() {
                    slots.wait(Duration::from_secs(10));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        slots.release(1);
        waiter.join().unwrap();
        slots.release(2);
        assert!(slots.all_free());
    }

    #[test]
    fn doorbell_wakes_a_sleeper() {
        let bell = Arc::new(Doorbell::default());
        let flag = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (bell, flag) = (Arc::clone(&bell), Arc::clone(&flag));
            std::thread::spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    bell.sleep(|| flag.load(Ordering::SeqCst), Duration::from_secs(10));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        flag.store(true, Ordering::SeqCst);
        bell.ring();
        sleeper.join().unwrap();
    }

    #[test]
    fn inflight_drains() {
        let inflight = Arc::new(Inflight::default());
        inflight.add();
        assert!(!inflight.wait_zero(Some(Duration::from_millis(1))));
        let done = {
            let inflight = Arc::clone(&inflight);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                inflight.done();
            })
        };
        assert!(inflight.wait_zero(None));
        done.join().unwrap();
    }
}
