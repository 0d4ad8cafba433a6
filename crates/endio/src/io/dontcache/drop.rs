//! The drop-behind (step 6): every ready unit's page runs, sorted and
//! merged, one `POSIX_FADV_DONTNEED` per merged run, and the ranges whose
//! pages stayed cached kept for later drops.

use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;

use super::mode::DontcacheMode;
use super::state::{Dontcache, FlushScratch, Io, LEFTOVER_KEY, UNITS_MAX, page_size};
use super::stats::add;
use crate::sys;

/// How often a drop range whose pages stayed cached (clean) is tried again.
pub(crate) const LEFTOVER_TRIES: u32 = 8;

/// How often it is tried at most, also while its pages are busy (dirty or
/// under writeback).
pub(crate) const LEFTOVER_AGE_MAX: u32 = 64;

/// How many such ranges are kept at most.
pub(crate) const LEFTOVERS_MAX: usize = 64;

impl Dontcache {
    /// Step 6: drops every ready unit's runs, coalesced; gives the units
    /// back. `rescue`: called by a waiter rather than a drop bio. Returns
    /// the units taken.
    pub(crate) fn flush(&self, io: Io<'_>, rescue: bool) -> u32 {
        self.wait_stranded(io);
        let mut guard = self.flush.lock();
        let scratch = &mut *guard;
        scratch.ranges.clear();
        scratch.keys.clear();
        scratch.reowned.clear();
        let (mut units, mut reserved, mut completed, mut sync_first) = (0u32, 0u64, 0u64, false);
        // Bounded: at most UNITS_MAX units exist (the backlog).
        for _ in 0..UNITS_MAX {
            let Some(unit) = self.ready.pop() else {
                break;
            };
            units += 1;
            reserved += unit.reserved;
            completed += unit.completed;
            sync_first |= unit.sync_first;
            if unit.registered {
                scratch.keys.push(unit.key);
            }
            let at = scratch.ranges.len();
            unit.push_runs(&mut scratch.ranges);
            if unit.readahead {
                let runs = &scratch.ranges[at..];
                scratch.reowned.extend(runs.iter().cloned());
            }
        }
        if units == 0 {
            return 0;
        }
        // SeqCst: see `watch_flushes`.
        self.flushes_taken.fetch_add(1, Ordering::SeqCst);
        let calls = self.drop_ranges(io, scratch, sync_first);
        if rescue {
            add(&self.c.rescue_calls, calls);
        }
        self.forget(&mut scratch.keys);
        // The kernel's asynchronous readahead of a stream can lag behind
        // its reads and bring back pages just dropped: they stay owned until
        // the stream is a lookahead past them, whose read drops them again.
        if !scratch.reowned.is_empty() {
            coalesce(&mut scratch.reowned);
            self.ra.own(&scratch.reowned, true);
        }
        drop(guard);
        self.release(units, reserved, completed);
        units
    }

    /// Retries the leftovers once more and drops the readahead pages no
    /// I/O took (`drain`, after the last flush).
    pub(crate) fn sweep(&self, io: Io<'_>) {
        self.drop_readahead(io);
        let mut guard = self.flush.lock();
        let scratch = &mut *guard;
        if scratch.leftovers.is_empty() {
            return;
        }
        scratch.ranges.clear();
        self.drop_ranges(io, scratch, false);
    }

