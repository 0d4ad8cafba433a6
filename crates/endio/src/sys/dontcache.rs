//! The system calls of dontcache I/O: the `RWF_DONTCACHE` probe, starting
//! and waiting for writeback of a range (`sync_file_range(2)`), dropping a
//! range from the page cache and turning readahead off (`posix_fadvise(2)`),
//! and a second open file description of an open file.

use std::fs::File;
use std::io;
use std::num::NonZeroU64;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::fs::Advice;
use rustix::io::ReadWriteFlags;

/// `RWF_DONTCACHE` (Linux 6.14): uncached buffered I/O, per call.
pub const RWF_DONTCACHE: i32 = 0x80;

/// `sync_file_range(2)` flags that start writeback of a range and wait until
/// all of it is written: `SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER`
/// (what `SYNC_FILE_RANGE_WRITE_AND_WAIT` names in newer headers).
pub const SYNC_RANGE_WRITE_AND_WAIT: u32 = 1 | 2 | 4;

/// `SYNC_FILE_RANGE_WRITE` alone: start writeback of the range's dirty
/// pages (those not under writeback yet) and return without waiting; it
/// reports no write-back error and consumes none.
pub const SYNC_RANGE_WRITE: u32 = 2;

/// What the kernel said to an `RWF_DONTCACHE` I/O on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DontcacheProbe {
    /// The kernel accepted the flag for this file.
    Supported,
    /// `EOPNOTSUPP`: the kernel lacks the flag (before 6.14), or this
    /// file's filesystem or block device does not implement it.
    Unsupported,
}

/// The errno of a probe I/O as the probe's answer: success or `EOPNOTSUPP`
/// (the kernel's answer both to an unknown `RWF_*` bit and to a file whose
/// `f_op` lacks `FOP_DONTCACHE`) decide; anything else is an error.
pub fn dontcache_probe_result(res: i64) -> io::Result<DontcacheProbe> {
    if res >= 0 {
        Ok(DontcacheProbe::Supported)
    } else if res == -i64::from(libc::EOPNOTSUPP) || res == -i64::from(libc::EINVAL) {
        // EINVAL: a kernel before RWF_* validation returned it for unknown
        // bits; either way the flag cannot be used.
        Ok(DontcacheProbe::Unsupported)
    } else {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        Err(io::Error::from_raw_os_error(errno))
    }
}

/// Asks the kernel whether `RWF_DONTCACHE` works on `fd` with a one-byte
/// `preadv2(2)` at `eof` (the size of the file or device): the kernel checks
/// the flags before it looks at the offset, and at the end of the file no
/// data is read, so the probe does no I/O. `fd` must be open for reading.
pub fn probe_dontcache_preadv2(fd: BorrowedFd<'_>, eof: u64) -> io::Result<DontcacheProbe> {
    let mut byte = [0u8; 1];
    let flags = ReadWriteFlags::from_bits_retain(RWF_DONTCACHE as u32);
    loop {
        let r = rustix::io::preadv2(fd, &mut [io::IoSliceMut::new(&mut byte)], eof, flags);
        match r {
            Ok(n) => return dontcache_probe_result(n as i64),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return dontcache_probe_result(-i64::from(e.raw_os_error())),
        }
    }
}

/// The same probe through io_uring's `rw_flags` (an `IORING_OP_READ` on a
/// private two-entry ring), which is the path the io_uring backend's I/O
/// takes. `Err` if no ring can be set up here; the caller then asks
/// `preadv2`.
pub fn probe_dontcache_uring(fd: BorrowedFd<'_>, eof: u64) -> io::Result<DontcacheProbe> {
    use io_uring::{IoUring, opcode, types};
    let mut ring = IoUring::new(2)?;
    // The target of the read is on the heap and freed only once its
    // completion is reaped; on any early return it is leaked (one byte),
    // since the kernel might still write to it.
    let byte: *mut [u8; 1] = Box::into_raw(Box::new([0u8; 1]));
    let read = opcode::Read::new(types::Fd(fd.as_raw_fd()), byte.cast::<u8>(), 1)
        .offset(eof)
        .rw_flags(RWF_DONTCACHE)
        .build()
        .user_data(1);
    // SAFETY: the SQE points to `byte`, which stays allocated until the
    // request's completion is reaped (or forever), and to `fd`, which the
    // kernel pins once the request is issued.
    unsafe { ring.submission().push(&read) }
        .map_err(|_| io::Error::other("a fresh io_uring has no room for one entry"))?;
    // Bounded: the read at the end of the file completes at once, and the
    // loop only repeats on EINTR.
    for _ in 0..100 {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
        if let Some(cqe) = ring.completion().next() {
            // SAFETY: the only request is complete, so nothing refers to
            // `byte` any more; it came from `Box::into_raw` above.
            drop(unsafe { Box::from_raw(byte) });
            return dontcache_probe_result(i64::from(cqe.result()));
        }
    }
    Err(io::Error::other(
        "the io_uring dontcache probe did not complete",
    ))
}

