//! One block device, two ways in: `O_DIRECT` and the page cache in one
//! process.
//!
//! A block device's page cache is shared by every buffered opener; `O_DIRECT`
//! I/O bypasses it. Mixed on one range, a direct write can be overwritten
//! later by an older dirty page written back from the cache, or leave a
//! stale clean page that buffered readers keep seeing; a direct read can
//! miss data still dirty in the cache. So before a direct I/O to a device
//! that this process also has open buffered:
//!
//! 1. Every open of a block device registers here, keyed by its device
//!    number (`st_rdev`), as buffered or direct; the registration ends with
//!    the device's state (the last in-flight request or user handle).
//! 2. A direct read or write of a device with no buffered registration
//!    costs one relaxed atomic load: no system call, no lock.
//! 3. Otherwise the range's pages are looked up (one `cachestat(2)`, which
//!    never blocks). A write that finds cached pages, or a read that finds
//!    dirty or under-writeback pages, must first have the range written back
//!    (`sync_file_range`, on a description of endio's own, so that no
//!    write-back error a buffered opener's flush must report is consumed)
//!    and dropped (`POSIX_FADV_DONTNEED`).
//! 4. That blocks: in task context the submit does it; where the caller may
//!    not wait (atomic context, `try_submit`) the bio is refused, with a
//!    message that says to submit it from task context.
//!
//! Why that is enough for I/O the caller orders: after step 3 the range has
//! no dirty page that write-back could later put over the direct write, and
//! no clean page older than it (a page mapped by someone, which the kernel
//! never drops, is the exception). Buffered and direct I/O *in flight at the
//! same time* on one range stay unordered, as they are between any two
//! writers of one block device: the caller orders them.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::sys;

/// How many opens of one block device this process holds.
#[derive(Debug, Default)]
struct Opens {
    buffered: AtomicU32,
    direct: AtomicU32,
}

/// The process's open block devices, by device number. Changed only under
/// its lock; the counts are read without it (step 2).
fn registry() -> &'static Mutex<HashMap<u64, Arc<Opens>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<u64, Arc<Opens>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// One open of a block device, registered until dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    rdev: u64,
    direct: bool,
    opens: Arc<Opens>,
}

/// Registers an open of the block device numbered `rdev`.
pub(crate) fn register(rdev: u64, direct: bool) -> Registration {
    let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
    let opens = Arc::clone(map.entry(rdev).or_default());
    let count = if direct {
        &opens.direct
    } else {
        &opens.buffered
    };
    // Relaxed: the count is changed under the registry's lock, and a
    // submit that must see this open is ordered after it by the caller
    // (coherence makes a relaxed load see it then).
    count.fetch_add(1, Ordering::Relaxed);
    Registration {
        rdev,
        direct,
        opens,
    }
}

impl Registration {
    /// Whether the process holds a buffered open of this block device
    /// (step 2).
    pub(crate) fn buffered_opens(&self) -> bool {
        // Relaxed: see `register`.
        self.opens.buffered.load(Ordering::Relaxed) > 0
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = registry().lock().unwrap_or_else(PoisonError::into_inner);
        let count = if self.direct {
            &self.opens.direct
        } else {
            &self.opens.buffered
        };
        // Relaxed: as in `register`.
        count.fetch_sub(1, Ordering::Relaxed);
        if self.opens.buffered.load(Ordering::Relaxed) == 0
            && self.opens.direct.load(Ordering::Relaxed) == 0
        {
            map.remove(&self.rdev);
        }
    }
}

/// What a direct I/O of a range needs first (step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    /// Nothing in the cache conflicts: issue it.
    Clear,
    /// Write back and drop the page-aligned `(offset, len)` first.
    WriteBackAndDrop(u64, u64),
}

/// Step 3's look-up for a direct `write` (or read) of `len` bytes at
/// `offset` of the block device behind `fd`: never blocks. A look-up the
/// kernel refuses counts as a conflict (the safe side).
pub(crate) fn look(fd: BorrowedFd<'_>, offset: u64, len: u64, write: bool) -> Settle {
    let page = rustix::param::page_size() as u64;
    let start = offset / page * page;
    let end = (offset + len).div_ceil(page) * page;
    if end == start {
        return Settle::Clear;
    }
    let (stat, source) = match sys::cache_stat(fd, start, end - start) {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(error = %e, "cachestat failed; the range is written back and dropped");
            return Settle::WriteBackAndDrop(start, end - start);
        }
    };
    // Without cachestat (the mincore fallback) dirty pages are not seen:
    // any cached page then counts, for a read too.
    let conflicts = if write || source == sys::CacheStatSource::Mincore {
        stat.cached > 0
    } else {
        stat.dirty + stat.writeback > 0
    };
    if conflicts {
        Settle::WriteBackAndDrop(start, end - start)
    } else {
        Settle::Clear
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_are_counted_per_device_and_forgotten_when_dropped() {
        // Device numbers no real device has (major 4095).
        let (a, b) = (0xfff_0000_0001, 0xfff_0000_0002);
        let direct = register(a, true);
        assert!(!direct.buffered_opens());
        let other = register(b, false);
        assert!(!direct.buffered_opens(), "another device's buffered open");
        let buffered = register(a, false);
        assert!(direct.buffered_opens());
        let buffered2 = register(a, false);
        drop(buffered);
        assert!(direct.buffered_opens(), "one buffered open is left");
        drop(buffered2);
        assert!(!direct.buffered_opens());
        drop(direct);
        assert!(!registry().lock().unwrap().contains_key(&a));
        drop(other);
        assert!(!registry().lock().unwrap().contains_key(&b));
    }
}
