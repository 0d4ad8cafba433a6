//! A device's dontcache state: its mode, its backlog's counters, the queue
//! of units ready to drop and the pending runs; and the unit, one I/O's
//! drop-behind.

use crate::sync::Mutex;
use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use super::mode::{DontcacheMode, probe_mode};
use super::readahead::Readahead;
use super::stats::{Counters, DontcacheStats};
use crate::io::config::Backend;
use crate::io::writeback::WbState;
use crate::sys;

/// Units of the backlog of one device: dontcache I/Os submitted whose drop
/// is not done yet. Also the size of the ready queue, which therefore never
/// overflows.
pub(crate) const UNITS_MAX: usize = 1024;

/// Default bound of the backlog in bytes
/// ([`OpenOptions::dontcache_backlog_bytes_max`](crate::OpenOptions::dontcache_backlog_bytes_max)).
pub(crate) const BACKLOG_BYTES_MAX_DEFAULT: u64 = 64 << 20;

/// A batch of dontcache writes is waited for once it holds this share of
/// the backlog's bytes or of its units (or when no other dontcache write is
/// in flight). The units count for small writes: 4 KiB writes fill the
/// units long before the bytes, and a batch that waited only for the bytes
/// would wait until the backlog was full and every writer stalled.
pub(crate) const BATCHES_PER_BACKLOG: u64 = 4;

/// How a device's dontcache writes are waited for.
#[derive(Debug)]
pub(crate) enum BatchWaits {
    /// In batches, with nothing to wait for: a memory device.
    Memory,
    /// In batches, on this description of the file: its error cursor is
    /// endio's own (see `writeback.rs`).
    On(File),
    /// One by one, by each write's drop: no such description could be
    /// opened.
    PerWrite,
}

impl BatchWaits {
    /// Batch waits on a new description of `file`, or one by one.
    fn on(file: &File) -> BatchWaits {
        match second_description(
            sys::reopen_for_writeback(file),
            "dontcache writes are written back one by one instead of in batches",
        ) {
            Some(f) => BatchWaits::On(f),
            None => BatchWaits::PerWrite,
        }
    }
}

/// A second description of a device's file, or `None` with a warning that
/// says what doing without it means.
fn second_description(opened: io::Result<File>, without: &str) -> Option<File> {
    match opened {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "endio cannot open a second description of a dontcache device's file: {without}");
            None
        }
    }
}

/// What the dontcache code is given of its device: the file (`None` for a
/// memory device) and the write-back state, for its own write-back waits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Io<'a> {
    pub(crate) file: Option<&'a File>,
    pub(crate) wb: &'a WbState,
}

pub(super) fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The pending-list key of the leftovers (units count from 1).
pub(super) const LEFTOVER_KEY: u64 = 0;

/// The pages of one dontcache I/O to drop, as page-index runs.
#[derive(Debug)]
pub(super) enum DropRuns {
    /// Every page the I/O covers (nothing was cached, or no page cache).
    All,
    /// Only these (ascending, disjoint; may be empty).
    Some(Vec<Range<u64>>),
}

/// One dontcache I/O's drop-behind: reserved at submit, made ready by the
/// thread that completes it, dropped by a flush.
#[derive(Debug)]
pub(super) struct BacklogEntry {
    /// Names the unit's entries in the pending list.
    pub(super) key: u64,
    /// Its runs are in the pending list (removed by the flush).
    pub(super) registered: bool,
    pub(super) offset: u64,
    /// Bytes of the I/O; at completion, the bytes transferred.
    pub(super) len: u64,
    pub(super) runs: DropRuns,
    /// Bytes charged to the backlog.
    pub(super) reserved: u64,
    /// Bytes charged to `inflight` (completion to drop).
    pub(super) completed: u64,
    pub(super) write: bool,
    /// The asynchronous writeback was not available (io_uring without
    /// `SYNC_FILE_RANGE`): the flush writes back before it drops.
    pub(super) sync_first: bool,
    /// Drop nothing of `runs` (failed I/O or writeback).
    pub(super) keep: bool,
    /// Readahead pages to drop with the unit, whatever its I/O did (see
    /// `readahead.rs`).
    pub(super) extra: Vec<Range<u64>>,
    /// A read issued with readahead: its runs are owned again after the
    /// drop (late readahead may bring them back).
    pub(super) readahead: bool,
}

