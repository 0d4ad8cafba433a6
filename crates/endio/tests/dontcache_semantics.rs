//! The dontcache contract apart from residency numbers: options and modes,
//! the per-bio flag, the backlog bound (wait in task context, `Busy` in
//! atomic context and from `try_submit`), drops deferred through the
//! completer and coalesced, and the rescue of a worker that submits into a
//! full backlog.

mod common;

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::io_target::{disk_dir, engine, loop_device_or_skip};
use endio::{
    Backend, Bio, BioFlags, Completer, Device, DontcacheMode, Engine, OpenError, OpenOptions,
    SubmitErrorKind, context,
};

const MIB: u64 = 1 << 20;

fn uring_or_threads() -> Backend {
    if endio::testing::probe_io_uring(Path::new("/proc")).is_ok() {
        Backend::Uring
    } else {
        Backend::Threads
    }
}

fn null_engine(latency: Duration, completer: &Completer) -> Engine {
    Engine::builder(completer.clone())
        .backend(Backend::Null)
        .null_latency(latency)
        .queue_depth(64)
        .build()
        .expect("null engine")
}

/// A 64 MiB dontcache memory device of a null engine, opened read-write
/// with `options`.
fn null_dontcache_device(engine: &Engine, options: OpenOptions) -> Device {
    engine
        .open(
            "/nonexistent/endio-null",
            options
                .read(true)
                .write(true)
                .create(true)
                .size(64 * MIB)
                .dontcache(true),
        )
        .unwrap()
}

/// Submits a write of `len` bytes of `fill` at `offset` and returns a
/// receiver of its result.
fn write_at(
    dev: &Device,
    offset: u64,
    len: usize,
    fill: u8,
    flags: BioFlags,
) -> mpsc::Receiver<usize> {
    let (tx, rx) = mpsc::channel();
    let mut buf = dev.buf(len);
    buf.fill(fill);
    dev.submit(
        Bio::write(offset, buf, move |e| {
            let _ = tx.send(e.result().expect("write"));
        })
        .with_flags(flags),
    )
    .expect("submit");
    rx
}

fn read_all(dev: &Device, offset: u64, len: usize, flags: BioFlags) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    dev.submit(
        Bio::read(offset, dev.buf(len), move |e| {
            assert_eq!(e.result().expect("read"), len);
            let _ = tx.send(e.buf().to_vec());
        })
        .with_flags(flags),
    )
    .expect("submit");
    rx.recv_timeout(Duration::from_secs(30)).expect("read done")
}

fn resident(path: &Path, range: std::ops::Range<u64>) -> u64 {
    let f = File::open(path).expect("open");
    endio::residency(&f, range).expect("residency").cached_bytes
}

#[test]
fn dontcache_and_direct_are_refused_together_with_the_reason() {
    let dir = disk_dir();
    let (_c, engine) = engine(uring_or_threads(), 8);
    let path = dir.path().join("f");
    for opts in [
        OpenOptions::new()
            .write(true)
            .create(true)
            .direct(true)
            .dontcache(true),
        OpenOptions::new()
            .write(true)
            .create(true)
            .direct(true)
            .dontcache_emulated(true),
    ] {
        match engine.open(&path, opts) {
            Err(e @ OpenError::InvalidOptions { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("dontcache") && msg.contains("direct"), "{msg}");
            }
            other => panic!("dontcache + direct must be refused: {other:?}"),
        }
    }
}

#[test]
fn the_mode_is_reported_per_device() {
    let dir = disk_dir();
    let (completer, engine) = engine(uring_or_threads(), 8);
    let path = dir.path().join("f");
    File::create(&path).expect("create");
    let rw = OpenOptions::new().read(true).write(true);
    assert_eq!(engine.open(&path, rw).unwrap().dontcache_mode(), None);
    assert_eq!(
        engine
            .open(&path, rw.dontcache_emulated(true))
            .unwrap()
            .dontcache_mode(),
        Some(DontcacheMode::Emulated)
    );
    let auto = engine
        .open(&path, rw.dontcache(true))
        .unwrap()
        .dontcache_mode();
    assert!(auto.is_some());
    eprintln!("dontcache(true) on {}: {auto:?}", path.display());
    // Write-only: the probe reads through a second, read-only description.
    let wo = engine
        .open(&path, OpenOptions::new().write(true).dontcache(true))
        .unwrap();
    assert_eq!(wo.dontcache_mode(), auto);
    let null = null_engine(Duration::ZERO, &completer);
    let dev = null
        .open(
            "/nonexistent/endio-null",
            rw.create(true).size(MIB).dontcache(true),
        )
        .unwrap();
    assert_eq!(dev.dontcache_mode(), Some(DontcacheMode::Emulated));
    assert_eq!(dev.residency().unwrap().cached_bytes, 0);
}

