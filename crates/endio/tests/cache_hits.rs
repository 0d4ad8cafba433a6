//! How many of a read's bytes the page cache already had
//! (`EndedBio::cached_bytes`), on a file of a disk filesystem, on every
//! backend that does real I/O:
//!
//! * a plain buffered read measures only when flagged `CACHE_HITS`: of a
//!   dropped range it reports 0, of the same range read again all of it,
//!   of a half-cached range the cached half;
//! * an emulated dontcache read is measured without the flag;
//! * an `O_DIRECT` read reports 0 without any look-up, even of cached data;
//! * writes, and reads of memory devices, report nothing.

mod common;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::io_target::{backends, disk_dir, engine};
use endio::{Backend, Bio, BioFlags, Device, OpenOptions};

const LEN: usize = 256 << 10;

/// A file of `LEN` bytes, written back and dropped from the page cache.
fn uncached_file(path: &Path) {
    let f = File::create(path).unwrap();
    f.write_all_at(&vec![0x5au8; LEN], 0).unwrap();
    f.sync_all().unwrap();
    drop_cache(path);
}

fn drop_cache(path: &Path) {
    let f = File::open(path).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let r = endio::residency(&f, 0..0).unwrap();
    assert_eq!(r.cached_bytes, 0, "the test file stays cached: {r:?}");
}

/// Reads `len` bytes at `offset` with `flags`; returns the ended bio's
/// cached bytes.
fn read(dev: &Device, offset: u64, len: usize, flags: BioFlags) -> Option<u64> {
    let (tx, rx) = mpsc::channel();
    let bio = Bio::read(offset, dev.buf(len), move |e| {
        assert_eq!(e.result().unwrap(), len, "short read");
        tx.send(e.cached_bytes()).unwrap();
    })
    .with_flags(flags);
    dev.submit(bio).unwrap();
    rx.recv_timeout(Duration::from_secs(30)).unwrap()
}

fn real_backends() -> Vec<Backend> {
    backends()
        .into_iter()
        .filter(|b| *b != Backend::Null)
        .collect()
}

#[test]
fn a_flagged_buffered_read_says_what_the_cache_had() {
    for backend in real_backends() {
        let dir = disk_dir();
        let path = dir.path().join("plain");
        uncached_file(&path);
        let (_c, engine) = engine(backend, 8);
        let dev = engine.open(&path, OpenOptions::new().read(true)).unwrap();
        assert_eq!(
            read(&dev, 0, LEN, BioFlags::empty()),
            None,
            "{backend}: unflagged buffered reads are not measured"
        );
        drop_cache(&path);
        let flag = BioFlags::CACHE_HITS;
        assert_eq!(
            read(&dev, 0, LEN, flag),
            Some(0),
            "{backend}: dropped range"
        );
        assert_eq!(
            read(&dev, 0, LEN, flag),
            Some(LEN as u64),
            "{backend}: the same range again"
        );
        // Half cached: drop the second half only.
        let f = File::open(&path).unwrap();
        rustix::fs::fadvise(
            &f,
            (LEN / 2) as u64,
            std::num::NonZeroU64::new((LEN / 2) as u64),
            rustix::fs::Advice::DontNeed,
        )
        .unwrap();
        assert_eq!(
            read(&dev, 0, LEN, flag),
            Some((LEN / 2) as u64),
            "{backend}: half cached"
        );
        // An unaligned read inside one cached page counts only its bytes.
        assert_eq!(read(&dev, 100, 200, flag), Some(200), "{backend}");
    }
}

#[test]
fn an_emulated_dontcache_read_is_measured_without_the_flag() {
    for backend in real_backends() {
        let dir = disk_dir();
        let path = dir.path().join("dc");
        uncached_file(&path);
        let (_c, engine) = engine(backend, 8);
        let dev = engine
            .open(
                &path,
                OpenOptions::new().read(true).dontcache_emulated(true),
            )
            .unwrap();
        assert_eq!(read(&dev, 0, LEN, BioFlags::empty()), Some(0), "{backend}");
        dev.drain();
        // Cache the first quarter through another description, without
        // readahead (which would cache more).
        let f = File::open(&path).unwrap();
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).unwrap();
        let mut quarter = vec![0u8; LEN / 4];
        f.read_exact_at(&mut quarter, 0).unwrap();
        assert_eq!(
            read(&dev, 0, LEN, BioFlags::empty()),
            Some((LEN / 4) as u64),
            "{backend}: the quarter cached before"
        );
        dev.drain();
    }
}

#[test]
fn a_direct_read_reports_no_cache_hits_and_writes_report_nothing() {
    for backend in real_backends() {
        let dir = disk_dir();
        let path = dir.path().join("direct");
        uncached_file(&path);
        // Cache all of it: a direct read still takes none of it from the cache.
        let f = File::open(&path).unwrap();
        let mut all = vec![0u8; LEN];
        f.read_exact_at(&mut all, 0).unwrap();
        let (_c, engine) = engine(backend, 8);
        let dev = match engine.open(
            &path,
            OpenOptions::new().read(true).write(true).direct(true),
        ) {
            Ok(dev) => dev,
            Err(e) => {
                eprintln!("skipped the direct part on {backend}: {e}");
                continue;
            }
        };
        assert_eq!(
            read(&dev, 0, LEN, BioFlags::CACHE_HITS),
            Some(0),
            "{backend}"
        );
        assert_eq!(read(&dev, 0, LEN, BioFlags::empty()), Some(0), "{backend}");
        let (tx, rx) = mpsc::channel();
        let mut buf = dev.buf(4096);
        buf.fill(1);
        dev.submit(
            Bio::write(0, buf, move |e| tx.send(e.cached_bytes()).unwrap())
                .with_flags(BioFlags::CACHE_HITS),
        )
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), None);
    }
}

#[test]
fn a_memory_device_has_no_page_cache_to_measure() {
    let (_c, engine) = engine(Backend::Null, 8);
    let dev = engine
        .open(
            "/nonexistent/endio-memory",
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .size(1 << 20),
        )
        .unwrap();
    assert_eq!(read(&dev, 0, 4096, BioFlags::CACHE_HITS), None);
}
