//! Page-cache residency of files and block devices: how much of a range is
//! cached, dirty or under writeback (`fincore`'s question), from
//! `cachestat(2)`, falling back to `mincore(2)` where the kernel lacks it.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let file = std::fs::File::open("/etc/hostname")?;
//! let r = endio::io::cache::residency(&file, 0..0)?; // 0..0: the whole file
//! assert!(r.cached_bytes <= std::fs::metadata("/etc/hostname")?.len() + 4095);
//! # Ok(()) }
//! ```

use std::io;
use std::ops::Range;
use std::os::fd::AsFd;

pub use crate::sys::CacheStatSource;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
