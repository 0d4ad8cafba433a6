//! Devices: opening files and block devices, their geometry, and the checks
//! a bio passes before it is accepted.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::cache::Residency;
use super::dontcache::{self, DcState, DontcacheMode, DontcacheStats, Route, Setup};
use super::lane::{Inflight, Request, Wait};
use super::writeback::{WbState, WritebackErrors};
use super::{Backend, EngineShared};
use crate::bio::{Bio, BioFlags, Buf, Op};
use crate::context;
use crate::sys;

/// The largest transfer one `read`/`write` system call makes on Linux
/// (`MAX_RW_COUNT`: `INT_MAX` rounded down to a page).
pub const MAX_IO_BYTES: u64 = 0x7fff_f000;

/// Logical block size assumed for direct I/O on a file whose filesystem does
/// not report its alignment (kernels before 6.1): 4096 is a multiple of
/// every common sector size, so it is always safe.
const SAFE_DIO_ALIGN: u32 = 4096;

/// Size of an in-memory device of the null backend when neither the path
/// nor [`OpenOptions::size`] gives one.
const NULL_DEFAULT_SIZE: u64 = 1 << 30;

/// How to open a device: access, creation, `O_DIRECT`, exclusivity.
///
/// ```no_run
/// use endio::{Engine, OpenOptions, Completer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = Engine::builder(Completer::builder().build()?).build()?;
/// let dev = engine.open("/dev/loop0", OpenOptions::new().read(true).write(true).direct(true))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    create: bool,
    direct: bool,
    exclusive: bool,
    size: Option<u64>,
    dontcache: bool,
    dontcache_emulated: bool,
    dontcache_backlog_bytes_max: Option<u64>,
}

impl OpenOptions {
    /// Nothing set: choose at least one of [`read`](Self::read) and
    /// [`write`](Self::write).
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Allows reads.
    #[must_use]
    pub fn read(mut self, yes: bool) -> OpenOptions {
        self.read = yes;
        self
    }

    /// Allows writes (and flushes of written data).
    #[must_use]
    pub fn write(mut self, yes: bool) -> OpenOptions {
        self.write = yes;
        self
    }

    /// Creates a regular file that does not exist (needs `write`).
    #[must_use]
    pub fn create(mut self, yes: bool) -> OpenOptions {
        self.create = yes;
        self
    }

    /// Bypasses the page cache (`O_DIRECT`): offsets, lengths and buffer
    /// addresses must then be aligned to the device's logical block size
    /// (see [`Device::logical_block_size`] and [`Device::buf`]).
    #[must_use]
    pub fn direct(mut self, yes: bool) -> OpenOptions {
        self.direct = yes;
        self
    }

    /// Opens a block device exclusively (`O_EXCL`): fails if it is mounted
    /// or held exclusively by someone else, and keeps others from doing so.
    /// Block devices only.
    #[must_use]
    pub fn exclusive(mut self, yes: bool) -> OpenOptions {
        self.exclusive = yes;
        self
    }

    /// For a regular file: grows it (sparsely) to at least `bytes` when it
    /// is opened (needs `write`). For the null backend: the size of the
    /// in-memory device.
    #[must_use]
    pub fn size(mut self, bytes: u64) -> OpenOptions {
        self.size = Some(bytes);
        self
    }

    /// Uncached buffered I/O ("dontcache") for every read and write: the
    /// pages an I/O brings into the page cache leave it once the I/O is
    /// done (a write's after its writeback), pages cached before stay. The
    /// kernel's `RWF_DONTCACHE` where it supports it for this file, else
    /// endio's emulation; [`Device::dontcache_mode`] says which. Readahead
    /// is turned off for the device. Not with [`direct`](Self::direct),
    /// which bypasses the cache anyway: the open is refused. A single bio
    /// can be made dontcache on any buffered device with
    /// [`BioFlags::DONTCACHE`]. See the [`io::dontcache`] module.
    ///
    /// [`io::dontcache`]: crate::io::dontcache
    #[must_use]
    pub fn dontcache(mut self, yes: bool) -> OpenOptions {
        self.dontcache = yes;
        self
    }

    /// Dontcache through endio's emulation even where the kernel has
    /// `RWF_DONTCACHE` (to compare the two on one file). Implies
    /// [`dontcache`](Self::dontcache).
    #[must_use]
    pub fn dontcache_emulated(mut self, yes: bool) -> OpenOptions {
        self.dontcache_emulated = yes;
        self
    }

    /// The emulation's bound on bytes of dontcache I/O submitted and not yet
    /// dropped from the cache (default 64 MiB,
    /// [`BACKLOG_BYTES_MAX_DEFAULT`]); submits beyond it wait (task
    /// context) or are refused with [`SubmitErrorKind::Busy`] (atomic
    /// context, [`Device::try_submit`]). Also at most [`UNITS_MAX`] I/Os.
    ///
    /// [`BACKLOG_BYTES_MAX_DEFAULT`]: super::dontcache::BACKLOG_BYTES_MAX_DEFAULT
    /// [`UNITS_MAX`]: super::dontcache::UNITS_MAX
    #[must_use]
    pub fn dontcache_backlog_bytes_max(mut self, bytes: u64) -> OpenOptions {
        self.dontcache_backlog_bytes_max = Some(bytes);
        self
    }

