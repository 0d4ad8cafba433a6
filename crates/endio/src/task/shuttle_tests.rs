//! Randomized schedule tests of the lifecycle with shuttle: producers on two
//! CPUs, the workers, a rescue and online / down_prep / dead / rolled-back
//! offline steps, interleaved by shuttle's random scheduler. The code under
//! test is the real `Completer` (the sync facade swaps in shuttle's
//! primitives); only time is kept out (count budgets, rescue triggered
//! explicitly), so a seed replays a schedule exactly.
//!
//! Properties, checked in every execution:
//! 1. every handler runs exactly once;
//! 2. safety: no drain takes a bio off a CPU's batch after `cpu_down_prep`
//!    for that CPU returned (until it is back online), except `cpu_dead`'s
//!    drain; checked at the very point where a drain pops a bio (a test
//!    hook in `protocol.rs`);
//! 3. liveness: once the lifecycle steps are done and every CPU is online,
//!    the completer reaches quiescence (nothing queued) within a bounded
//!    number of scheduling steps.
//!
//! `ci/shuttle.sh` documents the settings; `ENDIO_SHUTTLE_SEED` replays a
//! seed, `ENDIO_SHUTTLE_ITERATIONS` sets the number of schedules per test.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool as StdAtomicBool;
use std::sync::atomic::AtomicU64 as StdAtomicU64;
use std::time::Duration;

use super::protocol::{ON_POP, Role};
use super::{Batching, Budget, Completer, worker};
use crate::bio::{Bio, BioFlags};
use crate::context;
use crate::sync::{Arc, AtomicU64, Ordering, set_current_cpu, thread};

/// Bios per producer. Small, like every capacity under a checker: the
/// interesting interleavings need two or three bios per CPU, not hundreds.
const BIOS_PER_PRODUCER: u64 = 3;
/// A run budget of two handlers, so requeues happen in short schedules.
const HANDLERS_PER_RUN: u32 = 2;
/// Scheduling steps the liveness phase may take.
const LIVENESS_STEPS: usize = 10_000;

/// A fake sysfs with CPUs 0-1, made once per process.
fn sysfs() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("endio-shuttle-{}", std::process::id()));
        let dir = root.join("devices/system/cpu");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("possible"), "0-1\n").unwrap();
        std::fs::write(dir.join("online"), "0-1\n").unwrap();
        root
    })
}

/// What the test thread does to CPU 1 while the producers run.
#[derive(Debug, Clone, Copy)]
enum Steps {
    /// down_prep, then online: a rolled-back offline (nothing may be
    /// stranded).
    Rollback,
    /// down_prep, dead, online: a full offline and back.
    OfflineOnline,
    /// A rescue of whatever drainer is inside a handler (a rescuer drains
    /// the CPU from another thread), then a rolled-back offline.
    RescueThenRollback,
}

struct Shared {
    /// Per producer and sequence number: how often the handler ran.
    runs: Vec<AtomicU64>,
}

// Plain std atomics: read by the pop hook, which runs inside the protocol's
// critical sections, and reset by each execution. Shuttle runs one thread
// at a time, so they are coherent without being modelled. They are global,
// so the tests run one at a time (`--test-threads=1` in ci/shuttle.sh).
/// CPU 1 is between `cpu_down_prep(1)` returning and `cpu_online(1)`.
static CPU1_DOWN: StdAtomicBool = StdAtomicBool::new(false);
/// Pops from CPU 1's batch by anyone but `cpu_dead` while CPU 1 was down.
static VIOLATIONS: StdAtomicU64 = StdAtomicU64::new(0);

/// Called by `Shared::drain` each time a drain takes a bio off `cpu`'s batch
/// (installed as the protocol's `ON_POP` hook).
fn on_pop(cpu: usize, role: Role) {
    if cpu == 1 && role != Role::Dead && CPU1_DOWN.load(std::sync::atomic::Ordering::SeqCst) {
        VIOLATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn seed() -> u64 {
    std::env::var("ENDIO_SHUTTLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

fn iterations() -> usize {
    std::env::var("ENDIO_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300)
}

fn check(steps: Steps) {
    let seed = seed();
    let iterations = iterations();
    eprintln!(
        "shuttle {steps:?}: seed {seed}, {iterations} schedules (replay: ENDIO_SHUTTLE_SEED={seed} bash ci/shuttle.sh)"
    );
    let _ = ON_POP.set(on_pop);
    shuttle::check_random_with_seed(move || execution(steps), seed, iterations);
}

fn execution(steps: Steps) {
    let completer = Completer::builder()
        .sysfs_root(sysfs())
        .pin_workers(false)
        .hotplug_watcher(false)
        .stall_timeout(None)
        .batching(Batching::Immediate)
        .budget(Budget {
            handlers_max: HANDLERS_PER_RUN,
            time_max: Duration::from_secs(3600),
        })
        .build()
        .unwrap();
    CPU1_DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    VIOLATIONS.store(0, std::sync::atomic::Ordering::SeqCst);
    let state = Arc::new(Shared {
        runs: (0..2 * BIOS_PER_PRODUCER)
            .map(|_| AtomicU64::new(0))
            .collect(),
    });
    let producers: Vec<_> = (0..2)
        .map(|cpu| {
            let (completer, state) = (completer.clone(), state.clone());
            thread::Builder::new()
                .spawn(move || produce(&completer, &state, cpu))
                .unwrap()
        })
        .collect();

    // The lifecycle steps, racing the producers and workers.
    let shared = &completer.handle.shared;
    if let Steps::RescueThenRollback = steps {
        // Any drainer inside a handler counts as stalled.
        worker::rescue_stalled(shared, u64::MAX, Duration::from_nanos(1));
    }
    completer.cpu_down_prep(1).unwrap();
    CPU1_DOWN.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Steps::OfflineOnline = steps {
        completer.cpu_dead(1).unwrap();
    }
    // Cleared before online: once online starts, the worker may drain again.
    CPU1_DOWN.store(false, std::sync::atomic::Ordering::SeqCst);
    completer.cpu_online(1).unwrap();

    for p in producers {
        p.join().unwrap();
    }
    // Liveness: every CPU is online and the faults are over; the workers
    // must reach quiescence within a bounded number of steps.
    let mut steps_taken = 0;
    while completer.stats().total.queued() != 0 {
        steps_taken += 1;
        assert!(
            steps_taken < LIVENESS_STEPS,
            "not quiescent after {LIVENESS_STEPS} steps: {:?}",
            completer.stats().total
        );
        thread::yield_now();
    }
    for (i, runs) in state.runs.iter().enumerate() {
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "handler {i} ran a wrong number of times"
        );
    }
    assert_eq!(
        VIOLATIONS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a drain took a bio off CPU 1's batch after cpu_down_prep(1) returned"
    );
    let total = completer.stats().total;
    assert_eq!(total.handlers, 2 * BIOS_PER_PRODUCER);
}

fn produce(completer: &Completer, state: &Arc<Shared>, cpu: usize) {
    set_current_cpu(cpu);
    for seq in 0..BIOS_PER_PRODUCER {
        let id = cpu as u64 * BIOS_PER_PRODUCER + seq;
        let state2 = state.clone();
        let bio = Bio::nop(move |_| {
            state2.runs[id as usize].fetch_add(1, Ordering::SeqCst);
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        completer.endio(bio);
    }
}

#[test]
fn rolled_back_offline() {
    check(Steps::Rollback);
}

#[test]
fn offline_and_online() {
    check(Steps::OfflineOnline);
}

#[test]
fn rescue_then_rolled_back_offline() {
    check(Steps::RescueThenRollback);
}
