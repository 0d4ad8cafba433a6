//! The device handle: opening (flags, errno of each refusal), closing,
//! page-cache residency and write-back errors.

use std::ffi::{CStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use endio::{CacheStatSource, Device, DeviceKind, OpenError, OpenOptions};

use crate::callback::{Callbacks, in_callback};
use crate::engine::EngineHandle;
use crate::error::{Failure, call_int};

/// `endio_open`: allow reads.
pub const ENDIO_OPEN_READ: u32 = 1 << 0;
/// `endio_open`: allow writes (and `endio_fdatasync`).
pub const ENDIO_OPEN_WRITE: u32 = 1 << 1;
/// `endio_open`: create a regular file that does not exist (needs WRITE).
pub const ENDIO_OPEN_CREATE: u32 = 1 << 2;
/// `endio_open`: `O_DIRECT`, bypass the page cache: offsets and lengths
/// must be multiples of the device's logical block size (buffers need no
/// alignment: endio copies them into aligned ones).
pub const ENDIO_OPEN_DIRECT: u32 = 1 << 3;
/// `endio_open`: uncached buffered I/O for every read and write: the pages
/// an I/O brings into the page cache leave it once the I/O is done (a
/// write's after its write-back). The kernel's `RWF_DONTCACHE` where it has
/// it, else endio's emulation. Not with DIRECT.
pub const ENDIO_OPEN_DONTCACHE: u32 = 1 << 4;
/// `endio_open`: DONTCACHE through endio's emulation even where the kernel
/// has `RWF_DONTCACHE`.
pub const ENDIO_OPEN_DONTCACHE_EMULATED: u32 = 1 << 5;
/// `endio_open`: open a block device exclusively (`O_EXCL`): fails with
/// `-EBUSY` if it is mounted or held by another.
pub const ENDIO_OPEN_EXCLUSIVE: u32 = 1 << 6;

const OPEN_FLAGS: u32 = ENDIO_OPEN_READ
    | ENDIO_OPEN_WRITE
    | ENDIO_OPEN_CREATE
    | ENDIO_OPEN_DIRECT
    | ENDIO_OPEN_DONTCACHE
    | ENDIO_OPEN_DONTCACHE_EMULATED
    | ENDIO_OPEN_EXCLUSIVE;

/// `endio_residency.source`: `cachestat(2)`, with dirty and write-back
/// counts.
pub const ENDIO_RESIDENCY_CACHESTAT: u32 = 0;
/// `endio_residency.source`: `mincore(2)` (kernels before 6.5): cached
/// bytes only, dirty and write-back read 0.
pub const ENDIO_RESIDENCY_MINCORE: u32 = 1;

/// An open file or block device. Opaque.
#[derive(Debug)]
pub struct DeviceHandle {
    pub(crate) dev: Device,
    /// The callbacks of its submits that have not run yet.
    pub(crate) callbacks: Arc<Callbacks>,
}

/// The page-cache state of a byte range of a device.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ResidencyInfo {
    /// Bytes of the range in the page cache.
    pub cached_bytes: u64,
    /// Of those, dirty.
    pub dirty_bytes: u64,
    /// Of those, under write-back.
    pub writeback_bytes: u64,
    /// The page size the counts are made of.
    pub page_size: u64,
    /// `ENDIO_RESIDENCY_CACHESTAT` or `ENDIO_RESIDENCY_MINCORE`.
    pub source: u32,
}

/// The errno `open(2)` would give for each refusal.
fn open_failure(e: &OpenError) -> Failure {
    let errno = match e {
        OpenError::NotFound { .. } => libc::ENOENT,
        OpenError::IsDirectory { .. } => libc::EISDIR,
        OpenError::Unsupported { .. } => libc::ENODEV,
        OpenError::PermissionDenied { .. } => libc::EACCES,
        OpenError::DirectUnsupported { .. } | OpenError::InvalidOptions { .. } => libc::EINVAL,
        OpenError::Busy { .. } => libc::EBUSY,
        OpenError::ReadOnly { .. } => libc::EROFS,
        OpenError::ShutDown { .. } => libc::ESHUTDOWN,
        OpenError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        _ => libc::EIO,
    };
    Failure::new(errno, e.to_string())
}

