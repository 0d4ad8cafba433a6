//! A request on its way through a backend, and the one completion step every
//! backend runs: results into bios, slots back, `endio` in atomic context,
//! and the write-back stage a write chains.
//!
//! A request knows its bio, its device, the descriptor to issue on and the
//! `RWF_*` flags; a write that waits for its write-back also carries its
//! [`Wait`], and the device may attach a follow-up of its own
//! ([`FollowUp`]), which the completion step hands back to the device. No
//! backend looks inside either.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use super::dontcache::NextStage;
use super::lane::Slots;
use super::state::{Description, DeviceState, FollowUp};
use super::writeback::Waiter;
use crate::bio::{Bio, BioFlags, Op};
use crate::context;
use crate::task::Completer;

/// One I/O on its way through a backend.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) bio: Bio,
    /// Keeps the file (or memory) open while the I/O is in flight.
    pub(crate) dev: Arc<DeviceState>,
    /// Which of the device's descriptions the I/O is issued on.
    pub(crate) description: Description,
    /// `RWF_*` flags for `preadv2`/`pwritev2` and io_uring's `rw_flags`
    /// (e.g. `RWF_DONTCACHE`, 0x80), per I/O.
    pub(crate) rw_flags: i32,
    /// A write that waits for its write-back: once the write completed,
    /// the request is its write-back stage.
    pub(crate) wait: Option<Wait>,
    /// The device's follow-up, handed back to it at the end.
    pub(crate) behind: Option<FollowUp>,
    /// Set when the request is a stage of a dontcache write: the kick of
    /// its write-back, or a batch's wait (see `dontcache/batch.rs`).
    pub(crate) sync: Option<NextStage>,
}

/// A write's wait for its own write-back (see `writeback.rs`).
#[derive(Debug)]
pub(crate) struct Wait {
    /// The description it waits on, taken at submit.
    pub(crate) waiter: Waiter,
    /// `BioFlags::WAIT_WRITEBACK`: the caller's bio is the stage's bio and
    /// completes when the write-back ends, with its result.
    pub(crate) hold: bool,
    /// Set when the write completed: the page-aligned byte range to write
    /// back (never empty), and the bytes the write transferred.
    stage: Option<(u64, u64, i64)>,
}

impl Wait {
    pub(crate) fn new(waiter: Waiter, hold: bool) -> Wait {
        Wait {
            waiter,
            hold,
            stage: None,
        }
    }
}

impl Request {
    /// Bytes to transfer: the buffer as it is now (a caller may have
    /// truncated it after building the bio).
    pub(crate) fn transfer_len(&self) -> usize {
        self.bio.buf().len()
    }

