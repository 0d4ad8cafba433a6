//! Buffered vs dontcache (emulated, and native where the kernel has it) vs
//! `O_DIRECT`, side by side in one run: a sequential write of `--size` in
//! `--bs` blocks at queue depth `--qd` on an ext4 (or any disk filesystem)
//! file and, as root, on a loop block device; for each, the throughput and
//! the page cache the target holds after `Device::drain`.
//!
//! ```text
//! cargo run --release -p endio --example dontcache_compare -- \
//!     [--size 1g] [--bs 1m] [--qd 16] [--dir /var/tmp] [--backend uring|threads] \
//!     [--targets file,loop] [--modes buffered,emulated,native,direct]
//! ```
//!
//! Every target is laid out first (written once in full with 1 MiB direct
//! writes: O_DIRECT writes into a sparse ext4 file allocate as they go and
//! are slow, and a loop device over a sparse file inherits that), and its
//! page cache is emptied (fdatasync, then `POSIX_FADV_DONTNEED`) before each
//! mode, as fio's `invalidate=1`. A mode's time runs from the first submit
//! to the return of `drain()` (for dontcache: every drop done); "+sync"
//! adds an `fdatasync` after it, what buffered writes owe before their data
//! is durable. The loop device is set up with `--direct-io=on`, so that, as
//! a disk, it keeps no second copy in its backing file's page cache (which
//! sits in the same directory; "backing" shows what that file holds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use endio::{
    Backend, Bio, BioFlags, Completer, Device, DontcacheMode, EndedBio, Engine, OpenOptions,
};

mod common;

#[derive(Clone)]
struct Args {
    size: u64,
    bs: usize,
    qd: u32,
    dir: PathBuf,
    backend: Backend,
    targets: Vec<String>,
    modes: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        size: 1 << 30,
        bs: 1 << 20,
        qd: 16,
        dir: std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from),
        backend: Backend::Uring,
        targets: vec!["file".into(), "loop".into()],
        modes: ["buffered", "emulated", "native", "direct"]
            .map(String::from)
            .to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--size" => a.size = common::size(&value()?)?,
            "--bs" => a.bs = common::size(&value()?)? as usize,
            "--qd" => a.qd = value()?.parse().map_err(|_| "--qd needs a number")?,
            "--dir" => a.dir = value()?.into(),
            "--backend" => {
                a.backend = value()?
                    .parse()
                    .map_err(|e: endio::EngineError| e.to_string())?
            }
            "--targets" => a.targets = value()?.split(',').map(String::from).collect(),
            "--modes" => a.modes = value()?.split(',').map(String::from).collect(),
            other => return Err(format!("unknown argument {other}; see the example's docs")),
        }
    }
    if a.bs == 0 || a.size < a.bs as u64 {
        return Err("--bs must be at least 1 byte and at most --size".into());
    }
    Ok(a)
}

/// A loop device over `backing`, detached on drop.
struct LoopDev(PathBuf);

impl LoopDev {
    fn new(backing: &Path) -> Result<LoopDev, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("loop devices need root".into());
        }
        let out = Command::new("losetup")
            .args(["--find", "--show", "--direct-io=on"])
            .arg(backing)
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(LoopDev(PathBuf::from(
            String::from_utf8_lossy(&out.stdout).trim(),
        )))
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        for _ in 0..50 {
            if Command::new("losetup")
                .arg("-d")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("could not detach {}", self.0.display());
    }
}

/// Writes the whole target once with 1 MiB direct writes.
fn lay_out(engine: &Engine, path: &Path, size: u64) -> Result<(), Box<dyn std::error::Error>> {
    let dev = engine.open(path, OpenOptions::new().write(true).direct(true))?;
    let chunk = 1u64 << 20;
    for i in 0..size.div_ceil(chunk) {
        let len = chunk.min(size - i * chunk) as usize;
        let mut buf = dev.buf(len);
        buf.fill(0x5a);
        dev.submit(Bio::write(i * chunk, buf, |e| {
            e.result().expect("layout write failed");
        }))?;
    }
    dev.submit(Bio::flush(|_| {}))?;
    dev.drain();
    Ok(())
}

/// Empties the target's page cache (and its backing file's).
fn invalidate(paths: &[&Path]) -> std::io::Result<()> {
    for p in paths {
        let f = std::fs::File::open(p)?;
        rustix::fs::fdatasync(&f)?;
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)?;
    }
    Ok(())
}

fn resident(path: &Path) -> u64 {
    std::fs::File::open(path)
        .and_then(|f| endio::residency(&f, 0..0))
        .map_or(0, |r| r.cached_bytes)
}

struct Job {
    dev: Device,
    size: u64,
    bs: usize,
    next: AtomicU64,
    errors: AtomicU64,
    done: AtomicU64,
    finished: mpsc::SyncSender<()>,
}

/// Submits the next block of the job, reusing `ended`'s buffer; signals
/// `finished` when the last completion is in.
fn next(job: &Arc<Job>, ended: Option<EndedBio>) {
    let offset = job.next.fetch_add(job.bs as u64, Ordering::Relaxed);
    if offset >= job.size {
        return;
    }
    let j = Arc::clone(job);
    let handler = move |ended: EndedBio| {
        if ended.result().ok() != Some(j.bs) {
            j.errors.fetch_add(1, Ordering::Relaxed);
        }
        let bytes = j.done.fetch_add(j.bs as u64, Ordering::Relaxed) + j.bs as u64;
        if bytes >= j.size {
            let _ = j.finished.try_send(());
        }
        next(&j, Some(ended));
    };
    let bio = match ended {
        Some(mut e) => {
            e.retarget(endio::Op::Write, offset);
            e.into_bio(handler)
        }
        None => {
            let mut buf = job.dev.buf(job.bs);
            buf.fill(0xa5);
            Bio::write(offset, buf, handler)
        }
    };
    if let Err(e) = job.dev.submit(bio.with_flags(BioFlags::COMPLETE_IN_TASK)) {
        eprintln!("submit: {e}");
        job.errors.fetch_add(1, Ordering::Relaxed);
    }
}