impl BacklogEntry {
    /// The page range the transferred bytes touch.
    pub(super) fn pages(&self) -> Range<u64> {
        let page = page_size();
        if self.len == 0 {
            return 0..0;
        }
        self.offset / page..(self.offset + self.len).div_ceil(page)
    }

    /// Appends the runs to drop, clipped to the transferred bytes.
    pub(super) fn push_runs(&self, out: &mut Vec<Range<u64>>) {
        out.extend(self.extra.iter().cloned());
        if self.keep {
            return;
        }
        let pages = self.pages();
        if pages.is_empty() {
            return;
        }
        match &self.runs {
            DropRuns::All => out.push(pages),
            DropRuns::Some(runs) => {
                for r in runs {
                    let (s, e) = (r.start.max(pages.start), r.end.min(pages.end));
                    if s < e {
                        out.push(s..e);
                    }
                }
            }
        }
    }

    pub(super) fn nothing_to_drop(&self) -> bool {
        if !self.extra.is_empty() {
            return false;
        }
        self.keep
            || self.pages().is_empty()
            || matches!(&self.runs, DropRuns::Some(r) if r.is_empty())
    }
}

/// What a flush works with, under the flush lock.
#[derive(Debug, Default)]
pub(super) struct FlushScratch {
    /// This flush's page runs.
    pub(super) ranges: Vec<Range<u64>>,
    /// Keys of the units taken.
    pub(super) keys: Vec<u64>,
    /// Runs of the reads with readahead among them.
    pub(super) reowned: Vec<Range<u64>>,
    /// Ranges whose pages stayed cached: how often they were tried while
    /// clean, and in all.
    pub(super) leftovers: Vec<(Range<u64>, u32, u32)>,
}

/// The dontcache state of one device.
pub(crate) struct Dontcache {
    pub(crate) mode: DontcacheMode,
    /// Made by `OpenOptions::dontcache` (else: for per-bio flags).
    pub(super) whole_device: bool,
    /// For per-bio dontcache reads: a read-only description with readahead
    /// off.
    pub(super) read_fd: Option<File>,
    /// Sequential reads keep readahead (see `readahead.rs`).
    pub(super) ra: Readahead,
    /// How the device's dontcache writes are waited for (see `batch.rs`).
    pub(super) waits: BatchWaits,
    /// Writes whose data is in the page cache and whose write-back was
    /// started, waiting for a batch wait (a place per backlog unit).
    pub(super) kicked: ArrayQueue<BacklogEntry>,
    /// Bytes of the writes in `kicked`.
    pub(super) kicked_bytes: AtomicU64,
    /// Small completed writes whose write-back start waits for more
    /// (`batch.rs`, "Kicks"): their bytes, and the span of their pages in
    /// bytes (`u64::MAX..0` when empty).
    pub(super) unkicked_bytes: AtomicU64,
    pub(super) unkicked_start: AtomicU64,
    pub(super) unkicked_end: AtomicU64,
    /// Dontcache writes submitted and not completed yet.
    pub(super) writes_open: AtomicU32,
    /// A batch is waited for once its writes hold this many bytes.
    pub(super) batch_bytes: u64,
    pub(super) backlog_bytes_max: u64,
    pub(super) ready: ArrayQueue<BacklogEntry>,
    pub(super) backlog_units: AtomicU32,
    pub(super) backlog_bytes: AtomicU64,
    pub(super) completed_bytes: AtomicU64,
    /// Bumped on every release; waiters sleep on it (futex).
    pub(super) release_seq: AtomicU32,
    pub(super) waiters: AtomicU32,
    /// Flushes that took units (the rescue's measure of progress).
    pub(super) flushes_taken: AtomicU64,
    /// Serialises flushes (so they can coalesce); holds their scratch and
    /// the leftovers.
    pub(super) flush: Mutex<FlushScratch>,
    /// Page runs of units whose drop is not done yet, by unit key (at most
    /// [`UNITS_MAX`] units; short critical sections, no system calls).
    pub(super) pending: Mutex<Vec<(u64, Range<u64>)>>,
    pub(super) next_key: AtomicU64,
    pub(super) c: Counters,
}

