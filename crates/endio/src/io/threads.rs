//! The thread-pool backend: `pread`/`pwrite`/`fdatasync` on a small pool of
//! threads, for kernels and sandboxes without io_uring.
//!
//! One lane (one inbox, `queue_depth` slots) feeds every pool thread; a
//! thread takes one request at a time, performs it with a blocking system
//! call, gives the slot back and completes the request inside
//! `context::atomic()`, exactly like an io_uring reaper: to the completer a
//! pool thread is an interrupt. Idle threads sleep on the lane's futex
//! doorbell; a submitter wakes one. The write-back stage of a write that
//! waits for it is a blocking `sync_file_range(2)` on the same thread, on
//! the write's own waiter, after the write's completion and outside the
//! atomic section.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rustix::io::ReadWriteFlags;

use super::request::{Request, complete_all};
use super::shared::EngineShared;
use crate::bio::Op;

/// Starts pool thread `index` of the (single) lane.
pub(crate) fn spawn(
    shared: Arc<EngineShared>,
    index: usize,
) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("endio-pool/{index}"))
        .spawn(move || pool_main(&shared))
}

fn pool_main(shared: &EngineShared) {
    let lane = &shared.lanes[0];
    let bell = lane.bell.doorbell();
    // One request at a time, with room for its stage: allocated once.
    let mut done = Vec::with_capacity(1);
    loop {
        // SeqCst: pairs with the store in `EngineShared::shutdown`.
        let closed = shared.closed.load(Ordering::SeqCst);
        if let Some(req) = lane.inbox.pop() {
            // A write that waits for its write-back chains its stage, which
            // this thread performs next (on the write's slot, but for a
            // batched dontcache write's; blocking here, as the device
            // would, outside the atomic section). Bounded: a stage never
            // chains.
            let mut next = Some(req);
            while let Some(mut req) = next.take() {
                let res = if closed {
                    -i64::from(libc::ECANCELED)
                } else {
                    perform(&mut req)
                };
                done.push((req, res));
                complete_all(&shared.completer, &lane.slots, &mut done, |stage| {
                    next = Some(stage);
                });
            }
            continue;
        }
        if closed && lane.slots.all_free() {
            return;
        }
        let timeout = if closed {
            Duration::from_millis(1)
        } else {
            Duration::from_millis(100)
        };
        // `closed` is checked too: a shutdown between the load above and
        // the sleep bumps the doorbell after setting it (see `Doorbell`).
        bell.sleep(
            || !lane.inbox.is_empty() || shared.closed.load(Ordering::SeqCst),
            timeout,
        );
    }
}

/// Performs one request with blocking system calls: bytes transferred, or a
/// negated errno.
fn perform(req: &mut Request) -> i64 {
    if let Some((offset, len)) = req.writeback_range() {
        // On a description of endio's own, never the device's (but for a
        // kick, which consumes no error).
        let Some(fd) = req.fd() else {
            return 0;
        };
        return match crate::sys::sync_range_with(fd, offset, len, req.sync_flags()) {
            Ok(()) => 0,
            Err(e) => -i64::from(e.raw_os_error().unwrap_or(libc::EIO)),
        };
    }
    let Some(file) = req.dev.file_for(req.description) else {
        return -i64::from(libc::EBADF);
    };
    let fd = file.as_fd();
    let offset = req.bio.offset();
    let flags = ReadWriteFlags::from_bits_retain(req.rw_flags as u32);
    let len = req.transfer_len();
    let result = loop {
        let r = match req.bio.op() {
            Op::Read => {
                let buf = &mut req.bio.buf_mut()[..len];
                if flags.is_empty() {
                    rustix::io::pread(fd, buf, offset)
                } else {
                    rustix::io::preadv2(fd, &mut [io::IoSliceMut::new(buf)], offset, flags)
                }
            }
            Op::Write => {
                let buf = &req.bio.buf()[..len];
                if flags.is_empty() {
                    rustix::io::pwrite(fd, buf, offset)
                } else {
                    rustix::io::pwritev2(fd, &[io::IoSlice::new(buf)], offset, flags)
                }
            }
            Op::Flush => rustix::fs::fdatasync(fd).map(|()| 0),
            Op::Nop => Ok(0),
        };
        match r {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    };
    match result {
        Ok(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Err(e) => -i64::from(e.raw_os_error()),
    }
}
