//! Resource usage of the whole process, from the library's `sys` module.

use anyhow::Context as _;

pub(crate) use endio::testing::ResourceUsage as Usage;

/// The process's counters now.
pub(crate) fn now() -> anyhow::Result<Usage> {
    endio::testing::resource_usage()
        .context("getrusage(RUSAGE_SELF) failed; context switches cannot be counted")
}
