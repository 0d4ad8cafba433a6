//! The users' handle of an open device: submitting bios, waiting for them,
//! and what the device says about itself.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::cache::Residency;
use super::check::{SubmitError, SubmitErrorKind};
use super::config::Backend;
use super::dontcache::{Dontcache, DontcacheMode, DontcacheStats, Routing};
use super::request::{Request, Wait};
use super::shared::EngineShared;
use super::state::{DeviceKind, DeviceState, FollowUp};
use super::writeback::WritebackErrors;
use crate::bio::{Bio, BioFlags, Buf, Op};
use crate::context;
use crate::sys;

/// An open file, block device or in-memory device of an [`Engine`]: submit
/// bios to it from any thread.
///
/// Cheap to clone; when the last clone is dropped (in task context), it
/// waits for the device's in-flight I/O and then closes the file.
///
/// [`Engine`]: crate::Engine
#[derive(Clone)]
pub struct Device {
    handle: Arc<DeviceHandle>,
}

/// The users' side; dropping the last one drains.
struct DeviceHandle {
    shared: Arc<DeviceState>,
    /// Where its bios are queued.
    engine: Arc<EngineShared>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.handle.shared;
        f.debug_struct("Device")
            .field("path", &d.path)
            .field("kind", &d.kind)
            .field("backend", &d.backend)
            .field("read", &d.readable)
            .field("write", &d.writable)
            .field("direct", &d.direct)
            .field("logical_block_size", &d.logical_block_size)
            .field("buf_align", &d.mem_align)
            .field("size", &d.size)
            .field("in_flight", &d.inflight.get())
            .field("dontcache", &d.dontcache().map(|dc| dc.mode))
            .finish()
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        // Closing the file while pool threads may still use its descriptor
        // number would be wrong, so the last user handle waits for the
        // device's I/O (which ends: every lane completes or cancels what it
        // holds). In atomic context it may not wait: the in-flight requests
        // keep the file open, and the last of them closes it.
        if !context::in_atomic() {
            self.shared.drain_until(None);
        }
    }
}

impl Device {
    pub(crate) fn new(shared: Arc<DeviceState>, engine: Arc<EngineShared>) -> Device {
        Device {
            handle: Arc::new(DeviceHandle { shared, engine }),
        }
    }

    /// Submits `bio`: checks it, waits for an in-flight slot if every slot
    /// is taken (in task context; in atomic context it is refused with
    /// [`SubmitErrorKind::Busy`] instead), and queues it. Its handler runs
    /// exactly once when the I/O completes, through the engine's
    /// [`Completer`](crate::Completer).
    ///
    /// A refused bio comes back inside the error with a message naming the
    /// problem and the fix; its handler has not run.
    pub fn submit(&self, bio: Bio) -> Result<(), SubmitError> {
        self.submit_with(bio, !context::in_atomic())
    }

    /// As [`submit`](Self::submit), but never waits: when every slot is
    /// taken the bio comes back with [`SubmitErrorKind::Busy`].
    pub fn try_submit(&self, bio: Bio) -> Result<(), SubmitError> {
        self.submit_with(bio, false)
    }

    fn submit_with(&self, mut bio: Bio, may_wait: bool) -> Result<(), SubmitError> {
        let dev = &self.handle.shared;
        if let Err((kind, message)) = dev.check(&bio) {
            return Err(SubmitError::new(kind, message, bio));
        }
        if let Err((kind, message)) = dev.settle_mixed(&bio, may_wait) {
            return Err(SubmitError::new(kind, message, bio));
        }
        let route = match dev.dontcache_for(&bio) {
            None => Routing::PLAIN,
            Some(dc) => match dc.route(dev.io(), &bio, may_wait, || dev.drop_bio()) {
                Ok(route) => route,
                Err(()) => {
                    let message = dev.backlog_refusal(&bio);
                    return Err(SubmitError::new(SubmitErrorKind::Busy, message, bio));
                }
            },
        };
        if bio.op() == Op::Read
            && let Some(cached) = dev.cached_bytes(&bio, route.cached_bytes)
        {
            bio.set_cached_bytes(cached);
        }
        let behind = route.plan.map(FollowUp);
        // A write waits for its write-back on a description taken now,
        // before the write is issued (see `writeback.rs`): a WAIT_WRITEBACK
        // write, for its result; a dontcache write, to drop clean pages,
        // where its device does not wait for them in batches.
        let hold =
            bio.op() == Op::Write && bio.flags().contains(BioFlags::WAIT_WRITEBACK) && !dev.direct;
        let wait = if hold
            || (behind.as_ref().is_some_and(FollowUp::writes) && !dev.batches_writes())
        {
            match dev.wb.acquire(dev.file()) {
                Ok(waiter) => Some(Wait::new(waiter, hold)),
                Err(e) => {
                    self.unreserve(behind);
                    let message = format!(
                        "cannot write to {}: endio cannot open a second description of it to wait for the write-back ({e}); raise the open-file limit (ulimit -n) or keep fewer writes in flight",
                        dev.path.display()
                    );
                    return Err(SubmitError::new(
                        SubmitErrorKind::NoDescriptor,
                        message,
                        bio,
                    ));
                }
            }
        } else {
            None
        };
        let req = Request {
            bio,
            dev: Arc::clone(dev),
            description: route.description,
            rw_flags: route.rw_flags,
            wait,
            behind,
            sync: None,
        };
        dev.inflight.add();
        let engine = &self.handle.engine;
        match engine.enqueue(req, may_wait) {
            Ok(()) => Ok(()),
            Err((req, kind)) => {
                self.unreserve(req.behind);
                if let Some(w) = req.wait {
                    dev.wb.release(w.waiter);
                }
                dev.inflight.done();
                let message = dev.refusal(kind, &req.bio, engine.lanes.len(), engine.queue_depth);
                Err(SubmitError::new(kind, message, req.bio))
            }
        }
    }