    /// The descriptor to issue the I/O on (`None` for a memory device): for
    /// a write-back wait, a description of endio's own (the write's waiter,
    /// or the device's batch description), never the device's; a kick,
    /// which consumes no error, goes to the device's.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        if let Some(stage) = &self.sync {
            let wait = matches!(stage, NextStage::Wait(..));
            return self.dev.stage_file(wait).map(AsFd::as_fd);
        }
        if self.writeback_range().is_some() {
            return self.wait.as_ref()?.waiter.fd.as_ref().map(AsFd::as_fd);
        }
        self.dev.file_for(self.description).map(AsFd::as_fd)
    }

    /// The `sync_file_range` flags of a write-back stage: start the
    /// write-back and wait for it, or (a kick) only start it.
    pub(crate) fn sync_flags(&self) -> u32 {
        match self.sync {
            Some(NextStage::Kick(_)) => crate::sys::SYNC_RANGE_WRITE,
            _ => crate::sys::SYNC_RANGE_WRITE_AND_WAIT,
        }
    }

    /// [`fd`](Self::fd) as a raw number, -1 for a memory device.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd().map_or(-1, |fd| fd.as_raw_fd())
    }

    /// Whether its handler is deferred to a completer worker, which often
    /// resubmits (see `lane::YIELDS_BEFORE_SLEEP`).
    pub(crate) fn defers(&self) -> bool {
        self.bio.flags().contains(BioFlags::COMPLETE_IN_TASK)
    }

    /// Whether completing this request with `res` chains a write-back stage
    /// that keeps the request's in-flight slot until the write-back
    /// completes: a write that wrote bytes and waits for its write-back on
    /// a description of its own (`WAIT_WRITEBACK`, whose caller's bio
    /// completes only then, or a dontcache write on a device that does not
    /// batch).
    ///
    /// A dontcache write whose device batches write-back also chains one (a
    /// kick or a batch's wait), but its caller's bio completes at once and
    /// its slot is given back: the stage is endio's own I/O, bounded by the
    /// device's dontcache backlog (each stage's unit counts in it until its
    /// drop), not by the caller's slots. Were it to keep the slot, a kick
    /// stalled behind the device's write-back would hold back the caller's
    /// next I/O.
    pub(crate) fn keeps_slot(&self, res: i64) -> bool {
        if !self.holds_slot() {
            return false;
        }
        self.wait
            .as_ref()
            .is_some_and(|w| res > 0 && w.stage.is_none())
    }

    /// Whether this request holds a slot of its lane: all do but the
    /// write-back stages of batched dontcache writes, whose writes gave
    /// theirs back (`keeps_slot`).
    pub(crate) fn holds_slot(&self) -> bool {
        self.sync.is_none()
    }

    /// A dontcache write without a wait of its own, on a device that
    /// batches write-back.
    fn batched_write(&self) -> bool {
        self.wait.is_none()
            && self.sync.is_none()
            && self.behind.as_ref().is_some_and(FollowUp::writes)
            && self.dev.batches_writes()
    }

    /// For a write-back stage: the byte range to write back (and, but for
    /// a kick, wait for). `None` for a stage with nothing to write back
    /// (issued as a no-op).
    pub(crate) fn writeback_range(&self) -> Option<(u64, u64)> {
        match &self.sync {
            Some(NextStage::Kick(range) | NextStage::Wait(range, _)) => return *range,
            None => {}
        }
        self.wait
            .as_ref()
            .and_then(|w| w.stage)
            .map(|(offset, len, _)| (offset, len))
    }
}

/// The page-aligned range of `n` bytes written at `offset`.
fn page_range(offset: u64, n: u64) -> (u64, u64) {
    let page = rustix::param::page_size() as u64;
    let start = offset / page * page;
    let end = (offset + n).div_ceil(page) * page;
    (start, (end - start).max(page))
}

/// The completion step of every backend, for the requests of one lane that
/// finished (`done`: each with its result, bytes or a negated errno): gives
/// the lane's slots back first, except those of writes that wait for their
/// write-back (`Request::keeps_slot`), so a handler that resubmits from
/// this thread finds room; then completes each request inside
/// `context::atomic()` — the lane's driver is endio's interrupt.
/// Write-back stages go to `stage`, to be issued next (those of batched
/// dontcache writes without a slot of their own). Empties `done`.
pub(crate) fn complete_all(
    completer: &Completer,
    slots: &Slots,
    done: &mut Vec<(Request, i64)>,
    mut stage: impl FnMut(Request),
) {
    if done.is_empty() {
        return;
    }
    let freed = done
        .iter()
        .filter(|(req, res)| req.holds_slot() && !req.keeps_slot(*res))
        .count();
    slots.release(u32::try_from(freed).unwrap_or(u32::MAX));
    let _atomic = context::atomic();
    for (req, res) in done.drain(..) {
        if let Some(next) = complete(completer, req, res) {
            stage(next);
        }
    }
}

