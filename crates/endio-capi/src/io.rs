//! I/O across the boundary. Blocking reads, writes and syncs submit a
//! [`Bio`] whose handler sends its result on a channel and wait on it;
//! submits run the caller's callback in task context. Either way the data
//! is copied between the caller's buffer and an endio [`Buf`] from
//! [`Device::buf`] (aligned for `O_DIRECT`): the cost of a boundary that
//! holds no pointer into the caller's memory past the call, but for a
//! submitted read's buffer.
//!
//! 1. A submit counts the callback as outstanding on its device
//!    ([`Callbacks`](crate::callback::Callbacks)) before the bio is queued, and uncounts it if the bio
//!    is refused (its handler then never runs).
//! 2. The handler runs once, in task context, on a completer worker: it
//!    copies a read's bytes into the caller's buffer, marks the thread as
//!    inside this device's callback, calls the callback, and only then
//!    uncounts it. So when `endio_device_drain` sees the count at zero,
//!    every callback has returned, including those of I/O submitted by
//!    callbacks (counted before their submitter returned).
//! 3. A blocking call's own bio is not flagged `COMPLETE_IN_TASK`: its
//!    handler only sends on a channel with room for its one message, which
//!    never blocks and is safe wherever the completion runs. So a callback
//!    may make blocking calls without waiting for the worker it occupies.

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::sync::mpsc;

use endio::{Bio, BioFlags, Buf, Device, MAX_IO_BYTES, Op, SubmitError, SubmitErrorKind};

use crate::callback::IN_CALLBACK;
use crate::device::{DeviceHandle, device};
use crate::error::{Failure, call, call_int};

/// `endio_submit_write`: uncached buffered I/O for this write alone (on a
/// buffered device).
pub const ENDIO_IO_DONTCACHE: u32 = 1 << 0;
/// `endio_submit_write`: the callback runs only after this write's data
/// was written back, with the write-back's result (a negated errno if it
/// failed). Written back is not durable: `endio_fdatasync` flushes the
/// device's cache.
pub const ENDIO_IO_WAIT_WRITEBACK: u32 = 1 << 1;

const IO_FLAGS: u32 = ENDIO_IO_DONTCACHE | ENDIO_IO_WAIT_WRITEBACK;

/// A completion callback: `result` is the bytes transferred or a negated
/// errno. It runs once per accepted submit, in task context on a completer
/// worker thread (never in the caller's thread, never in atomic context),
/// and may block and call endio (see the header's notes on context). It
/// must not unwind (a C++ exception) or `longjmp` out.
pub type Callback = Option<unsafe extern "C" fn(user_data: *mut c_void, result: i64)>;

/// The caller's memory a callback uses on a completer worker.
struct CallerMemory {
    user_data: *mut c_void,
    /// A read's destination, with room for the read's length.
    read_into: *mut u8,
}

// SAFETY: the contract of endio_submit_read/endio_submit_write in the
// header: `user_data` and a read's buffer may be used from the completer
// worker that runs the callback, until the callback returns; endio uses
// them there once, and nowhere else after the submit returns.
unsafe impl Send for CallerMemory {}

/// The errno of a refused submit, as the system call would give it.
fn submit_failure(e: &SubmitError, op: Op) -> Failure {
    let errno = match e.kind() {
        SubmitErrorKind::ReadOnly | SubmitErrorKind::WriteOnly => libc::EBADF,
        SubmitErrorKind::PastEnd if op == Op::Write => libc::ENOSPC,
        SubmitErrorKind::Busy => libc::EAGAIN,
        SubmitErrorKind::ShutDown => libc::ESHUTDOWN,
        SubmitErrorKind::NoDescriptor => libc::EMFILE,
        _ => libc::EINVAL,
    };
    Failure::new(errno, e.message())
}

/// The checks of a read or write from C, before anything is allocated.
fn check_buffer(buf_is_null: bool, len: usize) -> Result<(), Failure> {
    if buf_is_null && len > 0 {
        return Err(Failure::invalid(format!(
            "buf is NULL with len {len}; pass a buffer of len bytes"
        )));
    }
    if len as u64 > MAX_IO_BYTES {
        return Err(Failure::invalid(format!(
            "len {len} is larger than one I/O can be ({MAX_IO_BYTES} bytes, the kernel's per-call limit); split it"
        )));
    }
    Ok(())
}

