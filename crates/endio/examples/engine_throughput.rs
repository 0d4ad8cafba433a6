//! Throughput of each backend at a fixed queue depth: a closed loop in which
//! every completion handler (in task context) submits the next I/O. It
//! shows what deferring the handlers to a completer costs against running
//! them inline in the reaper (`--inline`); `scripts/bench.sh` runs it for
//! that. `endio bench` is the fuller benchmark (modes side by side, page
//! cache, fio's JSON).
//!
//! ```text
//! cargo run --release -p endio --example engine_throughput -- \
//!     [--backend uring|threads|null|all] [--rw randread|write] [--bs 4k] \
//!     [--qd 16] [--size 1g] [--seconds 5] [--buffered] [--inline] [--reaper] [--layout] [--threads 8] [--dir DIR]
//! ```
//!
//! `randread` lays the file out first (written with 1 MiB direct writes),
//! then reads `bs` blocks at random aligned offsets; `write` writes `bs`
//! blocks sequentially, wrapping at `size`, into a sparse file (or, with
//! `--layout`, over a laid-out one). Direct I/O unless `--buffered`.
//! `--inline` leaves the handlers unflagged (they run in atomic context, in
//! the thread that reaps); `--reaper` keeps the completer's workers from
//! driving the rings (`EngineBuilder::worker_driven(false)`): every
//! completion is reaped by the lane's reaper thread and handed over;
//! `--threads` sizes the thread-pool backend (default 8, the engine's).
//!
//! Per backend it prints IOPS, MiB/s, the process's CPU time (getrusage
//! `RUSAGE_SELF`, from the first submit to the drain) and, per I/O, its
//! context switches and CPU time (`cpu/io`, user + system nanoseconds).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use endio::{Backend, Bio, BioFlags, Completer, Device, EndedBio, Engine, Op, OpenOptions};

mod common;

#[derive(Clone)]
struct Args {
    backends: Vec<Backend>,
    randread: bool,
    bs: usize,
    qd: u32,
    size: u64,
    seconds: f64,
    direct: bool,
    inline: bool,
    reaper: bool,
    layout: bool,
    threads: usize,
    dir: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        backends: vec![Backend::Uring, Backend::Threads, Backend::Null],
        randread: true,
        bs: 4096,
        qd: 16,
        size: 1 << 30,
        seconds: 5.0,
        direct: true,
        inline: false,
        reaper: false,
        layout: false,
        threads: 8,
        dir: std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => {
                let v = value()?;
                a.backends = if v == "all" {
                    vec![Backend::Uring, Backend::Threads, Backend::Null]
                } else {
                    vec![v.parse().map_err(|e: endio::EngineError| e.to_string())?]
                };
            }
            "--rw" => {
                a.randread = match value()?.as_str() {
                    "randread" => true,
                    "write" => false,
                    other => return Err(format!("--rw {other}: use randread or write")),
                }
            }
            "--bs" => a.bs = common::size(&value()?)? as usize,
            "--qd" => a.qd = value()?.parse().map_err(|_| "--qd needs a number")?,
            "--size" => a.size = common::size(&value()?)?,
            "--seconds" => a.seconds = value()?.parse().map_err(|_| "--seconds needs a number")?,
            "--buffered" => a.direct = false,
            "--inline" => a.inline = true,
            "--reaper" => a.reaper = true,
            "--layout" => a.layout = true,
            "--threads" => a.threads = value()?.parse().map_err(|_| "--threads needs a number")?,
            "--dir" => a.dir = value()?.into(),
            other => return Err(format!("unknown argument {other}; see the example's docs")),
        }
    }
    Ok(a)
}

/// One closed-loop job.
struct Job {
    dev: Device,
    args: Args,
    deadline: Instant,
    next_offset: AtomicU64,
    ios: AtomicU64,
    errors: AtomicU64,
}

