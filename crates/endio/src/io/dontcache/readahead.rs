//! Readahead for sequential dontcache reads: a sequential read is issued on
//! a description that keeps the kernel's readahead, and the pages that
//! readahead brings in are this device's to drop as well.
//!
//! Before such a read is issued, the pages of its *lookahead* (the bytes
//! after it that readahead may read, [`LOOKAHEAD_FACTOR`] times the larger
//! of the read and the device's `read_ahead_kb`) are looked up; the ones
//! not cached then become *owned*. An owned page is dropped by the first
//! dontcache I/O that covers it (which counts it as its own, as it does a
//! pending drop), by the next sequential read once the stream has moved a
//! lookahead past it, or by `drain`. The runs a read with readahead
//! dropped are owned again: the kernel's asynchronous readahead can lag
//! behind a stream's reads and bring back pages just dropped (measured: up
//! to 8 % of a 1 GiB stream at 16 reads in flight stayed cached without
//! this, none with it). Pages cached before stay cached: they were never
//! owned.
//!
//! Such a read is emulated even where the kernel has `RWF_DONTCACHE`: with
//! the flag, the kernel's readahead left 4-5 % of a 1 GiB stream cached
//! here and ran at about 0.6x of the emulation.

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use super::drop::coalesce;
use crate::sync::Mutex;

/// How far ahead of a sequential read its lookahead reaches, in units of
/// the larger of the read and the device's readahead window: the kernel's
/// asynchronous readahead keeps up to about two windows ahead of the
/// reader.
pub(super) const LOOKAHEAD_FACTOR: u64 = 4;

/// Lookahead at most, in bytes.
pub(super) const LOOKAHEAD_MAX: u64 = 64 << 20;

/// Owned runs kept at most; beyond, a lookahead owns nothing more (its
/// pages may then stay cached, as after the kernel's own dontcache read).
/// Reads of a stream submitted out of order (by more than one thread)
/// split the runs: at 64, a 1 GiB stream at 16 in flight left up to 8 %
/// of it cached here; at 1024, nothing.
pub(super) const OWNED_MAX: usize = 1024;

/// The readahead state of one dontcache device.
#[derive(Debug)]
pub(super) struct Readahead {
    /// A read-only description with the kernel's readahead, for a device
    /// opened dontcache, whose own description has it off (`None`: no
    /// readahead).
    pub(super) fd: Option<File>,
    /// The device's readahead window in bytes.
    window: u64,
    /// Where the last dontcache read submitted ended: the next one is
    /// sequential if it starts there.
    next: AtomicU64,
    /// Page runs readahead of this device's dontcache reads may have
    /// brought in, not cached before (ascending, disjoint).
    owned: Mutex<Vec<Range<u64>>>,
}

/// What a sequential read takes of the owned runs.
#[derive(Debug, Default)]
pub(super) struct Claim {
    /// Owned pages inside the read: its own to drop.
    pub(super) inside: Vec<Range<u64>>,
    /// Owned pages the stream has moved past: to drop with the read.
    pub(super) behind: Vec<Range<u64>>,
}

impl Readahead {
    pub(super) fn new(fd: Option<File>, window: u64) -> Readahead {
        Readahead {
            fd,
            window: window.max(4096),
            next: AtomicU64::new(0),
            owned: Mutex::new(Vec::new()),
        }
    }

    /// Whether a read of `len` bytes at `offset` continues the last one.
    pub(super) fn sequential(&self, offset: u64, len: u64) -> bool {
        // Relaxed: a heuristic; concurrent streams at worst look random.
        self.next.swap(offset + len, Ordering::Relaxed) == offset
    }

    /// The page range of the lookahead of a read of `len` bytes that ends
    /// at page `end`.
    pub(super) fn lookahead(&self, end: u64, len: u64, page: u64) -> Range<u64> {
        let bytes = (self.window.max(len) * LOOKAHEAD_FACTOR).min(LOOKAHEAD_MAX);
        end..end + bytes.div_ceil(page)
    }

    /// Takes the owned pages of `pages` (any dontcache I/O's) and, with
    /// `past`, the runs that end before page `past`. In atomic context the
    /// lock is only tried: `None` if it was busy.
    pub(super) fn claim(
        &self,
        pages: &Range<u64>,
        past: Option<u64>,
        may_wait: bool,
    ) -> Option<Claim> {
        let mut owned = if may_wait {
            self.owned.lock()
        } else {
            self.owned.try_lock()?
        };
        let mut claim = Claim::default();
        if owned.is_empty() {
            return Some(claim);
        }
        let mut kept = Vec::with_capacity(owned.len() + 1);
        for r in owned.drain(..) {
            if past.is_some_and(|p| r.end <= p) {
                claim.behind.push(r);
                continue;
            }
            let (s, e) = (r.start.max(pages.start), r.end.min(pages.end));
            if s >= e {
                kept.push(r);
                continue;
            }
            claim.inside.push(s..e);
            if r.start < s {
                kept.push(r.start..s);
            }
            if e < r.end {
                kept.push(e..r.end);
            }
        }
        *owned = kept;
        Some(claim)
    }

