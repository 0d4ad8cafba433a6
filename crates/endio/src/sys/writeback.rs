//! Write-back errors as the kernel reports them: per open file description
//! (`errseq_t`), not per range.
//!
//! Every `fsync`, `fdatasync` and waiting `sync_file_range` on a description
//! ends in `file_check_and_advance_wb_err()`: it reports the write-back
//! errors of the file that happened since that description last looked, and
//! advances the description's cursor. A wait on the user's own description
//! would therefore *consume* the error that the user's next flush should
//! see. endio waits for write-back only on descriptions of its own
//! ([`reopen_for_writeback`]) and looks with [`writeback_error_probe`].

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// `SYNC_FILE_RANGE_WAIT_BEFORE`.
const WAIT_BEFORE: u32 = 1;

/// An offset past any page a file or block device can have: a wait there
/// waits for nothing.
const NO_PAGE: i64 = i64::MAX - 1;

/// A new open file description of the file behind `fd`, for waiting on
/// write-back (`/proc/self/fd/N`): read-only where the file may be read,
/// else write-only. Its error cursor starts where the kernel's `open` puts
/// it: before any error nobody has seen yet.
pub fn reopen_for_writeback(fd: impl AsFd) -> io::Result<File> {
    let path = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    File::open(&path).or_else(|_| std::fs::OpenOptions::new().write(true).open(&path))
}

/// Reports (and advances past) the write-back errors of the file that
/// happened since the description `fd` last looked, without waiting for any
/// page: `sync_file_range(WAIT_BEFORE)` on a range no page can be in.
pub fn writeback_error_probe(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        // SAFETY: sync_file_range takes integers only and touches no memory
        // of ours.
        let rc = unsafe { libc::sync_file_range(fd.as_raw_fd(), NO_PAGE, 1, WAIT_BEFORE) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn a_probe_of_a_healthy_file_reports_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = File::create(dir.path().join("f")).unwrap();
        f.set_len(1 << 20).unwrap();
        writeback_error_probe(f.as_fd()).unwrap();
        let twin = reopen_for_writeback(&f).unwrap();
        writeback_error_probe(twin.as_fd()).unwrap();
    }
}
