//! The null backend: an in-memory device completed after the configured
//! latency by whoever drives its lane: the CPU's completer worker, or the
//! lane's interrupt-like thread.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use endio::{Backend, Bio, BioFlags, Completer, DeviceKind, Engine, OpenOptions};

fn null_engine(latency: Duration) -> (Completer, Engine) {
    null_engine_driven(latency, true)
}

fn null_engine_driven(latency: Duration, worker_driven: bool) -> (Completer, Engine) {
    let completer = Completer::builder().build().unwrap();
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Null)
        .null_latency(latency)
        .worker_driven(worker_driven)
        .build()
        .unwrap();
    (completer, engine)
}

#[test]
fn memory_devices_keep_data_and_start_zeroed() {
    let (_c, engine) = null_engine(Duration::ZERO);
    let dev = engine
        .open(
            "/nonexistent/endio-null",
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .size(1 << 30),
        )
        .unwrap();
    assert_eq!(dev.kind(), DeviceKind::Memory);
    assert_eq!(dev.size(), 1 << 30);
    assert!(!std::path::Path::new("/nonexistent/endio-null").exists());
    let (tx, rx) = mpsc::channel();
    let mut buf = dev.buf(8192);
    buf.fill(0x5a);
    let t = tx.clone();
    dev.submit(Bio::write((1 << 30) - 8192, buf, move |e| {
        t.send(e.into_buf().to_vec()).unwrap()
    }))
    .unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    for offset in [(1 << 30) - 8192, 0] {
        let t = tx.clone();
        dev.submit(Bio::read(offset, dev.buf(8192), move |e| {
            t.send(e.into_buf().to_vec()).unwrap()
        }))
        .unwrap();
    }
    let (a, b) = (rx.recv().unwrap(), rx.recv().unwrap());
    let (written, fresh) = if a[0] == 0x5a { (a, b) } else { (b, a) };
    assert!(written.iter().all(|&x| x == 0x5a));
    assert!(fresh.iter().all(|&x| x == 0));
}

/// One bio of each kind after `latency`: the unflagged one's handler runs
/// in atomic context in the thread that drives the lane (named in
/// `inline_thread`), the flagged one's in task context on a completer
/// worker.
fn completions_come_after_the_latency(worker_driven: bool, inline_thread: &[&str]) {
    let latency = Duration::from_millis(20);
    let (completer, engine) = null_engine_driven(latency, worker_driven);
    let dev = engine
        .open(
            "/nonexistent/endio-null",
            OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .size(1 << 20),
        )
        .unwrap();
    if worker_driven {
        // A lane starts with its own thread, which hands it to the worker
        // once asked: until a completion is the worker's.
        let deadline = Instant::now() + Duration::from_secs(10);
        while engine.drive_stats().worker_completions == 0 {
            assert!(Instant::now() < deadline, "the worker never drove its lane");
            let (tx, rx) = mpsc::channel();
            dev.submit(
                Bio::read(0, dev.buf(512), move |_| tx.send(()).unwrap())
                    .with_flags(BioFlags::COMPLETE_IN_TASK),
            )
            .unwrap();
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    for flags in [BioFlags::empty(), BioFlags::COMPLETE_IN_TASK] {
        let tx = tx.clone();
        dev.submit(
            Bio::read(0, dev.buf(512), move |e| {
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((
                    start.elapsed(),
                    thread,
                    endio::context::in_atomic(),
                    e.was_deferred(),
                ))
                .unwrap();
            })
            .with_flags(flags),
        )
        .unwrap();
    }
    let mut seen: Vec<_> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
        .collect();
    seen.sort_by_key(|s| s.3);
    let (elapsed, thread, atomic, deferred) = &seen[0];
    assert!(
        *elapsed >= latency,
        "completed after {elapsed:?}, latency {latency:?}"
    );
    assert!(
        inline_thread.iter().any(|t| thread.starts_with(t)),
        "{thread}"
    );
    assert!(*atomic && !*deferred);
    let (elapsed, thread, atomic, deferred) = &seen[1];
    assert!(*elapsed >= latency);
    assert!(
        thread.starts_with("endio-worker") || !thread.starts_with("endio-null"),
        "{thread}"
    );
    assert!(!*atomic && *deferred);
    assert!(completer.stats().total.deferred >= 1);
}

#[test]
fn completions_come_after_the_latency_from_the_interrupt_thread() {
    completions_come_after_the_latency(false, &["endio-null/"]);
}

#[test]
fn completions_come_after_the_latency_from_the_lane_driver() {
    // Submitted from CPU 0 once its worker drives CPU 0's lane: the inline
    // handler runs in that worker, in atomic context.
    std::thread::scope(|s| {
        s.spawn(|| {
            endio::testing::pin_current_thread(0).expect("pin to CPU 0");
            completions_come_after_the_latency(true, &["endio-worker/0"]);
        });
    });
}
