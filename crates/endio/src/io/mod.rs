//! The I/O engine: where completions really come from.
//!
//! An [`Engine`] runs one of three backends ([`Backend`]) and opens
//! [`Device`]s on it: regular files and block devices, buffered or
//! `O_DIRECT` (or, on the null backend, in-memory devices). Its completion
//! threads are endio's *interrupt context*: they complete every bio with
//! [`Completer::endio`] inside [`context::atomic()`], never block on user
//! work, and so hand each handler of a bio flagged
//! [`BioFlags::COMPLETE_IN_TASK`] to the completer's per-CPU workers.
//!
//! ```no_run
//! use endio::{Bio, BioFlags, Completer, Engine, OpenOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let completer = Completer::builder().build()?;
//! let engine = Engine::builder(completer.clone()).build()?;
//! let dev = engine.open(
//!     "/var/tmp/data",
//!     OpenOptions::new().read(true).write(true).create(true).direct(true).size(1 << 20),
//! )?;
//! let mut buf = dev.buf(4096);
//! buf.fill(0xab);
//! dev.submit(
//!     Bio::write(0, buf, |done| {
//!         // DropRuns in task context (a completer worker): may block, allocate, lock.
//!         assert_eq!(done.result().unwrap(), 4096);
//!     })
//!     .with_flags(BioFlags::COMPLETE_IN_TASK),
//! )?;
//! dev.drain();
//! completer.wait_idle(std::time::Duration::from_secs(10));
//! # Ok(()) }
//! ```
//!
//! # How a bio flows (io_uring backend)
//!
//! 1. [`Device::submit`] checks the bio against the device (open mode,
//!    `O_DIRECT` alignment of offset, length and buffer to the logical block
//!    size, the end of a block device, zero length). A refused bio comes
//!    back inside a [`SubmitError`] with a message naming the problem and
//!    the fix.
//! 2. It takes an in-flight slot of the *lane* of the CPU it runs on (one
//!    lane per CPU; another lane's if that one is full). With every slot
//!    taken it waits (futex, bounded re-checks) in task context, and refuses
//!    with [`SubmitErrorKind::Busy`] in atomic context or from
//!    [`Device::try_submit`]: back-pressure never spins and never queues
//!    without bound.
//! 3. It pushes the request (bio, device, `rw_flags`) into the lane's
//!    inbox, a bounded lock-free queue with one place per slot, and rings
//!    the lane's bell if the lane's driver sleeps (an eventfd write; no
//!    system call when it is awake).
//! 4. The lane's *driver* moves the inbox into SQEs (`user_data` = the
//!    request's index in its slab) and submits them, and waits for
//!    completions in `io_uring_enter`. The driver is the completer's worker
//!    of the lane's CPU when it has nothing to run (`task::drive`), else
//!    the lane's reaper thread, pinned to that CPU; one of them at a time
//!    touches the ring.
//! 5. The kernel performs the I/O and posts a CQE; the completion work
//!    runs as task work of the thread that issued it, on its next entry
//!    into the kernel (with `DEFER_TASKRUN`, a ring only its reaper drives:
//!    in its `io_uring_enter`).
//! 6. The driver reaps every CQE, stores each result in its bio
//!    ([`Bio::set_raw_result`](crate::Bio::set_raw_result): bytes, or a
//!    negated errno) and gives the slots back.
//! 7. Inside `context::atomic()`, it calls `completer.endio(bio)` for each:
//!    a bio flagged `COMPLETE_IN_TASK` goes onto this CPU's batch (a
//!    lock-free push, no blocking, no allocation); any other bio's handler
//!    runs right there, in atomic context (as `bi_end_io` runs in an IRQ).
//! 8. The completer's worker of that CPU runs the deferred handlers in task
//!    context: the same thread, when it drove the ring, right after its
//!    pass; else it is woken. The device's in-flight count falls after
//!    `endio`, which is what [`Device::drain`] waits for.
//!
//! A dontcache I/O ([`OpenOptions::dontcache`], [`BioFlags::DONTCACHE`])
//! adds to this flow (see the `dontcache` module for the steps and why they
//! are correct): at step 1 it takes a place in the device's dontcache backlog
//! and its pages are looked up in the page cache; at step 7, after the
//! caller's bio, a write's request becomes a *writeback stage* that keeps
//! its slot (`IORING_OP_SYNC_FILE_RANGE`, issued by the lane's driver), and
//! when that (or a read) completes, a *drop bio* flagged `COMPLETE_IN_TASK`
//! goes through `endio` and is deferred to the worker, which drops the
//! pages (`POSIX_FADV_DONTNEED`), coalescing the ranges of its batch.
//! `drain` also waits for those drops.
//!
//! The thread-pool backend differs in steps 4-6 only (a pool thread takes
//! one request and performs it with `pread`/`pwrite`/`fdatasync`; no worker
//! drives it), the null backend in 4-6 too (the lane's driver copies memory
//! after the configured latency). Steps 1-3 and 7-8 are shared code.
//!
//! # Why nothing is lost
//!
//! * A submitted bio is owned by exactly one place at a time: the inbox, a
//!   backend thread (slab, pending list, or a pool thread's stack), then
//!   the completer. Every backend loop ends a request only by completing it.
//! * A refused bio is returned inside the error, its handler not run.
//! * Shutdown (the last [`Engine`] clone dropped): `closed` is set, the
//!   threads are woken and joined. A submitter takes its slot *before* it
//!   reads `closed` (both SeqCst), and a backend thread leaves only when
//!   `closed` is set and its lane holds no slot (SeqCst load). In the total
//!   order either the submitter's slot comes first, so the thread sees it
//!   taken and stays until that request is completed, or the slot comes
//!   after, so the submitter sees `closed`, gives the slot back and gets its
//!   bio back with [`SubmitErrorKind::ShutDown`]. Requests not yet started
//!   at shutdown complete with `ECANCELED`; started ones complete normally
//!   (or `ECANCELED` if the kernel cancels them after the grace period).
//!
//! # Backend choice
//!
//! [`EngineBuilder::backend`], else the environment variable
//! `ENDIO_BACKEND=uring|threads|null`, else io_uring if the kernel allows it
//! and the thread pool otherwise, with one warning per process that names
//! the cause and the fix ([`UringUnavailable`]).
//!
//! The engine's threads block in the kernel (`io_uring_enter`, futexes),
//! which loom and shuttle cannot model; this module uses `std` directly and
//! is compiled out of the model-checking builds. Its lock-free parts are a
//! crossbeam `ArrayQueue` and counters whose SeqCst arguments are written
//! next to them (`lane.rs`).
//!
//! [`Completer::endio`]: crate::Completer::endio
//! [`context::atomic()`]: crate::context::atomic
//! [`BioFlags::COMPLETE_IN_TASK`]: crate::BioFlags::COMPLETE_IN_TASK
//! [`BioFlags::DONTCACHE`]: crate::BioFlags::DONTCACHE
//!
//! # Where each part lives
//!
//! Imports run one way, from the top of this list to the bottom:
//!
//! * `engine.rs`: the [`Engine`] handle, its builder, the backend choice.
//! * `uring.rs`, `threads.rs`, `null/`: the backends.
//! * `open.rs`: [`OpenOptions`], opening, [`OpenError`].
//! * `blocking.rs`, `future.rs`, `group.rs`: what users wait with, on top
//!   of the device: blocking positional I/O ([`Device::read_at`],
//!   [`Device::write_all_at`], [`Device::sync_data`]), one I/O as a future
//!   ([`IoFuture`]), and a completion [`Group`] that counts a bio in until
//!   its handler returned.
//! * `device.rs`: the [`Device`] handle: submit, drain, what it reports.
//! * `shared.rs`: what the engine, its devices and threads share; the
//!   submit hot path.
//! * `check.rs`: the checks of a bio, [`SubmitError`].
//! * `request.rs`: a request, and the one completion step of every
//!   backend.
//! * `state.rs`: an open device as its I/O sees it.
//! * `dontcache/`: dontcache I/O, given only a file and a write-back state.
//! * `writeback.rs`, `lane.rs`, `cache.rs`, `mixing.rs` (a block device
//!   open both direct and buffered), `verify.rs`, `config.rs`,
//!   `null/memory.rs`: the leaves.

mod blocking;
mod cache;
mod check;
mod config;
mod device;
mod dontcache;
mod engine;
mod future;
mod group;
mod lane;
mod mixing;
mod null;
mod open;
mod request;
mod shared;
mod state;
mod threads;
mod uring;
mod verify;
mod writeback;

pub use crate::sys::{CacheStatSource, UringUnavailable};
pub use cache::{Residency, residency};
pub use check::{MAX_IO_BYTES, SubmitError, SubmitErrorKind};
pub use config::{Backend, EngineError};
pub use device::Device;
pub use dontcache::{DontcacheMode, DontcacheStats};
pub use engine::{Engine, EngineBuilder};
pub use future::{IoFuture, IoOutput};
pub use group::Group;
pub use lane::{BufferStats, DriveStats};
pub use open::{OpenError, OpenOptions};
pub use state::DeviceKind;
pub use verify::{Problem as VerifyProblem, Verifier, VerifyError, VerifyStats};
pub use writeback::WritebackErrors;
