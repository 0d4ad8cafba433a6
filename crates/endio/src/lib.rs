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

pub mod bio;
pub mod context;
mod counters;
#[cfg(not(any(loom, shuttle)))]
pub mod io;
pub(crate) mod sync;
pub mod sys;
pub mod task;

pub use bio::{Bio, BioFlags, Buf, EndedBio, Op};
pub use context::ContextPolicy;
#[cfg(not(any(loom, shuttle)))]
pub use io::{
    Backend, Device, DeviceKind, DontcacheMode, DontcacheStats, Engine, EngineBuilder, EngineError,
    OpenError, OpenOptions, SubmitError, SubmitErrorKind, Verifier, VerifyError, VerifyStats,
    WritebackErrors,
};
pub use task::{
    Adaptive, Batching, Budget, BuildError, Completed, Completer, CpuStats, HotplugError,
    PanicPolicy, Stats, StatsSnapshot,
};