/// A per-bio flag on a buffered device makes that bio, and only it,
/// dontcache.
fn per_bio_flag_on(engine: &Engine, path: &Path, what: &str) {
    let size = 16 * MIB;
    let dev = engine
        .open(path, OpenOptions::new().read(true).write(true))
        .expect("open");
    let rx: Vec<_> = (0..16)
        .flat_map(|i| {
            [
                write_at(&dev, i * MIB, MIB as usize, 1, BioFlags::DONTCACHE),
                write_at(&dev, size + i * MIB, MIB as usize, 2, BioFlags::empty()),
            ]
        })
        .collect();
    for r in rx {
        assert_eq!(r.recv().unwrap(), MIB as usize);
    }
    dev.drain();
    let (flagged, plain) = (resident(path, 0..size), resident(path, size..2 * size));
    let st = dev.dontcache_stats();
    eprintln!("{what}: per-bio dontcache writes left {flagged} bytes, plain ones {plain}; {st:?}");
    assert_eq!(dev.dontcache_mode(), None);
    assert!(
        flagged <= size / 20,
        "{what}: flagged writes left {flagged} bytes cached"
    );
    assert!(
        plain >= size * 9 / 10,
        "{what}: plain writes left only {plain} bytes cached"
    );
    assert_eq!(st.native_ios + st.emulated_ios, 16, "{st:?}");
    // Reads: the flagged one leaves nothing, the plain one caches.
    let f = File::open(path).unwrap();
    rustix::fs::fdatasync(&f).unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    assert!(
        read_all(&dev, 0, size as usize, BioFlags::DONTCACHE)
            .iter()
            .all(|&b| b == 1)
    );
    assert!(
        read_all(&dev, size, size as usize, BioFlags::empty())
            .iter()
            .all(|&b| b == 2)
    );
    dev.drain();
    let (flagged, plain) = (resident(path, 0..size), resident(path, size..2 * size));
    eprintln!("{what}: per-bio dontcache read left {flagged} bytes, the plain one {plain}");
    assert!(
        flagged <= size / 20,
        "{what}: a flagged read left {flagged} bytes cached"
    );
    assert!(
        plain >= size * 9 / 10,
        "{what}: a plain read left only {plain} bytes"
    );
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
}

#[test]
fn a_per_bio_flag_makes_one_bio_dontcache_on_a_file() {
    let dir = disk_dir();
    let (completer, engine) = engine(uring_or_threads(), 32);
    let path = dir.path().join("per-bio");
    File::create(&path).unwrap().set_len(32 * MIB).unwrap();
    per_bio_flag_on(&engine, &path, "ext4 file");
    assert!(completer.wait_idle(Duration::from_secs(30)));
}

#[test]
fn a_per_bio_flag_makes_one_bio_dontcache_on_a_loop_device() {
    let Some(lo) = loop_device_or_skip(
        "a_per_bio_flag_makes_one_bio_dontcache_on_a_loop_device",
        32 * MIB,
        None,
    ) else {
        return;
    };
    let (completer, engine) = engine(uring_or_threads(), 32);
    per_bio_flag_on(&engine, lo.path(), "loop device");
    // On an O_DIRECT device the flag changes nothing (no EOPNOTSUPP either).
    let direct = engine
        .open(
            lo.path(),
            OpenOptions::new().read(true).write(true).direct(true),
        )
        .unwrap();
    assert_eq!(
        write_at(&direct, 0, 4096, 9, BioFlags::DONTCACHE)
            .recv()
            .unwrap(),
        4096
    );
    assert!(
        read_all(&direct, 0, 4096, BioFlags::DONTCACHE)
            .iter()
            .all(|&b| b == 9)
    );
    assert_eq!(direct.dontcache_stats(), endio::DontcacheStats::default());
    assert!(completer.wait_idle(Duration::from_secs(30)));
}