    fn wants_dontcache(&self) -> bool {
        self.dontcache || self.dontcache_emulated
    }
}

/// What a [`Device`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A regular file: reads past its end are short, writes past it grow it.
    File,
    /// A block device: I/O past its end is refused.
    BlockDevice,
    /// An in-memory device of the null backend (fixed size, starts zeroed).
    Memory,
}

/// Why [`Engine::open`](crate::Engine::open) failed. Every message names the
/// path and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The path does not exist.
    #[error(
        "cannot open {}: no such file or directory; check the path, or use OpenOptions::create(true) to create a regular file",
        path.display()
    )]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error(
        "cannot open {}: it is a directory; give the path of a regular file or a block device",
        path.display()
    )]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The path is neither a regular file nor a block device.
    #[error(
        "cannot open {}: it is a {what}; endio does I/O on regular files and block devices only",
        path.display()
    )]
    Unsupported {
        /// The path given.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// Access was denied.
    #[error(
        "cannot open {} for {access}: permission denied; run as root, or give this user access (the `disk` group for block devices), or open it read-only",
        path.display()
    )]
    PermissionDenied {
        /// The path given.
        path: PathBuf,
        /// "reading", "writing" or "reading and writing".
        access: &'static str,
    },
    /// The filesystem cannot do `O_DIRECT`.
    #[error(
        "cannot open {} with O_DIRECT: its filesystem does not support direct I/O (tmpfs does not); put the file on a disk filesystem such as ext4 or xfs, or open it without OpenOptions::direct(true)",
        path.display()
    )]
    DirectUnsupported {
        /// The path given.
        path: PathBuf,
    },
    /// An exclusive open found the block device in use.
    #[error(
        "cannot open {} exclusively: the block device is in use (mounted, or held exclusively by another opener); unmount it or stop the other user, or open it without OpenOptions::exclusive(true)",
        path.display()
    )]
    Busy {
        /// The path given.
        path: PathBuf,
    },
    /// A write open on a read-only filesystem or device.
    #[error(
        "cannot open {} for writing: it is read-only (a read-only mount or a read-only block device); open it with OpenOptions::write(false)",
        path.display()
    )]
    ReadOnly {
        /// The path given.
        path: PathBuf,
    },
    /// The options do not make sense together.
    #[error("cannot open {}: {reason}", path.display())]
    InvalidOptions {
        /// The path given.
        path: PathBuf,
        /// What is wrong and how to set it.
        reason: String,
    },
    /// The engine is shut down.
    #[error(
        "cannot open {}: the engine is shut down; open devices on a running Engine",
        path.display()
    )]
    ShutDown {
        /// The path given.
        path: PathBuf,
    },
    /// Any other failure of the system.
    #[error("cannot open {}: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// What kind of problem made [`Device::submit`] refuse a bio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// A write on a device opened without `write`.
    ReadOnly,
    /// A read on a device opened without `read`.
    WriteOnly,
    /// A read or write with an empty buffer.
    ZeroLength,
    /// `O_DIRECT` with an offset that is not a multiple of the logical block
    /// size.
    UnalignedOffset,
    /// `O_DIRECT` with a length that is not a multiple of the logical block
    /// size.
    UnalignedLength,
    /// `O_DIRECT` with a buffer address that is not aligned as the device
    /// needs.
    UnalignedBuffer,
    /// I/O that ends past the end of a block device or memory device.
    PastEnd,
    /// One I/O larger than the kernel transfers in one call.
    TooLarge,
    /// Every slot is taken, or the dontcache backlog is full, and the
    /// caller may not wait (atomic context, or [`Device::try_submit`]).
    Busy,
    /// The engine is shut down.
    ShutDown,
    /// A write that waits for its write-back could not get a description
    /// of the file to wait on (the open-file limit).
    NoDescriptor,
}

/// A refused bio, handed back with what was wrong and what to do about it
/// (DESIGN §4: nothing is lost).
pub struct SubmitError {
    kind: SubmitErrorKind,
    message: String,
    bio: Exclusive<Bio>,
}

