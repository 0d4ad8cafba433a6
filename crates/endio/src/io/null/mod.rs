//! The null backend: in-memory devices whose "hardware" completes each
//! request after a fixed latency from an interrupt-like thread per CPU.
//!
//! It measures the completion path alone (inbox, slots, the atomic
//! `endio`, the deferral to task context) without a disk, and gives tests a
//! device of any size. The data is kept (sparse, in 64 KiB chunks), so
//! what is written reads back; a flush is a no-op.
//!
//! Whoever drives a lane — its interrupt thread, or the CPU's completer
//! worker when it has nothing to run (`task::drive`, as for io_uring) —
//! takes requests from the inbox and stamps each with its due time (now +
//! latency: the device is infinitely parallel, so requests complete in
//! arrival order); it sleeps until the first is due, copies the data (the
//! "DMA") outside the atomic section, then completes everything due in one
//! batch inside `context::atomic()`.
//!
//! Dontcache devices are emulated here with the whole protocol (backlog,
//! writeback stage, drop bios through the completer, coalescing) and no
//! system calls: memory has no page cache. A write's writeback stage is due
//! at once and does nothing.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) mod memory;

use super::lane::{Driver, Lane, yield_for_work};
use super::request::{Request, complete_all};
use super::shared::EngineShared;
use super::state::Target;
use crate::bio::Op;
use crate::task::drive::{Drive, DriveOwner, EventBell, Held};

/// A lane's pending requests, touched only by the holder of the lane's
/// `DriveOwner` (its interrupt thread, or the CPU's worker inside a pass).
pub(crate) struct NullCell {
    device: UnsafeCell<Device>,
}

// SAFETY: `device` is touched only by the holder of the lane's
// `DriveOwner`, one thread at a time, each hand-over a Release/Acquire pair
// on the owner's word (`task::drive`); the requests are `Send`.
unsafe impl Sync for NullCell {}

impl NullCell {
    pub(crate) fn new(depth: u32) -> Arc<NullCell> {
        Arc::new(NullCell {
            device: UnsafeCell::new(Device {
                pending: VecDeque::with_capacity(depth as usize),
                done: Vec::with_capacity(depth as usize),
                expect_submit: false,
                last_now: Instant::now(),
            }),
        })
    }

    /// # Safety
    ///
    /// `held` must prove ownership of the lane whose cell this is, and the
    /// reference must not outlive it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn device(&self, _held: &Held<'_>) -> &mut Device {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.device.get() }
    }
}

/// The "hardware" of one lane: requests in flight, each with its due time.
struct Device {
    pending: VecDeque<(Instant, Request)>,
    done: Vec<(Request, i64)>,
    /// Completed requests with deferred handlers since the last sleep: one
    /// may resubmit soon (see `lane::YIELDS_BEFORE_SLEEP`).
    expect_submit: bool,
    /// The last time a pass read the clock: a time by which every request
    /// of a device without latency is due.
    last_now: Instant,
}

impl Device {
    /// One pass: takes the inbox, completes what is due (in atomic
    /// context), and, if `sleep` is given and nothing was due, sleeps until
    /// the first request is due, a submission, or `sleep()` says there is
    /// other work. Returns how many requests it completed.
    fn pass(
        &mut self,
        shared: &EngineShared,
        lane: &Lane<Request>,
        sleep: Option<&dyn Fn() -> bool>,
        by: Driver,
    ) -> usize {
        // SeqCst: pairs with the store in `EngineShared::shutdown`.
        let closed = shared.closed.load(Ordering::SeqCst);
        let latency = shared.config.null_latency;
        // Without a latency every request is due at once: the clock (a
        // third of a pass's cost when the CPU's worker drives the lane, a
        // pass per handler) is read only when something waits for a time.
        let mut now = if latency.is_zero() && self.pending.is_empty() {
            self.last_now
        } else {
            Instant::now()
        };
        self.last_now = now;
        while let Some(req) = lane.inbox.pop() {
            if closed {
                self.done.push((req, -i64::from(libc::ECANCELED)));
            } else {
                self.pending.push_back((now + latency, req));
            }
        }
        if !latency.is_zero() {
            now = Instant::now();
        }
        while self.pending.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, mut req)) = self.pending.pop_front() else {
                break;
            };
            let res = transfer(&mut req);
            self.done.push((req, res));
        }
        if !self.done.is_empty() {
            // A write that waits for its write-back chains its stage (a
            // no-op here: memory has no page cache), which is due at once.
            self.expect_submit |= self.done.iter().any(|(req, _)| req.defers());
            let completed = self.done.len();
            // Counted before the handlers run (see `uring.rs`).
            lane.completions.by(by, completed);
            let pending = &mut self.pending;
            complete_all(&shared.completer, &lane.slots, &mut self.done, |stage| {
                pending.push_front((now, stage));
            });
            return completed;
        }
        let Some(other_work) = sleep else {
            return 0;
        };
        let timeout = match self.pending.front() {
            Some((due, _)) => due.saturating_duration_since(now),
            None if closed => Duration::from_millis(1),
            None => Duration::from_millis(100),
        };
        if timeout.is_zero() {
            return 0;
        }
        if self.expect_submit && !closed && !lane.driven.load(Ordering::Relaxed) {
            // Stops at a submission or at the first due request, so the
            // yields do not stretch the latency. (A lane its worker drives
            // needs none: the submissions come from the same thread.)
            self.expect_submit = false;
            let due = self.pending.front().map(|(due, _)| *due);
            if yield_for_work(|| !lane.inbox.is_empty() || due.is_some_and(|d| Instant::now() >= d))
            {
                return 0;
            }
        }
        // `closed` is checked too, as in the pool (see `threads.rs`).
        lane.bell.sleep(
            || {
                !lane.inbox.is_empty()
                    || (!closed && shared.closed.load(Ordering::SeqCst))
                    || other_work()
            },
            timeout,
        );
        0
    }
}

