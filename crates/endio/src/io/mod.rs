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
//!         // Runs in task context (a completer worker): may block, allocate, lock.
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
//!    the lane's bell if the reaper sleeps (an eventfd write; no system call
//!    when the reaper is awake).
//! 4. The lane's reaper thread, pinned to the lane's CPU and the only
//!    thread that touches its ring (`SINGLE_ISSUER`), moves the whole inbox
//!    into SQEs (`user_data` = the request's index in its slab) and submits
//!    them with one `io_uring_enter`, which also waits for completions.
//! 5. The kernel performs the I/O and posts a CQE; with `DEFER_TASKRUN` the
//!    completion work runs in the reaper's `io_uring_enter`, on its CPU.
//! 6. The reaper reaps every CQE, stores each result in its bio
//!    ([`Bio::set_raw_result`](crate::Bio::set_raw_result): bytes, or a
//!    negated errno) and gives the slots back.
//! 7. Inside `context::atomic()`, it calls `completer.endio(bio)` for each:
//!    a bio flagged `COMPLETE_IN_TASK` goes onto this CPU's batch (a
//!    lock-free push, no blocking, no allocation); any other bio's handler
//!    runs right there, in atomic context (as `bi_end_io` runs in an IRQ).
//! 8. The completer's worker of that CPU runs the deferred handlers in task
//!    context. The device's in-flight count falls after `endio`, which is
//!    what [`Device::drain`] waits for.
//!
//! A dontcache I/O ([`OpenOptions::dontcache`], [`BioFlags::DONTCACHE`])
//! adds to this flow (see [`dontcache`] for the steps and why they are
//! correct): at step 1 it takes a place in the device's dontcache backlog
//! and its pages are looked up in the page cache; at step 7, after the
//! caller's bio, a write's request becomes a *writeback stage* that keeps
//! its slot (`IORING_OP_SYNC_FILE_RANGE`, issued by the same reaper), and
//! when that (or a read) completes, a *drop bio* flagged `COMPLETE_IN_TASK`
//! goes through `endio` and is deferred to the worker, which drops the
//! pages (`POSIX_FADV_DONTNEED`), coalescing the ranges of its batch.
//! `drain` also waits for those drops.
//!
//! The thread-pool backend differs in steps 4-6 only (a pool thread takes
//! one request and performs it with `pread`/`pwrite`/`fdatasync`), the null
//! backend in 4-6 too (an interrupt-like thread per CPU copies memory after
//! the configured latency). Steps 1-3 and 7-8 are shared code.
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

pub mod cache;
mod device;
pub mod dontcache;
mod lane;
mod null;
mod threads;
mod uring;
pub mod verify;
mod writeback;

pub use device::{
    Device, DeviceKind, MAX_IO_BYTES, OpenError, OpenOptions, SubmitError, SubmitErrorKind,
};
pub use dontcache::{DontcacheMode, DontcacheStats};
pub use verify::{Verifier, VerifyError, VerifyStats};
pub use writeback::WritebackErrors;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use crate::sys::{self, EventFd, UringUnavailable};
use crate::task::Completer;
use lane::{Bell, Doorbell, Lane, Request, RingBell};

/// The environment variable that picks a backend when the builder does not.
pub const BACKEND_ENV: &str = "ENDIO_BACKEND";

/// Where the I/O is performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// io_uring: a ring and a pinned reaper thread per CPU.
    Uring,
    /// A pool of threads doing `pread`/`pwrite`: the portable fallback.
    Threads,
    /// In-memory devices completed by an interrupt-like thread per CPU after
    /// a configurable latency: the completion path alone.
    Null,
}

impl Backend {
    /// The name `ENDIO_BACKEND` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Threads => "threads",
            Backend::Null => "null",
        }
    }

    /// Reads a value of `ENDIO_BACKEND`: `Ok(None)` for automatic (empty
    /// or `auto`).
    pub fn parse_env(value: &str) -> Result<Option<Backend>, EngineError> {
        match value.trim() {
            "" | "auto" => Ok(None),
            other => other.parse().map(Some),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Backend, EngineError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "threads" | "thread" | "pool" => Ok(Backend::Threads),
            "null" => Ok(Backend::Null),
            _ => Err(EngineError::UnknownBackend {
                value: s.to_owned(),
            }),
        }
    }
}

