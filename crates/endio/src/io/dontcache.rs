//! Dontcache I/O: buffered reads and writes whose pages leave the page cache
//! once the I/O is done, as Linux 6.14's `RWF_DONTCACHE`, on every file and
//! block device.
//!
//! A device opened with [`OpenOptions::dontcache`] makes every read and
//! write dontcache; a bio flagged [`BioFlags::DONTCACHE`] is dontcache on
//! any buffered device (on an `O_DIRECT` device the flag is ignored: direct
//! I/O caches nothing). The semantics are the kernel's: a write completes to
//! its caller when its data is in the page cache, as any buffered write;
//! writeback of the written range starts at once and its pages are dropped
//! when it has finished; a read drops the pages it brought in; pages that
//! were cached before the I/O stay cached.
//!
//! # The mode
//!
//! At open, a one-byte `RWF_DONTCACHE` read at the end of the file (the
//! kernel checks the flag before the offset, so no data moves) goes through
//! io_uring's `rw_flags` on the io_uring backend and `preadv2(2)` on the
//! thread pool; success means [`DontcacheMode::Native`], `EOPNOTSUPP`
//! (block devices, tmpfs, kernels before 6.14) [`DontcacheMode::Emulated`].
//! [`OpenOptions::dontcache_emulated`] skips the probe. A memory device of
//! the null backend is `Emulated`: the whole protocol runs, without system
//! calls.
//!
//! *Native* reads carry the flag and nothing else: the kernel drops what a
//! read brought in before the read returns. *Native* writes carry the flag
//! (the kernel starts writeback at once and marks the folios it creates for
//! drop-behind) **and** go through steps 1-6 below, because on this kernel
//! the kernel's own drop often does not happen: it drops a folio at
//! writeback completion only in task context, and ext4 completes the
//! writeback of overwrites in interrupt context. Measured: 1 MiB overwrites
//! of a laid-out ext4 file left 100 % cached (allocating writes, whose
//! completion ext4 defers to a workqueue, about 2 %). That gap is what the
//! seed patch's task-context bio completion closes in the kernel; endio
//! closes it in userspace, through its own completer.
//! [`DontcacheStats::native_leftover_bytes`] counts it.
//!
//! A dontcache device gets `POSIX_FADV_RANDOM` on its descriptor in both
//! modes: readahead would bring pages nobody asked for, which no drop would
//! know about (the kernel's native read leaves them behind too: measured,
//! 4 KiB dontcache reads 16 KiB apart left 48 of 64 MiB cached with
//! readahead and nothing without). Per-bio dontcache reads on a device not
//! opened dontcache go through a second, read-only description of the same
//! file with readahead off, so the device's other reads keep readahead.
//!
//! # The emulated flow (and native writes)
//!
//! 1. **Submit** ([`Device::submit`]): the I/O takes a place in the
//!    device's *backlog*: one of [`UNITS_MAX`] units and its length in
//!    bytes, against [`OpenOptions::dontcache_backlog_bytes_max`]. A unit is
//!    given back only after its pages were dropped, so the page cache that
//!    dontcache I/O holds is bounded whatever the write rate. A full backlog
//!    makes a task-context submitter wait and refuses the bio with
//!    [`SubmitErrorKind::Busy`] in atomic context or from
//!    [`Device::try_submit`]. One I/O larger than the bound is let in when
//!    the backlog is empty.
//! 2. Still in the submitter's thread, before the I/O is issued, its pages
//!    are looked up in the page cache (`cache::uncached_runs`: one
//!    `cachestat(2)` for an uncached or fully cached range, halving only
//!    where a part is partly cached, at most 64 look-ups). The pages not
//!    cached now are this I/O's to drop; the others stay, except those
//!    cached only because an earlier dontcache I/O of the device has not
//!    dropped them yet (its *pending* runs), whose drop this I/O inherits.
//!    The *drop bio* is made here too (a nop bio flagged
//!    [`BioFlags::COMPLETE_IN_TASK`]), so that backend threads never
//!    allocate.
//! 3. The backend performs the read or write (emulated: without
//!    `RWF_DONTCACHE`).
//! 4. **Completion** (a backend thread, atomic context): the caller's bio
//!    goes to [`Completer::endio`] first, so its handler runs, or is queued
//!    to run, with the latency of any buffered I/O. A read's unit then
//!    becomes *ready*: its runs, clipped to the bytes transferred, are
//!    pushed onto the device's lock-free ready queue (no allocation: it has
//!    a place per unit), and the drop bio goes to `Completer::endio`, which
//!    defers it to this CPU's worker, as the kernel defers dropbehind
//!    folios.
//! 5. **Writeback** (writes that wrote bytes): the same backend thread,
//!    after completing the write, turns the request into a writeback stage
//!    that keeps the write's in-flight slot and issues
//!    `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` on exactly the
//!    written pages, on a description of the file that the write took at
//!    submit and that is not the device's own (see [`super::writeback`]:
//!    a wait on the device's descriptor would consume the write-back error
//!    its next flush must report): `IORING_OP_SYNC_FILE_RANGE` on io_uring
//!    (the kernel's io-wq waits, never the reaper), the system call on a
//!    pool thread (outside its atomic section), nothing on the null
//!    backend. When it completes, the unit becomes ready as in 4. A failed
//!    writeback (`EIO`, or `ECANCELED` at shutdown) drops nothing and is
//!    latched on the device ([`Device::writeback_errors`]); the next flush
//!    reports it. A kernel without the io_uring opcode makes the drop write
//!    back first, in task context.
//! 6. **Drop** (task context, a completer worker): the drop bio's handler
//!    takes *every* ready unit of the device, sorts the page runs, merges
//!    overlapping and adjacent ones ([`DontcacheStats::coalesced`]) and
//!    calls `POSIX_FADV_DONTNEED` once per merged run, then gives the units
//!    back to the backlog and wakes waiters. The first drop bio of a worker
//!    batch thus drops the ranges of every drop bio behind it, which find
//!    nothing left: one call per contiguous range instead of one per I/O.
//!    A range whose pages stay cached (a large folio only partly inside
//!    it, or a folio a concurrent reader held at that instant) is kept as
//!    a *leftover* and merged into later drops (a bounded number of
//!    times; [`DontcacheStats::redrops`]).
//! 7. [`Device::drain`] waits until no I/O is in flight and the backlog is
//!    empty, i.e. every write's writeback finished and every drop was
//!    made, then retries the leftovers once.
//!
//! # Why no data is lost, and nothing is stranded
//!
//! * `POSIX_FADV_DONTNEED` never discards dirty data: it skips dirty,
//!   under-writeback, locked and mapped pages. A write's range is dropped
//!   only after its writeback finished (step 5), so the drop is effective;
//!   a page dirtied again meanwhile simply stays (and is the later
//!   writer's to drop).
//! * A unit is reserved before its I/O is queued, made ready exactly once
//!   (step 4 or 5) by the thread that completes it, popped exactly once by
//!   a flush, and released after that flush's calls: the backlog counts
//!   every unit until its drop is done, which is what `drain` waits for.
//! * Every ready unit has a drop bio deferred after it was pushed, and the
//!   completer runs every deferred handler (its no-lost-wakeup argument),
//!   so some flush pops it. A flush that finds the queue empty does
//!   nothing.
//! * Rescue: a task-context waiter (a submitter on a full backlog, or
//!   `drain`) that saw units ready and no flush take any for 2 ms (5 ms for
//!   `drain`) flushes itself ([`DontcacheStats::rescue_calls`]). Without
//!   it, a completer worker whose handler submits into a full backlog would
//!   wait for drop bios queued behind itself.
//!
//! # Known limits
//!
//! The look-up of step 2 and the I/O are not atomic: a page another thread
//! brings in between them counts as this I/O's and is dropped (if clean);
//! one it drops in between and this I/O brings back stays. A leftover that
//! stays cached through all its retries is given up
//! ([`DontcacheStats::abandoned_bytes`]). These only make the emulation
//! keep or drop a clean page more than the kernel would; none touches
//! data.
//!
//! [`OpenOptions::dontcache`]: crate::OpenOptions::dontcache
//! [`OpenOptions::dontcache_emulated`]: crate::OpenOptions::dontcache_emulated
//! [`OpenOptions::dontcache_backlog_bytes_max`]: crate::OpenOptions::dontcache_backlog_bytes_max
//! [`Device::submit`]: crate::Device::submit
//! [`Device::try_submit`]: crate::Device::try_submit
//! [`Device::drain`]: crate::Device::drain
//! [`Device::writeback_errors`]: crate::Device::writeback_errors
//! [`Completer::endio`]: crate::Completer::endio
//! [`SubmitErrorKind::Busy`]: crate::SubmitErrorKind::Busy