/// Submits `bio` and waits for its handler: the raw result and the buffer.
fn wait(dev: &Device, op: Op, offset: u64, buf: Buf) -> Result<(i64, Buf), Failure> {
    let (tx, rx) = mpsc::sync_channel(1);
    let handler = move |ended: endio::EndedBio| {
        let res = ended.raw_result();
        // Never blocks: room for this one message. The receiver waits.
        let _ = tx.send((res, ended.into_buf()));
    };
    let bio = match op {
        Op::Flush => Bio::flush(handler),
        _ => Bio::new(op, offset, buf, handler),
    };
    dev.submit(bio).map_err(|e| submit_failure(&e, op))?;
    rx.recv().map_err(|_| {
        Failure::new(
            libc::EIO,
            format!(
                "the I/O on {} ended without a result (its handler was dropped); retry, and report it",
                dev.path().display()
            ),
        )
    })
}

/// The failure of a transfer that the kernel refused.
fn io_failure(what: &str, dev: &Device, res: i64) -> Failure {
    let errno = c_int::try_from(-res).unwrap_or(libc::EIO);
    let e = std::io::Error::from_raw_os_error(errno);
    Failure::new(
        errno,
        format!("{what} on {} failed: {e}", dev.path().display()),
    )
}

/// Writes `len` bytes of `buf` at `offset` and waits: returns the bytes
/// written or a negated errno. On a buffered device the data is then in
/// the page cache (on a DONTCACHE device, written back too); on a DIRECT
/// one, at the device. `len` 0 returns 0.
///
/// # Safety
///
/// `dev` is a live device; `buf` points to `len` readable bytes (or is
/// NULL with `len` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_pwrite(
    dev: *const DeviceHandle,
    buf: *const c_void,
    len: usize,
    offset: u64,
) -> i64 {
    call("endio_pwrite", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        check_buffer(buf.is_null(), len)?;
        if len == 0 {
            return Ok(0);
        }
        let mut data = d.dev.buf(len);
        // SAFETY: `buf` has `len` readable bytes (the caller's contract);
        // `data` is a fresh allocation of `len` bytes, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(buf.cast::<u8>(), data.as_mut_ptr(), len) };
        let (res, _) = wait(&d.dev, Op::Write, offset, data)?;
        if res < 0 {
            return Err(io_failure(
                &format!("write of {len} bytes at {offset}"),
                &d.dev,
                res,
            ));
        }
        Ok(res)
    })
}

/// Reads up to `len` bytes at `offset` into `buf` and waits: returns the
/// bytes read (fewer at the end of a file, 0 past it) or a negated errno.
///
/// # Safety
///
/// `dev` is a live device; `buf` points to `len` writable bytes (or is
/// NULL with `len` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_pread(
    dev: *const DeviceHandle,
    buf: *mut c_void,
    len: usize,
    offset: u64,
) -> i64 {
    call("endio_pread", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        check_buffer(buf.is_null(), len)?;
        if len == 0 {
            return Ok(0);
        }
        let (res, data) = wait(&d.dev, Op::Read, offset, d.dev.buf(len))?;
        if res < 0 {
            return Err(io_failure(
                &format!("read of {len} bytes at {offset}"),
                &d.dev,
                res,
            ));
        }
        let n = usize::try_from(res).unwrap_or(len).min(len).min(data.len());
        // SAFETY: `buf` has `len >= n` writable bytes (the caller's
        // contract); `data` is endio's own allocation of at least `n`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), n) };
        Ok(n as i64)
    })
}

/// Makes the device's written data durable (`fdatasync`) and waits.
/// Returns 0, or a negated errno, also when the write-back of an earlier
/// write failed (then that data is not on the device; see
/// `endio_writeback_errors`).
///
/// # Safety
///
/// `dev` is a live device.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_fdatasync(dev: *const DeviceHandle) -> c_int {
    call_int("endio_fdatasync", || {
        // SAFETY: NULL or a live device (the caller's contract).
        let d = unsafe { device(dev) }?;
        let (res, _) = wait(&d.dev, Op::Flush, 0, Buf::zeroed(0, 1))?;
        if res < 0 {
            let mut f = io_failure("fdatasync", &d.dev, res);
            f.message.push_str(
                "; data written since the last successful sync may not be on the device: write it again and sync",
            );
            return Err(f);
        }
        Ok(())
    })
}

