//! Native `RWF_DONTCACHE` or endio's emulation: the choice, made once per
//! device by a probe.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::io::config::Backend;
use crate::sys::{self, DontcacheProbe};

/// Which path a dontcache device's I/O takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DontcacheMode {
    /// The kernel's `RWF_DONTCACHE` on every read and write; writes also
    /// get endio's writeback wait and drop of what the kernel left cached
    /// (its steps are argued in `src/io/dontcache/mod.rs`).
    Native,
    /// endio's drop-behind: writeback, then `POSIX_FADV_DONTNEED` of the
    /// pages the I/O brought in, in task context through the completer.
    Emulated,
}

impl DontcacheMode {
    /// `native` or `emulated`.
    pub fn name(self) -> &'static str {
        match self {
            DontcacheMode::Native => "native",
            DontcacheMode::Emulated => "emulated",
        }
    }
}

impl fmt::Display for DontcacheMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Probes `file` (the device's descriptor; `readable` says whether it may
/// be read) for native `RWF_DONTCACHE` at `eof`.
pub(crate) fn probe_mode(
    file: &File,
    readable: bool,
    eof: u64,
    backend: Backend,
) -> io::Result<DontcacheMode> {
    let reopened;
    let fd: BorrowedFd<'_> = if readable {
        file.as_fd()
    } else {
        match sys::reopen_read_only(file) {
            Ok(f) => {
                reopened = f;
                reopened.as_fd()
            }
            // Not readable by us at all: emulate (which needs no reads).
            Err(_) => return Ok(DontcacheMode::Emulated),
        }
    };
    let probe = match backend {
        Backend::Uring => {
            sys::probe_dontcache_uring(fd, eof).or_else(|_| sys::probe_dontcache_preadv2(fd, eof))
        }
        Backend::Threads | Backend::Null => sys::probe_dontcache_preadv2(fd, eof),
    }?;
    Ok(match probe {
        DontcacheProbe::Supported => DontcacheMode::Native,
        DontcacheProbe::Unsupported => DontcacheMode::Emulated,
    })
}