use std::fmt;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::Backend;
use super::cache;
use super::device::DeviceShared;
use crate::bio::{Bio, BioFlags, Buf, Op};
use crate::sys::{self, DontcacheProbe};
use crate::task::Completer;

/// Units of the backlog of one device: dontcache I/Os submitted whose drop
/// is not done yet. Also the size of the ready queue, which therefore never
/// overflows.
pub const UNITS_MAX: usize = 1024;

/// Default bound of the backlog in bytes
/// ([`OpenOptions::dontcache_backlog_bytes_max`](crate::OpenOptions::dontcache_backlog_bytes_max)).
pub const BACKLOG_BYTES_MAX_DEFAULT: u64 = 64 << 20;

/// How long a task-context submitter waits on a full backlog for the
/// completer before it drops ready ranges itself.
const SUBMIT_RESCUE_AFTER: Duration = Duration::from_millis(2);

/// The same for `drain`, which is not in a hurry.
const DRAIN_RESCUE_AFTER: Duration = Duration::from_millis(5);

/// Which path a dontcache device's I/O takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DontcacheMode {
    /// The kernel's `RWF_DONTCACHE` on every read and write; writes also
    /// get endio's writeback wait and drop of what the kernel left cached
    /// (see the [module docs](self)).
    Native,
    /// endio's drop-behind: writeback, then `POSIX_FADV_DONTNEED` of the
    /// pages the I/O brought in, in task context through the completer.
    Emulated,
}