    /// A refused submit gives its dontcache unit back.
    fn unreserve(&self, behind: Option<FollowUp>) {
        if let (Some(behind), Some(dc)) = (behind, self.handle.shared.dontcache()) {
            dc.unreserve(behind.0);
        }
    }

    /// Waits until none of this device's bios is in flight, and all
    /// dontcache drop-behind is done (every written range's write-back
    /// finished and its drop made).
    ///
    /// A bio leaves the in-flight count when its completion has been handed
    /// to [`Completer::endio`](crate::Completer::endio). What `drain` does
    /// **not** wait for:
    ///
    /// * handlers queued to run in task context
    ///   ([`BioFlags::COMPLETE_IN_TASK`]): when `drain` returns they may not
    ///   have started, or may still be running;
    /// * bios that such handlers submit after `drain` saw the count at
    ///   zero. A chain of handlers that resubmit (a sequential writer, a
    ///   retry) therefore outlives `drain`, and also `drain` followed by
    ///   [`Completer::wait_idle`](crate::Completer::wait_idle), which sees
    ///   no handler queued while the next bio is in flight;
    /// * bios of other devices.
    ///
    /// To wait for "every bio and every handler, and what the handlers
    /// submitted", submit through a [`Group`](crate::Group) and call
    /// [`Group::wait`](crate::Group::wait): a bio stays counted in until its
    /// handler has returned, so a handler that submits into the same group
    /// keeps it open. For a single I/O, [`Device::write_all_at`] and the
    /// other blocking calls wait for their own bio.
    ///
    /// # Panics
    ///
    /// In atomic context, where waiting is not allowed (it could wait for
    /// the very reaper it runs on).
    pub fn drain(&self) {
        assert!(
            !context::in_atomic(),
            "Device::drain called in atomic context (a reaper or an atomic section), where it would wait for itself; drain from task context"
        );
        self.handle.shared.drain_until(None);
    }

    /// As [`drain`](Self::drain), for at most `timeout`; `false` if I/O (or
    /// dontcache drop-behind) was still outstanding then. In atomic context
    /// it only looks.
    pub fn drain_timeout(&self, timeout: Duration) -> bool {
        let timeout = if context::in_atomic() {
            Duration::ZERO
        } else {
            timeout
        };
        self.handle
            .shared
            .drain_until(Some(std::time::Instant::now() + timeout))
    }

    /// Which dontcache path the device's I/O takes: `None` unless it was
    /// opened with [`OpenOptions::dontcache`](crate::OpenOptions::dontcache) (or
    /// [`dontcache_emulated`](crate::OpenOptions::dontcache_emulated)). A memory
    /// device of the null backend reports [`DontcacheMode::Emulated`]: the
    /// emulation's protocol runs (backlog, writeback stage, drop bios
    /// through the completer, coalescing) with no system calls, since
    /// memory has no page cache.
    pub fn dontcache_mode(&self) -> Option<DontcacheMode> {
        let d = &self.handle.shared;
        if d.whole_device_dontcache {
            d.dontcache().map(|dc| dc.mode)
        } else {
            None
        }
    }