impl fmt::Debug for Dontcache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dontcache")
            .field("mode", &self.mode)
            .field("whole_device", &self.whole_device)
            .field("backlog_units", &self.backlog_units)
            .field("backlog_bytes", &self.backlog_bytes)
            .finish_non_exhaustive()
    }
}

/// What the open of a dontcache device decided.
#[derive(Debug)]
pub(crate) struct DontcacheSetup {
    pub(crate) mode: DontcacheMode,
    pub(crate) forced: bool,
    pub(crate) backlog_bytes_max: u64,
}

impl Dontcache {
    /// The state of a device opened dontcache; turns readahead off on its
    /// descriptor and, when `readable`, opens a second description that
    /// keeps it, for sequential reads.
    pub(crate) fn for_device(
        file: Option<&File>,
        readable: bool,
        setup: &DontcacheSetup,
    ) -> io::Result<Dontcache> {
        let mut ra = Readahead::new(None, sys::READ_AHEAD_DEFAULT);
        if let Some(f) = file {
            sys::no_readahead(f.as_fd())?;
            let fd = readable
                .then(|| {
                    second_description(
                        sys::reopen_read_only(f),
                        "sequential dontcache reads go without readahead",
                    )
                })
                .flatten();
            ra = Readahead::new(fd, sys::read_ahead_bytes(f));
        }
        let mut dc = Dontcache::new(setup.mode, true, None, setup.backlog_bytes_max);
        dc.ra = ra;
        if let Some(f) = file {
            dc.waits = BatchWaits::on(f);
        }
        Ok(dc)
    }

    /// The state made on the first per-bio dontcache I/O of a device not
    /// opened dontcache.
    pub(crate) fn for_bios(
        file: Option<&File>,
        readable: bool,
        eof: u64,
        backend: Backend,
    ) -> Dontcache {
        let Some(file) = file else {
            return Dontcache::new(
                DontcacheMode::Emulated,
                false,
                None,
                BACKLOG_BYTES_MAX_DEFAULT,
            );
        };
        let mode = probe_mode(file, readable, eof, backend).unwrap_or(DontcacheMode::Emulated);
        let read_fd = readable
            .then(|| {
                second_description(
                    sys::reopen_read_only(file)
                        .and_then(|f| sys::no_readahead(f.as_fd()).map(|()| f)),
                    "per-bio dontcache reads use the device's own, and pages read ahead may stay cached",
                )
            })
            .flatten();
        // No readahead for per-bio dontcache reads (see `plan.rs`).
        let mut dc = Dontcache::new(mode, false, read_fd, BACKLOG_BYTES_MAX_DEFAULT);
        dc.waits = BatchWaits::on(file);
        dc
    }

