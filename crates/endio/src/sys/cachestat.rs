//! Page-cache residency of a file or block device: `cachestat(2)` (Linux
//! 6.5; x86_64 system call 451, in neither libc's wrappers nor rustix), with
//! `mincore(2)` over a read-only mapping as the fallback.

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The `cachestat(2)` system call number (the same on every architecture
/// that has it: it was added after the syscall tables were unified).
const SYS_CACHESTAT: libc::c_long = 451;

/// What is in the page cache for a range of a file, in pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStat {
    /// Pages in the page cache.
    pub cached: u64,
    /// Of those, dirty (not yet written back).
    pub dirty: u64,
    /// Of those, under writeback now.
    pub writeback: u64,
    /// Pages evicted from the cache (cachestat only; 0 from mincore).
    pub evicted: u64,
    /// Pages evicted recently (cachestat only; 0 from mincore).
    pub recently_evicted: u64,
}

/// How `cache_stat` learned the residency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatSource {
    /// `cachestat(2)`: cached, dirty and writeback pages.
    Cachestat,
    /// `mincore(2)` on a mapping: cached pages only (dirty and writeback
    /// read 0).
    Mincore,
}

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct RawCachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Set once cachestat turned out to be missing for the whole process
/// (ENOSYS, or EPERM on a file the caller may write: a seccomp filter), so
/// the fallback is taken (and announced) once.
static CACHESTAT_MISSING: AtomicBool = AtomicBool::new(false);

/// Files (device and inode) whose EPERM was already announced; bounded, as
/// the announcement is only a courtesy.
static REFUSED_FILES: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// How many refused files [`REFUSED_FILES`] remembers.
const REFUSED_FILES_MAX: usize = 64;