#[test]
fn the_backlog_bounds_dontcache_io_and_refuses_when_the_caller_may_not_wait() {
    let completer = Completer::builder().build().unwrap();
    // Slow "hardware": the first writes are still in flight when the
    // backlog is full.
    let engine = null_engine(Duration::from_millis(50), &completer);
    let dev = null_dontcache_device(
        &engine,
        OpenOptions::new().dontcache_backlog_bytes_max(4 * MIB),
    );
    let mut rx: Vec<_> = (0..4)
        .map(|i| write_at(&dev, i * MIB, MIB as usize, 7, BioFlags::empty()))
        .collect();
    let mut buf = dev.buf(MIB as usize);
    buf.fill(7);
    let e = dev
        .try_submit(Bio::write(4 * MIB, buf, |_| panic!("refused bio ran")))
        .unwrap_err();
    assert_eq!(e.kind(), SubmitErrorKind::Busy);
    assert!(e.message().contains("dontcache backlog"), "{}", e.message());
    let bio = e.into_bio();
    let e = {
        let _atomic = context::atomic();
        dev.submit(bio).unwrap_err()
    };
    assert_eq!(e.kind(), SubmitErrorKind::Busy);
    assert_eq!(e.into_bio().offset(), 4 * MIB, "the refused bio comes back");
    // Task context waits for the drops instead.
    rx.push(write_at(&dev, 4 * MIB, MIB as usize, 7, BioFlags::empty()));
    for r in rx {
        assert_eq!(
            r.recv_timeout(Duration::from_secs(30)).unwrap(),
            MIB as usize
        );
    }
    dev.drain();
    let st = dev.dontcache_stats();
    eprintln!("{st:?}");
    assert_eq!(st.backpressure_busy, 2, "{st:?}");
    assert_eq!(st.backpressure_waits, 1, "{st:?}");
    assert!(st.inflight_bytes_max <= 4 * MIB, "{st:?}");
    assert_eq!((st.drops, st.writeback_waits), (5, 5), "{st:?}");
    assert_eq!(st.inflight_bytes, 0);
}

