//! Internals for endio's own tools and tests (the `endio` command's `stress`
//! and `bench`, the harness, the test suites), behind the `testing`
//! feature: CPU identity and pinning, timer slack, sysfs CPU lists, the
//! machine's CPU hotplug (with fault injection), io_uring probing, block
//! device geometry and the process's resource usage. Not part of endio's
//! stable interface: these may change in any release.

pub use crate::sys::hotplug;
pub use crate::sys::{
    CPU_MAX, CpuListError, ResourceUsage, block_device_size, current_cpu, parse_cpu_list,
    pin_current_thread, probe_io_uring, read_cpu_list, resource_usage, set_timer_slack_ns,
};