impl SubmitError {
    pub(crate) fn new(kind: SubmitErrorKind, message: String, bio: Bio) -> SubmitError {
        SubmitError {
            kind,
            message,
            bio: Exclusive(bio),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> SubmitErrorKind {
        self.kind
    }

    /// The message: the problem, the device and the fix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The refused bio, untouched, with its handler (which has not run).
    pub fn into_bio(self) -> Bio {
        self.bio.0
    }

    /// The refused bio, to change and submit again.
    pub fn bio_mut(&mut self) -> &mut Bio {
        &mut self.bio.0
    }
}

impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SubmitError {}

/// Owns a value and gives no shared access to it (`&self` reaches nothing
/// inside), so it may be shared between threads whatever the value is: what
/// `std::sync::Exclusive` does. It makes [`SubmitError`] `Sync` (a [`Bio`]
/// holds a `Send`-only handler), so that `?` can turn it into an
/// `anyhow::Error` or a `Box<dyn Error + Send + Sync>`.
struct Exclusive<T>(T);

// SAFETY: `Sync` promises that `&Exclusive<T>` may be used from several
// threads at once. No method of `Exclusive` takes `&self` and reaches the
// value (the field is private to this module, where it is read only by value
// in `SubmitError::into_bio` and through `&mut` in `SubmitError::bio_mut`,
// and `SubmitError`'s `&self` methods do not touch it), so a shared
// reference gives access to nothing, and `T: Send` suffices for moving it.
unsafe impl<T: Send> Sync for Exclusive<T> {}

/// An open file, block device or in-memory device of an [`Engine`]: submit
/// bios to it from any thread.
///
/// Cheap to clone; when the last clone is dropped (in task context), it
/// waits for the device's in-flight I/O and then closes the file.
///
/// [`Engine`]: crate::Engine
#[derive(Clone)]
pub struct Device {
    handle: Arc<DeviceHandle>,
}

/// The users' side; dropping the last one drains.
struct DeviceHandle {
    shared: Arc<DeviceShared>,
}

/// What backend threads need of a device.
pub(crate) struct DeviceShared {
    pub(crate) engine: Arc<EngineShared>,
    path: PathBuf,
    pub(crate) target: Target,
    kind: DeviceKind,
    readable: bool,
    writable: bool,
    direct: bool,
    logical_block_size: u32,
    /// Required buffer alignment (1 when not direct).
    mem_align: u32,
    size: u64,
    pub(crate) inflight: Arc<Inflight>,
    /// Opened with `OpenOptions::dontcache`.
    dontcache: bool,
    /// Dontcache state: set at open for a dontcache device, on the first
    /// `BioFlags::DONTCACHE` bio for another buffered one.
    dc: OnceLock<Arc<DcState>>,
    /// Write-back waits and the errors seen (see `writeback.rs`).
    pub(crate) wb: WbState,
}

/// Where the bytes live.
#[derive(Debug)]
pub(crate) enum Target {
    File(File),
    Memory(MemStore),
}

impl DeviceShared {
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.target {
            Target::File(f) => Some(f),
            Target::Memory(_) => None,
        }
    }

    /// The dontcache state, if the device has one yet.
    pub(crate) fn dc(&self) -> Option<&DcState> {
        self.dc.get().map(|dc| &**dc)
    }

    pub(crate) fn dc_arc(&self) -> Option<Arc<DcState>> {
        self.dc.get().cloned()
    }

    /// Whether `bio` is dontcache on this device, and its state if so (made
    /// on first use for a per-bio flag).
    fn dc_for(&self, bio: &Bio) -> Option<&DcState> {
        if self.direct || !matches!(bio.op(), Op::Read | Op::Write) {
            // O_DIRECT bypasses the page cache: nothing to drop.
            return None;
        }
        if self.dontcache {
            return self.dc();
        }
        if !bio.flags().contains(BioFlags::DONTCACHE) {
            return None;
        }
        let dc = self.dc.get_or_init(|| {
            // In atomic context the probe is one preadv2(2), not the setup
            // of a private io_uring (the kernel checks the flag alike).
            let backend = if context::in_atomic() {
                Backend::Threads
            } else {
                self.engine.backend
            };
            Arc::new(DcState::for_bios(
                self.file(),
                self.readable,
                self.size,
                backend,
            ))
        });
        Some(dc)
    }

    /// Latches the failure `res` (a negated errno) of a write-back wait:
    /// `ECANCELED` (the engine shut down first) and `EINVAL`/`EOPNOTSUPP`
    /// (no asynchronous wait here) say nothing about the data and are not
    /// write-back errors. The first one is said once per device.
    pub(crate) fn writeback_failed(&self, res: i64) {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        if matches!(errno, libc::ECANCELED | libc::EINVAL | libc::EOPNOTSUPP) {
            return;
        }
        let first = self.wb.errors().count == 0;
        self.wb.record_errno(errno);
        if first {
            tracing::warn!(
                path = %self.path.display(),
                error = %io::Error::from_raw_os_error(errno),
                "write-back of data written to this device failed: it did not reach the device; the next flush of the device reports the error, and Device::writeback_errors counts it"
            );
        }
    }

    /// Writes back `len` bytes at `offset` and waits for them, on a
    /// description of endio's own (task context: it blocks). A failure is
    /// latched.
    pub(crate) fn wait_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let waiter = self.wb.acquire(self.file())?;
        let res = match &waiter.fd {
            Some(fd) => sys::sync_range(fd.as_fd(), offset, len),
            None => Ok(()),
        };
        self.wb.release(waiter);
        if let Err(e) = &res {
            self.writeback_failed(-i64::from(e.raw_os_error().unwrap_or(libc::EIO)));
        }
        res
    }