    /// Drops `scratch.ranges` and the leftovers of earlier flushes,
    /// coalesced; ranges whose pages stay cached become leftovers. Returns
    /// the drop calls made.
    ///
    /// A drop can leave pages behind that were this device's to drop: a
    /// large folio (ext4 writes make them) only partly inside the range, or
    /// a folio another thread held a reference to at that instant (a
    /// concurrent read copying from it). A later drop of the neighbouring
    /// range would not cover the whole folio either, so the range is kept
    /// and merged into the next flushes' ranges, up to [`LEFTOVER_TRIES`]
    /// times ([`LEFTOVER_AGE_MAX`] while busy) and [`LEFTOVERS_MAX`]
    /// ranges, and later dontcache I/O of the device inherits its pages as
    /// it inherits pending drops.
    fn drop_ranges(&self, io: Io<'_>, scratch: &mut FlushScratch, sync_first: bool) -> u64 {
        let FlushScratch {
            ranges, leftovers, ..
        } = scratch;
        let fresh = ranges.len() as u64;
        let retried = leftovers.len() as u64;
        let olds = std::mem::take(leftovers);
        ranges.extend(olds.iter().map(|(r, ..)| r.clone()));
        let merged = coalesce(ranges) as u64;
        let page = page_size();
        let (mut bytes, mut calls) = (0, 0u64);
        for r in ranges.iter() {
            let (offset, len) = (r.start * page, (r.end - r.start) * page);
            bytes += len;
            let Some(file) = io.file else {
                calls += 1;
                continue;
            };
            let fd = file.as_fd();
            if sync_first {
                // On a description of endio's own, so that the user's next
                // flush still sees any error; a failed write-back is latched
                // on the device and its dirty pages stay.
                if let Err(e) = io.wb.wait_range(file, offset, len) {
                    tracing::debug!(error = %e, offset, len, "write-back before a dontcache drop failed");
                }
            }
            let tries = olds
                .iter()
                .filter(|(o, ..)| o.start < r.end && r.start < o.end)
                .map(|&(_, t, a)| (t, a))
                .max();
            if self.mode == DontcacheMode::Native && tries.is_none() {
                // What the kernel's own drop at writeback completion left.
                match sys::cache_stat(fd, offset, len) {
                    Ok((stat, _)) if stat.cached == 0 => continue,
                    Ok((stat, _)) => add(&self.c.native_leftover_bytes, stat.cached * page),
                    Err(_) => {}
                }
            }
            calls += 1;
            if let Err(e) = sys::drop_range(fd, offset, len) {
                tracing::debug!(error = %e, offset, len, "POSIX_FADV_DONTNEED failed");
            }
            if let Ok((stat, _)) = sys::cache_stat(fd, offset, len)
                && stat.cached > 0
            {
                // A try counts only if nothing in the range was dirty or
                // under writeback (those pages are busy, not stuck); the
                // age bounds the retries of a range that stays busy.
                let (tries, age) = tries.unwrap_or((0, 0));
                let busy = stat.dirty + stat.writeback > 0;
                let tries = tries + u32::from(!busy);
                let age = age + 1;
                if tries < LEFTOVER_TRIES
                    && age < LEFTOVER_AGE_MAX
                    && leftovers.len() < LEFTOVERS_MAX
                {
                    leftovers.push((r.clone(), tries, age));
                } else {
                    add(&self.c.abandoned_bytes, stat.cached * page);
                }
            }
        }
        if !olds.is_empty() || !leftovers.is_empty() {
            // Leftovers are this device's pages too: later dontcache I/O
            // inherits them as it does pending drops (key 0).
            let mut pending = self.pending.lock();
            pending.retain(|(k, _)| *k != LEFTOVER_KEY);
            pending.extend(leftovers.iter().map(|(r, ..)| (LEFTOVER_KEY, r.clone())));
        }
        add(&self.c.drops, fresh);
        add(&self.c.redrops, retried);
        add(&self.c.coalesced, (fresh + retried).saturating_sub(merged));
        add(&self.c.drop_calls, calls);
        add(&self.c.bytes_dropped, bytes);
        calls
    }

    /// Drops the owned readahead pages (see `readahead.rs`): the tail a
    /// sequential stream read ahead and did not consume.
    fn drop_readahead(&self, io: Io<'_>) {
        let owned = self.ra.take_all();
        let Some(file) = io.file else {
            return;
        };
        let page = page_size();
        let (mut bytes, mut calls) = (0, 0);
        for r in owned {
            let (offset, len) = (r.start * page, (r.end - r.start) * page);
            calls += 1;
            bytes += len;
            if let Err(e) = sys::drop_range(file.as_fd(), offset, len) {
                tracing::debug!(error = %e, offset, len, "POSIX_FADV_DONTNEED failed");
            }
        }
        add(&self.c.drop_calls, calls);
        add(&self.c.bytes_dropped, bytes);
    }

    /// Removes the pending entries of the units `keys` (their drops are
    /// done, or they will make none).
    pub(super) fn forget(&self, keys: &mut [u64]) {
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        let mut pending = self.pending.lock();
        pending.retain(|(k, _)| keys.binary_search(k).is_err());
    }
}

/// Sorts `ranges` and merges overlapping and adjacent ones in place;
/// returns how many remain.
pub(super) fn coalesce(ranges: &mut Vec<Range<u64>>) -> usize {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out = 0;
    for i in 0..ranges.len() {
        let r = ranges[i].clone();
        if out > 0 && r.start <= ranges[out - 1].end {
            let last = &mut ranges[out - 1];
            last.end = last.end.max(r.end);
        } else {
            ranges[out] = r;
            out += 1;
        }
    }
    ranges.truncate(out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_overlapping_and_adjacent_runs() {
        let mut r = vec![10..12, 0..4, 4..6, 3..5, 20..21, 11..15];
        assert_eq!(coalesce(&mut r), 3);
        assert_eq!(r, vec![0..6, 10..15, 20..21]);
        let mut empty: Vec<Range<u64>> = Vec::new();
        assert_eq!(coalesce(&mut empty), 0);
    }
}
