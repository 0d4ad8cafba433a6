//! The null backend: in-memory devices whose "hardware" completes each
//! request after a fixed latency from an interrupt-like thread per CPU.
//!
//! It measures the completion path alone (inbox, slots, the atomic
//! `endio`, the deferral to task context) without a disk, and gives tests a
//! device of any size. The data is kept (sparse, in 64 KiB chunks), so
//! what is written reads back; a flush is a no-op.
//!
//! The interrupt thread of a lane takes requests from the inbox and stamps
//! each with its due time (now + latency: the device is infinitely parallel,
//! so requests complete in arrival order); it sleeps until the first is
//! due, copies the data (the "DMA") outside the atomic section, then
//! completes everything due in one batch inside `context::atomic()`.
//!
//! Dontcache devices are emulated here with the whole protocol (backlog,
//! writeback stage, drop bios through the completer, coalescing) and no
//! system calls: memory has no page cache. A write's writeback stage is due
//! at once and does nothing.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub(crate) mod memory;

use super::lane::yield_for_work;
use super::request::{Request, complete_all};
use super::shared::EngineShared;
use super::state::Target;
use crate::bio::Op;

/// Starts the interrupt thread of lane `lane`.
pub(crate) fn spawn(
    shared: Arc<EngineShared>,
    lane: usize,
) -> io::Result<std::thread::JoinHandle<()>> {
    let name = match shared.lanes[lane].cpu {
        Some(cpu) => format!("endio-null/{cpu}"),
        None => format!("endio-null/l{lane}"),
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || irq_main(&shared, lane))
}

fn irq_main(shared: &EngineShared, lane_index: usize) {
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
    let latency = shared.config.null_latency;
    let bell = lane.bell.doorbell();
    let depth = lane.slots.capacity() as usize;
    let mut pending: VecDeque<(Instant, Request)> = VecDeque::with_capacity(depth);
    let mut done: Vec<(Request, i64)> = Vec::with_capacity(depth);
    // Completed requests with deferred handlers since the last sleep: one
    // may resubmit soon (see `lane::YIELDS_BEFORE_SLEEP`).
    let mut expect_submit = false;
    loop {
        // SeqCst: pairs with the store in `EngineShared::shutdown`.
        let closed = shared.closed.load(Ordering::SeqCst);
        let mut now = Instant::now();
        while let Some(req) = lane.inbox.pop() {
            if closed {
                done.push((req, -i64::from(libc::ECANCELED)));
            } else {
                pending.push_back((now + latency, req));
            }
        }
        if !latency.is_zero() {
            now = Instant::now();
        }
        while pending.front().is_some_and(|(due, _)| *due <= now) {
            let Some((_, mut req)) = pending.pop_front() else {
                break;
            };
            let res = transfer(&mut req);
            done.push((req, res));
        }
        if !done.is_empty() {
            // A write that waits for its write-back chains its stage (a
            // no-op here: memory has no page cache), which is due at once.
            expect_submit |= done.iter().any(|(req, _)| req.defers());
            complete_all(&shared.completer, &lane.slots, &mut done, |stage| {
                pending.push_front((now, stage));
            });
            continue;
        }
        if closed && pending.is_empty() && lane.slots.all_free() {
            return;
        }
        let timeout = match pending.front() {
            Some((due, _)) => due.saturating_duration_since(now),
            None if closed => Duration::from_millis(1),
            None => Duration::from_millis(100),
        };
        if !timeout.is_zero() {
            if expect_submit && !closed {
                // Stops at a submission or at the first due request, so
                // the yields do not stretch the latency.
                expect_submit = false;
                let due = pending.front().map(|(due, _)| *due);
                if yield_for_work(|| {
                    !lane.inbox.is_empty() || due.is_some_and(|d| Instant::now() >= d)
                }) {
                    continue;
                }
            }
            // `closed` is checked too, as in the pool (see `threads.rs`).
            bell.sleep(
                || !lane.inbox.is_empty() || (!closed && shared.closed.load(Ordering::SeqCst)),
                timeout,
            );
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