impl DontcacheMode {
    /// `native` or `emulated`.
    pub fn name(self) -> &'static str {
        match self {
            DontcacheMode::Native => "native",
            DontcacheMode::Emulated => "emulated",
        }
    }
}

impl fmt::Display for DontcacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a device's dontcache I/O did ([`Device::dontcache_stats`]).
///
/// [`Device::dontcache_stats`]: crate::Device::dontcache_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DontcacheStats {
    /// I/Os that carried the kernel's `RWF_DONTCACHE`.
    pub native_ios: u64,
    /// I/Os done by the emulation (without the flag).
    pub emulated_ios: u64,
    /// Page ranges handed to the drop (one or more per I/O: the runs of
    /// pages that were not cached before it).
    pub drops: u64,
    /// `POSIX_FADV_DONTNEED` calls made for them, after coalescing (on a
    /// memory device of the null backend: the calls that would be made; in
    /// native mode only for ranges the kernel left cached).
    pub drop_calls: u64,
    /// Ranges merged into another range's call.
    pub coalesced: u64,
    /// Ranges dropped again because pages stayed cached after their drop
    /// (a large folio only partly inside the range, or a folio another
    /// thread held at that instant), merged into later drops.
    pub redrops: u64,
    /// Bytes still cached after the last of those tries: given up.
    pub abandoned_bytes: u64,
    /// Bytes covered by the drop calls.
    pub bytes_dropped: u64,
    /// Native mode: bytes of written ranges the kernel left cached after
    /// their writeback, which endio then dropped. Linux up to 7.2 drops a
    /// `RWF_DONTCACHE` folio at writeback completion only in task context,
    /// and ext4 overwrites complete writeback in interrupt context: this is
    /// the gap the seed patch's task-context bio completion closes.
    pub native_leftover_bytes: u64,
    /// Bytes of dontcache I/O left cached because they were cached before.
    pub kept_bytes: u64,
    /// Writebacks waited for: one per dontcache write.
    pub writeback_waits: u64,
    /// Writebacks that failed (the range is then not dropped).
    pub writeback_errors: u64,
    /// Bytes of completed dontcache I/O whose drop is not done yet, now.
    pub inflight_bytes: u64,
    /// The most such bytes at once: between a write's (or read's)
    /// completion and its drop.
    pub inflight_bytes_max: u64,
    /// Submits that waited for the backlog (task context).
    pub backpressure_waits: u64,
    /// Submits refused with `Busy` for the backlog (atomic context,
    /// `try_submit`).
    pub backpressure_busy: u64,
    /// Drop calls made by a waiting submitter or `drain` instead of a
    /// completer worker (forward progress; 0 in a healthy run).
    pub rescue_calls: u64,
    /// `cachestat(2)` (or `mincore`) look-ups before emulated I/O.
    pub residency_queries: u64,
}

#[derive(Debug, Default)]
struct Counters {
    native_ios: AtomicU64,
    emulated_ios: AtomicU64,
    drops: AtomicU64,
    redrops: AtomicU64,
    abandoned_bytes: AtomicU64,
    coalesced: AtomicU64,
    native_leftover_bytes: AtomicU64,
    drop_calls: AtomicU64,
    bytes_dropped: AtomicU64,
    kept_bytes: AtomicU64,
    writeback_waits: AtomicU64,
    writeback_errors: AtomicU64,
    inflight_bytes_max: AtomicU64,
    backpressure_waits: AtomicU64,
    backpressure_busy: AtomicU64,
    rescue_calls: AtomicU64,
    residency_queries: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    // Relaxed: statistics, read as a snapshot.
    counter.fetch_add(n, Ordering::Relaxed);
}

fn page_size() -> u64 {
    rustix::param::page_size() as u64
}

/// The pages of one dontcache I/O to drop, as page-index runs.
#[derive(Debug)]
enum Runs {
    /// Every page the I/O covers (nothing was cached, or no page cache).
    All,
    /// Only these (ascending, disjoint; may be empty).
    Some(Vec<Range<u64>>),
}

/// One dontcache I/O's drop-behind: reserved at submit, made ready by the
/// thread that completes it, dropped by a flush.
#[derive(Debug)]
pub(crate) struct Unit {
    /// Names the unit's entries in the pending list.
    key: u64,
    /// Its runs are in the pending list (removed by the flush).
    registered: bool,
    offset: u64,
    /// Bytes of the I/O; at completion, the bytes transferred.
    len: u64,
    runs: Runs,
    /// Bytes charged to the backlog.
    reserved: u64,
    /// Bytes charged to `inflight` (completion to drop).
    completed: u64,
    write: bool,
    /// The asynchronous writeback was not available (io_uring without
    /// `SYNC_FILE_RANGE`): the flush writes back before it drops.
    sync_first: bool,
    /// Drop nothing (failed I/O or writeback).
    keep: bool,
}