    /// Waits (task context) until no I/O is in flight and every dontcache
    /// drop is done; `false` if `deadline` passed first.
    fn drain_until(&self, deadline: Option<std::time::Instant>) -> bool {
        let left = |d: std::time::Instant| d.saturating_duration_since(std::time::Instant::now());
        if !self.inflight.wait_zero(deadline.map(left)) {
            return false;
        }
        let Some(dc) = self.dc() else {
            return true;
        };
        let idle = dc.wait_idle(self, deadline);
        if idle {
            dc.sweep(self);
        }
        idle
    }
}

impl fmt::Debug for DeviceShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceShared")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.handle.shared;
        f.debug_struct("Device")
            .field("path", &d.path)
            .field("kind", &d.kind)
            .field("backend", &d.engine.backend)
            .field("read", &d.readable)
            .field("write", &d.writable)
            .field("direct", &d.direct)
            .field("logical_block_size", &d.logical_block_size)
            .field("buf_align", &d.mem_align)
            .field("size", &d.size)
            .field("in_flight", &d.inflight.get())
            .field("dontcache", &d.dc().map(|dc| dc.mode))
            .finish()
    }
}

impl Drop for DeviceHandle {
    fn drop(&mut self) {
        // Closing the file while pool threads may still use its descriptor
        // number would be wrong, so the last user handle waits for the
        // device's I/O (which ends: every lane completes or cancels what it
        // holds). In atomic context it may not wait: the in-flight requests
        // keep the file open, and the last of them closes it.
        if !context::in_atomic() {
            self.shared.drain_until(None);
        }
    }
}

impl Device {
    /// Submits `bio`: checks it, waits for an in-flight slot if every slot
    /// is taken (in task context; in atomic context it is refused with
    /// [`SubmitErrorKind::Busy`] instead), and queues it. Its handler runs
    /// exactly once when the I/O completes, through the engine's
    /// [`Completer`](crate::Completer).
    ///
    /// A refused bio comes back inside the error with a message naming the
    /// problem and the fix; its handler has not run.
    pub fn submit(&self, bio: Bio) -> Result<(), SubmitError> {
        self.submit_with(bio, !context::in_atomic())
    }

    /// As [`submit`](Self::submit), but never waits: when every slot is
    /// taken the bio comes back with [`SubmitErrorKind::Busy`].
    pub fn try_submit(&self, bio: Bio) -> Result<(), SubmitError> {
        self.submit_with(bio, false)
    }

    fn submit_with(&self, bio: Bio, may_wait: bool) -> Result<(), SubmitError> {
        let dev = &self.handle.shared;
        if let Err((kind, message)) = dev.check(&bio) {
            return Err(SubmitError::new(kind, message, bio));
        }
        let route = match dev.dc_for(&bio) {
            None => Route::PLAIN,
            Some(dc) => match dc.route(dev, &bio, may_wait) {
                Ok(route) => route,
                Err(()) => {
                    let message = dev.backlog_refusal(&bio);
                    return Err(SubmitError::new(SubmitErrorKind::Busy, message, bio));
                }
            },
        };
        // A write waits for its write-back on a description taken now,
        // before the write is issued (see `writeback.rs`): a dontcache
        // write, to drop clean pages; a WAIT_WRITEBACK write, for its result.
        let hold =
            bio.op() == Op::Write && bio.flags().contains(BioFlags::WAIT_WRITEBACK) && !dev.direct;
        let wait = if hold || route.plan.as_ref().is_some_and(|p| p.writes()) {
            match dev.wb.acquire(dev.file()) {
                Ok(waiter) => Some(Wait::new(waiter, hold)),
                Err(e) => {
                    if let (Some(plan), Some(dc)) = (route.plan, dev.dc()) {
                        dc.unreserve(plan);
                    }
                    let message = format!(
                        "cannot write to {}: endio cannot open a second description of it to wait for the write-back ({e}); raise the open-file limit (ulimit -n) or keep fewer writes in flight",
                        dev.path.display()
                    );
                    return Err(SubmitError::new(
                        SubmitErrorKind::NoDescriptor,
                        message,
                        bio,
                    ));
                }
            }
        } else {
            None
        };
        let req = Request {
            bio,
            dev: Arc::clone(dev),
            rw_flags: route.rw_flags,
            read_fd: route.read_fd,
            dontcache: route.plan,
            wait,
        };
        dev.inflight.add();
        match dev.engine.enqueue(req, may_wait) {
            Ok(()) => Ok(()),
            Err((req, kind)) => {
                if let (Some(plan), Some(dc)) = (req.dontcache, dev.dc()) {
                    dc.unreserve(plan);
                }
                if let Some(w) = req.wait {
                    dev.wb.release(w.waiter);
                }
                dev.inflight.done();
                let message = dev.refusal(kind, &req.bio);
                Err(SubmitError::new(kind, message, req.bio))
            }
        }
    }

    /// Waits until none of this device's bios is in flight: each submitted
    /// bio has been through [`Completer::endio`](crate::Completer::endio)
    /// (its handler ran, or it is queued to run in task context; see
    /// [`Completer::wait_idle`](crate::Completer::wait_idle) for those),
    /// and all dontcache drop-behind is done: every written range's
    /// writeback finished and its drop made.
    ///
    /// # Panics
    ///
    /// In atomic context, where waiting is not allowed (it could wait for
    /// the very reaper it runs on).
    pub fn drain(&self) {
        assert!(
            !context::in_atomic(),
            "Device::drain called in atomic context (a reaper or an atomic section), where it would wait for itself; drain from task context"
        );
        self.handle.shared.drain_until(None);
    }