/// The one submit of reads and writes.
///
/// # Safety
///
/// As `endio_submit_read` and `endio_submit_write`.
#[allow(clippy::too_many_arguments)]
unsafe fn submit(
    dev: *const DeviceHandle,
    op: Op,
    buf: *mut u8,
    len: usize,
    offset: u64,
    flags: u32,
    cb: Callback,
    user_data: *mut c_void,
) -> Result<(), Failure> {
    // SAFETY: NULL or a live device (the caller's contract).
    let d = unsafe { device(dev) }?;
    let Some(cb) = cb else {
        return Err(Failure::invalid(
            "cb is NULL; pass a callback, or use endio_pread/endio_pwrite to wait instead",
        ));
    };
    if flags & !IO_FLAGS != 0 {
        return Err(Failure::invalid(format!(
            "unknown flags {:#x}; use ENDIO_IO_DONTCACHE and ENDIO_IO_WAIT_WRITEBACK",
            flags & !IO_FLAGS
        )));
    }
    check_buffer(buf.is_null(), len)?;
    let mut data = d.dev.buf(len);
    if op == Op::Write && len > 0 {
        // SAFETY: `buf` has `len` readable bytes (the caller's contract);
        // `data` is a fresh allocation of `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(buf, data.as_mut_ptr(), len) };
    }
    let memory = CallerMemory {
        user_data,
        read_into: if op == Op::Read {
            buf
        } else {
            std::ptr::null_mut()
        },
    };
    let callbacks = Arc::clone(&d.callbacks);
    let mine = Arc::clone(&callbacks);
    let handler = move |ended: endio::EndedBio| {
        let memory = memory;
        let res = ended.raw_result();
        if !memory.read_into.is_null() && res > 0 {
            let n = usize::try_from(res)
                .unwrap_or(len)
                .min(len)
                .min(ended.buf().len());
            // SAFETY: a submitted read's buffer has `len >= n` writable
            // bytes and stays valid until its callback returns (the
            // contract of endio_submit_read); `ended.buf()` is endio's.
            unsafe { std::ptr::copy_nonoverlapping(ended.buf().as_ptr(), memory.read_into, n) };
        }
        let previous = IN_CALLBACK.with(|c| c.replace(Some(Arc::clone(&mine))));
        // SAFETY: a callback from the submit, called once with its
        // user_data, in task context (the callback's contract).
        unsafe { cb(memory.user_data, res) };
        IN_CALLBACK.with(|c| *c.borrow_mut() = previous);
        mine.done();
    };
    let mut bio_flags = BioFlags::COMPLETE_IN_TASK;
    if flags & ENDIO_IO_DONTCACHE != 0 {
        bio_flags |= BioFlags::DONTCACHE;
    }
    if flags & ENDIO_IO_WAIT_WRITEBACK != 0 {
        bio_flags |= BioFlags::WAIT_WRITEBACK;
    }
    callbacks.add();
    match d
        .dev
        .submit(Bio::new(op, offset, data, handler).with_flags(bio_flags))
    {
        Ok(()) => Ok(()),
        Err(e) => {
            callbacks.done();
            Err(submit_failure(&e, op))
        }
    }
}

/// Submits a write of `len` bytes of `buf` at `offset` and returns at
/// once: 0 if it was accepted (then `cb(user_data, result)` runs exactly
/// once, in task context, when it completes), or a negated errno if it was
/// refused (then `cb` never runs). `flags`: 0, `ENDIO_IO_DONTCACHE`,
/// `ENDIO_IO_WAIT_WRITEBACK`. The data is copied before this returns: `buf`
/// may be reused at once. Waits for a free slot when all are taken.
///
/// # Safety
///
/// `dev` is a live device; `buf` points to `len` readable bytes; `cb` and
/// `user_data` may be used from another thread until the callback returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_submit_write(
    dev: *const DeviceHandle,
    buf: *const c_void,
    len: usize,
    offset: u64,
    flags: u32,
    cb: Callback,
    user_data: *mut c_void,
) -> c_int {
    call_int("endio_submit_write", || {
        // SAFETY: the caller's contract, as stated above; a write only
        // reads `buf`.
        unsafe {
            submit(
                dev,
                Op::Write,
                buf.cast::<u8>().cast_mut(),
                len,
                offset,
                flags,
                cb,
                user_data,
            )
        }
    })
}

/// Submits a read of up to `len` bytes at `offset` into `buf` and returns
/// at once: 0 if it was accepted (then the data is copied into `buf` and
/// `cb(user_data, result)` runs exactly once, in task context, with the
/// bytes read or a negated errno), or a negated errno if it was refused
/// (then `cb` never runs). `flags`: 0 or `ENDIO_IO_DONTCACHE`. `buf` must
/// stay valid, and untouched, until the callback runs.
///
/// # Safety
///
/// `dev` is a live device; `buf` points to `len` writable bytes that stay
/// valid until the callback returns; `cb` and `user_data` may be used from
/// another thread until then.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_submit_read(
    dev: *const DeviceHandle,
    buf: *mut c_void,
    len: usize,
    offset: u64,
    flags: u32,
    cb: Callback,
    user_data: *mut c_void,
) -> c_int {
    call_int("endio_submit_read", || {
        // SAFETY: the caller's contract, as stated above.
        unsafe {
            submit(
                dev,
                Op::Read,
                buf.cast::<u8>(),
                len,
                offset,
                flags,
                cb,
                user_data,
            )
        }
    })
}