/// Why an [`Engine`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A backend name that is not one.
    #[error(
        "unknown I/O backend {value:?}; use uring, threads or null (in ENDIO_BACKEND: unset it or use auto for the automatic choice)"
    )]
    UnknownBackend {
        /// What was given.
        value: String,
    },
    /// io_uring was asked for explicitly and cannot be used.
    #[error(
        "{source} (io_uring was asked for explicitly; use Backend::Threads or ENDIO_BACKEND=threads to run without it)"
    )]
    Uring {
        /// Why, and the fix.
        #[from]
        source: UringUnavailable,
    },
    /// A setting is out of range.
    #[error("invalid engine setting: {0}")]
    Invalid(String),
    /// A thread could not be started.
    #[error(
        "cannot start the endio {what} thread: {source}; raise the thread limit (ulimit -u) or free memory"
    )]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// What went wrong.
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) null_latency: Duration,
    pub(crate) pin: bool,
    pub(crate) shutdown_grace: Duration,
}

/// State shared by the engine handle, its devices and its threads.
pub(crate) struct EngineShared {
    pub(crate) completer: Completer,
    pub(crate) backend: Backend,
    pub(crate) config: Config,
    pub(crate) queue_depth: u32,
    pub(crate) lanes: Box<[Lane]>,
    /// Lane of each CPU number (CPUs beyond fold in).
    lane_of_cpu: Box<[u32]>,
    pub(crate) closed: AtomicBool,
    /// The ring flags the kernel took (io_uring backend).
    ring_flags: OnceLock<&'static str>,
    /// Why io_uring is not used, if it was the automatic choice and failed.
    fallback: Option<UringUnavailable>,
}

impl fmt::Debug for EngineShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineShared")
            .field("backend", &self.backend)
            .field("lanes", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

impl EngineShared {
    fn home_lane(&self) -> usize {
        let cpu = sys::current_cpu();
        let n = self.lane_of_cpu.len();
        self.lane_of_cpu[if cpu < n { cpu } else { cpu % n }] as usize
    }

    /// Steps 2-3 of the flow: a slot, then the inbox, then the bell.
    pub(crate) fn enqueue(
        &self,
        req: Request,
        may_wait: bool,
    ) -> Result<(), (Request, SubmitErrorKind)> {
        if self.closed.load(Ordering::Relaxed) {
            return Err((req, SubmitErrorKind::ShutDown));
        }
        let Some(index) = self.acquire(may_wait) else {
            let kind = if self.closed.load(Ordering::Relaxed) {
                SubmitErrorKind::ShutDown
            } else {
                SubmitErrorKind::Busy
            };
            return Err((req, kind));
        };
        let lane = &self.lanes[index];
        // SeqCst, after the SeqCst slot RMW: the shutdown argument (module
        // docs).
        if self.closed.load(Ordering::SeqCst) {
            lane.slots.release(1);
            lane.bell.ring_all();
            return Err((req, SubmitErrorKind::ShutDown));
        }
        if let Err(req) = lane.inbox.push(req) {
            // Cannot happen: the inbox has a place per slot.
            lane.slots.release(1);
            return Err((req, SubmitErrorKind::Busy));
        }
        lane.bell.ring();
        Ok(())
    }

    /// A slot of the home lane, else of any lane; waits (bounded sleeps,
    /// re-checking every lane) if `may_wait`.
    fn acquire(&self, may_wait: bool) -> Option<usize> {
        let home = self.home_lane();
        let n = self.lanes.len();
        loop {
            for i in 0..n {
                let index = (home + i) % n;
                if self.lanes[index].slots.try_acquire() {
                    return Some(index);
                }
            }
            if !may_wait || self.closed.load(Ordering::Relaxed) {
                return None;
            }
            self.lanes[home].slots.wait(Duration::from_millis(20));
        }
    }

    fn shutdown(&self) {
        // SeqCst: the shutdown argument (module docs).
        self.closed.store(true, Ordering::SeqCst);
        for lane in self.lanes.iter() {
            lane.bell.ring_all();
        }
    }
}

/// Runs a backend and opens devices on it. Cheap to clone; the backend's
/// threads stop when the last clone is dropped, after completing (or
/// cancelling, with `ECANCELED`) every bio they hold. Devices opened on it
/// refuse new bios from then on.
#[derive(Clone)]
pub struct Engine {
    handle: Arc<Handle>,
}

/// Owns the backend threads; dropping it shuts the engine down.
struct Handle {
    shared: Arc<EngineShared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown();
        let me = std::thread::current().id();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            // The last clone can be dropped by a handler running on one of
            // the engine's own threads; that thread leaves its loop by
            // itself once its lane is empty.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.handle.shared;
        f.debug_struct("Engine")
            .field("backend", &s.backend)
            .field("lanes", &s.lanes.len())
            .field("queue_depth", &s.queue_depth)
            .field("ring_flags", &s.ring_flags.get())
            .field("fallback", &s.fallback.as_ref().map(ToString::to_string))
            .finish()
    }
}