/// A live device from the caller's pointer, or `-EINVAL`.
///
/// # Safety
///
/// `dev` is NULL or a device from `endio_open` not yet closed.
pub(crate) unsafe fn device<'a>(dev: *const DeviceHandle) -> Result<&'a DeviceHandle, Failure> {
    // SAFETY: NULL or a live device (this function's contract).
    unsafe { dev.as_ref() }.ok_or_else(|| Failure::invalid("dev is NULL"))
}

/// Opens `path` (a regular file or a block device) on `engine` with
/// `flags` (`ENDIO_OPEN_*`, at least READ or WRITE) and stores the device
/// in `*out`. `size`, if not 0, grows a regular file to at least that many
/// bytes (sparsely; needs WRITE). Returns 0 or a negated errno, as
/// `open(2)` would: `-ENOENT`, `-EACCES`, `-EISDIR`, `-EBUSY`, `-EROFS`;
/// `-EINVAL` for a NULL argument, an unknown flag or flags that exclude
/// each other (DIRECT with DONTCACHE).
///
/// # Safety
///
/// `engine` is a live engine; `path` is NULL or a NUL-terminated string;
/// `out` points to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_open(
    engine: *const EngineHandle,
    path: *const c_char,
    flags: u32,
    size: u64,
    out: *mut *mut DeviceHandle,
) -> c_int {
    call_int("endio_open", || {
        // SAFETY: NULL or a live engine (the caller's contract).
        let Some(e) = (unsafe { engine.as_ref() }) else {
            return Err(Failure::invalid(
                "engine is NULL; create one with endio_engine_new",
            ));
        };
        if path.is_null() {
            return Err(Failure::invalid(
                "path is NULL; pass a NUL-terminated path of a regular file or block device",
            ));
        }
        if out.is_null() {
            return Err(Failure::invalid(
                "out is NULL; pass the address of an endio_device pointer",
            ));
        }
        if flags & !OPEN_FLAGS != 0 {
            return Err(Failure::invalid(format!(
                "unknown flags {:#x}; use ENDIO_OPEN_READ, _WRITE, _CREATE, _DIRECT, _DONTCACHE, _DONTCACHE_EMULATED, _EXCLUSIVE",
                flags & !OPEN_FLAGS
            )));
        }
        // SAFETY: a non-null, NUL-terminated string (the caller's contract).
        let path = std::ffi::OsStr::from_bytes(unsafe { CStr::from_ptr(path) }.to_bytes());
        let has = |f: u32| flags & f != 0;
        let mut o = OpenOptions::new()
            .read(has(ENDIO_OPEN_READ))
            .write(has(ENDIO_OPEN_WRITE))
            .create(has(ENDIO_OPEN_CREATE))
            .direct(has(ENDIO_OPEN_DIRECT))
            .dontcache(has(ENDIO_OPEN_DONTCACHE))
            .dontcache_emulated(has(ENDIO_OPEN_DONTCACHE_EMULATED))
            .exclusive(has(ENDIO_OPEN_EXCLUSIVE));
        if size != 0 {
            o = o.size(size);
        }
        let dev = e.engine.open(path, o).map_err(|e| open_failure(&e))?;
        let handle = Box::into_raw(Box::new(DeviceHandle {
            dev,
            callbacks: Arc::default(),
        }));
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Waits for the device's I/O and callbacks (as `endio_device_drain`),
/// then closes it and frees the handle. NULL is allowed and does nothing.
/// Returns 0, or `-EDEADLK` (and closes nothing) when called from one of
/// the device's own callbacks, which it would wait for.
///
/// # Safety
///
/// `dev` is NULL or a device from `endio_open` not yet closed; it is not
/// used again after a 0 return.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_device_close(dev: *mut DeviceHandle) -> c_int {
    call_int("endio_device_close", || {
        if dev.is_null() {
            return Ok(());
        }
        // SAFETY: a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        if in_callback().is_some_and(|c| Arc::ptr_eq(&c, &d.callbacks)) {
            return Err(Failure::new(
                libc::EDEADLK,
                format!(
                    "{}: called from one of this device's callbacks, which it would wait for; close it from another thread",
                    d.dev.path().display()
                ),
            ));
        }
        drain(d)?;
        // SAFETY: from endio_open (Box::into_raw), closed once (the
        // caller's contract).
        drop(unsafe { Box::from_raw(dev) });
        Ok(())
    })
}

/// The page-cache residency of `len` bytes at `offset` of the device (`len`
/// 0: to its end; both 0: the whole file or device), in `*out`. Returns 0
/// or a negated errno.
///
/// # Safety
///
/// `dev` is a live device; `out` points to a writable `endio_residency`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_residency(
    dev: *const DeviceHandle,
    offset: u64,
    len: u64,
    out: *mut ResidencyInfo,
) -> c_int {
    call_int("endio_residency", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        if out.is_null() {
            return Err(Failure::invalid(
                "out is NULL; pass the address of an endio_residency",
            ));
        }
        let failed = |e: std::io::Error| {
            Failure::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!(
                    "cannot read the page-cache residency of {}: {e}",
                    d.dev.path().display()
                ),
            )
        };
        let r = if (offset == 0 && len == 0) || d.dev.kind() == DeviceKind::Memory {
            d.dev.residency().map_err(failed)?
        } else {
            // The page cache is the inode's: a description of our own
            // sees what the device's sees.
            let file = std::fs::File::open(d.dev.path()).map_err(failed)?;
            endio::residency(&file, offset..offset.saturating_add(len)).map_err(failed)?
        };
        let info = ResidencyInfo {
            cached_bytes: r.cached_bytes,
            dirty_bytes: r.dirty_bytes,
            writeback_bytes: r.writeback_bytes,
            page_size: r.page_size,
            source: match r.source {
                CacheStatSource::Cachestat => ENDIO_RESIDENCY_CACHESTAT,
                CacheStatSource::Mincore => ENDIO_RESIDENCY_MINCORE,
            },
        };
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(info) };
        Ok(())
    })
}

