//! The counters of a device's dontcache I/O, declared once: the snapshot
//! type users see and the atomic twin the I/O paths bump follow from one
//! list.

use std::sync::atomic::{AtomicU64, Ordering};

crate::counters::counters! {
/// What a device's dontcache I/O did ([`Device::dontcache_stats`]).
///
/// [`Device::dontcache_stats`]: crate::Device::dontcache_stats
    pub struct DontcacheStats / Counters {
    /// I/Os that carried the kernel's `RWF_DONTCACHE`.
    native_ios,
    /// I/Os done by the emulation (without the flag).
    emulated_ios,
    /// Page ranges handed to the drop (one or more per I/O: the runs of
    /// pages that were not cached before it).
    drops,
    /// `POSIX_FADV_DONTNEED` calls made for them, after coalescing (on a
    /// memory device of the null backend: the calls that would be made; in
    /// native mode only for ranges the kernel left cached).
    drop_calls,
    /// Ranges merged into another range's call.
    coalesced,
    /// Ranges dropped again because pages stayed cached after their drop
    /// (a large folio only partly inside the range, or a folio another
    /// thread held at that instant), merged into later drops.
    redrops,
    /// Bytes still cached after the last of those tries: given up.
    abandoned_bytes,
    /// Bytes covered by the drop calls.
    bytes_dropped,
    /// Native mode: bytes of written ranges the kernel left cached after
    /// their writeback (and of sequential reads, of pages their readahead
    /// brought in), which endio then dropped. Linux up to 7.2 drops a
    /// `RWF_DONTCACHE` folio at writeback completion only in task context,
    /// and ext4 overwrites complete writeback in interrupt context: this is
    /// the gap the seed patch's task-context bio completion closes.
    native_leftover_bytes,
    /// Bytes of dontcache I/O left cached because they were cached before.
    kept_bytes,
    /// Write-back waits: one per batch of dontcache writes (one per write
    /// where writes are not batched, or wait for their own write-back).
    writeback_waits,
    /// Dontcache writes whose write-back a batch wait covered.
    writeback_batched,
    /// Write-back starts (`sync_file_range(WRITE)`) issued for emulated
    /// dontcache writes ahead of their batch wait: one per write of at
    /// least 128 KiB, one per 128 KiB of smaller writes, over their span.
    writeback_kicks,
    /// The most writes one batch wait covered.
    writeback_batch_max,
    /// Writebacks that failed (the range is then not dropped).
    writeback_errors,
    /// Bytes of completed dontcache I/O whose drop is not done yet, now.
    inflight_bytes,
    /// The most such bytes at once: between a write's (or read's)
    /// completion and its drop.
    inflight_bytes_max,
    /// Submits that waited for the backlog (task context).
    backpressure_waits,
    /// Submits refused with `Busy` for the backlog (atomic context,
    /// `try_submit`).
    backpressure_busy,
    /// Drop calls made by a waiting submitter or `drain` instead of a
    /// completer worker (forward progress; 0 in a healthy run).
    rescue_calls,
    /// `cachestat(2)` (or `mincore`) look-ups before emulated I/O (and
    /// before sequential reads, of their lookahead).
    residency_queries,
    /// Sequential reads issued with the kernel's readahead, whose
    /// readahead pages this device then drops too.
    readahead_ios,
}
}

/// Adds `n` to one counter.
pub(super) fn add(counter: &AtomicU64, n: u64) {
    // Relaxed: statistics, read as a snapshot.
    counter.fetch_add(n, Ordering::Relaxed);
}
