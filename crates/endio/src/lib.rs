//! endio: completes I/O in task context, and gives storage engines uncached
//! ("dontcache") buffered I/O on files and raw block devices.
//!
//! The core is a userspace implementation of the Linux proposal "block: add
//! task-context bio completion infrastructure": a [`Bio`] flagged
//! [`BioFlags::COMPLETE_IN_TASK`] that is completed in atomic context (a
//! thread that must never block, marked with [`context::atomic`]) is deferred
//! to a per-CPU batch and completed later by that CPU's worker thread.
//!
//! Start with [`Completer::builder`].

mod bio;
pub mod context;
mod counters;
#[cfg(not(any(loom, shuttle)))]
mod io;
mod pool;
pub(crate) mod sync;
// Platform calls: crate-private; `pub` marks what `testing` re-exports for
// endio's own tools and tests.
#[allow(unreachable_pub)]
#[cfg_attr(not(feature = "testing"), allow(dead_code, unused_imports))]
mod sys;
mod task;
#[cfg(all(feature = "testing", not(any(loom, shuttle))))]
pub mod testing;

pub use bio::{Bio, BioFlags, Buf, EndedBio, Op};
#[cfg(not(any(loom, shuttle)))]
pub use io::{
    Backend, BufferStats, CacheStatSource, Device, DeviceKind, DontcacheMode, DontcacheStats,
    DriveStats, Engine, EngineBuilder, EngineError, Group, IoFuture, IoOutput, MAX_IO_BYTES,
    OpenError, OpenOptions, Residency, SubmitError, SubmitErrorKind, UringUnavailable, Verifier,
    VerifyError, VerifyProblem, VerifyStats, WritebackErrors, residency,
};
pub use task::{
    Adaptive, Batching, Budget, BuildError, Completed, Completer, CompleterBuilder, CpuStats,
    HotplugError, PanicPolicy, ParseBatchingError, Stats, StatsSnapshot,
};
