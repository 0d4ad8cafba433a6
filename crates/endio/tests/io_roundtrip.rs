//! Data written through the engine reads back equal: temp files, buffered
//! and `O_DIRECT`, every backend, many bios in flight, handlers in task
//! context.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::io_target::{backends, disk_dir, engine};
use endio::{Backend, Bio, BioFlags, Completer, Device, EndedBio, OpenOptions, Verifier, context};

/// What the handlers of a batch saw.
#[derive(Default)]
struct Tracker {
    done: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// Handlers of COMPLETE_IN_TASK bios that ran in atomic context.
    atomic: AtomicU64,
}

impl Tracker {
    /// A handler for a bio of `len` bytes at `offset`; checks the pattern of
    /// a read with `verify`.
    fn handler(
        self: &Arc<Self>,
        len: usize,
        verify: Option<Arc<Verifier>>,
    ) -> impl FnOnce(EndedBio) + Send + 'static {
        let t = Arc::clone(self);
        move |ended| {
            if context::in_atomic() || !ended.was_deferred() {
                t.atomic.fetch_add(1, Ordering::Relaxed);
            }
            match ended.result() {
                Ok(n) if n == len => {
                    t.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                other => t.errors.lock().unwrap().push(format!(
                    "{:?} at {}: {other:?}, wanted {len}",
                    ended.op(),
                    ended.offset()
                )),
            }
            if let Some(v) = verify
                && let Err(e) = v.check(ended.buf(), ended.offset())
            {
                t.errors.lock().unwrap().push(e.to_string());
            }
            t.done.fetch_add(1, Ordering::Release);
        }
    }

    fn assert_clean(&self, what: &str, n: u64, completer: &Completer) {
        assert!(
            completer.wait_idle(Duration::from_secs(60)),
            "{what}: handlers still queued"
        );
        assert_eq!(self.done.load(Ordering::Acquire), n, "{what}: handlers run");
        let errors = self.errors.lock().unwrap();
        assert!(
            errors.is_empty(),
            "{what}: {} errors, first: {:?}",
            errors.len(),
            errors.first()
        );
        assert_eq!(
            self.atomic.load(Ordering::Relaxed),
            0,
            "{what}: task-context handlers ran atomic"
        );
    }
}