    /// As [`drain`](Self::drain), for at most `timeout`; `false` if I/O (or
    /// dontcache drop-behind) was still outstanding then. In atomic context
    /// it only looks.
    pub fn drain_timeout(&self, timeout: Duration) -> bool {
        let timeout = if context::in_atomic() {
            Duration::ZERO
        } else {
            timeout
        };
        self.handle
            .shared
            .drain_until(Some(std::time::Instant::now() + timeout))
    }

    /// Which dontcache path the device's I/O takes: `None` unless it was
    /// opened with [`OpenOptions::dontcache`] (or
    /// [`dontcache_emulated`](OpenOptions::dontcache_emulated)). A memory
    /// device of the null backend reports [`DontcacheMode::Emulated`]: the
    /// emulation's protocol runs (backlog, writeback stage, drop bios
    /// through the completer, coalescing) with no system calls, since
    /// memory has no page cache.
    pub fn dontcache_mode(&self) -> Option<DontcacheMode> {
        let d = &self.handle.shared;
        if d.dontcache {
            d.dc().map(|dc| dc.mode)
        } else {
            None
        }
    }

    /// The write-back errors endio has seen on this device so far: from
    /// the write-back waits of dontcache and
    /// [`WAIT_WRITEBACK`](BioFlags::WAIT_WRITEBACK) writes, from failed
    /// flushes and from [`check_writeback`](Self::check_writeback). Looking
    /// consumes nothing: the next [`Bio::flush`] of the device still
    /// reports every write-back error since the previous one.
    pub fn writeback_errors(&self) -> WritebackErrors {
        self.handle.shared.wb.errors()
    }

    /// Asks the kernel whether write-back of this device's data has failed
    /// (task context: it opens a second description of the file, which
    /// reports what nobody has seen yet), latches what it says, and returns
    /// the first write-back error endio has seen on the device, if any.
    /// Like [`writeback_errors`](Self::writeback_errors) it consumes
    /// nothing that a flush would report. Use it where no flush follows: a
    /// write-back error of a buffered write is otherwise reported only by
    /// the next flush.
    pub fn check_writeback(&self) -> io::Result<()> {
        let d = &self.handle.shared;
        if let Some(file) = d.file() {
            d.wb.probe(file)?;
        }
        match d.wb.errors().first() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the device's dontcache I/O (whole-device or per-bio) did so
    /// far; all zero if it did none.
    pub fn dontcache_stats(&self) -> DontcacheStats {
        self.handle
            .shared
            .dc()
            .map(DcState::stats)
            .unwrap_or_default()
    }

    /// The page-cache residency of the whole file or block device (see
    /// [`cache::residency`](super::cache::residency)). A memory device of
    /// the null backend has no page cache: all zero.
    pub fn residency(&self) -> io::Result<Residency> {
        match self.handle.shared.file() {
            Some(file) => super::cache::residency(file, 0..0),
            None => Ok(Residency {
                cached_bytes: 0,
                dirty_bytes: 0,
                writeback_bytes: 0,
                page_size: rustix::param::page_size() as u64,
                source: sys::CacheStatSource::Cachestat,
            }),
        }
    }

    /// Bios submitted to this device whose completion has not yet been
    /// handed to the completer.
    pub fn in_flight(&self) -> u32 {
        self.handle.shared.inflight.get()
    }

    /// A zeroed buffer of `len` bytes aligned as this device needs for
    /// `O_DIRECT` (harmless otherwise).
    pub fn buf(&self, len: usize) -> Buf {
        Buf::zeroed(len, self.buf_align())
    }

    /// The path it was opened with.
    pub fn path(&self) -> &Path {
        &self.handle.shared.path
    }

    /// File, block device, or in-memory device.
    pub fn kind(&self) -> DeviceKind {
        self.handle.shared.kind
    }

    /// The unit of offsets and lengths for `O_DIRECT` (`BLKSSZGET` for a
    /// block device, `statx` `dio_offset_align` for a file, 4096 when the
    /// filesystem does not say; for buffered files, 512 unless the
    /// filesystem says otherwise).
    pub fn logical_block_size(&self) -> u32 {
        self.handle.shared.logical_block_size
    }

    /// The alignment [`Device::buf`] gives: the buffer alignment `O_DIRECT`
    /// needs, and never less than the logical block size.
    pub fn buf_align(&self) -> usize {
        let d = &self.handle.shared;
        d.mem_align.max(d.logical_block_size) as usize
    }

    /// Size in bytes: of the block device or memory device, or of the file
    /// when it was opened.
    pub fn size(&self) -> u64 {
        self.handle.shared.size
    }

    /// Whether it was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.handle.shared.direct
    }

    /// The backend its I/O goes through.
    pub fn backend(&self) -> Backend {
        self.handle.shared.engine.backend
    }
}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Read => "read",
        Op::Write => "write",
        Op::Flush => "flush",
        Op::Nop => "nop",
    }
}

