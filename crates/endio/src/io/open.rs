//! Opening a file, block device or memory device: the options, the checks
//! of the options, the geometry, and the errors, each naming the path and
//! the fix.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use super::config::Backend;
use super::device::Device;
use super::dontcache::{self, BACKLOG_BYTES_MAX_DEFAULT, Dontcache, DontcacheMode, DontcacheSetup};
use super::mixing;
use super::null::memory::MemStore;
use super::shared::EngineShared;
use super::state::{DeviceKind, DeviceState, Target};
use super::writeback::WbState;
use crate::sys;

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
    /// (see [`Device::logical_block_size`](crate::Device::logical_block_size) and [`Device::buf`](crate::Device::buf)).
    ///
    /// # A block device open both direct and buffered
    ///
    /// The page cache of a block device is shared by its buffered openers
    /// and bypassed by `O_DIRECT`, so mixing the two on one range can lose a
    /// direct write under an older dirty page written back later, or leave
    /// buffered readers a stale page. When this process also has the block
    /// device open without `direct` (through endio, in any engine), each
    /// direct I/O first looks at its range in the page cache (one
    /// `cachestat(2)`, which does not block): a direct write that finds
    /// cached pages there, or a direct read that finds dirty ones, has the
    /// range written back and dropped first (`sync_file_range`, then
    /// `POSIX_FADV_DONTNEED`). That blocks, so it is done in task context
    /// by [`Device::submit`](crate::Device::submit); in atomic context and
    /// from [`Device::try_submit`](crate::Device::try_submit) such a bio is
    /// refused with [`SubmitErrorKind::MixedCache`](crate::SubmitErrorKind::MixedCache),
    /// as it is when the write-back fails. Without a buffered open of the
    /// same device a direct I/O pays nothing for this. Buffered and direct
    /// I/O to one range that are in flight at the same time stay unordered:
    /// order them yourself. Opens outside endio (another library, another
    /// process) are not seen.
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
    /// endio's emulation; [`Device::dontcache_mode`](crate::Device::dontcache_mode) says which. Readahead
    /// is turned off for the device. Not with [`direct`](Self::direct),
    /// which bypasses the cache anyway: the open is refused. A single bio
    /// can be made dontcache on any buffered device with
    /// [`BioFlags::DONTCACHE`](crate::BioFlags::DONTCACHE). The steps of the
    /// emulation and why they lose nothing are argued in
    /// `src/io/dontcache/mod.rs`.
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
    /// dropped from the cache (default 64 MiB); submits beyond it wait
    /// (task context) or are refused with [`SubmitErrorKind::Busy`](crate::SubmitErrorKind::Busy) (atomic
    /// context, [`Device::try_submit`](crate::Device::try_submit)). Also at most 1024 I/Os.
    #[must_use]
    pub fn dontcache_backlog_bytes_max(mut self, bytes: u64) -> OpenOptions {
        self.dontcache_backlog_bytes_max = Some(bytes);
        self
    }

    pub(crate) fn wants_dontcache(&self) -> bool {
        self.dontcache || self.dontcache_emulated
    }
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
    Ok(Device::new(Arc::new(shared), Arc::clone(engine)))
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
) -> Result<DeviceState, OpenError> {
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
    let mut mixing_opens = None;
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
            mixing_opens = Some(mixing::register(
                file.metadata().map_err(io_err)?.rdev(),
                o.direct,
            ));
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
    let dontcache = OnceLock::new();
    if o.wants_dontcache() {
        let mode = if o.dontcache_emulated {
            DontcacheMode::Emulated
        } else {
            dontcache::probe_mode(&file, o.read, size, engine.backend).map_err(io_err)?
        };
        let setup = DontcacheSetup {
            mode,
            forced: o.dontcache_emulated,
            backlog_bytes_max: o
                .dontcache_backlog_bytes_max
                .unwrap_or(BACKLOG_BYTES_MAX_DEFAULT),
        };
        tracing::debug!(path = %path.display(), mode = %setup.mode, forced = setup.forced, "dontcache device");
        let state = Dontcache::for_device(Some(&file), o.read, &setup).map_err(io_err)?;
        let _ = dontcache.set(Arc::new(state));
    }
    let steer = if o.direct {
        steer_lanes(engine, &file, kind)
    } else {
        None
    };
    if let Some(lanes) = &steer {
        tracing::debug!(path = %path.display(), ?lanes, "direct I/O steered to the lanes of the CPUs that take the device's interrupts");
    }
    Ok(DeviceState {
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
        backend: engine.backend,
        whole_device_dontcache: o.wants_dontcache(),
        dontcache,
        wb: WbState::new(path),
        mixing: mixing_opens,
        steer,
    })
}

/// The lanes the direct I/O of `file` is issued on, when its device's
/// completion interrupts land on some of the engine's lanes' CPUs and not
/// all (see `EngineBuilder::steer_direct_io`); `None` otherwise, and on
/// any backend but io_uring with pinned reapers.
fn steer_lanes(engine: &EngineShared, file: &File, kind: DeviceKind) -> Option<Box<[u32]>> {
    if engine.backend != Backend::Uring || !engine.config.pin || !engine.config.steer_direct {
        return None;
    }
    let meta = file.metadata().ok()?;
    let dev = match kind {
        DeviceKind::BlockDevice => meta.rdev(),
        DeviceKind::File | DeviceKind::Memory => meta.dev(),
    };
    let cpus = sys::interrupt_cpus(
        Path::new("/sys"),
        Path::new("/proc"),
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
    )?;
    let lanes: Vec<u32> = (0..engine.lanes.len())
        .filter(|&i| engine.lanes[i].cpu.is_some_and(|c| cpus.contains(&c)))
        .map(|i| i as u32)
        .collect();
    (!lanes.is_empty() && lanes.len() < engine.lanes.len()).then(|| lanes.into_boxed_slice())
}

/// The null backend's device: the geometry of `path` if it exists (or
/// [`OpenOptions::size`]), the bytes in memory. The path's contents are
/// neither read nor written.
fn open_memory(
    engine: &Arc<EngineShared>,
    path: &Path,
    kind: DeviceKind,
    o: OpenOptions,
) -> Result<DeviceState, OpenError> {
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
    let dontcache = OnceLock::new();
    if o.wants_dontcache() {
        let setup = DontcacheSetup {
            mode: DontcacheMode::Emulated,
            forced: o.dontcache_emulated,
            backlog_bytes_max: o
                .dontcache_backlog_bytes_max
                .unwrap_or(BACKLOG_BYTES_MAX_DEFAULT),
        };
        let state = Dontcache::for_device(None, false, &setup).map_err(io_err)?;
        let _ = dontcache.set(Arc::new(state));
    }
    Ok(DeviceState {
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
        backend: engine.backend,
        whole_device_dontcache: o.wants_dontcache(),
        dontcache,
        wb: WbState::new(path),
        mixing: None,
        steer: None,
    })
}