/// Starts writeback of `len` bytes of `fd` at `offset` and waits until it
/// has finished (`sync_file_range(2)` with [`SYNC_RANGE_WRITE_AND_WAIT`]).
/// It writes no metadata and flushes no device cache: what it guarantees is
/// that the range's pages are clean, so that dropping them loses nothing.
pub fn sync_range(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    sync_range_with(fd, offset, len, SYNC_RANGE_WRITE_AND_WAIT)
}

/// `sync_file_range(2)` of `len` bytes at `offset` with `flags`
/// ([`SYNC_RANGE_WRITE`]: start write-back and return; with the wait bits:
/// wait, reporting the description's write-back errors), retried on
/// `EINTR`.
pub fn sync_range_with(fd: BorrowedFd<'_>, offset: u64, len: u64, flags: u32) -> io::Result<()> {
    let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    loop {
        // SAFETY: sync_file_range takes integers only and touches no memory
        // of ours.
        let rc = unsafe { libc::sync_file_range(fd.as_raw_fd(), off, n, flags) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Drops the clean pages of `len` bytes at `offset` from the page cache
/// (`POSIX_FADV_DONTNEED`). The kernel keeps dirty, under-writeback, locked
/// and mapped pages, and partial pages at either end: callers pass
/// page-aligned ranges. `len` 0 does nothing.
pub fn drop_range(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    let Some(len) = NonZeroU64::new(len) else {
        return Ok(());
    };
    rustix::fs::fadvise(fd, offset, Some(len), Advice::DontNeed).map_err(io::Error::from)
}

/// Turns readahead off for the open file description of `fd`
/// (`POSIX_FADV_RANDOM`): reads then bring exactly the pages they cover into
/// the cache and nothing beyond. Other descriptions of the same file are not
/// affected.
pub fn no_readahead(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fadvise(fd, 0, None, Advice::Random).map_err(io::Error::from)
}

/// A new open file description of the file behind `fd`, read-only
/// (`/proc/self/fd/N`, close-on-exec like every descriptor the standard
/// library opens): its own readahead state. Works for a block device held
/// with `O_EXCL` too (only exclusive opens conflict).
pub fn reopen_read_only(fd: impl AsFd) -> io::Result<File> {
    File::open(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Default readahead window of a block device (`read_ahead_kb`, 128).
pub const READ_AHEAD_DEFAULT: u64 = 128 << 10;

/// The most bytes the kernel reads ahead of a sequential reader of `fd` at
/// once: `read_ahead_kb` of the backing device (its `bdi`; for a
/// partition, its disk's queue), [`READ_AHEAD_DEFAULT`] where sysfs does
/// not say.
pub fn read_ahead_bytes(fd: impl AsFd) -> u64 {
    let Ok(st) = rustix::fs::fstat(fd) else {
        return READ_AHEAD_DEFAULT;
    };
    let blk = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::BlockDevice;
    let dev = if blk { st.st_rdev } else { st.st_dev };
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    [
        format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"),
        format!("/sys/dev/block/{major}:{minor}/queue/read_ahead_kb"),
        format!("/sys/dev/block/{major}:{minor}/../queue/read_ahead_kb"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u64>().ok())
    .map_or(READ_AHEAD_DEFAULT, |kb| kb << 10)
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn probe_results_mean_what_they_say() {
        assert_eq!(
            dontcache_probe_result(0).unwrap(),
            DontcacheProbe::Supported
        );
        assert_eq!(
            dontcache_probe_result(1).unwrap(),
            DontcacheProbe::Supported
        );
        assert_eq!(
            dontcache_probe_result(-i64::from(libc::EOPNOTSUPP)).unwrap(),
            DontcacheProbe::Unsupported
        );
        let e = dontcache_probe_result(-i64::from(libc::EBADF)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn zero_length_drop_is_a_no_op_and_sync_range_works_on_a_file() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        drop_range(f.as_fd(), 0, 0).unwrap();
        f.set_len(8192).unwrap();
        sync_range(f.as_fd(), 0, 8192).unwrap();
        drop_range(f.as_fd(), 0, 8192).unwrap();
        no_readahead(f.as_fd()).unwrap();
        let again = reopen_read_only(&f).unwrap();
        assert_eq!(again.metadata().unwrap().len(), 8192);
        // Whatever the device, a window of some KiB to some MiB.
        let ra = read_ahead_bytes(&f);
        assert!((4 << 10..=1 << 30).contains(&ra), "{ra}");
    }
}
