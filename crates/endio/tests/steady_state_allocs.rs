//! Zero heap allocations per deferred completion and per I/O of the null
//! backend, in steady state: a closed loop whose handlers make the next bio
//! (by `EndedBio::into_bio`, or a new `Bio` on the same thread) allocates
//! nothing once warmed up. A counting global allocator (this test binary's
//! own) counts every allocation of the process; the tests take one lock,
//! and each runs its loops one after the other, so nothing else runs
//! meanwhile.
//!
//! The completer is built without its hotplug watcher, whose periodic read
//! of the sysfs CPU lists allocates (a few times per poll, not per I/O).
//! Not built for the model checkers (they compile the library alone).
#![cfg(not(any(loom, shuttle)))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use endio::{Backend, Bio, BioFlags, Completer, Device, EndedBio, Engine, OpenOptions, context};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments; the
// counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`, as the caller
        // guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const IN_FLIGHT: u32 = 16;

/// Held by each test: the allocator's count is the whole process's.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const WARM_UP: u64 = 20_000;
const MEASURED: u64 = 100_000;

/// Waits (without allocating) until `done` reached `n`.
fn wait_for(done: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "the loop stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `start` (which puts the loop in motion), warms up, and returns the
/// allocations made while `done` advanced by `MEASURED`, and by how much it
/// really advanced.
fn allocations_in_steady_state(done: &AtomicU64, start: impl FnOnce()) -> (u64, u64) {
    start();
    wait_for(done, WARM_UP);
    let a0 = ALLOCS.load(Ordering::Relaxed);
    let d0 = done.load(Ordering::Relaxed);
    wait_for(done, d0 + MEASURED);
    let a1 = ALLOCS.load(Ordering::Relaxed);
    let d1 = done.load(Ordering::Relaxed);
    (a1 - a0, d1 - d0)
}

fn check(what: &str, (allocs, done): (u64, u64)) {
    eprintln!("{what}: {allocs} allocations in {done} completions");
    // One allocation per completion would give `done`; anything left is
    // not per completion (a few, from the runtime).
    assert!(
        allocs * 1000 < done,
        "{what}: {allocs} allocations in {done} completions"
    );
}

struct Loop {
    completer: Completer,
    recycle: bool,
    stop: AtomicBool,
    done: AtomicU64,
}

fn complete_next(lp: &Arc<Loop>, ended: Option<EndedBio>) {
    if lp.stop.load(Ordering::Relaxed) {
        return;
    }
    let l = Arc::clone(lp);
    let handler = move |ended: EndedBio| {
        assert!(ended.was_deferred());
        l.done.fetch_add(1, Ordering::Relaxed);
        complete_next(&l, Some(ended));
    };
    let bio = match ended {
        Some(ended) if lp.recycle => ended.into_bio(handler),
        Some(ended) => {
            drop(ended);
            Bio::nop(handler)
        }
        None => Bio::nop(handler),
    };
    let _atomic = context::atomic();
    lp.completer
        .endio(bio.with_flags(BioFlags::COMPLETE_IN_TASK));
}

struct Job {
    dev: Device,
    recycle: bool,
    stop: AtomicBool,
    done: AtomicU64,
}

fn submit_next(job: &Arc<Job>, ended: Option<EndedBio>, n: u64) {
    if job.stop.load(Ordering::Relaxed) {
        return;
    }
    let j = Arc::clone(job);
    let offset = (n * 4096) % (16 << 20);
    let handler = move |ended: EndedBio| {
        assert_eq!(ended.result().unwrap(), 4096);
        j.done.fetch_add(1, Ordering::Relaxed);
        submit_next(&j, Some(ended), n + 7);
    };
    let bio = match ended {
        Some(mut ended) if job.recycle => {
            ended.retarget(endio::Op::Read, offset);
            ended.into_bio(handler)
        }
        Some(ended) => Bio::read(offset, ended.into_buf(), handler),
        None => Bio::read(offset, job.dev.buf(4096), handler),
    };
    job.dev
        .submit(bio.with_flags(BioFlags::COMPLETE_IN_TASK))
        .expect("submit");
}

#[test]
fn deferred_completions_and_null_ios_allocate_nothing_in_steady_state() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let completer = Completer::builder().hotplug_watcher(false).build().unwrap();
    for recycle in [true, false] {
        let lp = Arc::new(Loop {
            completer: completer.clone(),
            recycle,
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
        });
        let counts = allocations_in_steady_state(&lp.done, || {
            for _ in 0..IN_FLIGHT {
                complete_next(&lp, None);
            }
        });
        lp.stop.store(true, Ordering::Relaxed);
        assert!(completer.wait_idle(Duration::from_secs(30)));
        check(&format!("completer, recycle={recycle}"), counts);
    }

    let engine = Engine::builder(completer.clone())
        .backend(Backend::Null)
        .null_latency(Duration::ZERO)
        .queue_depth(IN_FLIGHT)
        .build()
        .unwrap();
    let dev = engine
        .open(
            "/nonexistent/endio-steady-state",
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .size(16 << 20),
        )
        .unwrap();
    for recycle in [true, false] {
        let job = Arc::new(Job {
            dev: dev.clone(),
            recycle,
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
        });
        let counts = allocations_in_steady_state(&job.done, || {
            for i in 0..u64::from(IN_FLIGHT) {
                submit_next(&job, None, i);
            }
        });
        job.stop.store(true, Ordering::Relaxed);
        dev.drain();
        assert!(completer.wait_idle(Duration::from_secs(30)));
        check(&format!("null engine, recycle={recycle}"), counts);
    }
}

/// Bios a producer thread keeps in flight against the worker that ends
/// them: more than the thread caches hold, so freed nodes must come back
/// through the CPU's depot.
const CROSS_THREAD_WINDOW: u64 = 4096;

/// One thread makes every bio and another (the worker of its CPU) ends it:
/// each node is freed on the worker and allocated again on the producer.
/// With thousands in flight, every freed node must come back to the
/// producer through the depot of their CPU (the producer is pinned, so its
/// worker is that CPU's).
#[test]
fn bios_made_on_one_thread_and_ended_on_another_allocate_nothing_in_steady_state() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let completer = Completer::builder().hotplug_watcher(false).build().unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (completer, done, stop) = (completer.clone(), Arc::clone(&done), Arc::clone(&stop));
        std::thread::spawn(move || {
            endio::testing::pin_current_thread(0).expect("pin the producer to CPU 0");
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sent - done.load(Ordering::Relaxed) >= CROSS_THREAD_WINDOW {
                    std::thread::yield_now();
                    continue;
                }
                let d = Arc::clone(&done);
                let bio = Bio::nop(move |ended| {
                    assert!(ended.was_deferred());
                    d.fetch_add(1, Ordering::Relaxed);
                })
                .with_flags(BioFlags::COMPLETE_IN_TASK);
                let _atomic = context::atomic();
                completer.endio(bio);
                sent += 1;
            }
        })
    };
    let counts = allocations_in_steady_state(&done, || {});
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("the producer panicked");
    assert!(completer.wait_idle(Duration::from_secs(30)));
    check(
        &format!("completer, a producer thread makes each bio, window {CROSS_THREAD_WINDOW}"),
        counts,
    );
}