fn run_mode(
    engine: &Engine,
    target: &Path,
    backing: Option<&Path>,
    mode: &str,
    a: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = OpenOptions::new().read(true).write(true);
    opts = match mode {
        "buffered" => opts,
        "emulated" => opts.dontcache_emulated(true),
        "native" => opts.dontcache(true),
        "direct" => opts.direct(true),
        other => return Err(format!("unknown mode {other}").into()),
    };
    let mut inval: Vec<&Path> = vec![target];
    inval.extend(backing);
    invalidate(&inval)?;
    let dev = engine.open(target, opts)?;
    if mode == "native" && dev.dontcache_mode() != Some(DontcacheMode::Native) {
        println!(
            "  {mode:<9} not available: the kernel has no RWF_DONTCACHE for {}",
            target.display()
        );
        return Ok(());
    }
    let usage0 = endio::testing::resource_usage()?;
    let (tx, rx) = mpsc::sync_channel(1);
    let job = Arc::new(Job {
        dev: dev.clone(),
        size: a.size / a.bs as u64 * a.bs as u64,
        bs: a.bs,
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        done: AtomicU64::new(0),
        finished: tx,
    });
    let start = Instant::now();
    for _ in 0..a.qd {
        next(&job, None);
    }
    rx.recv_timeout(Duration::from_secs(600))?;
    dev.drain();
    let t_drain = start.elapsed().as_secs_f64();
    let res_drain = dev.residency()?.cached_bytes;
    let backing_res = backing.map(resident);
    let (stx, srx) = mpsc::channel();
    dev.submit(Bio::flush(move |e| stx.send(e.result().is_ok()).unwrap()))?;
    let synced = srx.recv()?;
    dev.drain();
    let t_sync = start.elapsed().as_secs_f64();
    let usage = endio::testing::resource_usage()?.since(&usage0);
    let mib = job.size as f64 / f64::from(1 << 20);
    let st = dev.dontcache_stats();
    println!(
        "  {:<9} {:>8.0} MiB/s {:>8.0} MiB/s+sync  resident {:>8.1} MiB ({:>5.1} %){}  cpu {:.2}s usr {:.2}s sys  errors {}{}{}",
        mode,
        mib / t_drain,
        mib / t_sync,
        res_drain as f64 / f64::from(1 << 20),
        100.0 * res_drain as f64 / job.size as f64,
        backing_res
            .map(|b| format!("  backing {:>7.1} MiB", b as f64 / f64::from(1 << 20)))
            .unwrap_or_default(),
        usage.user.as_secs_f64(),
        usage.system.as_secs_f64(),
        job.errors.load(Ordering::Relaxed),
        if synced { "" } else { "  (fdatasync failed)" },
        if st.emulated_ios > 0 {
            format!(
                "  [drop calls {} for {} ranges, inflight max {:.1} MiB, backpressure waits {}, rescues {}]",
                st.drop_calls,
                st.drops,
                st.inflight_bytes_max as f64 / f64::from(1 << 20),
                st.backpressure_waits,
                st.rescue_calls
            )
        } else if st.native_ios > 0 {
            format!(
                "  [kernel left {:.1} MiB cached after writeback; endio dropped it in {} calls]",
                st.native_leftover_bytes as f64 / f64::from(1 << 20),
                st.drop_calls
            )
        } else {
            String::new()
        },
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = parse_args()?;
    let completer = Completer::builder().build()?;
    let engine = Engine::builder(completer.clone())
        .backend(a.backend)
        .queue_depth(a.qd.max(1))
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("endio-dontcache-compare-")
        .tempdir_in(&a.dir)?;
    println!(
        "sequential write of {} MiB in {} KiB blocks, qd {}, backend {}, in {}",
        a.size >> 20,
        a.bs >> 10,
        a.qd,
        engine.backend(),
        dir.path().display()
    );
    for target in &a.targets {
        match target.as_str() {
            "file" => {
                let path = dir.path().join("file.img");
                std::fs::File::create(&path)?.set_len(a.size)?;
                lay_out(&engine, &path, a.size)?;
                println!("ext4 file {}:", path.display());
                for mode in &a.modes {
                    run_mode(&engine, &path, None, mode, &a)?;
                }
                std::fs::remove_file(&path)?;
            }
            "loop" => {
                let backing = dir.path().join("loop-backing.img");
                std::fs::File::create(&backing)?.set_len(a.size)?;
                lay_out(&engine, &backing, a.size)?;
                let lo = match LoopDev::new(&backing) {
                    Ok(lo) => lo,
                    Err(why) => {
                        println!("loop device: skipped: {why}");
                        continue;
                    }
                };
                println!("loop device {} over {}:", lo.0.display(), backing.display());
                for mode in &a.modes {
                    run_mode(&engine, &lo.0, Some(&backing), mode, &a)?;
                }
            }
            other => return Err(format!("unknown target {other}; use file or loop").into()),
        }
    }
    Ok(())
}
