//! The engine: its handle, its builder, and the choice of backend with its
//! fallback.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, mpsc};

use crate::sync::Mutex;
use std::time::Duration;

use super::config::{Backend, Config, EngineError};
use super::device::Device;
use super::lane::{Bell, BufferStats, Doorbell, DriveStats, Lane};
use super::open::{self, OpenError, OpenOptions};
use super::shared::EngineShared;
use super::{null, threads, uring};
use crate::pool::BufPool;
use crate::sys::{self, UringUnavailable};
use crate::task::Completer;
use crate::task::drive::EventBell;

/// DropRuns a backend and opens devices on it. Cheap to clone; the backend's
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
    /// The backend's threads, with the lane each serves.
    threads: Mutex<Vec<(Option<usize>, std::thread::JoinHandle<()>)>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shutdown();
        let me = std::thread::current();
        let threads = std::mem::take(&mut *self.threads.lock());
        for (lane, t) in threads {
            // The last clone can be dropped by a handler running on one of
            // the engine's own threads, or inline in a pass of a lane's
            // worker (which holds the lane the lane's thread waits for);
            // that thread leaves its loop by itself once its lane is empty.
            let own_lane = lane.is_some_and(|l| self.shared.lanes[l].owner.is_worker(&me));
            if t.thread().id() != me.id() && !own_lane {
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
            steer_direct: true,
            worker_driven: true,
            registered_buffers: 0,
            submit_batch: 1,
            shutdown_grace: Duration::from_millis(500),
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Opens a regular file or block device (or, on the null backend, makes
    /// an in-memory device with the path's geometry).
    pub fn open(&self, path: impl AsRef<Path>, options: OpenOptions) -> Result<Device, OpenError> {
        open::open(&self.handle.shared, path.as_ref(), options)
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

    /// Who completed the engine's I/O so far: the completer workers
    /// driving the lanes of their CPUs, or the lanes' own threads, and how
    /// often a lane changed hands (see [`EngineBuilder::worker_driven`]).
    pub fn drive_stats(&self) -> DriveStats {
        let mut total = DriveStats::default();
        for lane in self.handle.shared.lanes.iter() {
            total.accumulate(&lane.completions.snapshot());
        }
        total
    }

    /// The registered buffer pool (see [`EngineBuilder::registered_buffers`]):
    /// its size, how much of it is handed out, how many rings registered it
    /// and how many I/Os used it.
    pub fn buffer_stats(&self) -> BufferStats {
        let shared = &self.handle.shared;
        let mut stats = BufferStats::default();
        if let Some(pool) = &shared.pool {
            stats.pool_bytes = pool.len() as u64;
            stats.in_use_bytes = pool.in_use() as u64;
        }
        for lane in shared.lanes.iter() {
            stats.rings_registered += u64::from(lane.buffers.registered.load(Ordering::Relaxed));
            stats.fixed_ios += lane.buffers.fixed_ios.load(Ordering::Relaxed);
        }
        stats
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
    steer_direct: bool,
    worker_driven: bool,
    registered_buffers: usize,
    submit_batch: u32,
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

    /// Whether the direct I/O of a block device, or of a file on one, whose
    /// completion interrupts all land on some CPUs (a disk with fewer
    /// hardware queues than CPUs) is issued on the rings of those CPUs
    /// (default yes, with pinned reapers on io_uring). The reaper is then
    /// woken on the CPU the interrupt came to, and the handlers deferred to
    /// task context run on that CPU's worker, instead of each completion
    /// crossing CPUs twice. Read once per open from sysfs and
    /// `/proc/irq/*/effective_affinity_list`. A loop or device-mapper
    /// device has no interrupt of its own and is steered like the disks
    /// under it (a loop device's I/O completes where its backing file's
    /// does); a device whose interrupts reach every CPU, or with no disk
    /// under it (tmpfs, zram), is not steered.
    #[must_use]
    pub fn steer_direct_io(mut self, steer: bool) -> EngineBuilder {
        self.steer_direct = steer;
        self
    }

    /// Whether the completer worker of each CPU drives that CPU's ring (or
    /// null device) itself when it has no handler to run (default yes, with
    /// pinned reapers on io_uring and null): it waits for completions in
    /// the ring, reaps them in atomic context and runs the deferred
    /// handlers in the same thread, in task context, issuing between
    /// handlers what they submitted. That saves the wakeup and the two
    /// context switches of handing every batch from the reaper thread to
    /// the worker. The reaper thread stands by and drives the ring while
    /// the worker cannot: stuck inside one handler for a millisecond while
    /// the ring has I/O, its CPU going down, shutdown. Such a ring is
    /// entered by two threads, so it is set up without `SINGLE_ISSUER` and
    /// `DEFER_TASKRUN` (`Engine::ring_flags` says
    /// `COOP_TASKRUN|TASKRUN_FLAG`). A CPU's worker drives one engine's
    /// ring only; the rings of
    /// other engines on the same completer keep their reaper. Needs a
    /// completer with pinned workers and a stall timeout (the defaults).
    #[must_use]
    pub fn worker_driven(mut self, yes: bool) -> EngineBuilder {
        self.worker_driven = yes;
        self
    }

    /// The size of a buffer pool registered with every io_uring ring of the
    /// engine (`IORING_REGISTER_BUFFERS`; default 0: none), at most 1 GiB.
    /// [`Device::buf`] hands out blocks of it (4 KiB to 8 MiB each,
    /// page-aligned and zeroed), and a ring issues I/O on such a buffer as
    /// `READ_FIXED`/`WRITE_FIXED`: the kernel does not pin and unpin the
    /// buffer's pages per I/O (about 15 % less CPU per 4 KiB direct read
    /// here). Size it for the buffers in flight at once, e.g. queue depth ×
    /// block size. When the pool is used up, `buf` hands out heap buffers,
    /// as without a pool. The pool's pages are locked in memory and count
    /// against `RLIMIT_MEMLOCK` once per ring (the CPU count) unless the
    /// process has `CAP_IPC_LOCK`; a ring whose registration fails says why
    /// once and uses the pool's buffers as ordinary memory.
    /// [`Engine::buffer_stats`] tells how it went.
    #[must_use]
    pub fn registered_buffers(mut self, bytes: usize) -> EngineBuilder {
        self.registered_buffers = bytes;
        self
    }

    /// How many I/Os an io_uring reaper puts in its SQ before it enters the
    /// kernel to submit them, 1..=4096 (default 1: each I/O is submitted as
    /// soon as the reaper takes it, as fio does by default). The reaper
    /// submits what it holds before it sleeps, so a larger batch never
    /// delays an I/O beyond the pass that took it; it saves system calls
    /// but sends a whole pass to the device at once, and a device whose
    /// completions then come back together keeps the same convoy pass after
    /// pass (on a virtio disk, 4 KiB random reads at QD16 ran about 13 %
    /// slower with the whole pass in one call; BENCHMARKS.md §7).
    #[must_use]
    pub fn submit_batch(mut self, ios: u32) -> EngineBuilder {
        self.submit_batch = ios;
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
        if !(1..=4096).contains(&self.submit_batch) {
            return Err(EngineError::Invalid(format!(
                "submit batch {} is outside 1..=4096; choose 1 to submit each I/O at once, or the queue depth for one system call per pass",
                self.submit_batch
            )));
        }
        if self.registered_buffers > crate::pool::POOL_BYTES_MAX {
            return Err(EngineError::Invalid(format!(
                "a registered buffer pool of {} bytes is larger than io_uring registers (1 GiB); choose 1 GiB or less, such as the queue depth times the block size",
                self.registered_buffers
            )));
        }
        if !(1..=256).contains(&self.threads) {
            return Err(EngineError::Invalid(format!(
                "{} pool threads is outside 1..=256; choose a number such as 8",
                self.threads
            )));
        }
        let from_env = if self.backend.is_none() && self.use_env {
            match std::env::var(Backend::ENV) {
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
        // A lane a worker may drive has an event bell: the worker sleeps
        // in the lane, and the producers of its queue ring the lane's bell.
        let may_drive = self.worker_driven && self.pin;
        for &cpu in &lane_cpus {
            let bell = match backend {
                Backend::Uring => Bell::Event(Arc::new(EventBell::new().map_err(|e| {
                    Started::Uring(sys::diagnose_uring_error(e.raw_os_error(), None))
                })?)),
                Backend::Null if may_drive && cpu.is_some() => {
                    Bell::Event(Arc::new(EventBell::new().map_err(|source| {
                        Started::Other(EngineError::Spawn {
                            what: "null-device bell",
                            source,
                        })
                    })?))
                }
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
        let pool = match backend {
            Backend::Uring if self.registered_buffers > 0 => {
                Some(BufPool::new(self.registered_buffers).map_err(|source| {
                    Started::Other(EngineError::Spawn {
                        what: "registered buffer pool",
                        source,
                    })
                })?)
            }
            _ => None,
        };
        let shared = Arc::new(EngineShared {
            completer: self.completer.clone(),
            backend,
            config: Config {
                null_latency: self.null_latency,
                pin: self.pin,
                steer_direct: self.steer_direct,
                submit_batch: self.submit_batch,
                shutdown_grace: self.shutdown_grace,
            },
            queue_depth: self.queue_depth,
            lanes: lanes.into_boxed_slice(),
            lane_of_cpu,
            closed: AtomicBool::new(false),
            ring_flags: OnceLock::new(),
            fallback,
            pool,
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
        let register = |lane: Option<usize>, t: std::thread::JoinHandle<()>| {
            handle.threads.lock().push((lane, t));
        };
        // Attaches lane `lane` to its CPU's worker, before its thread
        // starts (which then makes a ring two threads may drive).
        let attach = |lane: usize, drive: Arc<dyn crate::task::drive::Drive>| {
            if let (true, Some(cpu)) = (may_drive, shared.lanes[lane].cpu)
                && shared.completer.attach_lane(cpu, drive)
            {
                // Release: the reaper's Acquire load when it makes the ring.
                shared.lanes[lane].driven.store(true, Ordering::Release);
            }
        };
        match backend {
            Backend::Uring => {
                let (tx, rx) = mpsc::channel();
                for lane in 0..shared.lanes.len() {
                    let cell = uring::RingCell::new();
                    attach(
                        lane,
                        Arc::new(uring::UringDrive {
                            shared: Arc::clone(&shared),
                            cell: Arc::clone(&cell),
                            lane,
                        }),
                    );
                    register(
                        Some(lane),
                        uring::spawn(Arc::clone(&shared), cell, lane, tx.clone())
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
                        None,
                        threads::spawn(Arc::clone(&shared), i).map_err(spawn_err("I/O pool"))?,
                    );
                }
            }
            Backend::Null => {
                for lane in 0..shared.lanes.len() {
                    let cell = null::NullCell::new(shared.queue_depth);
                    if matches!(shared.lanes[lane].bell, Bell::Event(_)) {
                        attach(
                            lane,
                            Arc::new(null::NullDrive {
                                shared: Arc::clone(&shared),
                                cell: Arc::clone(&cell),
                                lane,
                            }),
                        );
                    }
                    register(
                        Some(lane),
                        null::spawn(Arc::clone(&shared), cell, lane)
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