/// Completes `req` with `res`: records the result, hands the bio to
/// `completer.endio()` and then counts the I/O done on its device. A write
/// that waits for its write-back becomes its write-back stage instead,
/// returned for the backend to issue next on the same in-flight slot; when
/// that ends, its result is latched on the device and, for a
/// `WAIT_WRITEBACK` write, becomes the bio's. The device's follow-up runs
/// at the end.
///
/// In atomic context. The device's reference is dropped before the
/// in-flight count falls, so a `drain` that sees zero knows no backend
/// thread holds the device any more (and the file is closed by the user's
/// thread, never by a reaper); a stage still holds it, and `drain` waits
/// for the dontcache backlog too.
fn complete(completer: &Completer, req: Request, res: i64) -> Option<Request> {
    let batched = req.batched_write();
    let Request {
        mut bio,
        dev,
        mut behind,
        wait,
        sync,
        ..
    } = req;
    let inflight = Arc::clone(&dev.inflight);
    if let Some(stage) = sync {
        // A stage of a dontcache write ended. The write was counted in
        // flight until now: a kick holds no backlog unit, so without the
        // count a `drain` could return while it still holds the device.
        if res < 0 {
            dev.wb.failed(res);
        }
        match stage {
            NextStage::Kick(_) => DeviceState::kicked(dev, completer, bio),
            NextStage::Wait(_, batch) => DeviceState::batch_done(dev, completer, bio, batch, res),
        }
        inflight.done();
        return None;
    }
    if batched && let Some(mut plan) = behind.take() {
        // A dontcache write: its caller's bio completes now, its slot is
        // free again, and the kick of its write-back or a batch's wait
        // follows (counted in the device's in flight until that ends).
        bio.set_raw_result(res);
        dev.transferred(&mut plan, res);
        completer.endio(bio);
        let (stage, stage_bio) = dev.write_done(plan, res);
        return Some(Request {
            bio: stage_bio,
            dev,
            description: Description::Device,
            rw_flags: 0,
            wait: None,
            behind: None,
            sync: Some(stage),
        });
    }
    match wait {
        Some(w) if w.stage.is_some() => {
            // The write-back stage of a write ended.
            let written = w.stage.map_or(0, |(_, _, n)| n);
            if res < 0 {
                dev.wb.failed(res);
            }
            dev.wb.release(w.waiter);
            let stage_bio = if w.hold {
                bio.set_raw_result(if res < 0 { res } else { written });
                completer.endio(bio);
                None
            } else {
                Some(bio)
            };
            match behind {
                Some(behind) => DeviceState::written_back(dev, completer, behind, stage_bio, res),
                None => drop(dev),
            }
            if w.hold {
                inflight.done();
            }
            None
        }
        wait => {
            bio.set_raw_result(res);
            if res < 0 && bio.op() == Op::Flush {
                // A failed flush is a write-back error of the device (a
                // flush cancelled at shutdown is not).
                dev.wb.failed(res);
            }
            if let Some(behind) = &mut behind {
                dev.transferred(behind, res);
            }
            if let Some(mut w) = wait {
                if res > 0 {
                    let (offset, len) = page_range(bio.offset(), res.unsigned_abs());
                    w.stage = Some((offset, len, res));
                    let stage_bio = if w.hold {
                        Some(bio)
                    } else {
                        completer.endio(bio);
                        behind.as_mut().and_then(FollowUp::take_stage_bio)
                    };
                    if let Some(stage_bio) = stage_bio {
                        let hold = w.hold;
                        let stage = Request {
                            bio: stage_bio,
                            dev,
                            description: Description::Device,
                            rw_flags: 0,
                            wait: Some(w),
                            behind,
                            sync: None,
                        };
                        if !hold {
                            inflight.done();
                        }
                        return Some(stage);
                    }
                    // Cannot happen: a follow-up that waits has its stage
                    // bio until here. Without a stage the drop writes back
                    // first.
                    dev.wb.release(w.waiter);
                    if let Some(behind) = behind {
                        DeviceState::written_back(dev, completer, behind, None, 0);
                    }
                    inflight.done();
                    return None;
                }
                dev.wb.release(w.waiter);
            }
            completer.endio(bio);
            match behind {
                Some(behind) => DeviceState::not_written(dev, completer, behind, res),
                None => drop(dev),
            }
            inflight.done();
            None
        }
    }
}