    /// Owns again what a claim took (its I/O was refused, or drops
    /// nothing).
    pub(super) fn give_back(&self, claim: Claim, may_wait: bool) {
        let mut runs = claim.inside;
        runs.extend(claim.behind);
        if !runs.is_empty() {
            coalesce(&mut runs);
            self.own(&runs, may_wait);
        }
    }

    /// Owns `runs` (pages of a lookahead that are not cached now). In
    /// atomic context the lock is only tried.
    pub(super) fn own(&self, runs: &[Range<u64>], may_wait: bool) {
        if runs.is_empty() {
            return;
        }
        let owned = if may_wait {
            Some(self.owned.lock())
        } else {
            self.owned.try_lock()
        };
        let Some(mut owned) = owned else {
            return;
        };
        for r in runs {
            if owned.len() >= OWNED_MAX {
                break;
            }
            owned.push(r.clone());
        }
        coalesce(&mut owned);
    }

    /// The parts of `ahead` that are not owned yet (a lookahead overlaps
    /// the last one: usually only its far end is new). In atomic context
    /// the lock is only tried: `None` if it was busy.
    pub(super) fn unowned(&self, ahead: &Range<u64>, may_wait: bool) -> Option<Vec<Range<u64>>> {
        let owned = if may_wait {
            self.owned.lock()
        } else {
            self.owned.try_lock()?
        };
        let mut gaps = Vec::new();
        let mut at = ahead.start;
        for r in owned.iter() {
            if r.end <= at || r.start >= ahead.end {
                continue;
            }
            if r.start > at {
                gaps.push(at..r.start);
            }
            at = at.max(r.end);
        }
        if at < ahead.end {
            gaps.push(at..ahead.end);
        }
        Some(gaps)
    }

    /// Every owned run, now (for `drain`).
    pub(super) fn take_all(&self) -> Vec<Range<u64>> {
        std::mem::take(&mut *self.owned.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The slices are lists of page runs, one run each here.
    #[allow(clippy::single_range_in_vec_init)]
    fn a_claim_takes_the_pages_inside_and_behind_and_keeps_the_rest() {
        let ra = Readahead::new(None, 128 << 10);
        ra.own(&[0..4, 10..20, 30..40], true);
        let c = ra.claim(&(12..16), Some(10), true).unwrap();
        assert_eq!(c.inside, vec![12..16]);
        assert_eq!(c.behind, vec![0..4]);
        assert_eq!(ra.take_all(), vec![10..12, 16..20, 30..40]);
        ra.own(&[0..4, 10..20], true);
        let c = ra.claim(&(12..16), None, true).unwrap();
        assert!(
            c.behind.is_empty(),
            "only a sequential read moves past runs"
        );
        assert_eq!(ra.take_all(), vec![0..4, 10..12, 16..20]);
    }

    #[test]
    fn owning_merges_and_is_bounded() {
        let ra = Readahead::new(None, 128 << 10);
        ra.own(&[0..4, 4..8], true);
        assert_eq!(ra.take_all(), vec![0..8]);
        let many: Vec<_> = (0..2 * OWNED_MAX as u64)
            .map(|i| 2 * i..2 * i + 1)
            .collect();
        ra.own(&many, true);
        assert_eq!(ra.take_all().len(), OWNED_MAX);
    }

    #[test]
    // The slices are lists of page runs, one run each here.
    #[allow(clippy::single_range_in_vec_init)]
    fn the_unowned_parts_of_a_lookahead_are_its_gaps() {
        let ra = Readahead::new(None, 128 << 10);
        assert_eq!(ra.unowned(&(0..10), true).unwrap(), vec![0..10]);
        ra.own(&[2..4, 6..12, 20..30], true);
        assert_eq!(ra.unowned(&(0..10), true).unwrap(), vec![0..2, 4..6]);
        assert_eq!(ra.unowned(&(8..25), true).unwrap(), vec![12..20]);
        assert!(ra.unowned(&(21..29), true).unwrap().is_empty());
    }

    #[test]
    fn sequential_means_starting_where_the_last_read_ended() {
        let ra = Readahead::new(None, 128 << 10);
        assert!(ra.sequential(0, 4096));
        assert!(ra.sequential(4096, 4096));
        assert!(!ra.sequential(65536, 4096));
        assert!(ra.sequential(69632, 4096));
        assert_eq!(ra.lookahead(10, 4096, 4096), 10..10 + 128);
        assert_eq!(ra.lookahead(10, 1 << 20, 4096), 10..10 + 1024);
    }
}
