//! A CPU's completer worker drives that CPU's engine lane when it has
//! nothing to run: deferred handlers run in the thread that reaped them,
//! and the lane's own thread takes the lane over whenever the worker cannot
//! drive it (stuck in a handler, its CPU going down, shutdown), so no I/O
//! waits for a handler.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::io_target::disk_dir;
use endio::{Backend, Bio, BioFlags, Completer, Device, Engine, OpenOptions, context};

/// How long a test waits for what must happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

fn uring_or_skip(test: &str) -> bool {
    match endio::testing::probe_io_uring(std::path::Path::new("/proc")) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("{test} skipped: io_uring is unavailable: {e}");
            false
        }
    }
}

/// An engine whose I/O stays on the submitting CPU's lane (no steering),
/// on a completer that hands a lane over after `rescue_after`.
fn engine(backend: Backend, rescue_after: Duration) -> (Completer, Engine) {
    let completer = Completer::builder()
        .lane_rescue_after(rescue_after)
        .build()
        .expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(backend)
        .steer_direct_io(false)
        .build()
        .expect("engine");
    (completer, engine)
}

/// A 1 MiB file of 7s, opened for reading (direct or buffered).
fn data_file(engine: &Engine, dir: &tempfile::TempDir, direct: bool) -> Device {
    let path = dir.path().join("data");
    if !path.exists() {
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    }
    engine
        .open(&path, OpenOptions::new().read(true).direct(direct))
        .expect("open")
}

/// Runs `f` on a thread pinned to CPU 0 (every machine has it), inside
/// which `f`'s handlers are deferred to CPU 0's worker.
fn on_cpu0<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    on_cpu(0, f)
}

/// Runs `f` on a thread pinned to `cpu`.
fn on_cpu<R: Send>(cpu: usize, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            common::pin(cpu);
            f()
        })
        .join()
        .unwrap()
    })
}

/// Waits until CPU 0's worker drives its lane (a lane starts with its own
/// thread, which hands it over once the worker asks): reads from CPU 0
/// until one is completed by the worker.
fn worker_drives_cpu0(engine: &Engine, dev: &Device) {
    worker_drives(engine, dev, 0);
}