/// The lane as its CPU's worker drives it (`task::drive::Drive`).
pub(crate) struct NullDrive {
    pub(crate) shared: Arc<EngineShared>,
    pub(crate) cell: Arc<NullCell>,
    pub(crate) lane: usize,
}

impl Drive for NullDrive {
    fn owner(&self) -> &DriveOwner {
        &self.shared.lanes[self.lane].owner
    }

    fn bell(&self) -> &EventBell {
        self.shared.lanes[self.lane].bell.event()
    }

    fn bell_arc(&self) -> Arc<EventBell> {
        self.shared.lanes[self.lane].bell.event_arc()
    }

    fn pass(&self, held: &Held<'_>, sleep: Option<&dyn Fn() -> bool>) -> usize {
        assert!(held.of(self.owner()), "a pass needs the lane it drives");
        let lane = &self.shared.lanes[self.lane];
        // SAFETY: `held` proves we own this lane, for this call.
        let device = unsafe { self.cell.device(held) };
        device.pass(&self.shared, lane, sleep, Driver::Worker)
    }

    fn has_submissions(&self) -> bool {
        !self.shared.lanes[self.lane].inbox.is_empty()
    }

    fn busy(&self) -> bool {
        let lane = &self.shared.lanes[self.lane];
        lane.slots.in_use() > 0 || !lane.inbox.is_empty()
    }

    fn key(&self) -> usize {
        self.shared.lanes[self.lane].key()
    }
}

/// Starts the interrupt thread of lane `lane`.
pub(crate) fn spawn(
    shared: Arc<EngineShared>,
    cell: Arc<NullCell>,
    lane: usize,
) -> io::Result<std::thread::JoinHandle<()>> {
    let name = match shared.lanes[lane].cpu {
        Some(cpu) => format!("endio-null/{cpu}"),
        None => format!("endio-null/l{lane}"),
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || irq_main(&shared, &cell, lane))
}

/// The interrupt thread: the lane's reserve (`task::drive`), which drives
/// it whenever the CPU's worker does not.
fn irq_main(shared: &EngineShared, cell: &NullCell, lane_index: usize) {
    let lane = &shared.lanes[lane_index];
    if let Some(cpu) = lane.cpu
        && shared.config.pin
        && let Err(e) = crate::sys::pin_current_thread(cpu)
    {
        tracing::warn!(cpu, error = %e, "endio null-device interrupt thread could not pin itself; it runs unpinned");
    }
    // Latencies of a few microseconds must not be stretched by the 50 µs
    // default timer slack.
    let _ = crate::sys::set_timer_slack_ns(1_000);
    lane.owner.set_reserve(std::thread::current());
    let mut held_before = true;
    loop {
        // SeqCst: pairs with the store in `EngineShared::shutdown`.
        let closed = shared.closed.load(Ordering::SeqCst);
        let Some(held) = lane.owner.reserve_holds() else {
            // The worker drives the lane: stand by (see `uring.rs`).
            held_before = false;
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        };
        if !held_before {
            held_before = true;
            lane.completions.taken_over();
        }
        // SAFETY: we hold the lane until `held` goes.
        let device = unsafe { cell.device(&held) };
        if closed && device.pending.is_empty() && lane.slots.all_free() && lane.inbox.is_empty() {
            return;
        }
        device.pass(shared, lane, Some(&|| lane.owner.wanted()), Driver::Reaper);
        if lane.owner.wanted() && !closed && lane.owner.hand_back(held) {
            lane.completions.handed_back();
            held_before = false;
        }
    }
}

/// Moves the data of one request between its buffer and memory.
fn transfer(req: &mut Request) -> i64 {
    let Target::Memory(store) = &req.dev.target else {
        return -i64::from(libc::EBADF);
    };
    if req.writeback_range().is_some() {
        // Memory has no page cache: nothing to write back.
        return 0;
    }
    let len = req.transfer_len();
    let offset = req.bio.offset();
    match req.bio.op() {
        Op::Read => store.read(offset, &mut req.bio.buf_mut()[..len]),
        Op::Write => store.write(offset, &req.bio.buf()[..len]),
        Op::Flush | Op::Nop => return 0,
    }
    i64::try_from(len).unwrap_or(i64::MAX)
}
