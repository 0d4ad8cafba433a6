//! Page-cache residency of files and block devices: how much of a range is
//! cached, dirty or under writeback (`fincore`'s question), from
//! `cachestat(2)`, falling back to `mincore(2)` where the kernel lacks it.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let file = std::fs::File::open("/etc/hostname")?;
//! let r = endio::residency(&file, 0..0)?; // 0..0: the whole file
//! assert!(r.cached_bytes <= std::fs::metadata("/etc/hostname")?.len() + 4095);
//! # Ok(()) }
//! ```

use std::io;
use std::ops::Range;
use std::os::fd::AsFd;

use crate::sys::CacheStatSource;

/// The page-cache state of a byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Residency {
    /// Bytes of the range in the page cache.
    pub cached_bytes: u64,
    /// Of those, dirty (0 when the source is `mincore`).
    pub dirty_bytes: u64,
    /// Of those, under writeback (0 when the source is `mincore`).
    pub writeback_bytes: u64,
    /// The page size the byte counts were made of.
    pub page_size: u64,
    /// Where the numbers come from.
    #[serde(serialize_with = "source_name")]
    pub source: CacheStatSource,
}

fn source_name<S: serde::Serializer>(s: &CacheStatSource, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(match s {
        CacheStatSource::Cachestat => "cachestat",
        CacheStatSource::Mincore => "mincore",
    })
}

impl Residency {
    /// Pages in the page cache.
    pub fn cached_pages(&self) -> u64 {
        self.cached_bytes / self.page_size
    }
}

/// The residency of `range` of `file` (a regular file or a block device).
/// An empty range (`0..0`) means the whole file.
pub fn residency(file: impl AsFd, range: Range<u64>) -> io::Result<Residency> {
    let len = range.end.saturating_sub(range.start);
    let (stat, source) = crate::sys::cache_stat(file, range.start, len)?;
    let page_size = rustix::param::page_size() as u64;
    Ok(Residency {
        cached_bytes: stat.cached * page_size,
        dirty_bytes: stat.dirty * page_size,
        writeback_bytes: stat.writeback * page_size,
        page_size,
        source,
    })
}

/// How many bytes of `len` at `offset` of `file` are in the page cache, in
/// one residency query: the cached pages of the range times the page size,
/// at most `len` (a partly covered page at either end counts whole, up to
/// the range's length). What [`BioFlags::CACHE_HITS`](crate::BioFlags::CACHE_HITS)
/// measures.
pub(crate) fn cached_bytes(file: impl AsFd, offset: u64, len: u64) -> io::Result<u64> {
    let page = rustix::param::page_size() as u64;
    let start = offset / page * page;
    let end = (offset + len).div_ceil(page) * page;
    let (stat, _) = crate::sys::cache_stat(file, start, end - start)?;
    Ok((stat.cached * page).min(len))
}

/// Most `cachestat(2)` calls [`uncached_runs`] makes for one range: a range
/// whose residency alternates more often than this allows is settled
/// conservatively (undecided parts count as cached).
pub(crate) const RUN_QUERIES_MAX: u32 = 64;

/// The runs of pages of `pages` (page indexes of `file`) that are **not** in
/// the page cache now, in ascending order, appended to `out`; returns how
/// many residency queries it made.
///
/// It asks `cachestat(2)` (or its `mincore` fallback) about the whole range
/// and splits in halves only where a part is partly cached, so the common
/// cases, nothing cached or everything cached, cost one system call and a
/// range with `k` cached islands about `2k log2(n/k)`. After
/// [`RUN_QUERIES_MAX`] queries, parts still undecided count as cached: the
/// answer may miss uncached pages (they then stay cached after a dontcache
/// I/O) but never calls a cached page uncached. If the first query fails,
/// the whole range counts as uncached and the error is returned with it.
pub(crate) fn uncached_runs(
    file: impl AsFd,
    pages: Range<u64>,
    out: &mut Vec<Range<u64>>,
) -> io::Result<u32> {
    let fd = file.as_fd();
    let page = rustix::param::page_size() as u64;
    let mut queries = 0u32;
    // Explicit stack of undecided parts, right half pushed first so that
    // runs come out in ascending order. Depth <= log2(pages) + 1 <= 64.
    let mut stack: Vec<Range<u64>> = Vec::new();
    if pages.start < pages.end {
        stack.push(pages.clone());
    }
    while let Some(part) = stack.pop() {
        let n = part.end - part.start;
        if queries >= RUN_QUERIES_MAX {
            continue;
        }
        queries += 1;
        let cached = match crate::sys::cache_stat(fd, part.start * page, n * page) {
            Ok((stat, _)) => stat.cached,
            Err(e) if queries == 1 => {
                out.push(part);
                return Err(e);
            }
            // A later failure: leave the part cached (conservative).
            Err(_) => continue,
        };
        if cached == 0 {
            match out.last_mut() {
                Some(last) if last.end == part.start => last.end = part.end,
                _ => out.push(part),
            }
        } else if cached < n && n > 1 {
            let mid = part.start + n / 2;
            stack.push(mid..part.end);
            stack.push(part.start..mid);
        }
    }
    Ok(queries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn uncached_runs_finds_the_holes_between_cached_islands() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("runs");
        let page = rustix::param::page_size() as u64;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![3u8; (64 * page) as usize]).unwrap();
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let r = std::fs::File::open(&path).unwrap();
        rustix::fs::fadvise(&r, 0, None, rustix::fs::Advice::Random).unwrap();
        // Cache pages 5, 6 and 40.
        let mut buf = vec![0u8; page as usize];
        for p in [5u64, 6, 40] {
            rustix::io::pread(&r, &mut buf, p * page).unwrap();
        }
        let mut out = Vec::new();
        let q = uncached_runs(&r, 0..64, &mut out).unwrap();
        assert_eq!(out, vec![0..5, 7..40, 41..64], "after {q} queries");
        out.clear();
        assert_eq!(uncached_runs(&r, 5..7, &mut out).unwrap(), 1);
        assert!(out.is_empty());
        assert_eq!(uncached_runs(&r, 8..20, &mut out).unwrap(), 1);
        assert_eq!(out, vec![8..20]);
    }

    #[test]
    fn a_written_file_is_resident_and_dropping_it_empties_the_cache() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let path = dir.path().join("r");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![1u8; 4 << 20]).unwrap();
        let r = residency(&f, 0..0).unwrap();
        assert_eq!(r.cached_bytes, 4 << 20, "{r:?}");
        if r.source == CacheStatSource::Cachestat {
            assert!(r.dirty_bytes + r.writeback_bytes > 0, "just written: {r:?}");
        }
        f.sync_all().unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
        let r = residency(&f, 0..0).unwrap();
        assert_eq!(r.cached_bytes, 0, "{r:?}");
        let half = residency(&f, 0..(2 << 20)).unwrap();
        assert_eq!(half.cached_bytes, 0);
    }
}
