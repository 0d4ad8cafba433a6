//! Platform specifics, in one place.
//!
//! Everything here talks to the kernel: which CPU a thread runs on, pinning a
//! thread to a CPU, timer slack, and the sysfs CPU lists. Logic elsewhere in
//! the crate calls these functions and never carries a `cfg(target_os)`.

mod cpulist;

pub use cpulist::{CPU_MAX, CpuListError, parse_cpu_list, read_cpu_list};

use std::io;
use std::num::NonZeroU64;

/// The CPU the calling thread runs on at this instant.
///
/// glibc answers from the thread's rseq area (no system call); the answer can
/// be stale as soon as it is returned, which is harmless for endio: a bio
/// pushed to the batch of the CPU the thread just left is still completed.
#[inline]
pub fn current_cpu() -> usize {
    // SAFETY: sched_getcpu(3) takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).unwrap_or(0)
}

/// Pins the calling thread to `cpu` alone.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is beyond the largest CPU number a cpu set can hold"),
        ));
    }
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}

/// Sets the calling thread's timer slack, so that short timed waits (the
/// batching delay of a worker, tens of microseconds) are not stretched by the
/// default 50 µs slack.
pub fn set_timer_slack_ns(slack_ns: u64) -> io::Result<()> {
    rustix::thread::set_current_timer_slack(NonZeroU64::new(slack_ns)).map_err(io::Error::from)
}
