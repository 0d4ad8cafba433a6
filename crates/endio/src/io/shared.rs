//! What the engine's handle, its devices and its backend threads share:
//! the lanes, the completer, the settings; and the submit hot path (steps
//! 2-3 of the flow in the module docs of `io`).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::check::SubmitErrorKind;
use super::config::{Backend, Config};
use super::lane::Lane;
use super::request::Request;
use crate::pool::BufPool;
use crate::sys::{self, UringUnavailable};
use crate::task::Completer;
use crate::task::drive;

std::thread_local! {
    /// The lane of this thread's last submit (see [`last_lane`]).
    static LAST_LANE: Cell<usize> = const { Cell::new(0) };
}

/// The key of the lane this thread's last successful submit went to, for a
/// blocking call that waits for it (`task::drive::drive_until`).
pub(crate) fn last_lane() -> usize {
    LAST_LANE.with(Cell::get)
}

/// State shared by the engine handle, its devices and its threads.
pub(crate) struct EngineShared {
    pub(crate) completer: Completer,
    pub(crate) backend: Backend,
    pub(crate) config: Config,
    pub(crate) queue_depth: u32,
    pub(crate) lanes: Box<[Lane<Request>]>,
    /// Lane of each CPU number (CPUs beyond fold in).
    pub(crate) lane_of_cpu: Box<[u32]>,
    pub(crate) closed: AtomicBool,
    /// The ring flags the kernel took (io_uring backend).
    pub(crate) ring_flags: OnceLock<&'static str>,
    /// Why io_uring is not used, if it was the automatic choice and failed.
    pub(crate) fallback: Option<UringUnavailable>,
    /// The registered buffer pool (`EngineBuilder::registered_buffers`).
    pub(crate) pool: Option<Arc<BufPool>>,
}

impl fmt::Debug for EngineShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineShared")
            .field("backend", &self.backend)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl EngineShared {
    /// The lane of the calling CPU; for a steered device, that lane if it
    /// is one of the device's, else one of the device's chosen by the CPU.
    fn home_lane(&self, steer: Option<&[u32]>) -> usize {
        let cpu = sys::current_cpu();
        let n = self.lane_of_cpu.len();
        let own = self.lane_of_cpu[if cpu < n { cpu } else { cpu % n }];
        match steer {
            Some(lanes) if !lanes.is_empty() && !lanes.contains(&own) => {
                lanes[cpu % lanes.len()] as usize
            }
            _ => own as usize,
        }
    }

    /// Steps 2-3 of the flow: a slot, then the inbox, then the bell.
    // The refused request comes back whole (its bio with its handler, for
    // the caller's error); boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn enqueue(
        &self,
        req: Request,
        may_wait: bool,
    ) -> Result<(), (Request, SubmitErrorKind)> {
        if self.closed.load(Ordering::Relaxed) {
            return Err((req, SubmitErrorKind::ShutDown));
        }
        let Some(index) = self.acquire(req.dev.steer.as_deref(), may_wait) else {
            let kind = if self.closed.load(Ordering::Relaxed) {
                SubmitErrorKind::ShutDown
            } else {
                SubmitErrorKind::Busy
            };
            return Err((req, kind));
        };
        let lane = &self.lanes[index];
        // SeqCst, after the SeqCst slot RMW: the shutdown argument (module
        // docs).
        if self.closed.load(Ordering::SeqCst) {
            lane.slots.release(1);
            lane.bell.ring_all();
            return Err((req, SubmitErrorKind::ShutDown));
        }
        if let Err(req) = lane.inbox.push(req) {
            // Cannot happen: the inbox has a place per slot.
            lane.slots.release(1);
            return Err((req, SubmitErrorKind::Busy));
        }
        lane.bell.ring();
        // Its worker outside the lane may be stuck in a handler: the
        // watchdog takes the lane over if so (`task::drive`).
        if lane.owner.worker_outside() {
            self.completer.nudge_watchdog();
        }
        LAST_LANE.with(|l| l.set(lane.key()));
        Ok(())
    }

    /// A slot of the home lane, else of any lane; waits (bounded sleeps,
    /// re-checking every lane) if `may_wait`.
    fn acquire(&self, steer: Option<&[u32]>, may_wait: bool) -> Option<usize> {
        let home = self.home_lane(steer);
        let n = self.lanes.len();
        loop {
            for i in 0..n {
                let index = (home + i) % n;
                if self.lanes[index].slots.try_acquire() {
                    return Some(index);
                }
            }
            if !may_wait || self.closed.load(Ordering::Relaxed) {
                return None;
            }
            // A handler of the worker that drives its home lane frees the
            // slots itself, by driving the lane, rather than wait for the
            // lane to be taken over (`task::drive`).
            let lane = &self.lanes[home];
            if !drive::drive_until(lane.key(), &|| lane.slots.in_use() < lane.slots.capacity()) {
                lane.slots.wait(Duration::from_millis(20));
            }
        }
    }

    pub(crate) fn shutdown(&self) {
        // SeqCst: the shutdown argument (module docs).
        self.closed.store(true, Ordering::SeqCst);
        for lane in self.lanes.iter() {
            // A lane a worker drives goes back to its own thread, for good,
            // which then completes what is left (`task::drive`, step 4).
            if let (true, Some(cpu)) = (lane.driven.load(Ordering::Acquire), lane.cpu) {
                self.completer.detach_lane(cpu, lane.key());
                lane.owner.evict();
            }
            lane.bell.ring_all();
        }
    }
}
