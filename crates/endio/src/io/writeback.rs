//! Write-back waits and write-back errors of one device.
//!
//! # What endio reports, and where
//!
//! The kernel keeps write-back errors per file and reports them per open file
//! description (`errseq_t`): every `fsync`/`fdatasync` and every waiting
//! `sync_file_range` reports the errors that happened since *that
//! description* last looked, and moves its cursor past them. So:
//!
//! 1. A device's own descriptor is only ever synced by the user's
//!    [`Bio::flush`](crate::Bio::flush): endio's own waits (the write-back
//!    stage of dontcache writes and of [`BioFlags::WAIT_WRITEBACK`] writes,
//!    the drop's write-back) run on descriptions of its own ([`Waiter`]), so
//!    they never consume an error the next flush must report. A flush thus
//!    reports every write-back error of the file since the previous flush
//!    of this device (or its open), in every mode and backend, as the
//!    kernel's errseq does: at least once to every open device (clones of
//!    one [`Device`](crate::Device) share one description).
//! 2. A write flagged [`BioFlags::WAIT_WRITEBACK`] takes a description from
//!    the device's pool when it is submitted, advanced past every error so
//!    far ([`WbState::acquire`]), and waits on it for its own range after
//!    the write: the wait reports every write-back error of the file since
//!    the submit. The write's own failure is among them (its pages were
//!    written back after it was submitted), so a failed write-back is never
//!    reported as a success. The kernel does not say *which* range failed:
//!    another range's failure during that window fails this write too.
//! 3. Every error endio sees (a write-back wait, a failed flush, a
//!    [`Device::check_writeback`](crate::Device::check_writeback) probe) is
//!    latched here: [`WritebackErrors`] has how many reports there were and
//!    the first error, for as long as the device is open.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::sys;

/// Descriptions a device keeps for later waits; more may be open at once
/// (one per write waiting for its write-back), the rest are closed.
const POOL_MAX: usize = 64;

/// The write-back errors endio has seen on a device
/// ([`Device::writeback_errors`](crate::Device::writeback_errors)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WritebackErrors {
    /// How many times a write-back wait, a flush or a probe of this device
    /// reported an error (one failure can be reported more than once: by
    /// the wait of each write it overlapped, and by a flush). Zero means
    /// none was seen.
    pub count: u64,
    /// The errno of the first one (`EIO`, `ENOSPC`, ...).
    pub first_errno: Option<i32>,
}

impl WritebackErrors {
    /// The first error, as an `io::Error`.
    pub fn first(&self) -> Option<io::Error> {
        self.first_errno.map(io::Error::from_raw_os_error)
    }
}

/// A description of the device's file that one write waits on, from its
/// submit to the end of its write-back; `None` for a memory device.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) fd: Option<File>,
}

/// The write-back state of one device.
#[derive(Debug)]
pub(crate) struct WbState {
    /// The device's path, for the warning.
    path: PathBuf,
    pool: ArrayQueue<File>,
    count: AtomicU64,
    /// 0 while no error was seen.
    first: AtomicI32,
}

impl WbState {
    pub(crate) fn new(path: &Path) -> WbState {
        WbState {
            path: path.to_path_buf(),
            pool: ArrayQueue::new(POOL_MAX),
            count: AtomicU64::new(0),
            first: AtomicI32::new(0),
        }
    }

    /// Latches the failure `res` (a negated errno) of a write-back wait:
    /// `ECANCELED` (the engine shut down first) and `EINVAL`/`EOPNOTSUPP`
    /// (no asynchronous wait here) say nothing about the data and are not
    /// write-back errors. The first one is said once per device.
    pub(crate) fn failed(&self, res: i64) {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        if matches!(errno, libc::ECANCELED | libc::EINVAL | libc::EOPNOTSUPP) {
            return;
        }
        let first = self.errors().count == 0;
        self.record_errno(errno);
        if first {
            tracing::warn!(
                path = %self.path.display(),
                error = %io::Error::from_raw_os_error(errno),
                "write-back of data written to this device failed: it did not reach the device; the next flush of the device reports the error, and Device::writeback_errors counts it"
            );
        }
    }

    /// Writes back `len` bytes of `file` at `offset` and waits for them, on
    /// a description of endio's own (task context: it blocks). A failure is
    /// latched.
    pub(crate) fn wait_range(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        let waiter = self.acquire(Some(file))?;
        let res = match &waiter.fd {
            Some(fd) => sys::sync_range(fd.as_fd(), offset, len),
            None => Ok(()),
        };
        self.release(waiter);
        if let Err(e) = &res {
            self.failed(-i64::from(e.raw_os_error().unwrap_or(libc::EIO)));
        }
        res
    }

    /// A description of `file` to wait on, advanced past every write-back
    /// error of the file so far (an error found doing so is latched: it is
    /// an earlier write's, reported by the next flush). Never blocks: a
    /// pooled one, else a new one (an `open` of `/proc/self/fd/N`).
    pub(crate) fn acquire(&self, file: Option<&File>) -> io::Result<Waiter> {
        let Some(file) = file else {
            return Ok(Waiter { fd: None });
        };
        let fd = match self.pool.pop() {
            Some(fd) => fd,
            None => sys::reopen_for_writeback(file)?,
        };
        if let Err(e) = sys::writeback_error_probe(fd.as_fd()) {
            self.record(&e);
        }
        Ok(Waiter { fd: Some(fd) })
    }

    /// Gives a description back after its wait.
    pub(crate) fn release(&self, waiter: Waiter) {
        if let Some(fd) = waiter.fd {
            // A full pool closes it (a system call that does not block).
            let _ = self.pool.push(fd);
        }
    }

    /// Latches an error a wait, flush or probe reported.
    pub(crate) fn record(&self, e: &io::Error) {
        let errno = e.raw_os_error().unwrap_or(libc::EIO);
        self.record_errno(errno);
    }

    pub(crate) fn record_errno(&self, errno: i32) {
        // Relaxed: a counter and a write-once word, read as a snapshot; the
        // one who reports an error learns it from its own result.
        let _ = self
            .first
            .compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Looks for write-back errors nobody has reported to endio yet, with a
    /// fresh description of `file` (task context: it opens a file).
    pub(crate) fn probe(&self, file: &File) -> io::Result<()> {
        let waiter = self.acquire(Some(file))?;
        self.release(waiter);
        Ok(())
    }

    pub(crate) fn errors(&self) -> WritebackErrors {
        let first = self.first.load(Ordering::Relaxed);
        WritebackErrors {
            count: self.count.load(Ordering::Relaxed),
            first_errno: (first != 0).then_some(first),
        }
    }
}
