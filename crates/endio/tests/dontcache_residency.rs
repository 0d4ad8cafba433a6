//! What dontcache leaves in the page cache, on an ext4 (disk filesystem)
//! file and on a loop block device (root; skipped with the reason
//! otherwise), through the engine's default backend:
//!
//! * after writing 256 MiB and `drain()`, at most 5 % of it is resident
//!   (buffered: about 100 %, asserted as the contrast), and nothing is dirty;
//! * a dontcache read of uncached data leaves at most 5 % resident, also
//!   with the readahead its sequential reads keep;
//! * a range cached before a dontcache read stays cached, also where the
//!   stream's readahead covers it;
//! * verify passes in every mode, after `drain()` and after reopening
//!   (dirty data is never dropped before it is written);
//! * on the file, the kernel's native `RWF_DONTCACHE` and the forced
//!   emulation are both exercised, on fresh blocks and on overwrites.

mod common;

use std::fs::File;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::io_target::{disk_dir, engine, loop_device_or_skip};
use endio::{
    Backend, Bio, BioFlags, Completer, Device, DontcacheMode, Engine, OpenOptions, Verifier,
};
use endio::{CacheStatSource, Residency};

const MIB: u64 = 1 << 20;
/// What the write test writes.
const WRITE_SIZE: u64 = 256 * MIB;
/// What the read tests read.
const READ_SIZE: u64 = 64 * MIB;
const BS: usize = 1 << 20;
const QD: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Buffered,
    /// `dontcache(true)`: native where the kernel has it.
    Dontcache,
    /// `dontcache_emulated(true)`.
    Emulated,
}

impl Mode {
    fn options(self) -> OpenOptions {
        let o = OpenOptions::new().read(true).write(true);
        match self {
            Mode::Buffered => o,
            Mode::Dontcache => o.dontcache(true),
            Mode::Emulated => o.dontcache_emulated(true),
        }
    }
}

fn backend() -> Backend {
    if endio::testing::probe_io_uring(Path::new("/proc")).is_ok() {
        Backend::Uring
    } else {
        Backend::Threads
    }
}

fn residency(path: &Path, range: Range<u64>) -> Residency {
    let f = File::open(path).expect("open for residency");
    endio::residency(&f, range).expect("residency")
}

/// Writes dirty pages back and empties the cache of `path`.
fn uncache(path: &Path) {
    let f = File::open(path).expect("open");
    rustix::fs::fdatasync(&f).expect("fdatasync");
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
}

