//! Platform specifics, in one place.
//!
//! Everything here talks to the kernel: which CPU a thread runs on, pinning a
//! thread to a CPU, timer slack, and the sysfs CPU lists. Logic elsewhere in
//! the crate calls these functions and never carries a `cfg(target_os)`.
//! One low-level helper of the crate's own lives here too: the in-place
//! closure storage of a bio's handler ([`inline_fn`]).

mod blockdev;
mod cachestat;
mod cpulist;
mod dontcache;
pub mod hotplug;
pub(crate) mod inline_fn;
mod irq;
mod uring;
mod wake;
mod writeback;

pub use blockdev::{block_device_read_only, block_device_size, dio_alignment, logical_block_size};
pub use cachestat::{CacheStatSource, cache_stat};
pub use cpulist::{CPU_MAX, CpuListError, parse_cpu_list, read_cpu_list};
pub use dontcache::{
    DontcacheProbe, READ_AHEAD_DEFAULT, RWF_DONTCACHE, SYNC_RANGE_WRITE, SYNC_RANGE_WRITE_AND_WAIT,
    drop_range, no_readahead, probe_dontcache_preadv2, probe_dontcache_uring, read_ahead_bytes,
    reopen_read_only, sync_range, sync_range_with,
};
pub use irq::interrupt_cpus;
pub use uring::{UringUnavailable, diagnose_uring_error, probe_io_uring, read_io_uring_disabled};
pub use wake::{EventFd, futex_wait, futex_wake};
pub use writeback::{reopen_for_writeback, writeback_error_probe};

use std::io;
use std::num::NonZeroU64;
use std::time::Duration;

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

/// Resource usage of the whole process (all threads, live and exited), from
/// `getrusage(RUSAGE_SELF)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUsage {
    /// CPU time in user mode.
    pub user: Duration,
    /// CPU time in the kernel.
    pub system: Duration,
    /// Context switches the threads asked for (sleeping, parking, blocking).
    pub voluntary_ctx_switches: u64,
    /// Context switches forced on the threads (preemption).
    pub involuntary_ctx_switches: u64,
}

impl ResourceUsage {
    /// What was used between `earlier` and `self`.
    pub fn since(&self, earlier: &ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            voluntary_ctx_switches: self
                .voluntary_ctx_switches
                .saturating_sub(earlier.voluntary_ctx_switches),
            involuntary_ctx_switches: self
                .involuntary_ctx_switches
                .saturating_sub(earlier.involuntary_ctx_switches),
        }
    }

    /// Voluntary and involuntary context switches together.
    pub fn ctx_switches(&self) -> u64 {
        self.voluntary_ctx_switches + self.involuntary_ctx_switches
    }
}

/// The process's resource usage now (rustix has no `getrusage`).
pub fn resource_usage() -> io::Result<ResourceUsage> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` points to writable memory the size of a `rusage`, which
    // the kernel fills on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it wrote the whole struct (and it was
    // zeroed before anyway, a valid `rusage`).
    let usage = unsafe { usage.assume_init() };
    let time = |tv: libc::timeval| {
        Duration::new(
            u64::try_from(tv.tv_sec).unwrap_or(0),
            u32::try_from(tv.tv_usec).unwrap_or(0) * 1000,
        )
    };
    let count = |n: libc::c_long| u64::try_from(n).unwrap_or(0);
    Ok(ResourceUsage {
        user: time(usage.ru_utime),
        system: time(usage.ru_stime),
        voluntary_ctx_switches: count(usage.ru_nvcsw),
        involuntary_ctx_switches: count(usage.ru_nivcsw),
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn resource_usage_counts_a_sleep() {
        let before = resource_usage().unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let after = resource_usage().unwrap();
        assert!(after.since(&before).voluntary_ctx_switches >= 1);
    }

    #[test]
    fn pinning_moves_the_thread() {
        std::thread::spawn(|| {
            pin_current_thread(0).unwrap();
            assert_eq!(current_cpu(), 0);
            let e = pin_current_thread(usize::MAX).unwrap_err();
            assert!(e.to_string().contains("beyond"), "{e}");
        })
        .join()
        .unwrap();
    }
}
