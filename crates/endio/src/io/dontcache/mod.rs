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
//! On a device opened dontcache, a *sequential* read (one that starts where
//! the last ended, or reads pages an earlier one read ahead) keeps the
//! kernel's readahead: it goes through a read-only description that has
//! it, and the pages of its
//! lookahead that are not cached yet become the device's to drop too, so
//! that what readahead brought in leaves with the stream and what was
//! cached before stays (`readahead.rs`). Such reads are emulated in both
//! modes.

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
//! 5. **Writeback** (writes): batched (`batch.rs`). When a write
//!    completes, its unit joins the device's *kicked* writes and the
//!    write's in-flight slot carries one more stage: a *kick*,
//!    `sync_file_range(WRITE)` on the written pages, which starts their
//!    write-back without waiting (a no-op in native mode, where the kernel
//!    starts it; writes under 128 KiB share one kick per 128 KiB, over
//!    their span, see `batch.rs`), or, once the kicked writes hold a quarter of the
//!    backlog's bytes or no other dontcache write is in flight, one *batch
//!    wait*, `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` over the
//!    pages they span, on a description of the file that is endio's own
//!    and not the device's (see [`super::writeback`]: a wait on the
//!    device's descriptor would consume the write-back error its next flush
//!    must report): `IORING_OP_SYNC_FILE_RANGE` on io_uring (the kernel's
//!    io-wq waits, never the reaper), the system call on a pool thread,
//!    nothing on the null backend. When the wait completes, its units
//!    become ready as in 4. A failed write-back (`EIO`, or `ECANCELED` at
//!    shutdown) drops nothing and is latched on the device
//!    ([`Device::writeback_errors`]); the next flush reports it. A kernel
//!    without the io_uring opcode makes the drop write back first, in task
//!    context. A `WAIT_WRITEBACK` dontcache write waits for its own range
//!    instead, as does every write where the second description cannot be
//!    opened.
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

//!
//! # Where each part lives
//!
//! `batch.rs` the batched write-back (step 5), `state.rs` holds a device's
//! dontcache state and the units of its backlog,
//! `mode.rs` the native-or-emulated choice, `plan.rs` what a request carries
//! through its stages (steps 1-5), `backlog.rs` the bound and its waits
//! (steps 1 and 7), `drop.rs` the drop-behind and its coalescing (step 6),
//! `readahead.rs` the readahead of sequential reads, `stats.rs` the
//! counters. None of them knows the device: they are given
//! its file and its write-back state ([`Io`]).

mod backlog;
mod batch;
mod drop;
mod mode;
mod plan;
mod readahead;
mod state;
mod stats;

pub(crate) use batch::{Batch, NextStage, batch_done, kicked, write_done};
pub use mode::DontcacheMode;
pub(crate) use mode::probe_mode;
pub(crate) use plan::{DropPlan, Routing, not_written, transferred, written_back};
pub(crate) use state::{BACKLOG_BYTES_MAX_DEFAULT, Dontcache, DontcacheSetup, Io};
pub use stats::DontcacheStats;
