//! Writes a file through the engine and reads it back, every handler
//! running in task context (a completer worker), checking a crc32c pattern.
//!
//! ```text
//! cargo run --release -p endio --example copy_roundtrip -- [PATH] [--size MiB] [--bs KiB] [--direct]
//! ENDIO_BACKEND=threads cargo run --release -p endio --example copy_roundtrip
//! ```
//!
//! Without PATH it uses a temporary file in `$TMPDIR` or `/var/tmp`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use endio::{Bio, BioFlags, Completer, Device, Engine, OpenOptions, Verifier, context};

struct Args {
    path: Option<PathBuf>,
    size: u64,
    bs: usize,
    direct: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        path: None,
        size: 64 << 20,
        bs: 1 << 20,
        direct: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--size" => args.size = number("--size")? << 20,
            "--bs" => args.bs = (number("--bs")? << 10) as usize,
            "--direct" => args.direct = true,
            "-h" | "--help" => {
                return Err(
                    "usage: copy_roundtrip [PATH] [--size MiB] [--bs KiB] [--direct]".into(),
                );
            }
            p if !p.starts_with('-') => args.path = Some(p.into()),
            other => return Err(format!("unknown argument {other}; see --help")),
        }
    }
    if args.bs < 4096 || args.size < args.bs as u64 {
        return Err("--bs must be at least 4 KiB and --size at least one block".into());
    }
    Ok(args)
}

/// Counts what the handlers saw.
#[derive(Default)]
struct Counts {
    bytes: AtomicU64,
    failed: AtomicU64,
    in_atomic: AtomicU64,
}

fn run(
    dev: &Device,
    completer: &Completer,
    verifier: &Arc<Verifier>,
    blocks: u64,
    write: bool,
) -> Result<Duration, String> {
    let bs = verifier.block_size();
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    for i in 0..blocks {
        let offset = i * bs as u64;
        let c = Arc::clone(&counts);
        let v = Arc::clone(verifier);
        let handler = move |ended: endio::EndedBio| {
            // Task context: a completer worker, never the reaper.
            if context::in_atomic() {
                c.in_atomic.fetch_add(1, Ordering::Relaxed);
            }
            match ended.result() {
                Ok(n) if n == bs => {
                    if !write && v.check(ended.buf(), ended.offset()).is_err() {
                        c.failed.fetch_add(1, Ordering::Relaxed);
                    }
                    c.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                _ => {
                    c.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        };
        let bio = if write {
            let mut buf = dev.buf(bs);
            verifier.fill(&mut buf, offset);
            Bio::write(offset, buf, handler)
        } else {
            Bio::read(offset, dev.buf(bs), handler)
        };
        dev.submit(bio.with_flags(BioFlags::COMPLETE_IN_TASK))
            .map_err(|e| e.to_string())?;
    }
    if write {
        dev.submit(Bio::flush(|e| {
            e.result().expect("fdatasync failed");
        }))
        .map_err(|e| e.to_string())?;
    }
    dev.drain();
    if !completer.wait_idle(Duration::from_secs(60)) {
        return Err("handlers did not finish within 60 s".into());
    }
    let elapsed = start.elapsed();
    let (bytes, failed, atomic) = (
        counts.bytes.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.in_atomic.load(Ordering::Relaxed),
    );
    if failed > 0 || atomic > 0 || bytes != blocks * bs as u64 {
        return Err(format!(
            "{} failed: {failed} bad blocks, {atomic} handlers in atomic context, {bytes} bytes",
            if write { "write" } else { "read" }
        ));
    }
    Ok(elapsed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp;
    let path = match &args.path {
        Some(p) => p.clone(),
        None => {
            let dir =
                std::env::var_os("TMPDIR").map_or_else(|| PathBuf::from("/var/tmp"), PathBuf::from);
            tmp = tempfile::Builder::new()
                .prefix("endio-copy-")
                .tempfile_in(dir)?;
            tmp.path().to_path_buf()
        }
    };
    let completer = Completer::builder().build()?;
    let engine = Engine::builder(completer.clone()).build()?;
    let dev = engine.open(
        &path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .direct(args.direct)
            .size(args.size),
    )?;
    println!(
        "{}: {} MiB in {} KiB blocks, {}, backend {}{}",
        path.display(),
        args.size >> 20,
        args.bs >> 10,
        if args.direct { "O_DIRECT" } else { "buffered" },
        engine.backend(),
        engine
            .ring_flags()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default(),
    );
    let blocks = args.size / args.bs as u64;
    let verifier = Arc::new(Verifier::new(args.bs, 0x00c0_ffee));
    let mib = (blocks * args.bs as u64) as f64 / f64::from(1 << 20);
    let w = run(&dev, &completer, &verifier, blocks, true)?;
    println!(
        "wrote {mib:.0} MiB in {w:.2?} ({:.0} MiB/s)",
        mib / w.as_secs_f64()
    );
    let r = run(&dev, &completer, &verifier, blocks, false)?;
    println!(
        "read back {mib:.0} MiB in {r:.2?} ({:.0} MiB/s)",
        mib / r.as_secs_f64()
    );
    let v = verifier.stats();
    let s = completer.stats().total;
    println!(
        "verify: {} bytes checked, {} errors; completions: {} deferred to task context in {} batches, {} inline",
        v.checked_bytes, v.errors, s.deferred, s.batches, s.inline
    );
    Ok(())
}