/// Writes `range` with `verifier`'s pattern, `QD` bios at a time, and waits
/// for every completion (not for `drain`).
fn write(dev: &Device, verifier: &Verifier, range: Range<u64>) {
    let (tx, rx) = mpsc::channel::<std::io::Result<()>>();
    let mut outstanding = 0;
    let mut at = range.start;
    while at < range.end {
        if outstanding == QD {
            rx.recv().expect("completion").expect("write");
            outstanding -= 1;
        }
        let len = (range.end - at).min(BS as u64) as usize;
        let mut buf = dev.buf(len);
        verifier.fill(&mut buf, at);
        let tx = tx.clone();
        dev.submit(
            Bio::write(at, buf, move |e| {
                let _ = tx.send(e.result().map(|n| assert_eq!(n, len)));
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK),
        )
        .expect("submit write");
        outstanding += 1;
        at += len as u64;
    }
    for _ in 0..outstanding {
        rx.recv().expect("completion").expect("write");
    }
}

/// Reads `range` and checks it against `verifier`; returns the bad blocks.
fn read_verify(dev: &Device, verifier: &Arc<Verifier>, range: Range<u64>) -> u64 {
    let before = verifier.stats().errors;
    let (tx, rx) = mpsc::channel();
    let mut outstanding = 0;
    let mut at = range.start;
    while at < range.end {
        if outstanding == QD {
            rx.recv().expect("completion");
            outstanding -= 1;
        }
        let len = (range.end - at).min(BS as u64) as usize;
        let (tx, v) = (tx.clone(), Arc::clone(verifier));
        dev.submit(
            Bio::read(at, dev.buf(len), move |e| {
                assert_eq!(e.result().expect("read"), len);
                let _ = v.check(e.buf(), e.offset());
                let _ = tx.send(());
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK),
        )
        .expect("submit read");
        outstanding += 1;
        at += len as u64;
    }
    for _ in 0..outstanding {
        rx.recv().expect("completion");
    }
    verifier.stats().errors - before
}

fn pct(r: &Residency, of: u64) -> f64 {
    100.0 * r.cached_bytes as f64 / of as f64
}

/// The write test of one mode on `path`: `WRITE_SIZE` bytes (fresh blocks
/// on a new file), then the first quarter again (overwrites), each followed
/// by `drain()` and the residency check; verify after drain and after a
/// reopen.
fn write_test(engine: &Engine, completer: &Completer, path: &Path, mode: Mode, what: &str) {
    uncache(path);
    let dev = engine.open(path, mode.options()).expect("open");
    let first = Arc::new(Verifier::new(4096, 0x5eed_0001 ^ mode as u64));
    let second = Arc::new(Verifier::new(4096, 0x5eed_0002 ^ mode as u64));
    let quarter = WRITE_SIZE / 4;
    for (round, range, v) in [
        ("write", 0..WRITE_SIZE, &first),
        ("overwrite", 0..quarter, &second),
    ] {
        write(&dev, v, range.clone());
        dev.drain();
        let r = residency(path, 0..WRITE_SIZE);
        let written = range.end - range.start;
        eprintln!(
            "{what} {mode:?} ({:?}) {round}: {} MiB written, {} MiB of the target resident after drain ({r:?}); {:?}",
            dev.dontcache_mode(),
            written / MIB,
            r.cached_bytes / MIB,
            dev.dontcache_stats()
        );
        match mode {
            Mode::Buffered => assert!(
                r.cached_bytes >= written * 9 / 10,
                "{what} buffered {round}: only {:.1} % of {written} bytes resident: {r:?}",
                pct(&r, written)
            ),
            Mode::Dontcache | Mode::Emulated => {
                assert!(
                    r.cached_bytes <= written / 20,
                    "{what} {mode:?} {round}: {:.1} % of {written} bytes resident after drain: {r:?}; {:?}",
                    pct(&r, written),
                    dev.dontcache_stats()
                );
                if r.source == CacheStatSource::Cachestat {
                    assert_eq!(
                        r.dirty_bytes + r.writeback_bytes,
                        0,
                        "{what} {mode:?} {round}: drained, yet dirty: {r:?}"
                    );
                }
            }
        }
    }
    let check = |dev: &Device, when: &str| {
        let bad =
            read_verify(dev, &second, 0..quarter) + read_verify(dev, &first, quarter..WRITE_SIZE);
        assert_eq!(
            bad,
            0,
            "{what} {mode:?}: {bad} bad blocks {when}: {:?} {:?}",
            second.errors(),
            first.errors()
        );
    };
    check(&dev, "after drain");
    dev.drain();
    drop(dev);
    uncache(path);
    let dev = engine
        .open(path, OpenOptions::new().read(true))
        .expect("reopen");
    check(&dev, "after reopening");
    drop(dev);
    assert!(completer.wait_idle(Duration::from_secs(60)));
}

/// The read tests of one dontcache mode on `path`, which holds
/// `READ_SIZE` bytes of `verifier`'s pattern.
fn read_test(engine: &Engine, path: &Path, mode: Mode, verifier: &Arc<Verifier>, what: &str) {
    // Uncached data: a dontcache read leaves (almost) nothing.
    uncache(path);
    let dev = engine.open(path, mode.options()).expect("open");
    assert_eq!(
        read_verify(&dev, verifier, 0..READ_SIZE),
        0,
        "{what} {mode:?} read"
    );
    dev.drain();
    let r = residency(path, 0..READ_SIZE);
    let stats = dev.dontcache_stats();
    eprintln!(
        "{what} {mode:?} ({:?}) read of uncached data: {:.1} % resident ({r:?}); {stats:?}",
        dev.dontcache_mode(),
        pct(&r, READ_SIZE)
    );
    // The reads are sequential: all but the first continue the one before
    // and keep the kernel's readahead.
    assert!(
        stats.readahead_ios >= READ_SIZE / BS as u64 - 1,
        "{what} {mode:?}: sequential dontcache reads should keep readahead: {stats:?}"
    );
    assert!(
        r.cached_bytes <= READ_SIZE / 20,
        "{what} {mode:?}: a dontcache read of uncached data left {:.1} % resident: {r:?}",
        pct(&r, READ_SIZE)
    );

    // A range cached before stays cached; the rest is dropped.
    uncache(path);
    let hot = 20 * MIB..28 * MIB;
    {
        let f = File::open(path).expect("open");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::Random).expect("fadvise");
        let mut buf = vec![0u8; 1 << 20];
        let mut at = hot.start;
        while at < hot.end {
            rustix::io::pread(&f, &mut buf, at).expect("pread");
            at += buf.len() as u64;
        }
    }
    let before_hot = residency(path, hot.clone());
    let before_all = residency(path, 0..READ_SIZE);
    assert_eq!(
        before_hot.cached_bytes,
        hot.end - hot.start,
        "{before_hot:?}"
    );
    assert_eq!(
        read_verify(&dev, verifier, 0..READ_SIZE),
        0,
        "{what} {mode:?} read"
    );
    dev.drain();
    let after_hot = residency(path, hot.clone());
    let after_all = residency(path, 0..READ_SIZE);
    eprintln!(
        "{what} {mode:?}: cached before: {} MiB in the hot range, {} MiB in all; after the dontcache read: {} MiB, {} MiB; {:?}",
        before_hot.cached_bytes / MIB,
        before_all.cached_bytes / MIB,
        after_hot.cached_bytes / MIB,
        after_all.cached_bytes / MIB,
        dev.dontcache_stats()
    );
    assert_eq!(
        after_hot.cached_bytes, before_hot.cached_bytes,
        "{what} {mode:?}: the range cached before a dontcache read must stay cached"
    );
    assert!(
        after_all.cached_bytes <= before_all.cached_bytes + READ_SIZE / 20,
        "{what} {mode:?}: the dontcache read left {} bytes cached beyond the {} cached before",
        after_all.cached_bytes - before_all.cached_bytes,
        before_all.cached_bytes
    );
}

#[test]
fn ext4_file_native_and_emulated_dontcache_leave_the_cache_as_found() {
    let dir = disk_dir();
    let (completer, engine) = engine(backend(), 32);
    let probe_path = dir.path().join("probe");
    File::create(&probe_path).expect("create");
    let native = engine
        .open(&probe_path, Mode::Dontcache.options())
        .expect("open")
        .dontcache_mode();
    // ext4, xfs and btrfs have RWF_DONTCACHE from Linux 6.14.
    let fs_native = rustix::fs::statfs(dir.path()).is_ok_and(|s| {
        #[allow(clippy::unnecessary_cast)]
        let t = s.f_type as i64;
        t == 0xef53 || t == 0x5846_5342 || t == 0x9123_683e
    });
    eprintln!("dontcache(true) on {}: {native:?}", dir.path().display());
    if fs_native {
        assert_eq!(
            native,
            Some(DontcacheMode::Native),
            "this kernel has RWF_DONTCACHE on this filesystem"
        );
    }
    assert_eq!(
        engine
            .open(&probe_path, Mode::Emulated.options())
            .expect("open")
            .dontcache_mode(),
        Some(DontcacheMode::Emulated)
    );
    for mode in [Mode::Buffered, Mode::Dontcache, Mode::Emulated] {
        let path = dir.path().join(format!("write-{mode:?}"));
        File::create(&path).expect("create");
        write_test(&engine, &completer, &path, mode, "ext4 file");
        std::fs::remove_file(&path).expect("remove");
    }
    let path = dir.path().join("read");
    let verifier = Arc::new(Verifier::new(4096, 0x00ead));
    {
        let dev = engine
            .open(&path, OpenOptions::new().write(true).create(true))
            .expect("open");
        write(&dev, &verifier, 0..READ_SIZE);
        dev.drain();
    }
    for mode in [Mode::Dontcache, Mode::Emulated] {
        read_test(&engine, &path, mode, &verifier, "ext4 file");
    }
    assert!(completer.wait_idle(Duration::from_secs(60)));
}

#[test]
fn loop_device_emulated_dontcache_leaves_the_cache_as_found() {
    let Some(lo) = loop_device_or_skip(
        "loop_device_emulated_dontcache_leaves_the_cache_as_found",
        WRITE_SIZE,
        None,
    ) else {
        return;
    };
    let (completer, engine) = engine(backend(), 32);
    let mode = engine
        .open(lo.path(), Mode::Dontcache.options())
        .expect("open")
        .dontcache_mode();
    assert_eq!(
        mode,
        Some(DontcacheMode::Emulated),
        "Linux <= 7.2 has no RWF_DONTCACHE on block devices; if this kernel has, the native path is taken and this test should learn it"
    );
    for mode in [Mode::Buffered, Mode::Dontcache] {
        write_test(&engine, &completer, lo.path(), mode, "loop device");
    }
    let verifier = Arc::new(Verifier::new(4096, 0x100b));
    {
        let dev = engine
            .open(lo.path(), OpenOptions::new().write(true))
            .expect("open");
        write(&dev, &verifier, 0..READ_SIZE);
        dev.drain();
    }
    read_test(
        &engine,
        lo.path(),
        Mode::Dontcache,
        &verifier,
        "loop device",
    );
    uncache(lo.path());
    assert!(completer.wait_idle(Duration::from_secs(60)));
}

#[test]
fn emulated_dontcache_on_the_thread_pool_backend() {
    let dir = disk_dir();
    let (completer, engine) = engine(Backend::Threads, 16);
    let path = dir.path().join("threads");
    File::create(&path).expect("create");
    let dev = engine.open(&path, Mode::Emulated.options()).expect("open");
    let v = Arc::new(Verifier::new(4096, 0x7473));
    write(&dev, &v, 0..READ_SIZE);
    dev.drain();
    let r = residency(&path, 0..READ_SIZE);
    let st = dev.dontcache_stats();
    eprintln!(
        "threads backend, emulated: {:.1} % resident after drain; {st:?}",
        pct(&r, READ_SIZE)
    );
    assert!(r.cached_bytes <= READ_SIZE / 20, "{r:?} {st:?}");
    // Every write's write-back was waited for, in batches.
    assert_eq!(st.writeback_batched, READ_SIZE / BS as u64, "{st:?}");
    assert!(
        (1..=st.writeback_batched).contains(&st.writeback_waits),
        "{st:?}"
    );
    assert_eq!(read_verify(&dev, &v, 0..READ_SIZE), 0);
    dev.drain();
    let r = residency(&path, 0..READ_SIZE);
    assert!(r.cached_bytes <= READ_SIZE / 20, "after the read: {r:?}");
    drop(dev);
    assert!(completer.wait_idle(Duration::from_secs(60)));
}
