//! The errors of the completer's operations: building it and the lifecycle
//! calls.

use std::io;
use std::path::PathBuf;

/// A lifecycle call that could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// The CPU number is not a possible CPU.
    #[error("CPU {cpu} is not a possible CPU of this machine (CPUs 0-{}); see /sys/devices/system/cpu/possible", possible - 1)]
    NoSuchCpu {
        /// The CPU asked for.
        cpu: usize,
        /// How many CPUs are possible.
        possible: usize,
    },
    /// `cpu_down_prep` on a CPU whose work is not enabled.
    #[error("CPU {cpu} is not online; call cpu_online({cpu}) first")]
    NotOnline {
        /// The CPU.
        cpu: usize,
    },
    /// `cpu_down_prep` on the last online CPU.
    #[error("CPU {cpu} is the last online CPU; bring another online before taking it down")]
    LastCpu {
        /// The CPU.
        cpu: usize,
    },
    /// `cpu_dead` without `cpu_down_prep` first.
    #[error(
        "CPU {cpu} was not prepared for offline; call cpu_down_prep({cpu}) before cpu_dead({cpu})"
    )]
    NotDownPrepared {
        /// The CPU.
        cpu: usize,
    },
    /// The CPU's worker could not be started.
    #[error(
        "cannot start the endio worker for CPU {cpu}: {source}; raise the thread limit (ulimit -u) or free memory"
    )]
    Spawn {
        /// The CPU.
        cpu: usize,
        /// What went wrong.
        source: io::Error,
    },
}

/// Why a [`Completer`](super::Completer) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The CPU lists could not be read.
    #[error(
        "cannot learn the machine's CPUs from {root}: {source}; mount sysfs at /sys or point CompleterBuilder::sysfs_root at a copy"
    )]
    Cpus {
        /// The sysfs root that was read.
        root: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start an endio thread: {0}")]
    Spawn(#[from] HotplugError),
    /// A thread other than a worker could not be started.
    #[error(
        "cannot start the endio {what} thread: {source}; raise the thread limit (ulimit -u) or free memory"
    )]
    Thread {
        /// Which thread.
        what: &'static str,
        /// What went wrong.
        source: io::Error,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Invalid(String),
}