/// Writes `blocks` blocks of `bs` bytes with the verify pattern, flushes,
/// reads them back and checks them; all through `dev`.
fn write_then_verify(dev: &Device, completer: &Completer, bs: usize, blocks: u64, what: &str) {
    let verifier = Arc::new(Verifier::new(bs, 0x5eed ^ blocks));
    let writes = Arc::new(Tracker::default());
    for i in 0..blocks {
        let offset = i * bs as u64;
        let mut buf = dev.buf(bs);
        verifier.fill(&mut buf, offset);
        let bio = Bio::write(offset, buf, writes.handler(bs, None))
            .with_flags(BioFlags::COMPLETE_IN_TASK);
        dev.submit(bio).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    dev.drain();
    writes.assert_clean(&format!("{what} writes"), blocks, completer);
    let flushed = Arc::new(Tracker::default());
    dev.submit(Bio::flush(flushed.handler(0, None)).with_flags(BioFlags::COMPLETE_IN_TASK))
        .unwrap();
    dev.drain();
    flushed.assert_clean(&format!("{what} flush"), 1, completer);
    let reads = Arc::new(Tracker::default());
    for i in 0..blocks {
        let offset = i * bs as u64;
        let bio = Bio::read(
            offset,
            dev.buf(bs),
            reads.handler(bs, Some(Arc::clone(&verifier))),
        )
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        dev.submit(bio).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    dev.drain();
    reads.assert_clean(&format!("{what} reads"), blocks, completer);
    assert_eq!(verifier.stats().checked_bytes, blocks * bs as u64);
    assert_eq!(verifier.stats().errors, 0);
}

fn file_round_trip(direct: bool) {
    let dir = disk_dir();
    for backend in backends() {
        let (completer, engine) = engine(backend, 32);
        let path = dir.path().join(format!("{backend}-{direct}.dat"));
        let dev = engine
            .open(
                &path,
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .direct(direct),
            )
            .unwrap();
        assert_eq!(dev.is_direct(), direct);
        // 256 bios against 32 slots per lane: submit waits for slots.
        write_then_verify(
            &dev,
            &completer,
            16 * 1024,
            256,
            &format!("{backend} direct={direct}"),
        );
        if backend != Backend::Null {
            let on_disk = std::fs::read(&path).unwrap();
            assert_eq!(on_disk.len(), 256 * 16 * 1024, "{backend}: file length");
            let v = Verifier::new(16 * 1024, 0x5eed ^ 256);
            v.check(&on_disk, 0).unwrap();
        }
    }
}

#[test]
fn buffered_files_round_trip_on_every_backend() {
    file_round_trip(false);
}

#[test]
fn direct_files_round_trip_on_every_backend() {
    file_round_trip(true);
}

/// Every submit batch, from one system call per I/O to one per pass (and
/// beyond what the SQ holds), loses nothing: buffered, direct and emulated
/// dontcache writes (whose write-back stages are submitted the same way)
/// read back equal.
#[test]
fn io_uring_round_trips_with_every_submit_batch() {
    if endio::testing::probe_io_uring(std::path::Path::new("/proc")).is_err() {
        eprintln!("skipped io_uring_round_trips_with_every_submit_batch: io_uring unavailable");
        return;
    }
    let dir = disk_dir();
    for batch in [1, 7, 32, 4096] {
        let completer = Completer::builder().build().expect("completer");
        let engine = endio::Engine::builder(completer.clone())
            .backend(Backend::Uring)
            .queue_depth(32)
            .submit_batch(batch)
            .build()
            .unwrap_or_else(|e| panic!("submit batch {batch}: {e}"));
        for (name, o) in [
            ("buffered", OpenOptions::new()),
            ("direct", OpenOptions::new().direct(true)),
            (
                "dontcache",
                OpenOptions::new().dontcache(true).dontcache_emulated(true),
            ),
        ] {
            let path = dir.path().join(format!("batch{batch}-{name}.dat"));
            let dev = engine
                .open(&path, o.read(true).write(true).create(true))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            write_then_verify(
                &dev,
                &completer,
                4096,
                512,
                &format!("submit batch {batch}, {name}"),
            );
        }
    }
}

#[test]
fn many_threads_keep_many_bios_in_flight() {
    let dir = disk_dir();
    for backend in backends() {
        let (completer, engine) = engine(backend, 16);
        let dev = engine
            .open(
                dir.path().join(format!("{backend}-mt.dat")),
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .direct(true)
                    .size(4 << 20),
            )
            .unwrap();
        let tracker = Arc::new(Tracker::default());
        let threads = 4u64;
        let per_thread = 256u64;
        let bs = 4096usize;
        std::thread::scope(|s| {
            for t in 0..threads {
                let (dev, tracker) = (dev.clone(), Arc::clone(&tracker));
                s.spawn(move || {
                    for i in 0..per_thread {
                        let offset = (t * per_thread + i) * bs as u64;
                        let mut buf = dev.buf(bs);
                        buf.fill((t * 31 + i) as u8);
                        let bio = Bio::write(offset, buf, tracker.handler(bs, None))
                            .with_flags(BioFlags::COMPLETE_IN_TASK);
                        dev.submit(bio).unwrap();
                    }
                });
            }
        });
        dev.drain();
        tracker.assert_clean(
            &format!("{backend} concurrent writes"),
            threads * per_thread,
            &completer,
        );
        // Read everything back in one go and compare with what each thread wrote.
        let seen = Arc::new(Mutex::new(Vec::new()));
        for i in 0..threads * per_thread {
            let seen = Arc::clone(&seen);
            let bio = Bio::read(i * bs as u64, dev.buf(bs), move |ended| {
                seen.lock()
                    .unwrap()
                    .push((ended.offset(), ended.buf().to_vec()));
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK);
            dev.submit(bio).unwrap();
        }
        dev.drain();
        assert!(completer.wait_idle(Duration::from_secs(60)));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, threads * per_thread);
        for (offset, data) in seen.iter() {
            let block = offset / bs as u64;
            let (t, i) = (block / per_thread, block % per_thread);
            let want = (t * 31 + i) as u8;
            assert!(
                data.iter().all(|&b| b == want),
                "{backend}: block {block} differs"
            );
        }
    }
}

#[test]
fn flush_and_nop_complete_with_zero_bytes() {
    let dir = disk_dir();
    for backend in backends() {
        let (completer, engine) = engine(backend, 8);
        let dev = engine
            .open(
                dir.path().join(format!("{backend}-fn.dat")),
                OpenOptions::new().write(true).create(true),
            )
            .unwrap();
        let tracker = Arc::new(Tracker::default());
        dev.submit(Bio::flush(tracker.handler(0, None)).with_flags(BioFlags::COMPLETE_IN_TASK))
            .unwrap();
        dev.submit(Bio::nop(tracker.handler(0, None)).with_flags(BioFlags::COMPLETE_IN_TASK))
            .unwrap();
        dev.drain();
        tracker.assert_clean(&format!("{backend} flush+nop"), 2, &completer);
    }
}

#[test]
fn unflagged_handlers_run_inline_in_the_reapers_atomic_context() {
    let dir = disk_dir();
    for backend in backends() {
        let (_completer, engine) = engine(backend, 8);
        let dev = engine
            .open(
                dir.path().join(format!("{backend}-inl.dat")),
                OpenOptions::new().write(true).create(true),
            )
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let name = std::thread::current().name().map(str::to_owned);
        dev.submit(Bio::write(0, dev.buf(4096), move |ended| {
            let here = std::thread::current().name().map(str::to_owned);
            tx.send((
                context::in_atomic(),
                ended.was_deferred(),
                here != name,
                ended.result().ok(),
            ))
            .unwrap();
        }))
        .unwrap();
        let (atomic, deferred, other_thread, result) =
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(
            atomic,
            "{backend}: an unflagged handler runs in the reaper, atomic"
        );
        assert!(!deferred && other_thread, "{backend}");
        assert_eq!(result, Some(4096));
    }
}

#[test]
fn handlers_resubmit_from_task_context_and_inline() {
    // A chain: each handler submits the next bio. Flagged chains resubmit
    // from a completer worker (may wait for a slot); unflagged ones from
    // the reaper in atomic context (never wait: Busy comes back instead).
    let dir = disk_dir();
    for backend in backends() {
        for flags in [BioFlags::COMPLETE_IN_TASK, BioFlags::empty()] {
            let (completer, engine) = engine(backend, 4);
            let dev = engine
                .open(
                    dir.path().join(format!("{backend}-chain.dat")),
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .size(1 << 20),
                )
                .unwrap();
            let (tx, rx) = std::sync::mpsc::channel::<u64>();
            fn link(
                dev: Device,
                left: u64,
                flags: BioFlags,
                tx: std::sync::mpsc::Sender<u64>,
            ) -> Bio {
                Bio::read(left * 512 % (1 << 20), dev.buf(512), move |ended| {
                    assert_eq!(ended.result().unwrap(), 512);
                    if left == 0 {
                        tx.send(0).unwrap();
                        return;
                    }
                    let next = link(dev.clone(), left - 1, flags, tx.clone());
                    if let Err(e) = dev.submit(next) {
                        tx.send(left).unwrap();
                        panic!("resubmit refused: {e}");
                    }
                })
                .with_flags(flags)
            }
            for _ in 0..4 {
                dev.submit(link(dev.clone(), 200, flags, tx.clone()))
                    .unwrap();
            }
            for _ in 0..4 {
                assert_eq!(
                    rx.recv_timeout(Duration::from_secs(30)).unwrap(),
                    0,
                    "{backend} {flags:?}"
                );
            }
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(30)));
        }
    }
}

#[test]
fn a_read_across_the_end_of_a_file_is_short() {
    let dir = disk_dir();
    for backend in backends() {
        if backend == Backend::Null {
            continue; // memory devices have a fixed size and refuse it
        }
        let (_completer, engine) = engine(backend, 8);
        let path = dir.path().join(format!("{backend}-short.dat"));
        std::fs::write(&path, vec![9u8; 1000]).unwrap();
        let dev = engine.open(&path, OpenOptions::new().read(true)).unwrap();
        assert_eq!(dev.size(), 1000);
        let (tx, rx) = std::sync::mpsc::channel();
        dev.submit(Bio::read(512, dev.buf(4096), move |e| {
            tx.send(e.result().ok()).unwrap()
        }))
        .unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Some(488),
            "{backend}"
        );
    }
}
