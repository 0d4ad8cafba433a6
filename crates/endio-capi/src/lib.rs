//! The C API of endio: `libendio.so` and `libendio.a`, declared by the
//! generated header `include/endio.h`.
//!
//! Opaque handles (`endio_engine`, `endio_device`), errno-style results (0
//! or a byte count on success, a negated errno on failure, with a
//! thread-local message naming the problem and the fix), and no unwinding
//! across the boundary: every exported function runs its body inside
//! [`std::panic::catch_unwind`] (see `error.rs`).
//!
//! The blocking calls are built on endio's callback API: each submits a
//! [`endio::Bio`] whose handler sends its result on a channel, and waits on
//! it. The submit calls run the caller's callback in task context, on a
//! completer worker ([`endio::BioFlags::COMPLETE_IN_TASK`]).
//!
//! - `error.rs` — results, errno mapping, the last error, the panic guard;
//! - `engine.rs` — the engine handle, its options, its statistics;
//! - `device.rs` — opening and closing, residency, write-back errors;
//! - `io.rs` — blocking reads, writes and syncs; submits with a callback;
//!   drain.

mod callback;
mod device;
mod engine;
mod error;
mod io;

pub use device::{
    DeviceHandle, ENDIO_OPEN_CREATE, ENDIO_OPEN_DIRECT, ENDIO_OPEN_DONTCACHE,
    ENDIO_OPEN_DONTCACHE_EMULATED, ENDIO_OPEN_EXCLUSIVE, ENDIO_OPEN_READ, ENDIO_OPEN_WRITE,
    ENDIO_RESIDENCY_CACHESTAT, ENDIO_RESIDENCY_MINCORE, ResidencyInfo, endio_check_writeback,
    endio_device_close, endio_device_drain, endio_open, endio_residency, endio_writeback_errors,
};
pub use engine::{
    ENDIO_BACKEND_AUTO, ENDIO_BACKEND_NULL, ENDIO_BACKEND_THREADS, ENDIO_BACKEND_URING,
    EngineHandle, EngineOptions, StatsInfo, endio_engine_free, endio_engine_new, endio_stats,
};
pub use error::{ENDIO_EPANIC, endio_last_error_message, endio_strerror};
pub use io::{
    Callback, ENDIO_IO_DONTCACHE, ENDIO_IO_WAIT_WRITEBACK, endio_fdatasync, endio_pread,
    endio_pwrite, endio_submit_read, endio_submit_write,
};