/// The write-back errors endio has seen on the device: how many (`*count`)
/// and the errno of the first (`*first_errno`, 0 if none), from the
/// write-back waits of dontcache and WAIT_WRITEBACK writes and from failed
/// `endio_fdatasync` calls. Looking consumes nothing: the next
/// `endio_fdatasync` still reports every write-back error since the
/// previous one. Either pointer may be NULL. Returns 0 or `-EINVAL`.
///
/// # Safety
///
/// `dev` is a live device; `count` and `first_errno` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_writeback_errors(
    dev: *const DeviceHandle,
    count: *mut u64,
    first_errno: *mut c_int,
) -> c_int {
    call_int("endio_writeback_errors", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        let errors = d.dev.writeback_errors();
        if !count.is_null() {
            // SAFETY: non-null and writable (the caller's contract).
            unsafe { count.write(errors.count) };
        }
        if !first_errno.is_null() {
            // SAFETY: non-null and writable (the caller's contract).
            unsafe { first_errno.write(errors.first_errno.unwrap_or(0)) };
        }
        Ok(())
    })
}

/// Asks the kernel whether write-back of the device's data has failed,
/// where no `endio_fdatasync` follows (it consumes nothing a sync would
/// report). Returns 0, or the negated errno of the first write-back error
/// endio has seen on the device.
///
/// # Safety
///
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_check_writeback(dev: *const DeviceHandle) -> c_int {
    call_int("endio_check_writeback", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        d.dev.check_writeback().map_err(|e| {
            Failure::new(
                e.raw_os_error().unwrap_or(libc::EIO),
                format!(
                    "write-back of {} failed ({e}): data written before may not be on the device; write it again and sync",
                    d.dev.path().display()
                ),
            )
        })
    })
}

/// Waits until every I/O submitted to the device has completed, its
/// callback has returned (those of I/O submitted by callbacks too), and
/// dontcache's drop-behind is done. Returns 0, or `-EDEADLK` when called
/// from one of the device's own callbacks, which it would wait for.
///
/// # Safety
///
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_device_drain(dev: *const DeviceHandle) -> c_int {
    call_int("endio_device_drain", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        drain(d)
    })
}

/// Drains `d` (see `endio_device_drain`).
pub(crate) fn drain(d: &DeviceHandle) -> Result<(), Failure> {
    if in_callback().is_some_and(|c| Arc::ptr_eq(&c, &d.callbacks)) {
        return Err(Failure::new(
            libc::EDEADLK,
            format!(
                "{}: called from one of this device's callbacks, which it would wait for; drain from another thread",
                d.dev.path().display()
            ),
        ));
    }
    // Callbacks may submit more: until a drain finds none outstanding.
    loop {
        d.callbacks.wait_none();
        d.dev.drain();
        if d.callbacks.outstanding() == 0 {
            return Ok(());
        }
    }
}