impl Engine {
    /// A builder whose completions go through `completer`.
    pub fn builder(completer: Completer) -> EngineBuilder {
        EngineBuilder {
            completer,
            backend: None,
            use_env: true,
            queue_depth: 128,
            threads: 8,
            null_latency: Duration::ZERO,
            pin: true,
            shutdown_grace: Duration::from_millis(500),
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Opens a regular file or block device (or, on the null backend, makes
    /// an in-memory device with the path's geometry).
    pub fn open(&self, path: impl AsRef<Path>, options: OpenOptions) -> Result<Device, OpenError> {
        device::open(&self.handle.shared, path.as_ref(), options)
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.handle.shared.backend
    }

    /// Slots per lane: bios in flight at most per lane.
    pub fn queue_depth(&self) -> u32 {
        self.handle.shared.queue_depth
    }

    /// Lanes: one per CPU (io_uring, null), one for the pool (threads).
    pub fn lanes(&self) -> usize {
        self.handle.shared.lanes.len()
    }

    /// The io_uring setup flags the kernel accepted (io_uring backend).
    pub fn ring_flags(&self) -> Option<&'static str> {
        self.handle.shared.ring_flags.get().copied()
    }

    /// Why io_uring is not used, when it was the automatic choice and the
    /// engine fell back to the thread pool.
    pub fn fallback_reason(&self) -> Option<&UringUnavailable> {
        self.handle.shared.fallback.as_ref()
    }

    /// The completer the engine completes through.
    pub fn completer(&self) -> &Completer {
        &self.handle.shared.completer
    }

    /// Bios in flight on all devices (slots taken).
    pub fn in_flight(&self) -> u32 {
        self.handle
            .shared
            .lanes
            .iter()
            .map(|l| l.slots.in_use())
            .sum()
    }
}

/// Builds an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    completer: Completer,
    backend: Option<Backend>,
    use_env: bool,
    queue_depth: u32,
    threads: usize,
    null_latency: Duration,
    pin: bool,
    shutdown_grace: Duration,
    proc_root: PathBuf,
}

/// The process warns about a missing io_uring once.
static FALLBACK_WARNED: AtomicBool = AtomicBool::new(false);

impl EngineBuilder {
    /// The backend (default: `ENDIO_BACKEND`, else io_uring with automatic
    /// fallback to the thread pool). An explicit io_uring fails instead of
    /// falling back.
    #[must_use]
    pub fn backend(mut self, backend: Backend) -> EngineBuilder {
        self.backend = Some(backend);
        self
    }

    /// Whether `ENDIO_BACKEND` is read when no backend is set (default:
    /// yes).
    #[must_use]
    pub fn read_env(mut self, yes: bool) -> EngineBuilder {
        self.use_env = yes;
        self
    }

