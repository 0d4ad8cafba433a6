//! The one concurrency facade of the crate.
//!
//! Protocol code imports `Arc`, `Mutex`, `Condvar`, atomics, threads and
//! thread-locals from here and nowhere else, so that the very same code runs
//! under the [loom] model checker when built with `RUSTFLAGS="--cfg loom"`
//! (see `ci/loom.sh`). Under loom, `park_timeout` is a plain `park`: loom has
//! no time, and a timed park may always wake spuriously anyway, so the callers
//! re-check their condition in a loop in both builds.
//!
//! Built with `RUSTFLAGS="--cfg shuttle"` (see `ci/shuttle.sh`), the same
//! code runs under the [shuttle] randomized scheduler instead; shuttle has no
//! time either, so the protocol code never lets real time decide anything in
//! those tests (count budgets, no timed stall detection).
//!
//! The environment is injected here too: the current CPU comes from
//! [`current_cpu`] and time from [`Instant`], never from `sched_getcpu()` or
//! `std::time` called in protocol code.
//!
//! [loom]: https://docs.rs/loom
//! [shuttle]: https://docs.rs/shuttle

#[cfg(not(any(loom, shuttle)))]
mod imp {
    pub(crate) use std::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence,
    };
    pub(crate) use std::sync::{Arc, MutexGuard};
    pub(crate) use std::sync::{Condvar as RawCondvar, Mutex as RawMutex};

    /// A thread-local with a `const` initializer (no lazy-init check on
    /// access); under loom, loom's thread-local, which takes no `const`.
    macro_rules! const_thread_local {
        ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
            std::thread_local! { $(#[$m])* static $name: $t = const { $init }; }
        };
    }
    pub(crate) use const_thread_local;

    pub(crate) mod thread {
        pub(crate) use std::thread::{
            Builder, JoinHandle, Thread, current, park, park_timeout, yield_now,
        };
    }

    /// The CPU the calling thread runs on right now.
    #[inline]
    pub(crate) fn current_cpu() -> usize {
        crate::sys::current_cpu()
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) use loom::sync::MutexGuard;
    pub(crate) use loom::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence,
    };
    pub(crate) use loom::sync::{Condvar as RawCondvar, Mutex as RawMutex};
    // std's Arc, as under shuttle: the completer keeps a `Weak` to itself,
    // which loom's Arc lacks, and reference counts are not what the loom
    // models check.
    pub(crate) use std::sync::Arc;

    macro_rules! const_thread_local {
        ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
            loom::thread_local! { $(#[$m])* static $name: $t = $init; }
        };
    }
    pub(crate) use const_thread_local;

    pub(crate) mod thread {
        pub(crate) use loom::thread::{Builder, JoinHandle, Thread, current, park, yield_now};

        /// loom has no clock: a timed park is a park (callers loop anyway).
        pub(crate) fn park_timeout(_timeout: std::time::Duration) {
            park();
        }
    }

    const_thread_local! {
        static CPU: std::cell::Cell<usize> = std::cell::Cell::new(0);
    }

    /// Under loom the "CPU" of a thread is whatever the test said it is.
    pub(crate) fn current_cpu() -> usize {
        CPU.with(|c| c.get())
    }

    /// Sets the simulated CPU of the calling loom thread.
    #[allow(dead_code, unreachable_pub)]
    pub fn set_current_cpu(cpu: usize) {
        CPU.with(|c| c.set(cpu));
    }
}

#[cfg(all(shuttle, not(loom)))]
mod imp {
    pub(crate) use shuttle::sync::MutexGuard;
    pub(crate) use shuttle::sync::atomic::{
        AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering, fence,
    };
    pub(crate) use shuttle::sync::{Condvar as RawCondvar, Mutex as RawMutex};
    // Shuttle models `std::sync::Arc` as it is (its counts are atomics that
    // cannot race in a way that matters to the protocol).
    pub(crate) use std::sync::Arc;