impl Unit {
    /// The page range the transferred bytes touch.
    fn pages(&self) -> Range<u64> {
        let page = page_size();
        if self.len == 0 {
            return 0..0;
        }
        self.offset / page..(self.offset + self.len).div_ceil(page)
    }

    /// Appends the runs to drop, clipped to the transferred bytes.
    fn push_runs(&self, out: &mut Vec<Range<u64>>) {
        if self.keep {
            return;
        }
        let pages = self.pages();
        if pages.is_empty() {
            return;
        }
        match &self.runs {
            Runs::All => out.push(pages),
            Runs::Some(runs) => {
                for r in runs {
                    let (s, e) = (r.start.max(pages.start), r.end.min(pages.end));
                    if s < e {
                        out.push(s..e);
                    }
                }
            }
        }
    }

    fn nothing_to_drop(&self) -> bool {
        self.keep || self.pages().is_empty() || matches!(&self.runs, Runs::Some(r) if r.is_empty())
    }
}

/// The emulation's part of a request.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Taken when the request becomes its write-back stage (whose bio it
    /// then is).
    drop_bio: Option<Bio>,
    unit: Unit,
}

impl Plan {
    /// Whether the I/O is a write, which waits for its write-back.
    pub(crate) fn writes(&self) -> bool {
        self.unit.write
    }

    /// The drop bio, to carry a write-back stage.
    pub(crate) fn take_drop_bio(&mut self) -> Option<Bio> {
        self.drop_bio.take()
    }
}

/// How one bio goes to the backend.
#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) rw_flags: i32,
    /// Use the device's read-only descriptor without readahead.
    pub(crate) read_fd: bool,
    pub(crate) plan: Option<Plan>,
}

impl Route {
    pub(crate) const PLAIN: Route = Route {
        rw_flags: 0,
        read_fd: false,
        plan: None,
    };
}

/// How often a drop range whose pages stayed cached (clean) is tried again.
pub const LEFTOVER_TRIES: u32 = 8;

/// How often it is tried at most, also while its pages are busy (dirty or
/// under writeback).
pub const LEFTOVER_AGE_MAX: u32 = 64;

/// The pending-list key of the leftovers (units count from 1).
const LEFTOVER_KEY: u64 = 0;

/// How many such ranges are kept at most.
pub const LEFTOVERS_MAX: usize = 64;

/// What a flush works with, under the flush lock.
#[derive(Debug, Default)]
struct Scratch {
    /// This flush's page runs.
    ranges: Vec<Range<u64>>,
    /// Keys of the units taken.
    keys: Vec<u64>,
    /// Ranges whose pages stayed cached: how often they were tried while
    /// clean, and in all.
    leftovers: Vec<(Range<u64>, u32, u32)>,
}

/// The dontcache state of one device.
pub(crate) struct DcState {
    pub(crate) mode: DontcacheMode,
    /// Made by `OpenOptions::dontcache` (else: for per-bio flags).
    whole_device: bool,
    /// For per-bio dontcache reads: a read-only description with readahead
    /// off.
    read_fd: Option<File>,
    backlog_bytes_max: u64,
    ready: ArrayQueue<Unit>,
    backlog_units: AtomicU32,
    backlog_bytes: AtomicU64,
    completed_bytes: AtomicU64,
    /// Bumped on every release; waiters sleep on it (futex).
    release_seq: AtomicU32,
    waiters: AtomicU32,
    /// Flushes that took units (the rescue's measure of progress).
    flushes_taken: AtomicU64,
    /// Serialises flushes (so they can coalesce); holds their scratch and
    /// the leftovers.
    flush: Mutex<Scratch>,
    /// Page runs of units whose drop is not done yet, by unit key (at most
    /// [`UNITS_MAX`] units; short critical sections, no system calls).
    pending: Mutex<Vec<(u64, Range<u64>)>>,
    next_key: AtomicU64,
    c: Counters,
}

impl fmt::Debug for DcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DcState")
            .field("mode", &self.mode)
            .field("whole_device", &self.whole_device)
            .field("backlog_units", &self.backlog_units)
            .field("backlog_bytes", &self.backlog_bytes)
            .finish_non_exhaustive()
    }
}

/// What the open of a dontcache device decided.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) mode: DontcacheMode,
    pub(crate) forced: bool,
    pub(crate) backlog_bytes_max: u64,
}

/// Probes `file` (the device's descriptor; `readable` says whether it may
/// be read) for native `RWF_DONTCACHE` at `eof`.
pub(crate) fn probe_mode(
    file: &File,
    readable: bool,
    eof: u64,
    backend: Backend,
) -> io::Result<DontcacheMode> {
    let reopened;
    let fd: BorrowedFd<'_> = if readable {
        file.as_fd()
    } else {
        match sys::reopen_read_only(file) {
            Ok(f) => {
                reopened = f;
                reopened.as_fd()
            }
            // Not readable by us at all: emulate (which needs no reads).
            Err(_) => return Ok(DontcacheMode::Emulated),
        }
    };
    let probe = match backend {
        Backend::Uring => {
            sys::probe_dontcache_uring(fd, eof).or_else(|_| sys::probe_dontcache_preadv2(fd, eof))
        }
        Backend::Threads | Backend::Null => sys::probe_dontcache_preadv2(fd, eof),
    }?;
    Ok(match probe {
        DontcacheProbe::Supported => DontcacheMode::Native,
        DontcacheProbe::Unsupported => DontcacheMode::Emulated,
    })
}

