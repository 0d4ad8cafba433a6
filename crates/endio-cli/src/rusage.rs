//! Resource usage of the whole process, from the library's `sys` module.

use anyhow::Context as _;

pub(crate) use endio::testing::ResourceUsage as Usage;

/// The process's counters now.
pub(crate) fn now() -> anyhow::Result<Usage> {
    endio::testing::resource_usage()
        .context("getrusage(RUSAGE_SELF) failed; context switches cannot be counted")
}

/// Bytes this process has had the block layer read from storage so far:
/// `read_bytes` of `/proc/self/io` (every thread, io_uring's workers
/// included, and readahead they triggered; not what the page cache served).
/// `None` where the kernel does not account task I/O.
pub(crate) fn storage_read_bytes() -> Option<u64> {
    parse_read_bytes(&std::fs::read_to_string("/proc/self/io").ok()?)
}

/// `read_bytes` of a `/proc/PID/io` text.
fn parse_read_bytes(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("read_bytes:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bytes_is_found_and_bad_text_is_none() {
        let io = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 8192\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_read_bytes(io), Some(8192));
        assert_eq!(parse_read_bytes("rchar: 1\n"), None);
        assert_eq!(parse_read_bytes("read_bytes: lots\n"), None);
        assert!(
            storage_read_bytes().is_some(),
            "this kernel accounts task I/O"
        );
    }
}
