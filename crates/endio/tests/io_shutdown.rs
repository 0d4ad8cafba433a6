//! Shutdown: dropping the engine completes or cancels (ECANCELED) every bio
//! it holds, runs every handler exactly once, and leaves no thread behind.
//! One test in this binary, since it counts the process's threads.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::io_target::{backends, disk_dir};
use endio::{Backend, Bio, BioFlags, Completer, Engine, OpenOptions, SubmitErrorKind};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn wait_threads(want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} threads, {want} before the engine",
            threads()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn dropping_the_engine_completes_or_cancels_everything_and_joins_its_threads() {
    let dir = disk_dir();
    let completer = Completer::builder().build().unwrap();
    let baseline = threads();
    for backend in backends() {
        let engine = Engine::builder(completer.clone())
            .backend(backend)
            .queue_depth(64)
            .threads(1)
            .null_latency(Duration::from_millis(50))
            .build()
            .unwrap();
        let dev = engine
            .open(
                dir.path().join(format!("{backend}.dat")),
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .size(1 << 20),
            )
            .unwrap();
        let results = Arc::new(Mutex::new(Vec::new()));
        let n = 100u64;
        for i in 0..n {
            let results = Arc::clone(&results);
            let bio = Bio::read(i * 4096 % (1 << 20), dev.buf(4096), move |e| {
                results
                    .lock()
                    .unwrap()
                    .push((e.offset(), e.result().map_err(|e| e.raw_os_error())));
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK);
            dev.submit(bio).unwrap();
        }
        drop(engine);
        // The device outlives the engine: it refuses, handing the bio back.
        let e = dev
            .submit(Bio::nop(|_| panic!("must not run")))
            .unwrap_err();
        assert_eq!(e.kind(), SubmitErrorKind::ShutDown);
        drop(dev);
        assert!(completer.wait_idle(Duration::from_secs(30)));
        let results = results.lock().unwrap();
        assert_eq!(results.len() as u64, n, "{backend}: every handler ran once");
        let cancelled = results
            .iter()
            .filter(|(_, r)| *r == Err(Some(libc_ecanceled())))
            .count();
        let ok = results.iter().filter(|(_, r)| *r == Ok(4096)).count();
        assert_eq!(ok + cancelled, n as usize, "{backend}: {results:?}");
        eprintln!("{backend}: {ok} completed, {cancelled} cancelled at shutdown");
        wait_threads(baseline, &format!("{backend}"));
    }

    // The last engine handle dropped by a handler on the engine's own thread.
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Null)
        .build()
        .unwrap();
    let dev = engine
        .open(
            dir.path().join("self"),
            OpenOptions::new()
                .read(true)
                .create(true)
                .write(true)
                .size(4096),
        )
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let last = engine.clone();
    drop(engine);
    dev.submit(Bio::nop(move |_| {
        drop(last); // unflagged: runs on the null interrupt thread itself
        tx.send(()).unwrap();
    }))
    .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(dev);
    wait_threads(baseline, "engine dropped on its own thread");
}

fn libc_ecanceled() -> i32 {
    125 // ECANCELED on Linux
}