    pub(crate) mod thread {
        pub(crate) use shuttle::thread::{
            Builder, JoinHandle, Thread, current, park, park_timeout, yield_now,
        };
    }

    macro_rules! const_thread_local {
        ($(#[$m:meta])* static $name:ident: $t:ty = $init:expr;) => {
            shuttle::thread_local! { $(#[$m])* static $name: $t = $init; }
        };
    }
    pub(crate) use const_thread_local;

    const_thread_local! {
        static CPU: std::cell::Cell<usize> = std::cell::Cell::new(0);
    }

    /// Under shuttle the "CPU" of a thread is whatever the test said it is.
    pub(crate) fn current_cpu() -> usize {
        CPU.with(|c| c.get())
    }

    /// Sets the simulated CPU of the calling shuttle thread.
    #[allow(dead_code)]
    pub(crate) fn set_current_cpu(cpu: usize) {
        CPU.with(|c| c.set(cpu));
    }
}

pub(crate) use imp::*;

/// A mutex whose `lock` cannot fail: the std (or loom, shuttle) mutex with
/// poisoning ignored.
///
/// A lock is poisoned when a thread panics while holding it. endio runs no
/// foreign code under its locks (handlers run with the lock released), so a
/// poisoned lock can only come from a panic in endio's own code between lock
/// and unlock; the state is consistent at every unlock point, so the next
/// holder goes on.
pub(crate) struct Mutex<T> {
    raw: RawMutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex {
            raw: RawMutex::new(value),
        }
    }

    /// Blocks until the lock is ours.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.raw
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lock if it is free now; never blocks.
    #[allow(dead_code)]
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.raw.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> std::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}

/// A condition variable for [`Mutex`], poisoning ignored likewise.
pub(crate) struct Condvar {
    raw: RawCondvar,
}

impl Condvar {
    pub(crate) fn new() -> Condvar {
        Condvar {
            raw: RawCondvar::new(),
        }
    }

    /// Releases `guard`, waits for a notification (or a spurious wakeup:
    /// callers loop on their condition) and takes the lock again.
    pub(crate) fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.raw
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Wakes every waiter.
    pub(crate) fn notify_all(&self) {
        self.raw.notify_all();
    }
}

/// Monotonic time as the protocol sees it.
pub(crate) use std::time::Instant;

/// A cheap tick counter for the per-handler budget check and the stall
/// watchdog: the TSC through quanta (a few ns, where `Instant::now()` costs
/// ~37 ns on this VM's vDSO), or the monotonic clock where no usable TSC
/// exists. Under loom and shuttle, ticks are nanoseconds of `Instant`.
#[derive(Debug)]
pub(crate) struct FastClock {
    #[cfg(not(any(loom, shuttle)))]
    clock: quanta::Clock,
    #[cfg(any(loom, shuttle))]
    base: Instant,
}

impl FastClock {
    /// Calibrates the clock (quanta measures the TSC against the
    /// monotonic clock once).
    pub(crate) fn new() -> FastClock {
        FastClock {
            #[cfg(not(any(loom, shuttle)))]
            clock: quanta::Clock::new(),
            #[cfg(any(loom, shuttle))]
            base: Instant::now(),
        }
    }

    /// Ticks now (only differences mean anything).
    #[inline]
    pub(crate) fn ticks(&self) -> u64 {
        #[cfg(not(any(loom, shuttle)))]
        return self.clock.raw();
        #[cfg(any(loom, shuttle))]
        return u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    }

    /// Nanoseconds from `start` to `end` (0 if `end` is not later).
    #[inline]
    pub(crate) fn nanos_between(&self, start: u64, end: u64) -> u64 {
        #[cfg(not(any(loom, shuttle)))]
        return self.clock.delta_as_nanos(start, end);
        #[cfg(any(loom, shuttle))]
        return end.saturating_sub(start);
    }
}