impl DcState {
    /// The state of a device opened dontcache; turns readahead off on its
    /// descriptor.
    pub(crate) fn for_device(file: Option<&File>, setup: &Setup) -> io::Result<DcState> {
        if let Some(f) = file {
            sys::no_readahead(f.as_fd())?;
        }
        Ok(DcState::new(
            setup.mode,
            true,
            None,
            setup.backlog_bytes_max,
        ))
    }

    /// The state made on the first per-bio dontcache I/O of a device not
    /// opened dontcache.
    pub(crate) fn for_bios(
        file: Option<&File>,
        readable: bool,
        eof: u64,
        backend: Backend,
    ) -> DcState {
        let Some(file) = file else {
            return DcState::new(
                DontcacheMode::Emulated,
                false,
                None,
                BACKLOG_BYTES_MAX_DEFAULT,
            );
        };
        let mode = probe_mode(file, readable, eof, backend).unwrap_or(DontcacheMode::Emulated);
        let read_fd = if readable {
            match sys::reopen_read_only(file).and_then(|f| sys::no_readahead(f.as_fd()).map(|()| f))
            {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "endio cannot open a second descriptor without readahead for per-bio dontcache reads; they use the device's own, and pages read ahead may stay cached");
                    None
                }
            }
        } else {
            None
        };
        DcState::new(mode, false, read_fd, BACKLOG_BYTES_MAX_DEFAULT)
    }

    fn new(
        mode: DontcacheMode,
        whole_device: bool,
        read_fd: Option<File>,
        backlog_bytes_max: u64,
    ) -> DcState {
        DcState {
            mode,
            whole_device,
            read_fd,
            backlog_bytes_max: backlog_bytes_max.max(1),
            ready: ArrayQueue::new(UNITS_MAX),
            backlog_units: AtomicU32::new(0),
            backlog_bytes: AtomicU64::new(0),
            completed_bytes: AtomicU64::new(0),
            release_seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            flushes_taken: AtomicU64::new(0),
            flush: Mutex::new(Scratch::default()),
            pending: Mutex::new(Vec::new()),
            next_key: AtomicU64::new(LEFTOVER_KEY + 1),
            c: Counters::default(),
        }
    }

    /// The read-only descriptor for per-bio dontcache reads, if any.
    pub(crate) fn read_fd(&self) -> Option<&File> {
        self.read_fd.as_ref()
    }

    /// How `bio` (a read or write of a buffered device, dontcache by the
    /// device or by its flag) goes to the backend. `Err` when the backlog
    /// is full and the caller may not wait.
    pub(crate) fn route(
        &self,
        dev: &Arc<DeviceShared>,
        bio: &Bio,
        may_wait: bool,
    ) -> Result<Route, ()> {
        let read = bio.op() == Op::Read;
        let read_fd = read && !self.whole_device && self.read_fd.is_some();
        let len = bio.buf().len() as u64;
        let native = self.mode == DontcacheMode::Native;
        if native && read {
            add(&self.c.native_ios, 1);
            // The kernel drops what the read brought in before the read
            // returns (in task context, so it always can).
            return Ok(Route {
                rw_flags: sys::RWF_DONTCACHE,
                read_fd,
                plan: None,
            });
        }
        if !self.reserve(dev, len, may_wait) {
            return Err(());
        }
        add(
            if native {
                &self.c.native_ios
            } else {
                &self.c.emulated_ios
            },
            1,
        );
        let page = page_size();
        let pages = bio.offset() / page..(bio.offset() + len).div_ceil(page);
        // Relaxed: a unique number is all that is needed.
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut registered = false;
        let runs = match dev.file() {
            None => Runs::All,
            Some(file) => {
                let mut runs = Vec::new();
                let queried = cache::uncached_runs(file, pages.clone(), &mut runs);
                match queried {
                    Ok(q) => add(&self.c.residency_queries, u64::from(q)),
                    Err(e) => {
                        tracing::debug!(error = %e, "cachestat failed; the whole range counts as uncached")
                    }
                }
                // Pages cached only because an earlier dontcache I/O of this
                // device has not dropped them yet are not "cached before":
                // this I/O inherits their drop (the earlier drop may find
                // them dirty again and skip them). In atomic context the
                // lock is only tried.
                let pending = if may_wait {
                    Some(self.pending.lock().unwrap_or_else(PoisonError::into_inner))
                } else {
                    self.pending.try_lock().ok()
                };
                if let Some(mut pending) = pending {
                    let uncached: u64 = runs.iter().map(|r| r.end - r.start).sum();
                    if uncached < pages.end - pages.start {
                        inherit(&pages, &mut runs, &pending);
                    }
                    pending.extend(runs.iter().map(|r| (key, r.clone())));
                    registered = !runs.is_empty();
                }
                let uncached: u64 = runs.iter().map(|r| r.end - r.start).sum();
                let kept = (pages.end - pages.start) - uncached;
                add(&self.c.kept_bytes, kept * page);
                if runs.len() == 1 && runs[0] == pages {
                    Runs::All
                } else {
                    Runs::Some(runs)
                }
            }
        };
        let drop_bio = {
            let dev = Arc::clone(dev);
            Bio::new(Op::Nop, 0, Buf::empty(), move |_| {
                if let Some(dc) = dev.dc() {
                    dc.flush(&dev, false);
                }
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK)
        };
        Ok(Route {
            rw_flags: if native { sys::RWF_DONTCACHE } else { 0 },
            read_fd,
            plan: Some(Plan {
                drop_bio: Some(drop_bio),
                unit: Unit {
                    key,
                    registered,
                    offset: bio.offset(),
                    len,
                    runs,
                    reserved: len,
                    completed: 0,
                    write: !read,
                    sync_first: false,
                    keep: false,
                },
            }),
        })
    }

    /// Takes a backlog unit and `len` bytes, waiting (task context) or not.
    fn reserve(&self, dev: &DeviceShared, len: u64, may_wait: bool) -> bool {
        if self.try_reserve(len) {
            return true;
        }
        if !may_wait {
            add(&self.c.backpressure_busy, 1);
            return false;
        }
        add(&self.c.backpressure_waits, 1);
        // Unbounded in count like a slot wait, but every sleep is bounded and
        // each round either makes progress (a release, or a rescue flush) or
        // waits for the backends, which always complete what they hold.
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let seq = self.release_seq.load(Ordering::SeqCst);
            let watch = self.watch_flushes();
            if self.try_reserve(len) {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            sys::futex_wait(&self.release_seq, seq, SUBMIT_RESCUE_AFTER);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            self.rescue_if_stalled(dev, watch);
        }
    }

    fn try_reserve(&self, len: u64) -> bool {
        // SeqCst on the backlog counters, like every access: the wakeup
        // argument of `release` and `wait_idle` is then one total order.
        let mut units = self.backlog_units.load(Ordering::SeqCst);
        loop {
            if units as usize >= UNITS_MAX {
                return false;
            }
            match self.backlog_units.compare_exchange_weak(
                units,
                units + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(now) => units = now,
            }
        }
        let mut bytes = self.backlog_bytes.load(Ordering::SeqCst);
        loop {
            if bytes > 0 && bytes.saturating_add(len) > self.backlog_bytes_max {
                // Silent roll-back: no sequence bump, which would look like
                // progress to this very waiter and keep it from ever
                // rescuing. Another waiter for a unit re-checks within its
                // bounded sleep.
                self.backlog_units.fetch_sub(1, Ordering::SeqCst);
                return false;
            }
            match self.backlog_bytes.compare_exchange_weak(
                bytes,
                bytes + len,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => bytes = now,
            }
        }
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
    fn release(&self, units: u32, reserved: u64, completed: u64) {
        self.backlog_bytes.fetch_sub(reserved, Ordering::SeqCst);
        self.completed_bytes.fetch_sub(completed, Ordering::SeqCst);
        self.backlog_units.fetch_sub(units, Ordering::SeqCst);
        self.release_seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&self.release_seq, u32::MAX);
        }
    }

    fn add_completed(&self, n: u64) {
        // SeqCst: with `release`, so the running total never underflows.
        let now = self.completed_bytes.fetch_add(n, Ordering::SeqCst) + n;
        self.c.inflight_bytes_max.fetch_max(now, Ordering::Relaxed);
    }

    /// Step 6: drops every ready unit's runs, coalesced; gives the units
    /// back. `rescue`: called by a waiter rather than a drop bio. Returns
    /// the units taken.
    pub(crate) fn flush(&self, dev: &DeviceShared, rescue: bool) -> u32 {
        let mut guard = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        let scratch = &mut *guard;
        scratch.ranges.clear();
        scratch.keys.clear();
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
            unit.push_runs(&mut scratch.ranges);
        }
        if units == 0 {
            return 0;
        }
        // SeqCst: see `watch_flushes`.
        self.flushes_taken.fetch_add(1, Ordering::SeqCst);
        let calls = self.drop_ranges(dev, scratch, sync_first);
        if rescue {
            add(&self.c.rescue_calls, calls);
        }
        self.forget(&mut scratch.keys);
        drop(guard);
        self.release(units, reserved, completed);
        units
    }

    /// Retries the leftovers once more (`drain`, after the last flush).
    pub(crate) fn sweep(&self, dev: &DeviceShared) {
        let mut guard = self.flush.lock().unwrap_or_else(PoisonError::into_inner);
        let scratch = &mut *guard;
        if scratch.leftovers.is_empty() {
            return;
        }
        scratch.ranges.clear();
        self.drop_ranges(dev, scratch, false);
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
    fn drop_ranges(&self, dev: &DeviceShared, scratch: &mut Scratch, sync_first: bool) -> u64 {
        let Scratch {
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
            let Some(file) = dev.file() else {
                calls += 1;
                continue;
            };
            let fd = file.as_fd();
            if sync_first {
                // On a description of endio's own, so that the user's next
                // flush still sees any error; a failed write-back is latched
                // on the device and its dirty pages stay.
                if let Err(e) = dev.wait_writeback(offset, len) {
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
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
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

    /// Removes the pending entries of the units `keys` (their drops are
    /// done, or they will make none).
    fn forget(&self, keys: &mut [u64]) {
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|(k, _)| keys.binary_search(k).is_err());
    }

    /// Waits until the backlog is empty (every drop done), rescuing stalled
    /// drops; `false` if `deadline` passed first.
    pub(crate) fn wait_idle(&self, dev: &DeviceShared, deadline: Option<Instant>) -> bool {
        loop {
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let seq = self.release_seq.load(Ordering::SeqCst);
            if self.backlog_units.load(Ordering::SeqCst) == 0 {
                self.waiters.fetch_sub(1, Ordering::SeqCst);
                return true;
            }
            let mut period = DRAIN_RESCUE_AFTER;
            if let Some(deadline) = deadline {
                let now = Instant::now();
                if now >= deadline {
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                    return false;
                }
                period = period.min(deadline - now);
            }
            let watch = self.watch_flushes();
            sys::futex_wait(&self.release_seq, seq, period);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if period == DRAIN_RESCUE_AFTER {
                self.rescue_if_stalled(dev, watch);
            }
        }
    }

    /// Before a waiter's timed wait: whether units are ready, and how many
    /// flushes have taken units so far.
    fn watch_flushes(&self) -> Option<u64> {
        // SeqCst: ordered with the flushes' pops and increments (a flush
        // pops, then counts).
        let taken = self.flushes_taken.load(Ordering::SeqCst);
        (!self.ready.is_empty()).then_some(taken)
    }

    /// The rescue: units were ready when a waiter began a wait of
    /// `*_RESCUE_AFTER` and no flush took any during it, so no drop bio
    /// ran for that long (the completer is stalled, or its worker is the
    /// waiter, waiting for drop bios queued behind itself): the waiter
    /// flushes itself. A unit that became ready during the wait is left to
    /// its drop bio, and a flush in progress counts as progress.
    fn rescue_if_stalled(&self, dev: &DeviceShared, watch: Option<u64>) {
        if let Some(taken) = watch
            && self.flushes_taken.load(Ordering::SeqCst) == taken
        {
            self.flush(dev, true);
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> DontcacheStats {
        let c = &self.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let drops = get(&c.drops);
        let drop_calls = get(&c.drop_calls);
        DontcacheStats {
            native_ios: get(&c.native_ios),
            emulated_ios: get(&c.emulated_ios),
            drops,
            drop_calls,
            coalesced: get(&c.coalesced),
            redrops: get(&c.redrops),
            abandoned_bytes: get(&c.abandoned_bytes),
            native_leftover_bytes: get(&c.native_leftover_bytes),
            bytes_dropped: get(&c.bytes_dropped),
            kept_bytes: get(&c.kept_bytes),
            writeback_waits: get(&c.writeback_waits),
            writeback_errors: get(&c.writeback_errors),
            inflight_bytes: self.completed_bytes.load(Ordering::Relaxed),
            inflight_bytes_max: get(&c.inflight_bytes_max),
            backpressure_waits: get(&c.backpressure_waits),
            backpressure_busy: get(&c.backpressure_busy),
            rescue_calls: get(&c.rescue_calls),
            residency_queries: get(&c.residency_queries),
        }
    }

    /// A refused submit gives its unit back (its plan is dropped unused).
    pub(crate) fn unreserve(&self, plan: Plan) {
        if plan.unit.registered {
            self.forget(&mut [plan.unit.key]);
        }
        self.release(1, plan.unit.reserved, 0);
    }
}

/// Adds to `runs` (uncached runs of `pages`, ascending) the parts of the
/// other pages that are in `pending` drops, keeping `runs` ascending and
/// disjoint.
fn inherit(pages: &Range<u64>, runs: &mut Vec<Range<u64>>, pending: &[(u64, Range<u64>)]) {
    let mut gaps = Vec::new();
    let mut at = pages.start;
    for r in runs.iter() {
        if r.start > at {
            gaps.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < pages.end {
        gaps.push(at..pages.end);
    }
    let before = runs.len();
    for g in &gaps {
        for (_, p) in pending {
            let (s, e) = (g.start.max(p.start), g.end.min(p.end));
            if s < e {
                runs.push(s..e);
            }
        }
    }
    if runs.len() > before {
        coalesce(runs);
    }
}

/// Sorts `ranges` and merges overlapping and adjacent ones in place;
/// returns how many remain.
fn coalesce(ranges: &mut Vec<Range<u64>>) -> usize {
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

/// Step 4, in atomic context: the I/O of a request that carries a plan
/// transferred `res` bytes (or failed); the caller's bio is completed by
/// `lane::complete`.
pub(crate) fn transferred(dev: &DeviceShared, plan: &mut Plan, res: i64) {
    let n = u64::try_from(res).unwrap_or(0);
    plan.unit.len = plan.unit.len.min(n);
    if n > 0
        && let Some(dc) = dev.dc()
    {
        dc.add_completed(n);
        plan.unit.completed = n;
    }
}

/// Step 4's end for an I/O without a write-back stage (a read, or a write
/// that failed or wrote nothing): its unit becomes ready.
///
/// Order, for the file's sake: the device reference is dropped before the
/// unit can be released (or its drop bio run), so that the last reference,
/// the one that closes the file, is never dropped here but in task context
/// (a drop bio's handler, or the user's `Device`).
pub(crate) fn not_written(completer: &Completer, dev: Arc<DeviceShared>, mut plan: Plan, res: i64) {
    let Some(dc) = dev.dc_arc() else {
        return;
    };
    if res < 0 {
        plan.unit.keep = true;
    }
    make_ready(completer, &dc, dev, plan);
}

/// Step 5's end, in atomic context: the write-back stage of a dontcache
/// write ended with `res`; `drop_bio` is the stage's bio when it was the
/// drop bio. The error itself was latched on the device by
/// `lane::complete`.
pub(crate) fn written_back(
    completer: &Completer,
    dev: Arc<DeviceShared>,
    mut plan: Plan,
    drop_bio: Option<Bio>,
    res: i64,
) {
    let Some(dc) = dev.dc_arc() else {
        return;
    };
    add(&dc.c.writeback_waits, 1);
    if res < 0 {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        if errno == libc::EINVAL || errno == libc::EOPNOTSUPP {
            // No IORING_OP_SYNC_FILE_RANGE here: the drop bio's handler
            // writes back first (task context may block).
            plan.unit.sync_first = true;
        } else {
            // A failed write-back leaves nothing to drop that is known
            // clean; the pages stay.
            plan.unit.keep = true;
            add(&dc.c.writeback_errors, 1);
        }
    }
    if drop_bio.is_some() {
        plan.drop_bio = drop_bio;
    }
    make_ready(completer, &dc, dev, plan);
}

/// Steps 4/5's end: the unit becomes ready and its drop bio is deferred,
/// or, with nothing to drop, the unit is released at once.
fn make_ready(completer: &Completer, dc: &Arc<DcState>, dev: Arc<DeviceShared>, plan: Plan) {
    let Plan { drop_bio, unit, .. } = plan;
    if unit.nothing_to_drop() && !unit.registered {
        let (reserved, completed) = (unit.reserved, unit.completed);
        drop(drop_bio);
        drop(dev);
        dc.release(1, reserved, completed);
        return;
    }
    drop(dev);
    if let Err(unit) = dc.ready.push(unit) {
        // Cannot happen: the queue has a place per backlog unit.
        tracing::error!("dontcache ready queue full; the range stays cached");
        dc.release(1, unit.reserved, unit.completed);
        return;
    }
    if let Some(bio) = drop_bio {
        completer.endio(bio);
    }
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

    #[test]
    fn pending_drops_are_inherited_only_where_the_page_is_cached() {
        // Pages 0..10; uncached 2..4; pending drops of others: 0..1, 3..6, 20..30.
        let mut runs = Vec::new();
        runs.push(2..4);
        let pending = vec![(1, 0..1), (2, 3..6), (3, 20..30)];
        inherit(&(0..10), &mut runs, &pending);
        assert_eq!(runs, vec![0..1, 2..6]);
        let mut none = Vec::new();
        inherit(&(0..4), &mut none, &[]);
        assert!(none.is_empty());
    }

    #[test]
    fn runs_are_clipped_to_the_bytes_transferred() {
        let page = page_size();
        let mut unit = Unit {
            key: 0,
            registered: false,
            offset: page / 2,
            len: 3 * page,
            runs: Runs::Some(vec![0..1, 2..4]),
            reserved: 3 * page,
            completed: 0,
            write: false,
            sync_first: false,
            keep: false,
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
        unit.runs = Runs::All;
        out.clear();
        unit.push_runs(&mut out);
        assert_eq!(out, vec![0..2]);
        unit.keep = true;
        assert!(unit.nothing_to_drop());
    }

    #[test]
    fn the_backlog_bounds_bytes_and_lets_one_large_io_in() {
        let dc = DcState::new(DontcacheMode::Emulated, true, None, 100);
        assert!(dc.try_reserve(60));
        assert!(dc.try_reserve(40));
        assert!(!dc.try_reserve(1));
        dc.release(2, 100, 0);
        assert!(
            dc.try_reserve(1000),
            "alone, an I/O above the bound is let in"
        );
        assert!(!dc.try_reserve(1));
        dc.release(1, 1000, 0);
        for _ in 0..UNITS_MAX {
            assert!(dc.try_reserve(0));
        }
        assert!(!dc.try_reserve(0), "units are bounded too");
    }
}