/// As [`worker_drives_cpu0`], for `cpu`.
fn worker_drives(engine: &Engine, dev: &Device, cpu: usize) {
    let deadline = std::time::Instant::now() + PATIENCE;
    on_cpu(cpu, || {
        loop {
            let before = engine.drive_stats().worker_completions;
            let (tx, rx) = mpsc::channel();
            dev.submit(read_sending(dev, tx).with_flags(BioFlags::COMPLETE_IN_TASK))
                .unwrap();
            assert_eq!(rx.recv_timeout(PATIENCE), Ok(Ok(4096)));
            if engine.drive_stats().worker_completions > before {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "CPU {cpu}'s worker never drove its lane: {:?}",
                engine.drive_stats()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// A read of the first 4 KiB whose handler sends its result.
fn read_sending(dev: &Device, tx: mpsc::Sender<Result<usize, String>>) -> Bio {
    Bio::read(0, dev.buf(4096), move |ended| {
        let _ = tx.send(ended.result().map_err(|e| e.to_string()));
    })
}

#[test]
fn deferred_handlers_run_in_the_worker_that_reaped_their_io() {
    let mut backends = vec![Backend::Null];
    if uring_or_skip("deferred_handlers_run_in_the_worker_that_reaped_their_io (io_uring part)") {
        backends.push(Backend::Uring);
    }
    for backend in backends {
        let (_completer, engine) = engine(backend, Duration::from_millis(1));
        assert!(
            backend != Backend::Uring
                || engine
                    .ring_flags()
                    .is_some_and(|f| !f.contains("SINGLE_ISSUER")),
            "a ring its worker drives is entered by two threads: {:?}",
            engine.ring_flags()
        );
        let dir = disk_dir();
        let dev = match backend {
            Backend::Null => engine
                .open(
                    "/nonexistent/endio-driven",
                    OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create(true)
                        .size(1 << 20),
                )
                .unwrap(),
            _ => data_file(&engine, &dir, false),
        };
        let threads: Vec<String> = on_cpu0(|| {
            let (tx, rx) = mpsc::channel();
            (0..200)
                .map(|_| {
                    let tx = tx.clone();
                    let bio = Bio::read(0, dev.buf(4096), move |ended| {
                        assert!(ended.result().is_ok(), "{:?}", ended.result());
                        let name = std::thread::current().name().unwrap_or("").to_owned();
                        tx.send(name).unwrap();
                    })
                    .with_flags(BioFlags::COMPLETE_IN_TASK);
                    dev.submit(bio).unwrap();
                    // One at a time: the worker sleeps in the lane between
                    // them.
                    rx.recv_timeout(PATIENCE).expect("the handler ran")
                })
                .collect()
        });
        // (Deferred handlers run on the worker whoever reaped them; the
        // counter below says who reaped.)
        assert!(
            threads.iter().all(|t| t == "endio-worker/0"),
            "{backend}: handlers ran on {threads:?}"
        );
        assert!(dev.drain_timeout(PATIENCE));
        let stats = engine.drive_stats();
        assert!(
            stats.worker_completions > 100,
            "{backend}: the worker reaped most of the I/O: {stats:?}"
        );
    }
}

#[test]
fn a_handler_blocked_on_io_waiting_to_be_issued_is_rescued() {
    if !uring_or_skip("a_handler_blocked_on_io_waiting_to_be_issued_is_rescued") {
        return;
    }
    let (completer, engine) = engine(Backend::Uring, Duration::from_millis(1));
    let dir = disk_dir();
    let dev = Arc::new(data_file(&engine, &dir, false));
    worker_drives_cpu0(&engine, &dev);
    let (done_tx, done_rx) = mpsc::channel();
    on_cpu0(|| {
        let inner = Arc::clone(&dev);
        let bio = Bio::nop(move |_| {
            // Task context on CPU 0's worker, which drives CPU 0's ring:
            // this read waits in the lane's inbox while the worker is here.
            let (tx, rx) = mpsc::channel();
            inner.submit(read_sending(&inner, tx)).unwrap();
            done_tx.send(rx.recv_timeout(PATIENCE)).unwrap();
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    });
    let got = done_rx.recv_timeout(PATIENCE * 2).expect("the handler ran");
    assert_eq!(
        got.expect("the read completed while its submitter waited"),
        Ok(4096)
    );
    assert!(completer.stats().total.lane_rescues >= 1);
    assert!(
        engine.drive_stats().takeovers >= 1,
        "{:?} {:?}",
        engine.drive_stats(),
        completer.stats().total
    );
}

#[test]
fn a_handler_blocked_on_io_its_own_worker_issued_is_rescued() {
    if !uring_or_skip("a_handler_blocked_on_io_its_own_worker_issued_is_rescued") {
        return;
    }
    // The read is issued by the worker (its completion is task work of the
    // worker's thread) and still in flight when the next handler blocks on
    // it; the lane's reaper, which takes the lane over, finds the
    // completion only because the kernel runs that task work in the
    // blocked thread. A large direct read stays in flight long enough for
    // the handler to block first; should the device be faster, the round
    // is tried again.
    let (completer, engine) = engine(Backend::Uring, Duration::from_millis(1));
    let dir = disk_dir();
    let path = dir.path().join("big");
    std::fs::write(&path, vec![9u8; 16 << 20]).unwrap();
    let dev = Arc::new(
        engine
            .open(&path, OpenOptions::new().read(true).direct(true))
            .expect("open"),
    );
    worker_drives_cpu0(&engine, &dev);
    for round in 0.. {
        let (done_tx, done_rx) = mpsc::channel();
        on_cpu0(|| {
            let (tx, rx) = mpsc::channel();
            let waiter = Bio::nop(move |_| {
                done_tx.send(rx.recv_timeout(PATIENCE)).unwrap();
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK);
            let inner = Arc::clone(&dev);
            let punt = completer.clone();
            let issuer = Bio::nop(move |_| {
                let read = Bio::read(0, inner.buf(8 << 20), move |ended| {
                    let _ = tx.send(ended.result().map_err(|e| e.to_string()));
                });
                inner.submit(read).unwrap();
                // Behind the read: the worker issues the read when it takes
                // its queue again, then runs the waiter.
                let _atomic = context::atomic();
                punt.endio(waiter);
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK);
            let _atomic = context::atomic();
            completer.endio(issuer);
        });
        let got = done_rx.recv_timeout(PATIENCE * 2).expect("the handler ran");
        assert_eq!(
            got.expect("the read completed while a handler of its worker waited"),
            Ok(8 << 20)
        );
        if engine.drive_stats().takeovers >= 1 {
            return;
        }
        assert!(
            round < 5,
            "the read completed before the handler blocked, 5 times: {:?}",
            engine.drive_stats()
        );
        worker_drives_cpu0(&engine, &dev);
    }
}

#[test]
fn a_blocking_call_in_a_handler_drives_the_lane_itself() {
    if !uring_or_skip("a_blocking_call_in_a_handler_drives_the_lane_itself") {
        return;
    }
    // No rescue for an hour: without driving the lane itself, the blocking
    // read would wait for it.
    let (completer, engine) = engine(Backend::Uring, Duration::from_secs(3600));
    let dir = disk_dir();
    let dev = Arc::new(data_file(&engine, &dir, false));
    worker_drives_cpu0(&engine, &dev);
    let (done_tx, done_rx) = mpsc::channel();
    on_cpu0(|| {
        let inner = Arc::clone(&dev);
        let bio = Bio::nop(move |_| {
            let mut buf = vec![0u8; 8192];
            let read = inner.read_exact_at(&mut buf, 4096).map(|()| buf[0]);
            done_tx.send(read.map_err(|e| e.to_string())).unwrap();
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    });
    let got = done_rx
        .recv_timeout(PATIENCE)
        .expect("the blocking read returned");
    assert_eq!(got, Ok(7));
    assert_eq!(completer.stats().total.lane_rescues, 0);
}

#[test]
fn down_prep_hands_the_lane_to_its_reaper_and_online_gives_it_back() {
    if !uring_or_skip("down_prep_hands_the_lane_to_its_reaper_and_online_gives_it_back") {
        return;
    }
    let (completer, engine) = engine(Backend::Uring, Duration::from_millis(1));
    if completer.online_cpus().len() < 2 {
        eprintln!(
            "down_prep_hands_the_lane_to_its_reaper_and_online_gives_it_back skipped: one CPU"
        );
        return;
    }
    let dir = disk_dir();
    let dev = data_file(&engine, &dir, false);
    worker_drives_cpu0(&engine, &dev);
    let read_on_cpu0 = |flags: BioFlags| {
        on_cpu0(|| {
            let (tx, rx) = mpsc::channel();
            dev.submit(read_sending(&dev, tx).with_flags(flags))
                .unwrap();
            rx.recv_timeout(PATIENCE)
        })
    };
    assert_eq!(read_on_cpu0(BioFlags::empty()), Ok(Ok(4096)));
    let taken = engine.drive_stats().takeovers;
    completer.cpu_down_prep(0).unwrap();
    // The worker may not drive now: it hands the lane to the reaper (once
    // it wakes), which completes the I/O (inline handlers; deferred ones
    // wait for the CPU).
    let deadline = std::time::Instant::now() + PATIENCE;
    while engine.drive_stats().takeovers == taken {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never handed its lane over: {:?}",
            engine.drive_stats()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = engine.drive_stats();
    for _ in 0..20 {
        assert_eq!(read_on_cpu0(BioFlags::empty()), Ok(Ok(4096)));
    }
    let during = engine.drive_stats();
    assert!(
        during.reaper_completions >= before.reaper_completions + 20,
        "{before:?} -> {during:?}"
    );
    completer.cpu_online(0).unwrap();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        assert_eq!(read_on_cpu0(BioFlags::COMPLETE_IN_TASK), Ok(Ok(4096)));
        // The reaper counts its hand-back after the worker may have run.
        let now = engine.drive_stats();
        if now.worker_completions > during.worker_completions && now.handbacks > during.handbacks {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker took its lane back: {during:?} -> {now:?}"
        );
    }
}

#[test]
fn an_engine_closes_while_its_worker_is_stuck_in_a_handler() {
    if !uring_or_skip("an_engine_closes_while_its_worker_is_stuck_in_a_handler") {
        return;
    }
    let (completer, engine) = engine(Backend::Uring, Duration::from_millis(1));
    let dir = disk_dir();
    let dev = data_file(&engine, &dir, false);
    worker_drives_cpu0(&engine, &dev);
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    on_cpu0(|| {
        let gate = Arc::clone(&gate);
        let bio = Bio::nop(move |_| {
            entered_tx.send(()).unwrap();
            drop(gate.lock());
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    });
    entered_rx
        .recv_timeout(PATIENCE)
        .expect("the handler started");
    let (closed_tx, closed_rx) = mpsc::channel();
    let closer = std::thread::spawn(move || {
        drop(dev);
        drop(engine);
        closed_tx.send(()).unwrap();
    });
    let closed = closed_rx.recv_timeout(PATIENCE);
    drop(held);
    closer.join().unwrap();
    closed.expect("the engine closed while the worker was inside a handler");
}

#[test]
fn a_handler_that_fills_its_lane_drives_it_to_free_slots() {
    if !uring_or_skip("a_handler_that_fills_its_lane_drives_it_to_free_slots") {
        return;
    }
    // Four slots per lane and no rescue for an hour. Every other CPU's
    // worker drives its lane and is then held in a handler, so nothing
    // frees the slots of those lanes; once the handler on CPU 0 has filled
    // them all, each submit waits for a slot of CPU 0's lane, which only
    // that lane's driver frees: the waiting worker itself.
    let completer = Completer::builder()
        .lane_rescue_after(Duration::from_secs(3600))
        .build()
        .expect("completer");
    let cpus = completer.online_cpus();
    if cpus.len() < 2 || cpus[0] != 0 {
        eprintln!(
            "a_handler_that_fills_its_lane_drives_it_to_free_slots skipped: needs CPU 0 and another"
        );
        return;
    }
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Uring)
        .steer_direct_io(false)
        .queue_depth(4)
        .build()
        .expect("engine");
    let dir = disk_dir();
    let dev = Arc::new(data_file(&engine, &dir, false));
    let others = &cpus[1..];
    for &cpu in cpus.iter() {
        worker_drives(&engine, &dev, cpu);
    }
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    for &cpu in others {
        on_cpu(cpu, || {
            let gate = Arc::clone(&gate);
            let entered_tx = entered_tx.clone();
            let bio = Bio::nop(move |_| {
                entered_tx.send(()).unwrap();
                drop(gate.lock());
            })
            .with_flags(BioFlags::COMPLETE_IN_TASK);
            let _atomic = context::atomic();
            completer.endio(bio);
        });
    }
    for _ in others {
        entered_rx
            .recv_timeout(PATIENCE)
            .expect("the other workers are held");
    }
    let reads = 8 * 4 * cpus.len();
    let (tx, rx) = mpsc::channel();
    let (submitted_tx, submitted_rx) = mpsc::channel();
    on_cpu0(|| {
        let inner = Arc::clone(&dev);
        let bio = Bio::nop(move |_| {
            for _ in 0..reads {
                inner.submit(read_sending(&inner, tx.clone())).unwrap();
            }
            submitted_tx.send(()).unwrap();
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    });
    let submitted = submitted_rx.recv_timeout(PATIENCE);
    // All but the reads stuck in the held lanes completed while the others
    // were held: CPU 0's worker drove its lane from inside its handler.
    let stuck = 4 * others.len();
    let early: Vec<_> = (0..reads - stuck)
        .map(|_| rx.recv_timeout(PATIENCE))
        .collect();
    drop(held);
    submitted.expect("the handler submitted every read");
    let late: Vec<_> = (0..stuck).map(|_| rx.recv_timeout(PATIENCE)).collect();
    assert!(
        early.iter().chain(&late).all(|r| *r == Ok(Ok(4096))),
        "every read completed: {early:?} {late:?}"
    );
    assert_eq!(completer.stats().total.lane_rescues, 0);
}

#[test]
fn an_engine_dropped_by_an_inline_handler_in_its_workers_pass_closes() {
    if !uring_or_skip("an_engine_dropped_by_an_inline_handler_in_its_workers_pass_closes") {
        return;
    }
    // The handler of an unflagged read runs in atomic context inside the
    // pass of the worker that drives the lane, while that worker holds the
    // lane the lane's own thread waits for to shut down.
    let (_completer, engine) = engine(Backend::Uring, Duration::from_millis(1));
    let dir = disk_dir();
    let dev = data_file(&engine, &dir, false);
    worker_drives_cpu0(&engine, &dev);
    let (tx, rx) = mpsc::channel();
    on_cpu0(|| {
        let bio = Bio::read(0, dev.buf(4096), move |_| {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            drop(engine);
            tx.send(thread).unwrap();
        });
        dev.submit(bio).unwrap();
    });
    let thread = rx
        .recv_timeout(PATIENCE)
        .expect("the last engine handle was dropped inside the worker's pass without a hang");
    assert_eq!(
        thread, "endio-worker/0",
        "the handler ran in the worker's pass"
    );
}

#[test]
fn a_worker_whose_drain_is_revoked_in_a_stall_loses_its_lane() {
    if !uring_or_skip("a_worker_whose_drain_is_revoked_in_a_stall_loses_its_lane") {
        return;
    }
    // No lane rescue for an hour: only the stall rescue's revocation of the
    // worker's drain (after 50 ms in one handler) hands the lane over.
    let completer = Completer::builder()
        .stall_timeout(Some(Duration::from_millis(50)))
        .lane_rescue_after(Duration::from_secs(3600))
        .build()
        .expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Uring)
        .steer_direct_io(false)
        .build()
        .expect("engine");
    let dir = disk_dir();
    let dev = data_file(&engine, &dir, false);
    worker_drives_cpu0(&engine, &dev);
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock().unwrap();
    let (entered_tx, entered_rx) = mpsc::channel();
    on_cpu0(|| {
        let gate = Arc::clone(&gate);
        let bio = Bio::nop(move |_| {
            entered_tx.send(()).unwrap();
            drop(gate.lock());
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    });
    entered_rx
        .recv_timeout(PATIENCE)
        .expect("the handler started");
    // Well past the stall timeout: the drain was revoked with an idle lane.
    std::thread::sleep(Duration::from_millis(300));
    let read = on_cpu0(|| {
        let (tx, rx) = mpsc::channel();
        dev.submit(read_sending(&dev, tx)).unwrap();
        rx.recv_timeout(PATIENCE)
    });
    drop(held);
    assert_eq!(
        read,
        Ok(Ok(4096)),
        "a read on the stuck worker's lane completed"
    );
    assert!(completer.stats().total.lane_rescues >= 1);
}

/// CPU time (user + system, clock ticks) of thread `tid` of this process.
fn thread_cpu_ticks(tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) in parentheses:
    // utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_worker_waits_while_a_rescuer_drains_its_cpu() {
    if !uring_or_skip("a_worker_waits_while_a_rescuer_drains_its_cpu") {
        return;
    }
    // CPU 0's worker is stuck in a handler for 300 ms. After 100 ms the
    // watchdog revokes its drain and a rescuer runs the rest of the batch:
    // six handlers of 80 ms (each shorter than the stall timeout, in one run
    // of the 2 s budget), until about 600 ms. When the worker comes back,
    // the rescuer is draining and more bios wait in the queue: the worker
    // waits for the rescuer on its thread, not in a loop of futile drains.
    let completer = Completer::builder()
        .stall_timeout(Some(Duration::from_millis(100)))
        .lane_rescue_after(Duration::from_secs(3600))
        .budget(endio::Budget {
            handlers_max: u32::MAX,
            time_max: Duration::from_secs(2),
        })
        .build()
        .expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Uring)
        .steer_direct_io(false)
        .build()
        .expect("engine");
    let dir = disk_dir();
    let dev = data_file(&engine, &dir, false);
    worker_drives_cpu0(&engine, &dev);
    let (tid_tx, tid_rx) = mpsc::channel();
    let nop =
        |f: Box<dyn FnOnce() + Send>| Bio::nop(move |_| f()).with_flags(BioFlags::COMPLETE_IN_TASK);
    on_cpu0(|| {
        let _atomic = context::atomic();
        completer.endio(nop(Box::new(move || {
            tid_tx
                .send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
        })));
        for _ in 0..6 {
            completer.endio(nop(Box::new(|| {
                std::thread::sleep(Duration::from_millis(80));
            })));
        }
    });
    let tid = tid_rx.recv_timeout(PATIENCE).expect("the worker started");
    // The worker is back after 300 ms; bios wait behind the rescuer's.
    std::thread::sleep(Duration::from_millis(330));
    on_cpu0(|| {
        let _atomic = context::atomic();
        for _ in 0..4 {
            completer.endio(nop(Box::new(|| {})));
        }
    });
    let before = thread_cpu_ticks(tid);
    std::thread::sleep(Duration::from_millis(200));
    let spent = thread_cpu_ticks(tid) - before;
    assert!(completer.wait_idle(PATIENCE), "every handler ran");
    let stats = completer.stats().total;
    assert!(
        stats.rescues >= 1 && stats.rescued >= 1,
        "a rescuer drained: {stats:?}"
    );
    let tick_ms = 1000 / rustix::param::clock_ticks_per_second();
    assert!(
        spent * tick_ms < 50,
        "the worker spent {} ms of CPU in 200 ms while a rescuer drained its CPU",
        spent * tick_ms
    );
}