impl DeviceShared {
    /// The checks of a bio before it is queued (DESIGN §4).
    fn check(&self, bio: &Bio) -> Result<(), (SubmitErrorKind, String)> {
        let path = self.path.display();
        let op = bio.op();
        let name = op_name(op);
        match op {
            Op::Nop | Op::Flush => return Ok(()),
            Op::Write if !self.writable => {
                return Err((
                    SubmitErrorKind::ReadOnly,
                    format!(
                        "cannot write to {path}: it is open read-only; open it with OpenOptions::write(true)"
                    ),
                ));
            }
            Op::Read if !self.readable => {
                return Err((
                    SubmitErrorKind::WriteOnly,
                    format!(
                        "cannot read {path}: it is open write-only; open it with OpenOptions::read(true)"
                    ),
                ));
            }
            Op::Read | Op::Write => {}
        }
        let offset = bio.offset();
        let len = bio.buf().len() as u64;
        let lbs = u64::from(self.logical_block_size);
        if len == 0 {
            return Err((
                SubmitErrorKind::ZeroLength,
                format!(
                    "zero-length {name} at offset {offset} on {path}: give the bio a buffer of at least one logical block ({lbs} bytes), or use Bio::nop to transfer nothing"
                ),
            ));
        }
        if len > MAX_IO_BYTES {
            return Err((
                SubmitErrorKind::TooLarge,
                format!(
                    "{name} of {len} bytes on {path} is larger than one I/O can be ({MAX_IO_BYTES} bytes, the kernel's per-call limit); split it into smaller bios"
                ),
            ));
        }
        if self.direct {
            if !offset.is_multiple_of(lbs) {
                return Err((
                    SubmitErrorKind::UnalignedOffset,
                    format!(
                        "O_DIRECT {name} on {path}: offset {offset} is not a multiple of the logical block size {lbs}; align offsets to {lbs} bytes, or open without OpenOptions::direct(true)"
                    ),
                ));
            }
            if !len.is_multiple_of(lbs) {
                return Err((
                    SubmitErrorKind::UnalignedLength,
                    format!(
                        "O_DIRECT {name} on {path}: length {len} is not a multiple of the logical block size {lbs}; make lengths a multiple of {lbs} bytes, or open without OpenOptions::direct(true)"
                    ),
                ));
            }
            let align = self.mem_align as usize;
            if !bio.buf().is_aligned_to(align) {
                let addr = bio.buf().as_ptr() as usize;
                return Err((
                    SubmitErrorKind::UnalignedBuffer,
                    format!(
                        "O_DIRECT {name} on {path}: the buffer at {addr:#x} is not aligned to {align} bytes (logical block size {lbs}); allocate it with Device::buf(len) or Buf::zeroed(len, {})",
                        align.max(lbs as usize)
                    ),
                ));
            }
        }
        if matches!(self.kind, DeviceKind::BlockDevice | DeviceKind::Memory) {
            let end = offset.saturating_add(len);
            if end > self.size {
                let size = self.size;
                return Err((
                    SubmitErrorKind::PastEnd,
                    format!(
                        "{name} of {len} bytes at offset {offset} on {path} ends at byte {end}, past the end of the device ({size} bytes); keep offset + length within {size}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The message of a refusal for a full dontcache backlog.
    fn backlog_refusal(&self, bio: &Bio) -> String {
        format!(
            "cannot {} {} now: its dontcache backlog (I/O submitted whose pages are not yet dropped from the cache) is full and the caller may not wait (atomic context or try_submit); submit from task context, retry after a completion, or raise OpenOptions::dontcache_backlog_bytes_max",
            op_name(bio.op()),
            self.path.display()
        )
    }

    /// The message of a refusal by the engine (after the checks passed).
    fn refusal(&self, kind: SubmitErrorKind, bio: &Bio) -> String {
        let path = self.path.display();
        let name = op_name(bio.op());
        match kind {
            SubmitErrorKind::ShutDown => format!(
                "cannot {name} {path}: the engine is shut down (its last Engine handle was dropped); keep an Engine alive while submitting"
            ),
            _ => {
                let depth = self.engine.queue_depth;
                let lanes = self.engine.lanes.len();
                format!(
                    "cannot {name} {path} now: all {lanes}x{depth} in-flight slots are taken and the caller may not wait (atomic context or try_submit); submit from task context, retry after a completion, or raise EngineBuilder::queue_depth"
                )
            }
        }
    }
}

/// Opens `path` on `engine` (see [`Engine::open`](crate::Engine::open)).
pub(crate) fn open(
    engine: &Arc<EngineShared>,
    path: &Path,
    o: OpenOptions,
) -> Result<Device, OpenError> {
    let path_buf = path.to_path_buf();
    let invalid = |reason: String| OpenError::InvalidOptions {
        path: path_buf.clone(),
        reason,
    };
    // Relaxed: an open racing with shutdown is refused by the first submit.
    if engine.closed.load(Ordering::Relaxed) {
        return Err(OpenError::ShutDown { path: path_buf });
    }
    if !o.read && !o.write {
        return Err(invalid(
            "neither read nor write access was asked for; use OpenOptions::read(true) and/or write(true)".into(),
        ));
    }
    if o.create && !o.write {
        return Err(invalid(
            "create(true) needs write access; add OpenOptions::write(true)".into(),
        ));
    }
    let access = match (o.read, o.write) {
        (true, true) => "reading and writing",
        (false, true) => "writing",
        _ => "reading",
    };
    let kind = match std::fs::metadata(path) {
        Ok(meta) => {
            let ft = meta.file_type();
            if ft.is_dir() {
                return Err(OpenError::IsDirectory { path: path_buf });
            } else if ft.is_block_device() {
                DeviceKind::BlockDevice
            } else if ft.is_file() {
                DeviceKind::File
            } else {
                let what = if ft.is_char_device() {
                    "character device"
                } else if ft.is_fifo() {
                    "FIFO"
                } else if ft.is_socket() {
                    "socket"
                } else {
                    "special file"
                };
                return Err(OpenError::Unsupported {
                    path: path_buf,
                    what,
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if o.create {
                DeviceKind::File
            } else {
                return Err(OpenError::NotFound { path: path_buf });
            }
        }
        Err(e) => return Err(map_open_error(e, path, o, access)),
    };
    if o.exclusive && kind != DeviceKind::BlockDevice {
        return Err(invalid(
            "exclusive(true) is for block devices and this is a regular file; drop exclusive(true)"
                .into(),
        ));
    }
    if o.wants_dontcache() && o.direct {
        return Err(invalid(
            "dontcache(true) and direct(true) exclude each other: dontcache is buffered I/O that leaves the page cache as it found it, O_DIRECT bypasses the page cache altogether; choose one (a single bio can still carry BioFlags::DONTCACHE on a buffered device)".into(),
        ));
    }
    if o.size.is_some() && kind == DeviceKind::BlockDevice {
        return Err(invalid(
            "size() sets the size of files and memory devices; a block device has its own, drop size()".into(),
        ));
    }
    let shared = if engine.backend == Backend::Null {
        open_memory(engine, path, kind, o)?
    } else {
        open_file(engine, path, kind, o, access)?
    };
    Ok(Device {
        handle: Arc::new(DeviceHandle {
            shared: Arc::new(shared),
        }),
    })
}

fn map_open_error(e: io::Error, path: &Path, o: OpenOptions, access: &'static str) -> OpenError {
    let path = path.to_path_buf();
    match e.raw_os_error() {
        Some(libc::ENOENT) => OpenError::NotFound { path },
        Some(libc::EISDIR) => OpenError::IsDirectory { path },
        Some(libc::EACCES | libc::EPERM) => OpenError::PermissionDenied { path, access },
        Some(libc::EROFS) => OpenError::ReadOnly { path },
        Some(libc::EINVAL) if o.direct => OpenError::DirectUnsupported { path },
        Some(libc::EBUSY) if o.exclusive => OpenError::Busy { path },
        _ => OpenError::Io { path, source: e },
    }
}

fn open_file(
    engine: &Arc<EngineShared>,
    path: &Path,
    kind: DeviceKind,
    o: OpenOptions,
    access: &'static str,
) -> Result<DeviceShared, OpenError> {
    let mut flags = libc::O_CLOEXEC;
    if o.direct {
        flags |= libc::O_DIRECT;
    }
    if o.exclusive {
        // O_EXCL without O_CREAT on a block device: an exclusive claim.
        flags |= libc::O_EXCL;
    }
    let file = std::fs::OpenOptions::new()
        .read(o.read)
        .write(o.write)
        .create(o.create && kind == DeviceKind::File)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| map_open_error(e, path, o, access))?;
    let io_err = |source: io::Error| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dio = sys::dio_alignment(&file).map_err(io_err)?;
    let (logical_block_size, mem_align, size) = match kind {
        DeviceKind::BlockDevice => {
            if o.write && sys::block_device_read_only(&file).map_err(io_err)? {
                // The kernel lets a read-only block device be opened for
                // writing and refuses each write (EPERM): refuse now.
                return Err(OpenError::ReadOnly {
                    path: path.to_path_buf(),
                });
            }
            let lbs = sys::logical_block_size(&file).map_err(io_err)?;
            let size = sys::block_device_size(&file).map_err(io_err)?;
            let mem = dio.map_or(lbs, |a| a.mem_align);
            (lbs, mem, size)
        }
        _ => {
            let mut len = file.metadata().map_err(io_err)?.len();
            if let Some(want) = o.size
                && want > len
            {
                if !o.write {
                    return Err(OpenError::InvalidOptions {
                        path: path.to_path_buf(),
                        reason: "size() grows the file and needs write access; add OpenOptions::write(true)".into(),
                    });
                }
                file.set_len(want).map_err(io_err)?;
                len = want;
            }
            match (o.direct, dio) {
                (true, Some(a)) => (a.offset_align, a.mem_align, len),
                (true, None) => (SAFE_DIO_ALIGN, SAFE_DIO_ALIGN, len),
                (false, Some(a)) => (a.offset_align, a.mem_align, len),
                (false, None) => (512, 1, len),
            }
        }
    };
    let mem_align = if o.direct { mem_align.max(1) } else { 1 };
    let dc = OnceLock::new();
    if o.wants_dontcache() {
        let mode = if o.dontcache_emulated {
            DontcacheMode::Emulated
        } else {
            dontcache::probe_mode(&file, o.read, size, engine.backend).map_err(io_err)?
        };
        let setup = Setup {
            mode,
            forced: o.dontcache_emulated,
            backlog_bytes_max: o
                .dontcache_backlog_bytes_max
                .unwrap_or(dontcache::BACKLOG_BYTES_MAX_DEFAULT),
        };
        tracing::debug!(path = %path.display(), mode = %setup.mode, forced = setup.forced, "dontcache device");
        let state = DcState::for_device(Some(&file), &setup).map_err(io_err)?;
        let _ = dc.set(Arc::new(state));
    }
    Ok(DeviceShared {
        engine: Arc::clone(engine),
        path: path.to_path_buf(),
        target: Target::File(file),
        kind,
        readable: o.read,
        writable: o.write,
        direct: o.direct,
        logical_block_size,
        mem_align,
        size,
        inflight: Arc::default(),
        dontcache: o.wants_dontcache(),
        dc,
        wb: WbState::new(),
    })
}

/// The null backend's device: the geometry of `path` if it exists (or
/// [`OpenOptions::size`]), the bytes in memory. The path's contents are
/// neither read nor written.
fn open_memory(
    engine: &Arc<EngineShared>,
    path: &Path,
    kind: DeviceKind,
    o: OpenOptions,
) -> Result<DeviceShared, OpenError> {
    let io_err = |source: io::Error| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let (lbs, existing) = match (kind, std::fs::metadata(path)) {
        (DeviceKind::BlockDevice, Ok(_)) => {
            let file = File::open(path).map_err(|e| map_open_error(e, path, o, "reading"))?;
            (
                sys::logical_block_size(&file).map_err(io_err)?,
                Some(sys::block_device_size(&file).map_err(io_err)?),
            )
        }
        (_, Ok(meta)) => (512, Some(meta.len())),
        (_, Err(_)) => (512, None),
    };
    let size = match (o.size, existing) {
        (Some(s), _) => s,
        (None, Some(len)) if len > 0 => len,
        _ => NULL_DEFAULT_SIZE,
    };
    let dc = OnceLock::new();
    if o.wants_dontcache() {
        let setup = Setup {
            mode: DontcacheMode::Emulated,
            forced: o.dontcache_emulated,
            backlog_bytes_max: o
                .dontcache_backlog_bytes_max
                .unwrap_or(dontcache::BACKLOG_BYTES_MAX_DEFAULT),
        };
        let state = DcState::for_device(None, &setup).map_err(io_err)?;
        let _ = dc.set(Arc::new(state));
    }
    Ok(DeviceShared {
        engine: Arc::clone(engine),
        path: path.to_path_buf(),
        target: Target::Memory(MemStore::default()),
        kind: DeviceKind::Memory,
        readable: o.read,
        writable: o.write,
        direct: o.direct,
        logical_block_size: lbs,
        mem_align: if o.direct { lbs } else { 1 },
        size,
        inflight: Arc::default(),
        dontcache: o.wants_dontcache(),
        dc,
        wb: WbState::new(),
    })
}

/// The bytes of a memory device: sparse chunks, zero until written.
#[derive(Debug, Default)]
pub(crate) struct MemStore {
    chunks: Mutex<HashMap<u64, Box<[u8]>>>,
}

const CHUNK: u64 = 64 * 1024;

impl MemStore {
    /// Copies `buf.len()` bytes at `offset` into `buf`.
    pub(crate) fn read(&self, offset: u64, buf: &mut [u8]) {
        let chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK, (pos % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - done);
            match chunks.get(&index) {
                Some(chunk) => buf[done..done + n].copy_from_slice(&chunk[within..within + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// Copies `buf` to `offset`.
    pub(crate) fn write(&self, offset: u64, buf: &[u8]) {
        let mut chunks = self.chunks.lock().unwrap_or_else(|p| p.into_inner());
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / CHUNK, (pos % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - done);
            let chunk = chunks
                .entry(index)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            chunk[within..within + n].copy_from_slice(&buf[done..done + n]);
            done += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memstore_is_sparse_and_spans_chunks() {
        let m = MemStore::default();
        let mut buf = vec![7u8; 100];
        m.read(CHUNK - 50, &mut buf);
        assert!(buf.iter().all(|&b| b == 0));
        let data: Vec<u8> = (0..100u8).collect();
        m.write(CHUNK - 50, &data);
        m.read(CHUNK - 50, &mut buf);
        assert_eq!(buf, data);
        assert_eq!(m.chunks.lock().unwrap().len(), 2);
    }

    #[test]
    fn submit_error_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<SubmitError>();
        check::<OpenError>();
        check::<Device>();
    }
}