    /// In-flight bios per lane, 1..=4096 (default 128). For io_uring, the
    /// ring of each CPU gets `depth + 2` SQ entries.
    #[must_use]
    pub fn queue_depth(mut self, depth: u32) -> EngineBuilder {
        self.queue_depth = depth;
        self
    }

    /// Threads of the thread-pool backend, 1..=256 (default 8).
    #[must_use]
    pub fn threads(mut self, threads: usize) -> EngineBuilder {
        self.threads = threads;
        self
    }

    /// Completion latency of the null backend's devices (default 0).
    #[must_use]
    pub fn null_latency(mut self, latency: Duration) -> EngineBuilder {
        self.null_latency = latency;
        self
    }

    /// Whether per-CPU reapers pin themselves to their CPU (default yes).
    #[must_use]
    pub fn pin_reapers(mut self, pin: bool) -> EngineBuilder {
        self.pin = pin;
        self
    }

    /// How long shutdown waits for I/O in the kernel before asking io_uring
    /// to cancel it (default 500 ms).
    #[must_use]
    pub fn shutdown_grace(mut self, grace: Duration) -> EngineBuilder {
        self.shutdown_grace = grace;
        self
    }

    /// Where procfs is mounted (default `/proc`); the io_uring probe reads
    /// `sys/kernel/io_uring_disabled` below it.
    #[must_use]
    pub fn proc_root(mut self, root: impl Into<PathBuf>) -> EngineBuilder {
        self.proc_root = root.into();
        self
    }

