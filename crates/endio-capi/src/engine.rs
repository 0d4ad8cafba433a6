//! The engine handle: a completer (one worker per CPU, where callbacks
//! run) and an I/O backend; its options and its statistics.

use std::ffi::c_int;

use endio::{Backend, BuildError, Completer, Engine, EngineError};

use crate::callback::in_callback;
use crate::error::{Failure, call_int};

/// `endio_engine_options.backend`: io_uring, falling back to the thread
/// pool where io_uring cannot be used; `ENDIO_BACKEND` in the environment
/// (`uring`, `threads`, `null`) overrides it.
pub const ENDIO_BACKEND_AUTO: u32 = 0;
/// io_uring only: `endio_engine_new` fails where it cannot be used.
pub const ENDIO_BACKEND_URING: u32 = 1;
/// A pool of threads doing `pread`/`pwrite`.
pub const ENDIO_BACKEND_THREADS: u32 = 2;
/// In-memory devices, no system calls: the completion path alone.
pub const ENDIO_BACKEND_NULL: u32 = 3;

/// Options of `endio_engine_new`; all zero (or a NULL pointer) means the
/// defaults.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// One of the `ENDIO_BACKEND_*` values.
    pub backend: u32,
    /// In-flight I/Os per lane, 1..=4096; 0 for the default (128).
    pub queue_depth: u32,
    /// Threads of the thread-pool backend, 1..=256; 0 for the default (8).
    pub threads: u32,
}

/// An engine: opens devices and completes their I/O. Opaque.
#[derive(Debug)]
pub struct EngineHandle {
    pub(crate) engine: Engine,
}

/// Counters of the engine's completer, summed over its CPUs.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct StatsInfo {
    /// Completions deferred to a worker (task context).
    pub deferred: u64,
    /// Completions whose handler ran inline, where they completed.
    pub inlined: u64,
    /// Deferred completions whose handler (callback) has run.
    pub handlers: u64,
    /// Batches of deferred completions a worker took.
    pub batches: u64,
    /// The largest such batch.
    pub batch_len_max: u64,
    /// Worker runs that ended because their budget was spent.
    pub requeues: u64,
    /// Times a worker slept for lack of work and was woken.
    pub wakeups: u64,
    /// Handlers that panicked (contained).
    pub panics: u64,
    /// Rescue threads started for a worker stuck in one callback.
    pub rescues: u64,
    /// I/Os submitted to the engine and not yet completed.
    pub in_flight: u64,
}

fn build_failure(e: &BuildError) -> Failure {
    let errno = match e {
        BuildError::Spawn(_) => libc::EAGAIN,
        _ => libc::EIO,
    };
    Failure::new(errno, e.to_string())
}

fn engine_failure(e: &EngineError) -> Failure {
    let errno = match e {
        EngineError::UnknownBackend { .. } | EngineError::Invalid(_) => libc::EINVAL,
        EngineError::Uring { .. } => libc::EOPNOTSUPP,
        EngineError::Spawn { .. } => libc::EAGAIN,
        _ => libc::EIO,
    };
    Failure::new(errno, e.to_string())
}

/// Starts an engine and stores it in `*out`; returns 0 or a negated errno
/// (`-EINVAL` for a NULL `out` or a bad option, `-EOPNOTSUPP` when
/// `ENDIO_BACKEND_URING` was asked for and io_uring cannot be used).
///
/// # Safety
///
/// `options` is NULL or points to a valid `endio_engine_options`; `out`
/// points to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_engine_new(
    options: *const EngineOptions,
    out: *mut *mut EngineHandle,
) -> c_int {
    call_int("endio_engine_new", || {
        if out.is_null() {
            return Err(Failure::invalid(
                "out is NULL; pass the address of an endio_engine pointer",
            ));
        }
        // SAFETY: the caller passes NULL or a valid, readable options struct.
        let o = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let backend = match o.backend {
            ENDIO_BACKEND_AUTO => None,
            ENDIO_BACKEND_URING => Some(Backend::Uring),
            ENDIO_BACKEND_THREADS => Some(Backend::Threads),
            ENDIO_BACKEND_NULL => Some(Backend::Null),
            other => {
                return Err(Failure::invalid(format!(
                    "backend {other} is not one of ENDIO_BACKEND_AUTO, _URING, _THREADS or _NULL"
                )));
            }
        };
        let completer = Completer::builder()
            .build()
            .map_err(|e| build_failure(&e))?;
        let mut builder = Engine::builder(completer);
        if let Some(b) = backend {
            builder = builder.backend(b);
        }
        if o.queue_depth != 0 {
            builder = builder.queue_depth(o.queue_depth);
        }
        if o.threads != 0 {
            builder = builder.threads(o.threads as usize);
        }
        let engine = builder.build().map_err(|e| engine_failure(&e))?;
        let handle = Box::into_raw(Box::new(EngineHandle { engine }));
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Shuts the engine down and frees it: its threads stop after completing
/// (or cancelling, with `-ECANCELED`) the I/O they hold. Devices still
/// open refuse new I/O with `-ESHUTDOWN`; close them (before, preferably).
/// NULL is allowed and does nothing. Returns 0, or `-EDEADLK` (and frees
/// nothing) when called from a callback, whose worker it would wait for.
///
/// # Safety
///
/// `engine` is NULL or a pointer from `endio_engine_new` not yet freed; it
/// is not used again after a 0 return.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_engine_free(engine: *mut EngineHandle) -> c_int {
    call_int("endio_engine_free", || {
        if engine.is_null() {
            return Ok(());
        }
        if in_callback().is_some() {
            return Err(Failure::new(
                libc::EDEADLK,
                "called from a callback, which runs on one of the engine's own workers; free the engine from another thread",
            ));
        }
        // SAFETY: from endio_engine_new (Box::into_raw), freed once (the
        // caller's contract).
        drop(unsafe { Box::from_raw(engine) });
        Ok(())
    })
}

/// Fills `*out` with the engine's counters; returns 0 or `-EINVAL`.
///
/// # Safety
///
/// `engine` is a live engine; `out` points to a writable `endio_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn endio_stats(engine: *const EngineHandle, out: *mut StatsInfo) -> c_int {
    call_int("endio_stats", || {
        // SAFETY: NULL or a live engine (the caller's contract).
        let Some(e) = (unsafe { engine.as_ref() }) else {
            return Err(Failure::invalid("engine is NULL"));
        };
        if out.is_null() {
            return Err(Failure::invalid(
                "out is NULL; pass the address of an endio_stats",
            ));
        }
        let t = e.engine.completer().stats().total;
        let stats = StatsInfo {
            deferred: t.deferred,
            inlined: t.inline,
            handlers: t.handlers,
            batches: t.batches,
            batch_len_max: t.batch_len_max,
            requeues: t.requeues,
            wakeups: t.wakeups,
            panics: t.panics,
            rescues: t.rescues,
            in_flight: u64::from(e.engine.in_flight()),
        };
        // SAFETY: `out` is non-null and writable (the caller's contract).
        unsafe { out.write(stats) };
        Ok(())
    })
}