    pub(super) fn new(
        mode: DontcacheMode,
        whole_device: bool,
        read_fd: Option<File>,
        backlog_bytes_max: u64,
    ) -> Dontcache {
        Dontcache {
            mode,
            whole_device,
            read_fd,
            ra: Readahead::new(None, sys::READ_AHEAD_DEFAULT),
            // A memory device (the file's constructors decide for files).
            waits: BatchWaits::Memory,
            kicked: ArrayQueue::new(UNITS_MAX),
            kicked_bytes: AtomicU64::new(0),
            unkicked_bytes: AtomicU64::new(0),
            unkicked_start: AtomicU64::new(u64::MAX),
            unkicked_end: AtomicU64::new(0),
            writes_open: AtomicU32::new(0),
            batch_bytes: (backlog_bytes_max / BATCHES_PER_BACKLOG).max(1),
            backlog_bytes_max: backlog_bytes_max.max(1),
            ready: ArrayQueue::new(UNITS_MAX),
            backlog_units: AtomicU32::new(0),
            backlog_bytes: AtomicU64::new(0),
            completed_bytes: AtomicU64::new(0),
            release_seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            flushes_taken: AtomicU64::new(0),
            flush: Mutex::new(FlushScratch::default()),
            pending: Mutex::new(Vec::new()),
            next_key: AtomicU64::new(LEFTOVER_KEY + 1),
            c: Counters::default(),
        }
    }

    /// The read-only descriptor for per-bio dontcache reads, if any.
    pub(crate) fn read_fd(&self) -> Option<&File> {
        self.read_fd.as_ref()
    }

    /// The descriptor with readahead for sequential reads of a device
    /// opened dontcache, if any.
    pub(crate) fn readahead_fd(&self) -> Option<&File> {
        self.ra.fd.as_ref()
    }

    /// Gives back `units` units, `reserved` backlog bytes and `completed`
    /// in-flight bytes, and wakes waiters.
    ///
    /// No lost wakeup: a waiter increments `waiters`, reads `release_seq`,
    /// re-checks and sleeps only while `release_seq` is unchanged. This
    /// bumps `release_seq` after the counters and then reads `waiters`, all
    /// SeqCst: either the waiter's re-check comes after the bump and sees
    /// the counters, or its increment comes before this load and it is
    /// woken (or its futex wait finds the changed sequence).
    pub(super) fn release(&self, units: u32, reserved: u64, completed: u64) {
        self.backlog_bytes.fetch_sub(reserved, Ordering::SeqCst);
        self.completed_bytes.fetch_sub(completed, Ordering::SeqCst);
        self.backlog_units.fetch_sub(units, Ordering::SeqCst);
        self.release_seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&self.release_seq, u32::MAX);
        }
    }

    pub(super) fn add_completed(&self, n: u64) {
        // SeqCst: with `release`, so the running total never underflows.
        let now = self.completed_bytes.fetch_add(n, Ordering::SeqCst) + n;
        self.c.inflight_bytes_max.fetch_max(now, Ordering::Relaxed);
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> DontcacheStats {
        let mut s = self.c.snapshot();
        s.inflight_bytes = self.completed_bytes.load(Ordering::Relaxed);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_clipped_to_the_bytes_transferred() {
        let page = page_size();
        let mut unit = BacklogEntry {
            key: 0,
            registered: false,
            offset: page / 2,
            len: 3 * page,
            runs: DropRuns::Some(vec![0..1, 2..4]),
            reserved: 3 * page,
            completed: 0,
            write: false,
            sync_first: false,
            keep: false,
            extra: Vec::new(),
            readahead: false,
        };
        assert_eq!(unit.pages(), 0..4);
        let mut out = Vec::new();
        unit.push_runs(&mut out);
        assert_eq!(out, vec![0..1, 2..4]);
        unit.len = page; // short: bytes page/2 .. 3*page/2 touch pages 0 and 1
        out.clear();
        unit.push_runs(&mut out);
        assert_eq!(out, vec![0..1]);
        unit.len = 0;
        assert!(unit.nothing_to_drop());
        unit.len = page;
        unit.runs = DropRuns::All;
        out.clear();
        unit.push_runs(&mut out);
        assert_eq!(out, vec![0..2]);
        unit.keep = true;
        assert!(unit.nothing_to_drop());
        unit.extra.push(9..12);
        assert!(!unit.nothing_to_drop(), "readahead pages go with any unit");
        out.clear();
        unit.push_runs(&mut out);
        assert_eq!(out, vec![9..12]);
    }
}