fn next_bio(job: &Arc<Job>, ended: Option<EndedBio>, rng: u64) -> Option<Bio> {
    if Instant::now() >= job.deadline {
        return None;
    }
    let bs = job.args.bs as u64;
    let (op, offset, rng) = if job.args.randread {
        // xorshift64: a new random block per I/O.
        let mut x = rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (Op::Read, (x % (job.args.size / bs)) * bs, x)
    } else {
        let n = job.next_offset.fetch_add(bs, Ordering::Relaxed);
        (Op::Write, n % (job.args.size / bs * bs), rng)
    };
    let j = Arc::clone(job);
    let handler = move |ended: EndedBio| {
        if ended.result().ok() == Some(j.args.bs) {
            if Instant::now() < j.deadline {
                j.ios.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            j.errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bio) = next_bio(&j, Some(ended), rng)
            && let Err(e) = j.dev.submit(bio)
        {
            eprintln!("resubmit: {e}");
            j.errors.fetch_add(1, Ordering::Relaxed);
        }
    };
    let bio = match ended {
        Some(mut ended) => {
            ended.retarget(op, offset);
            ended.into_bio(handler)
        }
        None => Bio::new(op, offset, job.dev.buf(job.args.bs), handler),
    };
    Some(if job.args.inline {
        bio
    } else {
        bio.with_flags(BioFlags::COMPLETE_IN_TASK)
    })
}

fn lay_out(
    engine: &Engine,
    path: &std::path::Path,
    size: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let dev = engine.open(
        path,
        OpenOptions::new().write(true).create(true).direct(true),
    )?;
    let chunk = 1 << 20;
    for i in 0..size / chunk {
        let mut buf = dev.buf(chunk as usize);
        buf.fill((i % 251) as u8 + 1);
        dev.submit(Bio::write(i * chunk, buf, |e| {
            e.result().expect("layout write failed");
        }))?;
    }
    dev.submit(Bio::flush(|_| {}))?;
    dev.drain();
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let completer = Completer::builder().build()?;
    let file = tempfile::Builder::new()
        .prefix("endio-throughput-")
        .tempfile_in(&args.dir)?;
    let path = file.path().to_path_buf();
    if args.randread || args.layout {
        let engine = Engine::builder(completer.clone())
            .backend(Backend::Threads)
            .build()?;
        lay_out(&engine, &path, args.size)?;
    }
    println!(
        "{} bs={} qd={} size={} MiB {} handlers={} rings driven by {} file={}",
        if args.randread { "randread" } else { "write" },
        args.bs,
        args.qd,
        args.size >> 20,
        if args.direct { "direct" } else { "buffered" },
        if args.inline {
            "inline(atomic)"
        } else {
            "task"
        },
        if args.reaper { "reapers" } else { "workers" },
        path.display()
    );
    for &backend in &args.backends {
        let engine = match Engine::builder(completer.clone())
            .backend(backend)
            .queue_depth(args.qd.max(1))
            .threads(args.threads)
            .worker_driven(!args.reaper)
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                println!("{backend:>8}: not available: {e}");
                continue;
            }
        };
        let dev = engine.open(
            &path,
            OpenOptions::new()
                .read(true)
                .write(true)
                .direct(args.direct)
                .size(args.size),
        )?;
        let before = completer.stats().total;
        let usage_before = endio::testing::resource_usage()?;
        let start = Instant::now();
        let job = Arc::new(Job {
            dev: dev.clone(),
            args: args.clone(),
            deadline: start + Duration::from_secs_f64(args.seconds),
            next_offset: AtomicU64::new(0),
            ios: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        });
        for i in 0..args.qd {
            let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(u64::from(i) + 1);
            if let Some(bio) = next_bio(&job, None, seed) {
                dev.submit(bio)?;
            }
        }
        std::thread::sleep(job.deadline.saturating_duration_since(Instant::now()));
        let elapsed = start.elapsed().as_secs_f64();
        loop {
            dev.drain();
            completer.wait_idle(Duration::from_secs(30));
            if dev.in_flight() == 0 {
                break;
            }
        }
        if !args.direct && !args.randread {
            let (tx, rx) = std::sync::mpsc::channel();
            dev.submit(Bio::flush(move |_| tx.send(()).unwrap()))?;
            rx.recv()?;
        }
        let usage = endio::testing::resource_usage()?.since(&usage_before);
        let stats = completer.stats().total;
        let ios = job.ios.load(Ordering::Relaxed);
        let iops = ios as f64 / elapsed;
        println!(
            "{:>8}: {:>9.0} IOPS {:>8.1} MiB/s  errors {}  cpu user {:.2}s sys {:.2}s  ctxsw/io {:.2}  cpu/io {:.0} ns  deferred {} in {} batches  reaped by worker {}/{}{}",
            backend.name(),
            iops,
            iops * args.bs as f64 / f64::from(1 << 20),
            job.errors.load(Ordering::Relaxed),
            usage.user.as_secs_f64(),
            usage.system.as_secs_f64(),
            usage.ctx_switches() as f64 / ios.max(1) as f64,
            (usage.user + usage.system).as_secs_f64() * 1e9 / ios.max(1) as f64,
            stats.deferred - before.deferred,
            stats.batches - before.batches,
            engine.drive_stats().worker_completions,
            engine.drive_stats().worker_completions + engine.drive_stats().reaper_completions,
            engine
                .ring_flags()
                .map(|f| format!("  ({f})"))
                .unwrap_or_default(),
        );
    }
    Ok(())
}