/// The page-cache state of `len` bytes of `fd` from `offset` (`len` 0: to
/// the end of the file). Uses `cachestat(2)`, falling back to `mincore(2)`,
/// which sees cached pages only:
///
/// 1. for the whole process on a kernel without it (ENOSYS: before 6.5) or
///    a seccomp filter that refuses it (EPERM on a file the caller may
///    write), said once through `tracing`;
/// 2. for this file only when the kernel refuses it with EPERM because the
///    caller may not write the file (cachestat shows page-cache state only
///    to a writer, the owner or `CAP_FOWNER`), said once per file; other
///    files still use cachestat.
pub fn cache_stat(
    fd: impl AsFd,
    offset: u64,
    len: u64,
) -> io::Result<(CacheStat, CacheStatSource)> {
    let fd = fd.as_fd();
    if !CACHESTAT_MISSING.load(Ordering::Relaxed) {
        match cachestat(fd.as_raw_fd(), offset, len) {
            Ok(stat) => return Ok((stat, CacheStatSource::Cachestat)),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !may_write(fd) => {
                announce_refused_file(fd);
            }
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSYS)
                    || e.raw_os_error() == Some(libc::EPERM) =>
            {
                if !CACHESTAT_MISSING.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        "cachestat(2) is not available (Linux < 6.5 or a seccomp filter); page-cache residency comes from mincore(2), which cannot tell dirty or writeback pages"
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
    mincore_stat(fd, offset, len).map(|s| (s, CacheStatSource::Mincore))
}

/// Whether the caller may write the file behind `fd`, as cachestat's
/// permission check asks: `fd` is open for writing, or the file's mode
/// lets this user write it.
fn may_write(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let writable_fd = rustix::fs::fcntl_getfl(fd)
        .is_ok_and(|m| m & rustix::fs::OFlags::RWMODE != rustix::fs::OFlags::RDONLY);
    writable_fd
        || rustix::fs::access(
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            rustix::fs::Access::WRITE_OK,
        )
        .is_ok()
}

/// Says once per file (up to [`REFUSED_FILES_MAX`] files) that cachestat
/// was refused for it and why.
fn announce_refused_file(fd: std::os::fd::BorrowedFd<'_>) {
    let Ok(st) = rustix::fs::fstat(fd) else {
        return;
    };
    let id = (st.st_dev, st.st_ino);
    {
        let mut refused = REFUSED_FILES.lock().unwrap_or_else(|p| p.into_inner());
        if refused.contains(&id) || refused.len() >= REFUSED_FILES_MAX {
            return;
        }
        refused.push(id);
    }
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_or_else(
        |_| format!("fd {}", fd.as_raw_fd()),
        |p| p.display().to_string(),
    );
    tracing::warn!(
        "cachestat(2) refused {path} with EPERM: the kernel shows the page-cache state of a file only to a user who may write it (or its owner); residency of this file comes from mincore(2), without dirty or writeback counts (other files still use cachestat); run as a user who may write it for the full counts"
    );
}

fn cachestat(fd: libc::c_int, offset: u64, len: u64) -> io::Result<CacheStat> {
    let range = CachestatRange { off: offset, len };
    let mut raw = RawCachestat::default();
    // SAFETY: cachestat(fd, &range, &cstat, flags) reads `range` and writes
    // one `struct cachestat` to `raw`; both are live, properly laid out
    // (`repr(C)`, five and two u64) and exclusively ours for the call.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const CachestatRange,
            &mut raw as *mut RawCachestat,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CacheStat {
        cached: raw.nr_cache,
        dirty: raw.nr_dirty,
        writeback: raw.nr_writeback,
        evicted: raw.nr_evicted,
        recently_evicted: raw.nr_recently_evicted,
    })
}

/// Size of a file or block device behind `fd`.
fn fd_size(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::fstat(fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::BlockDevice {
        super::block_device_size(fd)
    } else {
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }
}

/// Counts resident pages with `mincore(2)` over a read-only shared mapping,
/// a window of at most 1 GiB at a time. A write-only `fd` cannot be mapped:
/// the same file is then opened again read-only through `/proc/self/fd`.
fn mincore_stat(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<CacheStat> {
    let mode = rustix::fs::fcntl_getfl(fd)?;
    if mode & rustix::fs::OFlags::RWMODE == rustix::fs::OFlags::WRONLY {
        let readable = std::fs::File::open(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        return mincore_mapped(readable.as_fd(), offset, len);
    }
    mincore_mapped(fd, offset, len)
}

fn mincore_mapped(fd: std::os::fd::BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<CacheStat> {
    const WINDOW: u64 = 1 << 30;
    let page = rustix::param::page_size() as u64;
    let size = fd_size(fd)?;
    let start = offset / page * page;
    let end = if len == 0 {
        size
    } else {
        offset.saturating_add(len).min(size)
    };
    let mut cached = 0;
    let mut at = start;
    let mut vec = Vec::new();
    while at < end {
        let n = (end - at).min(WINDOW);
        let pages = n.div_ceil(page) as usize;
        vec.clear();
        vec.resize(pages, 0u8);
        // SAFETY: a fresh read-only shared mapping of `n` bytes of `fd` at a
        // page-aligned offset; nothing else uses the address range, and it
        // is unmapped below before anything could read through it.
        let addr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                n as usize,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::SHARED,
                fd,
                at,
            )
        }?;
        // SAFETY: `addr` is the page-aligned start of the `n`-byte mapping
        // made above and `vec` holds one byte per page of it.
        let rc = unsafe { libc::mincore(addr, n as usize, vec.as_mut_ptr()) };
        let err = (rc != 0).then(io::Error::last_os_error);
        // SAFETY: unmaps exactly the mapping made above, which nothing
        // borrows.
        unsafe { rustix::mm::munmap(addr, n as usize) }?;
        if let Some(e) = err {
            return Err(e);
        }
        cached += vec.iter().filter(|&&b| b & 1 != 0).count() as u64;
        at += n;
    }
    Ok(CacheStat {
        cached,
        ..CacheStat::default()
    })
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn cachestat_and_mincore_agree_on_a_freshly_written_file() {
        let dir = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, Into::into);
        let path = dir.join(format!("endio-cachestat-{}", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 1 << 20]).unwrap();
        let (stat, source) = cache_stat(&f, 0, 0).unwrap();
        let page = rustix::param::page_size() as u64;
        let (by_mincore, _) = (mincore_stat(f.as_fd(), 0, 0).unwrap(), ());
        std::fs::remove_file(&path).unwrap();
        if source == CacheStatSource::Cachestat {
            assert_eq!(stat.cached, (1 << 20) / page, "{stat:?}");
            assert!(stat.dirty + stat.writeback <= stat.cached, "{stat:?}");
        }
        assert_eq!(by_mincore.cached, (1 << 20) / page);
    }
}
