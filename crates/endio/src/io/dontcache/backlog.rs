//! The backlog's bound (step 1) and its waits: a submitter on a full
//! backlog, and `drain` (step 7), with the rescue that keeps them from
//! waiting for drop bios queued behind themselves.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::state::{Dontcache, Io, UNITS_MAX};
use super::stats::add;
use crate::sys;

/// How long a task-context submitter waits on a full backlog for the
/// completer before it drops ready ranges itself.
const SUBMIT_RESCUE_AFTER: Duration = Duration::from_millis(2);

/// The same for `drain`, which is not in a hurry.
const DRAIN_RESCUE_AFTER: Duration = Duration::from_millis(5);

impl Dontcache {
    /// Takes a backlog unit and `len` bytes, waiting (task context) or not.
    pub(super) fn reserve(&self, io: Io<'_>, len: u64, may_wait: bool) -> bool {
        if self.try_reserve(len) {
            return true;
        }
        if !may_wait {
            add(&self.c.backpressure_busy, 1);
            return false;
        }
        add(&self.c.backpressure_waits, 1);
        // Unbounded in count like a slot wait, but every sleep is bounded and
        // each round either makes progress (a release, or a rescue flush) or
        // waits for the backends, which always complete what they hold.
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let seq = self.release_seq.load(Ordering::SeqCst);
            let watch = self.watch_flushes();
            if self.try_reserve(len) {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            sys::futex_wait(&self.release_seq, seq, SUBMIT_RESCUE_AFTER);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            self.rescue_if_stalled(io, watch);
        }
    }

    pub(super) fn try_reserve(&self, len: u64) -> bool {
        // SeqCst on the backlog counters, like every access: the wakeup
        // argument of `release` and `wait_idle` is then one total order.
        let mut units = self.backlog_units.load(Ordering::SeqCst);
        loop {
            if units as usize >= UNITS_MAX {
                return false;
            }
            match self.backlog_units.compare_exchange_weak(
                units,
                units + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => units = now,
            }
        }
        let mut bytes = self.backlog_bytes.load(Ordering::SeqCst);
        loop {
            if bytes > 0 && bytes.saturating_add(len) > self.backlog_bytes_max {
                // Silent roll-back: no sequence bump, which would look like
                // progress to this very waiter and keep it from ever
                // rescuing. Another waiter for a unit re-checks within its
                // bounded sleep.
                self.backlog_units.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
            match self.backlog_bytes.compare_exchange_weak(
                bytes,
                bytes + len,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => bytes = now,
            }
        }
    }

    /// Waits until the backlog is empty (every drop done), rescuing stalled
    /// drops; `false` if `deadline` passed first.
    pub(crate) fn wait_idle(&self, io: Io<'_>, deadline: Option<Instant>) -> bool {
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let seq = self.release_seq.load(Ordering::SeqCst);
            if self.backlog_units.load(Ordering::SeqCst) == 0 {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            let mut period = DRAIN_RESCUE_AFTER;
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return false;
                }
                period = period.min(deadline - now);
            }
            let watch = self.watch_flushes();
            sys::futex_wait(&self.release_seq, seq, period);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if period == DRAIN_RESCUE_AFTER {
                self.rescue_if_stalled(io, watch);
            }
        }
    }

    /// Before a waiter's timed wait: whether units are ready, and how many
    /// flushes have taken units so far.
    fn watch_flushes(&self) -> Option<u64> {
        // SeqCst: ordered with the flushes' pops and increments (a flush
        // pops, then counts).
        let taken = self.flushes_taken.load(Ordering::SeqCst);
        (!self.ready.is_empty() || !self.kicked.is_empty()).then_some(taken)
    }

    /// The rescue: units were ready when a waiter began a wait of
    /// `*_RESCUE_AFTER` and no flush took any during it, so no drop bio
    /// ran for that long (the completer is stalled, or its worker is the
    /// waiter, waiting for drop bios queued behind itself): the waiter
    /// flushes itself. A unit that became ready during the wait is left to
    /// its drop bio, and a flush in progress counts as progress.
    fn rescue_if_stalled(&self, io: Io<'_>, watch: Option<u64>) {
        if let Some(taken) = watch
            && self.flushes_taken.load(Ordering::SeqCst) == taken
        {
            self.flush(io, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::mode::DontcacheMode;
    use super::*;

    #[test]
    fn the_backlog_bounds_bytes_and_lets_one_large_io_in() {
        let dc = Dontcache::new(DontcacheMode::Emulated, true, None, 100);
        assert!(dc.try_reserve(60));
        assert!(dc.try_reserve(40));
        assert!(!dc.try_reserve(1));
        dc.release(2, 100, 0);
        assert!(
            dc.try_reserve(1000),
            "alone, an I/O above the bound is let in"
        );
        assert!(!dc.try_reserve(1));
        dc.release(1, 1000, 0);
        for _ in 0..UNITS_MAX {
            assert!(dc.try_reserve(0));
        }
        assert!(!dc.try_reserve(0), "units are bounded too");
    }
}