    /// The write-back errors endio has seen on this device so far: from
    /// the write-back waits of dontcache and
    /// [`WAIT_WRITEBACK`](BioFlags::WAIT_WRITEBACK) writes, from failed
    /// flushes and from [`check_writeback`](Self::check_writeback). Looking
    /// consumes nothing: the next [`Bio::flush`] of the device still
    /// reports every write-back error since the previous one.
    pub fn writeback_errors(&self) -> WritebackErrors {
        self.handle.shared.wb.errors()
    }

    /// Asks the kernel whether write-back of this device's data has failed
    /// (task context: it opens a second description of the file, which
    /// reports what nobody has seen yet), latches what it says, and returns
    /// the first write-back error endio has seen on the device, if any.
    /// Like [`writeback_errors`](Self::writeback_errors) it consumes
    /// nothing that a flush would report. Use it where no flush follows: a
    /// write-back error of a buffered write is otherwise reported only by
    /// the next flush.
    pub fn check_writeback(&self) -> io::Result<()> {
        let d = &self.handle.shared;
        if let Some(file) = d.file() {
            d.wb.probe(file)?;
        }
        match d.wb.errors().first() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the device's dontcache I/O (whole-device or per-bio) did so
    /// far; all zero if it did none.
    pub fn dontcache_stats(&self) -> DontcacheStats {
        self.handle
            .shared
            .dontcache()
            .map(Dontcache::stats)
            .unwrap_or_default()
    }

    /// The page-cache residency of the whole file or block device (see
    /// [`cache::residency`](super::cache::residency)). A memory device of
    /// the null backend has no page cache: all zero.
    pub fn residency(&self) -> io::Result<Residency> {
        match self.handle.shared.file() {
            Some(file) => super::cache::residency(file, 0..0),
            None => Ok(Residency {
                cached_bytes: 0,
                dirty_bytes: 0,
                writeback_bytes: 0,
                page_size: rustix::param::page_size() as u64,
                source: sys::CacheStatSource::Cachestat,
            }),
        }
    }

    /// Bios submitted to this device whose completion has not yet been
    /// handed to the completer.
    pub fn in_flight(&self) -> u32 {
        self.handle.shared.inflight.get()
    }

    /// A zeroed buffer of `len` bytes aligned as this device needs for
    /// `O_DIRECT` (harmless otherwise): a block of the engine's registered
    /// buffer pool if it has one free (see
    /// [`EngineBuilder::registered_buffers`](crate::EngineBuilder::registered_buffers)),
    /// else a heap buffer.
    pub fn buf(&self, len: usize) -> Buf {
        let align = self.buf_align();
        if let Some(pool) = &self.handle.engine.pool
            && align <= 4096
            && let Some(block) = pool.alloc(len)
        {
            return Buf::from_pool(block, len);
        }
        Buf::zeroed(len, align)
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// File, block device, or in-memory device.
    pub fn kind(&self) -> DeviceKind {
        self.handle.shared.kind
    }

    /// The unit of offsets and lengths for `O_DIRECT` (`BLKSSZGET` for a
    /// block device, `statx` `dio_offset_align` for a file, 4096 when the
    /// filesystem does not say; for buffered files, 512 unless the
    /// filesystem says otherwise).
    pub fn logical_block_size(&self) -> u32 {
        self.handle.shared.logical_block_size
    }

    /// The alignment [`Device::buf`] gives: the buffer alignment `O_DIRECT`
    /// needs, and never less than the logical block size.
    pub fn buf_align(&self) -> usize {
        let d = &self.handle.shared;
        d.mem_align.max(d.logical_block_size) as usize
    }

    /// Size in bytes: of the block device or memory device, or of the file
    /// when it was opened.
    pub fn size(&self) -> u64 {
        self.handle.shared.size
    }

    /// Whether it was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.handle.shared.direct
    }

    /// The backend its I/O goes through.
    pub fn backend(&self) -> Backend {
        self.handle.shared.backend
    }

    /// The CPUs whose rings this device's I/O is issued on, when it is
    /// steered to the CPUs that take its completion interrupts (see
    /// `EngineBuilder::steer_direct_io`); `None`: each I/O goes to the ring
    /// of the CPU that submits it.
    pub fn steered_cpus(&self) -> Option<Vec<usize>> {
        let lanes = self.handle.shared.steer.as_deref()?;
        let engine = &self.handle.engine;
        Some(
            lanes
                .iter()
                .filter_map(|&l| engine.lanes[l as usize].cpu)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::OpenError;

    #[test]
    fn submit_error_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SubmitError>();
        check::<OpenError>();
        check::<Device>();
    }
}
