//! Heap allocations per I/O and per deferred completion, in steady state.
//!
//! A counting global allocator wraps the system one; each closed loop is
//! warmed up, then the allocations (and bytes) made by every thread of the
//! process during a measuring window are divided by the I/Os (or deferred
//! completions) finished in that window. Not a timing benchmark: the
//! windows are short and the numbers are counts.
//!
//! ```text
//! cargo run --release -p endio --example alloc_count -- [--seconds 1] [--qd 16] [--dir DIR]
//! ```
//!
//! The loops:
//!
//! - engine (null backend, and io_uring where the kernel allows it), 4 KiB
//!   reads at queue depth `--qd`, handlers deferred to the completer or run
//!   inline in the reaper; each handler submits the next I/O, either by
//!   `EndedBio::into_bio` (`recycle`) or by taking the buffer and making a
//!   new `Bio` on the same thread (`new bio`);
//! - the completer alone: `Completer::endio` of a flagged `Bio::nop` inside
//!   `context::atomic()`, `--qd` bios in flight, each handler completing the
//!   next one (again `recycle` or `new bio`); and, for comparison, a producer
//!   thread making every bio while the worker ends it (`cross-thread`), where
//!   the node is freed on another thread than the one that allocates it and
//!   comes back through the CPU's depot of node magazines, at 256 and at
//!   4096 bios in flight.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use endio::{
    Backend, Bio, BioFlags, Completer, Device, EndedBio, Engine, Op, OpenOptions, context,
};

/// The system allocator, counting allocations and bytes.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees are ours; the counters have no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's (valid, non-zero) layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by us (that is, by `System`) with
        // `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counters() -> (u64, u64) {
    (
        ALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

struct Args {
    seconds: f64,
    qd: u32,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        seconds: 1.0,
        qd: 16,
        dir: std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => a.seconds = value()?.parse().map_err(|_| "--seconds needs a number")?,
            "--qd" => a.qd = value()?.parse().map_err(|_| "--qd needs a number")?,
            "--dir" => a.dir = value()?.into(),
            other => return Err(format!("unknown argument {other}; see the example's docs")),
        }
    }
    Ok(a)
}

/// Warms up for a third of `seconds`, then counts the allocations made
/// while `done` advances for `seconds`: (allocations, bytes, done).
fn measure(seconds: f64, done: &AtomicU64) -> (u64, u64, u64) {
    std::thread::sleep(Duration::from_secs_f64(seconds / 3.0));
    let (a0, b0) = counters();
    let d0 = done.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let d1 = done.load(Ordering::Relaxed);
    let (a1, b1) = counters();
    (a1 - a0, b1 - b0, d1 - d0)
}

fn report(name: &str, unit: &str, (allocs, bytes, done): (u64, u64, u64)) {
    let per = |n: u64| n as f64 / done.max(1) as f64;
    println!(
        "{name}: {:.3} allocations per {unit} ({allocs} in {done} {unit}s), {:.1} bytes per {unit}",
        per(allocs),
        per(bytes),
    );
}

/// How a handler makes the next request.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    /// `EndedBio::into_bio`.
    Recycle,
    /// `EndedBio::into_buf`, then `Bio::new` on the same thread.
    NewBio,
}

impl Next {
    fn name(self) -> &'static str {
        match self {
            Next::Recycle => "recycle",
            Next::NewBio => "new bio",
        }
    }
}

struct Job {
    dev: Device,
    blocks: u64,
    deferred: bool,
    next: Next,
    stop: AtomicBool,
    ios: AtomicU64,
    errors: AtomicU64,
}