    /// Starts the backend's threads.
    pub fn build(self) -> Result<Engine, EngineError> {
        if !(1..=4096).contains(&self.queue_depth) {
            return Err(EngineError::Invalid(format!(
                "queue depth {} is outside 1..=4096; choose a depth such as 32 or 128",
                self.queue_depth
            )));
        }
        if !(1..=256).contains(&self.threads) {
            return Err(EngineError::Invalid(format!(
                "{} pool threads is outside 1..=256; choose a number such as 8",
                self.threads
            )));
        }
        let from_env = if self.backend.is_none() && self.use_env {
            match std::env::var(BACKEND_ENV) {
                Ok(v) => Backend::parse_env(&v)?,
                Err(_) => None,
            }
        } else {
            None
        };
        match self.backend.or(from_env) {
            Some(Backend::Uring) => {
                sys::probe_io_uring(&self.proc_root)?;
                self.start(Backend::Uring, None).map_err(|e| match e {
                    Started::Uring(u) => EngineError::Uring { source: u },
                    Started::Other(e) => e,
                })
            }
            Some(other) => self.start(other, None).map_err(Started::into_error),
            None => {
                let reason = match sys::probe_io_uring(&self.proc_root) {
                    Ok(()) => match self.start(Backend::Uring, None) {
                        Ok(engine) => return Ok(engine),
                        Err(Started::Uring(u)) => u,
                        Err(Started::Other(e)) => return Err(e),
                    },
                    Err(u) => u,
                };
                if !FALLBACK_WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        cause = %reason.cause,
                        fix = %reason.fix,
                        "io_uring is unavailable, so endio uses its thread-pool backend: {reason}"
                    );
                }
                self.start(Backend::Threads, Some(reason))
                    .map_err(Started::into_error)
            }
        }
    }

    fn start(
        &self,
        backend: Backend,
        fallback: Option<UringUnavailable>,
    ) -> Result<Engine, Started> {
        let cpus = self.completer.online_cpus();
        let max_cpu = cpus.iter().copied().max().unwrap_or(0);
        let lane_cpus: Vec<Option<usize>> = match backend {
            Backend::Threads => vec![None],
            Backend::Uring | Backend::Null if cpus.is_empty() => vec![None],
            Backend::Uring | Backend::Null => cpus.iter().map(|&c| Some(c)).collect(),
        };
        let mut lanes = Vec::with_capacity(lane_cpus.len());
        for &cpu in &lane_cpus {
            let bell = match backend {
                Backend::Uring => Bell::Ring(RingBell {
                    efd: EventFd::new().map_err(|e| {
                        Started::Uring(sys::diagnose_uring_error(e.raw_os_error(), None))
                    })?,
                    sleeping: AtomicBool::new(false),
                }),
                Backend::Threads | Backend::Null => Bell::Futex(Doorbell::default()),
            };
            lanes.push(Lane::new(cpu, self.queue_depth, bell));
        }
        // Each CPU maps to its own lane, others (not online at build time)
        // to a lane chosen by number.
        let lane_of_cpu: Box<[u32]> = (0..=max_cpu)
            .map(|cpu| {
                lane_cpus
                    .iter()
                    .position(|&c| c == Some(cpu))
                    .unwrap_or(cpu % lane_cpus.len()) as u32
            })
            .collect();
        let shared = Arc::new(EngineShared {
            completer: self.completer.clone(),
            backend,
            config: Config {
                null_latency: self.null_latency,
                pin: self.pin,
                shutdown_grace: self.shutdown_grace,
            },
            queue_depth: self.queue_depth,
            lanes: lanes.into_boxed_slice(),
            lane_of_cpu,
            closed: AtomicBool::new(false),
            ring_flags: OnceLock::new(),
            fallback,
        });
        let handle = Handle {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Vec::new()),
        };
        let spawn_err = |what: &'static str| {
            move |source: io::Error| Started::Other(EngineError::Spawn { what, source })
        };
        // Every thread is registered with the handle as soon as it runs, so
        // an early return (dropping the handle) stops and joins it.
        let register = |t: std::thread::JoinHandle<()>| {
            handle
                .threads
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t);
        };
        match backend {
            Backend::Uring => {
                let (tx, rx) = mpsc::channel();
                for lane in 0..shared.lanes.len() {
                    register(
                        uring::spawn(Arc::clone(&shared), lane, tx.clone())
                            .map_err(spawn_err("io_uring reaper"))?,
                    );
                }
                drop(tx);
                let mut failure = None;
                for _ in 0..shared.lanes.len() {
                    match rx.recv() {
                        Ok(Ok(flags)) => {
                            let _ = shared.ring_flags.set(flags);
                        }
                        Ok(Err(e)) => failure = Some(e),
                        Err(_) => {
                            failure = Some(io::Error::other("a reaper exited during setup"));
                        }
                    }
                }
                if let Some(e) = failure {
                    drop(handle);
                    let disabled = sys::read_io_uring_disabled(&self.proc_root);
                    return Err(Started::Uring(sys::diagnose_uring_error(
                        e.raw_os_error(),
                        disabled,
                    )));
                }
            }
            Backend::Threads => {
                for i in 0..self.threads {
                    register(
                        threads::spawn(Arc::clone(&shared), i).map_err(spawn_err("I/O pool"))?,
                    );
                }
            }
            Backend::Null => {
                for lane in 0..shared.lanes.len() {
                    register(
                        null::spawn(Arc::clone(&shared), lane)
                            .map_err(spawn_err("null-device interrupt"))?,
                    );
                }
            }
        }
        Ok(Engine {
            handle: Arc::new(handle),
        })
    }
}

/// How `start` failed: io_uring trouble (may fall back) or anything else.
enum Started {
    Uring(UringUnavailable),
    Other(EngineError),
}

impl Started {
    fn into_error(self) -> EngineError {
        match self {
            Started::Uring(source) => EngineError::Uring { source },
            Started::Other(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_parse() {
        assert_eq!(Backend::parse_env("uring").unwrap(), Some(Backend::Uring));
        assert_eq!(
            Backend::parse_env("io_uring").unwrap(),
            Some(Backend::Uring)
        );
        assert_eq!(
            Backend::parse_env(" threads ").unwrap(),
            Some(Backend::Threads)
        );
        assert_eq!(Backend::parse_env("NULL").unwrap(), Some(Backend::Null));
        assert_eq!(Backend::parse_env("").unwrap(), None);
        assert_eq!(Backend::parse_env("auto").unwrap(), None);
        let e = Backend::parse_env("spdk").unwrap_err();
        assert!(e.to_string().contains("uring, threads or null"), "{e}");
        for b in [Backend::Uring, Backend::Threads, Backend::Null] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
    }
}