#[test]
fn a_file_writer_never_holds_more_than_the_backlog() {
    let dir = disk_dir();
    let (completer, engine) = engine(uring_or_threads(), 64);
    let path = dir.path().join("bound");
    let bound = 8 * MIB;
    let dev = engine
        .open(
            &path,
            OpenOptions::new()
                .write(true)
                .create(true)
                .dontcache_emulated(true)
                .dontcache_backlog_bytes_max(bound),
        )
        .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let dev = dev.clone();
            std::thread::spawn(move || {
                let rx: Vec<_> = (0..32)
                    .map(|i| {
                        write_at(
                            &dev,
                            (t * 32 + i) * MIB,
                            MIB as usize,
                            t as u8,
                            BioFlags::empty(),
                        )
                    })
                    .collect();
                for r in rx {
                    assert_eq!(r.recv().unwrap(), MIB as usize);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    dev.drain();
    let st = dev.dontcache_stats();
    let r = resident(&path, 0..0);
    eprintln!("128 MiB through an 8 MiB backlog: {st:?}; {r} bytes resident after drain");
    assert!(st.inflight_bytes_max <= bound, "{st:?}");
    assert!(r <= 128 * MIB / 20, "{r}");
    drop(dev);
    assert!(completer.wait_idle(Duration::from_secs(30)));
}

#[test]
fn drops_go_through_the_completer_and_adjacent_ones_are_coalesced() {
    let completer = Completer::builder().build().unwrap();
    // All 32 writes complete in one pass of the interrupt thread.
    let engine = null_engine(Duration::from_millis(30), &completer);
    let dev = null_dontcache_device(&engine, OpenOptions::new());
    let before = completer.stats().total;
    let rx: Vec<_> = (0..32)
        .map(|i| write_at(&dev, i * 65536, 65536, i as u8, BioFlags::empty()))
        .collect();
    for r in rx {
        assert_eq!(r.recv().unwrap(), 65536);
    }
    dev.drain();
    assert!(completer.wait_idle(Duration::from_secs(10)));
    let after = completer.stats().total;
    let st = dev.dontcache_stats();
    eprintln!(
        "{st:?}; completer deferred {}",
        after.deferred - before.deferred
    );
    // The caller's handlers are not flagged (they ran inline): every
    // deferral is a drop bio, one per write.
    assert_eq!(after.deferred - before.deferred, 32);
    assert_eq!(st.drops, 32, "{st:?}");
    assert!(st.coalesced > 0 && st.drop_calls < 32, "{st:?}");
    assert_eq!(st.drops, st.drop_calls + st.coalesced, "{st:?}");
    assert_eq!(st.rescue_calls, 0, "{st:?}");
    for i in 0..32u64 {
        assert!(
            read_all(&dev, i * 65536, 65536, BioFlags::empty())
                .iter()
                .all(|&b| b == i as u8)
        );
    }
}

/// Writes `n` blocks of `bs` bytes from `base` on, at most all in flight
/// at once (block `i` filled with `i as u8`), then drains the device.
fn write_blocks_and_drain(dev: &Device, base: u64, n: u64, bs: usize) {
    let rx: Vec<_> = (0..n)
        .map(|i| write_at(dev, base + i * bs as u64, bs, i as u8, BioFlags::empty()))
        .collect();
    for r in rx {
        assert_eq!(r.recv().unwrap(), bs);
    }
    dev.drain();
}

#[test]
fn small_writes_are_waited_for_in_batches_of_a_quarter_of_the_backlog_units() {
    // 4 KiB writes fill the backlog's 1024 units long before its 64 MiB: a
    // batch that waited for a quarter of the bytes would wait until the
    // backlog was full and every writer stalled, then take all 1024.
    let completer = Completer::builder().build().unwrap();
    let engine = null_engine(Duration::ZERO, &completer);
    let dev = null_dontcache_device(&engine, OpenOptions::new());
    const WRITES: u64 = 4096;
    write_blocks_and_drain(&dev, 0, WRITES, 4096);
    let st = dev.dontcache_stats();
    eprintln!("{st:?}");
    assert_eq!(st.writeback_batched, WRITES, "{st:?}");
    // A quarter of the units, and what the 64 I/Os in flight add while the
    // batch is taken.
    assert!((1..=256 + 64).contains(&st.writeback_batch_max), "{st:?}");
    assert!(st.writeback_waits >= WRITES / (256 + 64), "{st:?}");
    assert!(completer.wait_idle(Duration::from_secs(10)));
}

#[test]
fn small_writes_kick_their_write_back_together_large_ones_each() {
    // A kick only starts write-back early; 4 KiB writes share one per
    // 128 KiB, a 1 MiB write has its own (unless it is a batch wait).
    let completer = Completer::builder().build().unwrap();
    let engine = null_engine(Duration::ZERO, &completer);
    let dev = null_dontcache_device(&engine, OpenOptions::new());
    const SMALL: u64 = 4096;
    write_blocks_and_drain(&dev, 0, SMALL, 4096);
    let st = dev.dontcache_stats();
    eprintln!("small: {st:?}");
    assert_eq!(st.writeback_batched, SMALL, "{st:?}");
    assert!(
        (1..=SMALL * 4096 / (128 << 10)).contains(&st.writeback_kicks),
        "{st:?}"
    );
    let base = SMALL * 4096;
    const LARGE: u64 = 32;
    write_blocks_and_drain(&dev, base, LARGE, MIB as usize);
    let large = dev.dontcache_stats();
    eprintln!("large: {large:?}");
    let kicks = large.writeback_kicks - st.writeback_kicks;
    let waits = large.writeback_waits - st.writeback_waits;
    assert!(
        kicks + waits >= LARGE - 8 && kicks > LARGE / 2,
        "{kicks} kicks, {waits} waits"
    );
    for i in (0..SMALL).step_by(97) {
        assert!(
            read_all(&dev, i * 4096, 4096, BioFlags::empty())
                .iter()
                .all(|&b| b == i as u8)
        );
    }
    assert!(completer.wait_idle(Duration::from_secs(10)));
}

#[test]
fn a_worker_that_submits_into_a_full_backlog_is_rescued() {
    // No stall rescue by the completer: only the backlog's own rescue can
    // make progress when a worker waits for drops queued behind itself.
    let completer = Completer::builder().stall_timeout(None).build().unwrap();
    let engine = null_engine(Duration::ZERO, &completer);
    let dev = null_dontcache_device(&engine, OpenOptions::new().dontcache_backlog_bytes_max(MIB));
    let (tx, rx) = mpsc::channel();
    let tx = Arc::new(Mutex::new(tx));
    fn chain(dev: Device, i: u64, tx: Arc<Mutex<mpsc::Sender<u64>>>) {
        let mut buf = dev.buf(MIB as usize);
        buf.fill(i as u8);
        let next = dev.clone();
        dev.submit(
            Bio::write(i * MIB, buf, move |e| {
                e.result().expect("write");
                assert!(!context::in_atomic());
                let _ = tx.lock().unwrap().send(i);
                if i < 31 {
                    // In a completer worker, into a backlog that is full
                    // until this very write's drop, which is queued behind
                    // this handler.
                    chain(next, i + 1, tx);
                }
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK),
        )
        .expect("submit");
    }
    chain(dev.clone(), 0, tx);
    for i in 0..32 {
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!(
                    "the chain stalled at {i}: {:?}",
                    dev.dontcache_stats()
                )),
            i
        );
    }
    dev.drain();
    let st = dev.dontcache_stats();
    eprintln!("{st:?}");
    assert_eq!(st.drops, 32, "{st:?}");
    for i in 0..32u64 {
        assert!(
            read_all(&dev, i * MIB, MIB as usize, BioFlags::empty())
                .iter()
                .all(|&b| b == i as u8)
        );
    }
}