fn submit_next(job: &Arc<Job>, ended: Option<EndedBio>, rng: u64) {
    if job.stop.load(Ordering::Relaxed) {
        return;
    }
    let mut x = rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let offset = (x % job.blocks) * 4096;
    let j = Arc::clone(job);
    let handler = move |ended: EndedBio| {
        if ended.result().ok() == Some(4096) {
            j.ios.fetch_add(1, Ordering::Relaxed);
        } else {
            j.errors.fetch_add(1, Ordering::Relaxed);
        }
        submit_next(&j, Some(ended), x);
    };
    let bio = match ended {
        Some(mut ended) if job.next == Next::Recycle => {
            ended.retarget(Op::Read, offset);
            ended.into_bio(handler)
        }
        Some(ended) => Bio::new(Op::Read, offset, ended.into_buf(), handler),
        None => Bio::new(Op::Read, offset, job.dev.buf(4096), handler),
    };
    let bio = if job.deferred {
        bio.with_flags(BioFlags::COMPLETE_IN_TASK)
    } else {
        bio
    };
    if job.dev.submit(bio).is_err() {
        job.errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn engine_loops(
    args: &Args,
    completer: &Completer,
    path: &std::path::Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let size: u64 = 64 << 20;
    for backend in [Backend::Null, Backend::Uring] {
        let engine = match Engine::builder(completer.clone())
            .backend(backend)
            .queue_depth(args.qd.max(1))
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                println!("{}: not available: {e}", backend.name());
                continue;
            }
        };
        let dev = engine.open(
            path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .direct(backend != Backend::Null)
                .size(size),
        )?;
        for deferred in [true, false] {
            for next in [Next::Recycle, Next::NewBio] {
                let job = Arc::new(Job {
                    dev: dev.clone(),
                    blocks: size / 4096,
                    deferred,
                    next,
                    stop: AtomicBool::new(false),
                    ios: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                });
                for i in 0..args.qd {
                    submit_next(
                        &job,
                        None,
                        0x9e37_79b9_7f4a_7c15u64.wrapping_mul(u64::from(i) + 1),
                    );
                }
                let counts = measure(args.seconds, &job.ios);
                job.stop.store(true, Ordering::Relaxed);
                dev.drain();
                completer.wait_idle(Duration::from_secs(30));
                let errors = job.errors.load(Ordering::Relaxed);
                if errors > 0 {
                    println!("  ({errors} I/Os failed)");
                }
                report(
                    &format!(
                        "{} {} qd{} {}",
                        backend.name(),
                        if deferred { "deferred" } else { "inline" },
                        args.qd,
                        next.name()
                    ),
                    "I/O",
                    counts,
                );
            }
        }
    }
    Ok(())
}

struct Loop {
    completer: Completer,
    next: Next,
    stop: AtomicBool,
    done: AtomicU64,
}

/// Completes `ended`'s successor (or a fresh nop) in atomic context, flagged:
/// a deferral to the current CPU's worker.
fn complete_next(lp: &Arc<Loop>, ended: Option<EndedBio>) {
    if lp.stop.load(Ordering::Relaxed) {
        return;
    }
    let l = Arc::clone(lp);
    let handler = move |ended: EndedBio| {
        l.done.fetch_add(1, Ordering::Relaxed);
        complete_next(&l, Some(ended));
    };
    let bio = match ended {
        Some(ended) if lp.next == Next::Recycle => ended.into_bio(handler),
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

fn completer_loops(args: &Args, completer: &Completer) {
    for next in [Next::Recycle, Next::NewBio] {
        let before = completer.stats().total.deferred;
        let lp = Arc::new(Loop {
            completer: completer.clone(),
            next,
            stop: AtomicBool::new(false),
            done: AtomicU64::new(0),
        });
        for _ in 0..args.qd {
            complete_next(&lp, None);
        }
        let counts = measure(args.seconds, &lp.done);
        lp.stop.store(true, Ordering::Relaxed);
        completer.wait_idle(Duration::from_secs(30));
        assert!(
            completer.stats().total.deferred > before,
            "nothing was deferred"
        );
        report(
            &format!("completer deferred qd{} {}", args.qd, next.name()),
            "deferred completion",
            counts,
        );
    }
    // A producer thread makes every bio; the worker ends it: a small
    // window and a large one.
    for window in [256u64, 4096] {
        cross_thread(completer, args, window);
    }
}

fn cross_thread(completer: &Completer, args: &Args, window: u64) {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (completer, done, stop) = (completer.clone(), Arc::clone(&done), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if sent - done.load(Ordering::Relaxed) > window {
                    std::thread::yield_now();
                    continue;
                }
                let d = Arc::clone(&done);
                let bio = Bio::nop(move |_ended| {
                    d.fetch_add(1, Ordering::Relaxed);
                })
                .with_flags(BioFlags::COMPLETE_IN_TASK);
                let _atomic = context::atomic();
                completer.endio(bio);
                sent += 1;
            }
        })
    };
    let counts = measure(args.seconds, &done);
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("the producer panicked");
    completer.wait_idle(Duration::from_secs(30));
    report(
        &format!(
            "completer deferred cross-thread, window {window} (a producer thread makes each bio)"
        ),
        "deferred completion",
        counts,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let completer = Completer::builder().build()?;
    let file = tempfile::Builder::new()
        .prefix("endio-allocs-")
        .tempfile_in(&args.dir)?;
    file.as_file().set_len(64 << 20)?;
    completer_loops(&args, &completer);
    engine_loops(&args, &completer, file.path())?;
    Ok(())
}
