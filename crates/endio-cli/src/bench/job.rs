//! One benchmark job: `numjobs` clones, each `iodepth` chains of I/O in a
//! closed loop.
//!
//! 1. Each clone has its own [`Shared`] state: counters, latency
//!    histograms, cursor and random sequence (the seed plus its index);
//!    the engine, completer, device and page-cache sampler are the job's.
//!    `iodepth` chains per clone start from the main thread, each with a
//!    bio of its own (an aligned buffer of `bs` bytes) and a random-number
//!    state.
//! 2. A bio's handler runs in task context (the bio is flagged
//!    `COMPLETE_IN_TASK` and completed by an engine reaper in atomic
//!    context, so the completer's worker of that CPU runs it). It records
//!    the latency from submission, counts the bytes, checks a read against
//!    the verify pattern, then reuses the bio for the chain's next I/O and
//!    submits it.
//! 3. The next I/O is the next block of a shared cursor (sequential) or a
//!    random block (random) of its clone; a mixed pattern flips a coin for
//!    the direction. A chain ends when its clone has issued `size / bs`
//!    I/Os, when `--runtime` is over, on an I/O error of its clone, or on
//!    Ctrl-C; the last chain of a clone to end tells the main thread, which
//!    goes on when every clone has.
//! 4. Meanwhile the main thread samples the page-cache residency of the
//!    target every 100 ms and moves the progress bar.
//! 5. Then: wait for the completer, fsync once if the job wrote and
//!    `--end-fsync`, drain the device (which also waits for dontcache
//!    drop-behind), and take the last sample. The job's time ends there,
//!    for every clone. The job's report sums its clones' counters and
//!    merges their histograms; each clone's report has its own counters
//!    and the job's CPU, cache, deferral and fsync figures.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use endio::{
    Backend, Bio, BioFlags, Completer, Device, EndedBio, Engine, Op, OpenOptions, Verifier,
    VerifyStats,
};

use super::cli_terms::{
    engine_error_in_cli_terms, open_error_in_cli_terms, submit_error_in_cli_terms,
};
use super::report::{self, JobReport, Sample};
use super::spec::{Direction, JobSpec};
use super::target::{Kind, Sampler, Target};
use super::{Mode, Rw, dontcache, interrupt};

/// The residency sampling period.
const TICK: Duration = Duration::from_millis(100);

/// How long the end of a job may take (completer idle, fsync, drain).
const END_TIMEOUT: Duration = Duration::from_secs(600);

/// State shared by the chains of a job and its main thread.
struct Shared {
    dev: Device,
    path: PathBuf,
    rw: Rw,
    bs: u64,
    blocks: u64,
    total_ios: u64,
    deadline: Option<Instant>,
    flags: BioFlags,
    /// Orders the random blocks ([`shuffle`]).
    seed: u64,
    verifier: Option<Arc<Verifier>>,
    issued: AtomicU64,
    stop: AtomicBool,
    read: Direction,
    write: Direction,
    done_bytes: AtomicU64,
    /// Percent of a mixed pattern's I/Os that read.
    rwmixread: u32,
    /// Read bytes the page cache had at submit, where measured.
    cache_hits: AtomicU64,
    cache_measured: AtomicBool,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// The errno of the first error (0: none, or not from the system).
    first_errno: AtomicI32,
    active: AtomicU32,
    ended: Mutex<Option<mpsc::Sender<()>>>,
}

/// What one set of chains does: the part of [`Shared`] that is not a
/// counter.
struct Workload {
    rw: Rw,
    bs: u64,
    blocks: u64,
    total_ios: u64,
    deadline: Option<Instant>,
    seed: u64,
    rwmixread: u32,
}

impl Shared {
    /// The state of `chains` chains doing `work` on `dev`, every counter at
    /// zero; the last chain to end sends on `ended`.
    fn new(
        dev: &Device,
        path: &Path,
        work: Workload,
        verifier: Option<Arc<Verifier>>,
        chains: u32,
        ended: mpsc::Sender<()>,
    ) -> Shared {
        let Workload {
            rw,
            bs,
            blocks,
            total_ios,
            deadline,
            seed,
            rwmixread,
        } = work;
        Shared {
            dev: dev.clone(),
            path: path.to_path_buf(),
            rw,
            bs,
            blocks,
            total_ios,
            deadline,
            flags: BioFlags::COMPLETE_IN_TASK,
            seed,
            verifier,
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            read: Direction::new(),
            write: Direction::new(),
            done_bytes: AtomicU64::new(0),
            rwmixread,
            cache_hits: AtomicU64::new(0),
            cache_measured: AtomicBool::new(false),
            errors: AtomicU64::new(0),
            first_error: Mutex::new(None),
            first_errno: AtomicI32::new(0),
            active: AtomicU32::new(chains),
            ended: Mutex::new(Some(ended)),
        }
    }
}

/// xorshift64*: the chains' random numbers.
fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// The `i`-th block of a random pass over `n` blocks: a bijection of
/// `0..n` in an order that looks random, so that a pass touches every block
/// once (fio's random map). Odd multiplications, an addition and
/// xor-shifts, each invertible modulo the next power of two, and walking
/// the cycle until the value falls in `0..n` (fewer than two steps on
/// average: the power of two is below `2n`).
fn shuffle(i: u64, n: u64, seed: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    };
    let shift = bits.div_ceil(2);
    let key = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut x = i;
    loop {
        x = x.wrapping_mul(0xd6e8_feb8_6659_fd93 | 1) & mask;
        x ^= x >> shift;
        x = x.wrapping_add(key) & mask;
        x = x.wrapping_mul(0xa076_1d64_78bd_642f | 1) & mask;
        x ^= x >> shift;
        if x < n {
            return x;
        }
    }
}

impl Shared {
    /// The next I/O of a chain, or `None` when the job is done.
    fn next(&self, rng: &mut u64) -> Option<(Op, u64)> {
        if self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if n >= self.total_ios {
            return None;
        }
        let block = if self.rw.random() {
            shuffle(n % self.blocks, self.blocks, self.seed)
        } else {
            n % self.blocks
        };
        let op = match self.rw {
            Rw::Read | Rw::Randread => Op::Read,
            Rw::Write | Rw::Randwrite => Op::Write,
            Rw::Rw | Rw::Randrw => {
                if next_random(rng) % 100 < u64::from(self.rwmixread) {
                    Op::Read
                } else {
                    Op::Write
                }
            }
        };
        Some((op, block * self.bs))
    }

    fn fail(&self, message: String) {
        self.fail_errno(message, libc::EIO);
    }

    /// A failure with the system's errno (fio's `error`).
    fn fail_errno(&self, message: String, errno: i32) {
        let _ = self
            .first_errno
            .compare_exchange(0, errno, Ordering::Relaxed, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(message);
    }

    fn chain_ended(&self) {
        // AcqRel: the last chain's decrement sees every other chain's.
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1
            && let Some(tx) = self.ended.lock().unwrap_or_else(|p| p.into_inner()).take()
        {
            let _ = tx.send(());
        }
    }
}

/// Submits the chain's next I/O (reusing `ended`'s bio and buffer), or ends
/// the chain.
fn submit_next(shared: &Arc<Shared>, ended: Option<EndedBio>, mut rng: u64) {
    let Some((op, offset)) = shared.next(&mut rng) else {
        drop(ended);
        shared.chain_ended();
        return;
    };
    let s = Arc::clone(shared);
    let fill = |buf: &mut [u8]| {
        if op == Op::Write
            && let Some(v) = &shared.verifier
        {
            v.fill(buf, offset);
        }
    };
    let make = move |submitted: Instant| {
        move |ended: EndedBio| on_complete(s, ended, op, offset, submitted, rng)
    };
    let bio = match ended {
        Some(mut ended) => {
            fill(ended.buf_mut());
            ended.retarget(op, offset);
            ended.into_bio(make(Instant::now()))
        }
        None => {
            let mut buf = shared.dev.buf(shared.bs as usize);
            buf.fill(0xa5);
            fill(&mut buf);
            Bio::new(op, offset, buf, make(Instant::now()))
        }
    };
    if let Err(e) = shared.dev.submit(bio.with_flags(shared.flags)) {
        shared.fail(submit_error_in_cli_terms(e, &shared.dev).to_string());
        shared.chain_ended();
    }
}

fn on_complete(s: Arc<Shared>, ended: EndedBio, op: Op, offset: u64, submitted: Instant, rng: u64) {
    let ns = submitted.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
    let (dir, name) = match op {
        Op::Read => (&s.read, "read"),
        _ => (&s.write, "write"),
    };
    match ended.result() {
        Ok(n) if n as u64 == s.bs => {
            dir.lat.record(ns);
            dir.ios.fetch_add(1, Ordering::Relaxed);
            dir.bytes.fetch_add(n as u64, Ordering::Relaxed);
            s.done_bytes.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(hit) = ended.cached_bytes() {
                s.cache_hits.fetch_add(hit, Ordering::Relaxed);
                s.cache_measured.store(true, Ordering::Relaxed);
            }
            if op == Op::Read
                && let Some(v) = &s.verifier
            {
                // Counted (and the first errors kept) by the verifier.
                let _ = v.check(ended.buf(), offset);
            }
        }
        Ok(n) => s.fail(format!(
            "short {name} at offset {offset} of {}: {n} of {} bytes; is the target smaller than --size?",
            s.path.display(),
            s.bs
        )),
        Err(e) => s.fail_errno(
            format!(
                "{name} of {} bytes at offset {offset} of {} failed: {e}",
                s.bs,
                s.path.display()
            ),
            e.raw_os_error().unwrap_or(libc::EIO),
        ),
    }
    submit_next(&s, Some(ended), rng);
}

/// Fsyncs `dev` through the engine: `Err` for a flush that could not be
/// made, `Ok(Err)` for one that failed (the device reported a write-back
/// error).
fn fsync(dev: &Device) -> anyhow::Result<std::io::Result<()>> {
    let (tx, rx) = mpsc::channel();
    dev.submit(Bio::flush(move |done| {
        let _ = tx.send(done.result().map(|_| ()));
    }))
    .map_err(|e| anyhow::anyhow!("{}", e.message()))?;
    rx.recv_timeout(END_TIMEOUT)
        .context("the fsync did not finish in 10 minutes")
}

fn progress_bar(show: bool, len: Option<u64>, prefix: String) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    let template = if len.is_some() {
        "{prefix:>15} [{bar:24}] {percent:>3}% {binary_bytes_per_sec:>12} {elapsed:>3}"
    } else {
        "{prefix:>15} {binary_bytes:>10} {binary_bytes_per_sec:>12} {elapsed:>3}"
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix);
    bar
}

fn open(
    engine: &Engine,
    target: &Target,
    spec: &JobSpec,
    read_only: bool,
) -> anyhow::Result<Device> {
    let o = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .direct(spec.mode == Mode::Direct);
    let mut o = dontcache::open_options(o, spec.mode, spec.dontcache_emulated);
    if let Some(bytes) = spec.dontcache_backlog {
        o = o.dontcache_backlog_bytes_max(bytes);
    }
    let dev = engine
        .open(&target.path, o)
        .map_err(open_error_in_cli_terms)?;
    let lbs = u64::from(dev.logical_block_size());
    if spec.mode == Mode::Direct && !spec.bs.is_multiple_of(lbs) {
        bail!(
            "--bs {} is not a multiple of the logical block size {lbs} of {}, which direct I/O needs; use --bs {}",
            spec.bs,
            target.path.display(),
            spec.bs.div_ceil(lbs) * lbs
        );
    }
    Ok(dev)
}

fn build_engine(spec: &JobSpec, depth: u32) -> anyhow::Result<(Completer, Engine)> {
    let completer = Completer::builder()
        .build()
        .context("cannot start the endio completer")?;
    let mut builder = Engine::builder(completer.clone())
        .queue_depth(depth)
        .submit_batch(spec.submit_batch);
    if spec.registered_buffers {
        // A block per I/O in flight (blocks are powers of two from 4 KiB).
        let block = usize::try_from(spec.bs)
            .unwrap_or(usize::MAX)
            .max(4096)
            .next_power_of_two();
        let bytes = block.saturating_mul(depth as usize).min(1 << 30);
        builder = builder.registered_buffers(bytes);
    }
    if let Some(b) = spec.backend {
        builder = builder.backend(b);
    }
    let engine = builder.build().map_err(engine_error_in_cli_terms)?;
    Ok((completer, engine))
}

/// The seed of clone `k` of a job: its own random offsets and read/write
/// mix (clone 0 has the job's).
fn clone_seed(seed: u64, k: u32) -> u64 {
    seed.wrapping_add(u64::from(k))
}

/// What a job reports: the aggregate of its clones (the job's own entry,
/// what the table shows), and with `--numjobs` above 1 each clone's.
#[derive(Debug)]
pub(crate) struct JobResult {
    pub(crate) aggregate: JobReport,
    pub(crate) clones: Vec<JobReport>,
    pub(crate) backend: Backend,
}

/// Runs one job on `target` (its cache is invalidated first): `numjobs`
/// clones of the workload at the same time, each with its own chains,
/// random sequence and counters, sharing the engine, completer and device.
pub(crate) fn run(
    target: &Target,
    spec: &JobSpec,
    sampler: Option<&Sampler>,
    verifier: Option<Arc<Verifier>>,
    progress: bool,
) -> anyhow::Result<JobResult> {
    let left_cached = target.invalidate()?;
    let numjobs = spec.numjobs.max(1);
    let (completer, engine) = build_engine(spec, spec.iodepth.saturating_mul(numjobs))?;
    let dev = open(&engine, target, spec, !spec.rw.writes())?;
    let blocks = target.size / spec.bs;
    let (tx, rx) = mpsc::channel();
    let usage_before = crate::rusage::now()?;
    let device_read_before = crate::rusage::storage_read_bytes();
    let start = Instant::now();
    let mut samples = vec![sample(sampler, start, 0)];
    let chains = u64::from(spec.iodepth).min(blocks) as u32;
    let clones: Vec<Arc<Shared>> = (0..numjobs)
        .map(|k| {
            Arc::new(Shared::new(
                &dev,
                &target.path,
                Workload {
                    rw: spec.rw,
                    bs: spec.bs,
                    blocks,
                    total_ios: if spec.time_based { u64::MAX } else { blocks },
                    deadline: spec.runtime.map(|r| start + r),
                    seed: clone_seed(spec.seed, k),
                    rwmixread: spec.rwmixread,
                },
                verifier.clone(),
                chains,
                tx.clone(),
            ))
        })
        .collect();
    // Each clone holds a sender: the channel disconnects once every clone
    // has ended.
    drop(tx);
    let done_bytes = || -> u64 {
        clones
            .iter()
            .map(|c| c.done_bytes.load(Ordering::Relaxed))
            .sum()
    };
    let bar = progress_bar(
        progress,
        (!spec.time_based).then_some(blocks * spec.bs * u64::from(numjobs)),
        format!("{} {}", spec.mode.name(), spec.rw.name()),
    );
    for shared in &clones {
        for i in 0..chains {
            let rng = (shared.seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(2 * u64::from(i) + 1) | 1;
            submit_next(shared, None, rng);
        }
        if chains == 0 {
            shared
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        }
    }
    // Step 4: sample until the last chain of the last clone ends.
    let mut running = numjobs;
    let mut next_tick = start + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(()) => {
                running -= 1;
                if running == 0 {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let done = done_bytes();
                samples.push(sample(sampler, start, done));
                bar.set_position(done);
                if interrupt::interrupted() {
                    for c in &clones {
                        c.stop.store(true, Ordering::Relaxed);
                    }
                }
                next_tick += TICK;
            }
        }
    }
    // Step 5.
    dev.drain();
    if !completer.wait_idle(END_TIMEOUT) {
        bail!("the completer did not finish the job's handlers in 10 minutes");
    }
    let io_errors: u64 = clones
        .iter()
        .map(|c| c.errors.load(Ordering::Relaxed))
        .sum();
    let mut fsync_s = None;
    // The job's own failure (its figures are kept, the next jobs run): the
    // message and errno of a failed fsync.
    let mut fsync_error = None;
    if spec.rw.writes() && spec.end_fsync && io_errors == 0 {
        let t = Instant::now();
        if let Err(e) = fsync(&dev)? {
            fsync_error = Some((
                format!(
                    "fsync of {} failed: {e}; data written by this job did not reach the device",
                    target.path.display()
                ),
                e.raw_os_error().unwrap_or(libc::EIO),
            ));
        }
        fsync_s = Some(t.elapsed().as_secs_f64());
    }
    dev.drain();
    if spec.rw.writes() {
        // Without --end-fsync (or after a failed write) a write-back error
        // would otherwise go unseen: ask the kernel, consuming nothing.
        let _ = dev.check_writeback();
    }
    let writeback = dev.writeback_errors();
    let seconds = start.elapsed().as_secs_f64();
    let usage = crate::rusage::now()?.since(&usage_before);
    let device_read_bytes = crate::rusage::storage_read_bytes()
        .zip(device_read_before)
        .map(|(after, before)| after.saturating_sub(before));
    samples.push(sample(sampler, start, done_bytes()));
    bar.finish_and_clear();
    let stats = completer.stats().total;
    let drive = engine.drive_stats();
    let buffers = engine.buffer_stats();
    let dontcache = dontcache::report(&dev);
    let backend = engine.backend();
    if let Some(v) = &verifier {
        for e in v.errors().iter().take(4) {
            eprintln!("{} {}: {e}", spec.mode.name(), spec.rw.name());
        }
    }
    let verify = verifier.map(|v| v.stats()).unwrap_or_default();
    let interrupted = interrupt::interrupted();
    // The job-wide figures (CPU, page cache, deferral, verify, dontcache,
    // fsync, write-back) are the same in the aggregate and in each clone.
    let report_of = |read: &Direction, write: &Direction, errors: Outcome| {
        report::job_report(report::JobInputs {
            spec,
            seconds,
            read,
            write,
            usage,
            stats,
            drive,
            buffers,
            samples: samples.clone(),
            left_cached,
            dontcache: dontcache.clone(),
            verify,
            fsync_s,
            errors: errors.count,
            first_error: errors.first,
            first_errno: errors.first_errno,
            writeback,
            interrupted,
            device_read_bytes,
            cache_hit_bytes: errors.cache_hit_bytes,
        })
    };
    let mut per_clone: Vec<Outcome> = clones.iter().map(|c| Outcome::of(c)).collect();
    let mut aggregate = Outcome::sum(&per_clone);
    if let Some((message, errno)) = fsync_error {
        aggregate.count += 1;
        aggregate.first.get_or_insert(message);
        if aggregate.first_errno == 0 {
            aggregate.first_errno = errno;
        }
    }
    let report = report_of(
        &Direction::sum(clones.iter().map(|c| &c.read)),
        &Direction::sum(clones.iter().map(|c| &c.write)),
        aggregate,
    );
    let clone_reports = if numjobs == 1 {
        Vec::new()
    } else {
        clones
            .iter()
            .zip(per_clone.drain(..))
            .zip(0..)
            .map(|((c, errors), k)| {
                let mut r = report_of(&c.read, &c.write, errors);
                r.clone = Some(k);
                r
            })
            .collect()
    };
    if let Some(e) = &report.error_message {
        eprintln!("{} {}: {e}", spec.mode.name(), spec.rw.name());
    }
    if let Some(e) = &report.writeback_first_error {
        eprintln!(
            "{} {}: write-back of written data failed ({} reports, first: {e}); that data did not reach {}",
            spec.mode.name(),
            spec.rw.name(),
            report.writeback_errors,
            target.path.display()
        );
    }
    Ok(JobResult {
        aggregate: report,
        clones: clone_reports,
        backend,
    })
}

/// What a clone counted besides its I/Os (errors, cache hits), or a job's
/// clones together.
#[derive(Debug, Default)]
struct Outcome {
    count: u64,
    first: Option<String>,
    first_errno: i32,
    cache_hit_bytes: Option<u64>,
}

impl Outcome {
    fn of(s: &Shared) -> Outcome {
        Outcome {
            count: s.errors.load(Ordering::Relaxed),
            first: s
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            first_errno: s.first_errno.load(Ordering::Relaxed),
            cache_hit_bytes: s
                .cache_measured
                .load(Ordering::Relaxed)
                .then(|| s.cache_hits.load(Ordering::Relaxed)),
        }
    }

    /// Counts and hits added; the first error of the first clone that had
    /// one.
    fn sum(parts: &[Outcome]) -> Outcome {
        let mut all = Outcome::default();
        for p in parts {
            all.count += p.count;
            if all.first.is_none() {
                all.first.clone_from(&p.first);
            }
            if all.first_errno == 0 {
                all.first_errno = p.first_errno;
            }
            if let Some(hit) = p.cache_hit_bytes {
                *all.cache_hit_bytes.get_or_insert(0) += hit;
            }
        }
        all
    }
}

fn sample(sampler: Option<&Sampler>, start: Instant, bytes: u64) -> Sample {
    let r = sampler.and_then(Sampler::sample);
    Sample {
        t_s: start.elapsed().as_secs_f64(),
        bytes,
        resident_bytes: r.map(|r| r.cached_bytes),
        dirty_bytes: r.map(|r| r.dirty_bytes + r.writeback_bytes),
    }
}

/// After a write job with `--verify`: drops the cache and reads the whole
/// range back from the device (direct I/O where the target allows it),
/// checking every block.
pub(crate) fn verify_pass(
    target: &Target,
    spec: &JobSpec,
    verifier: Option<Arc<Verifier>>,
) -> anyhow::Result<VerifyStats> {
    let Some(verifier) = verifier else {
        return Ok(VerifyStats::default());
    };
    target.invalidate()?;
    let mut read = JobSpec {
        mode: Mode::Direct,
        rw: Rw::Read,
        runtime: None,
        time_based: false,
        end_fsync: false,
        ..spec.clone()
    };
    let (_completer, engine) = build_engine(&read, spec.iodepth)?;
    let dev = match open(&engine, target, &read, true) {
        Ok(dev) => dev,
        Err(_) if target.kind == Kind::File => {
            read.mode = Mode::Buffered;
            open(&engine, target, &read, true)?
        }
        Err(e) => return Err(e),
    };
    let blocks = target.size / spec.bs;
    let (tx, rx) = mpsc::channel();
    let chains = u64::from(spec.iodepth).min(blocks) as u32;
    let shared = Arc::new(Shared::new(
        &dev,
        &target.path,
        Workload {
            rw: Rw::Read,
            bs: spec.bs,
            blocks,
            total_ios: blocks,
            deadline: None,
            seed: spec.seed,
            rwmixread: spec.rwmixread,
        },
        Some(Arc::clone(&verifier)),
        chains,
        tx,
    ));
    for i in 0..chains {
        submit_next(&shared, None, u64::from(i) + 1);
    }
    if chains > 0 {
        let _ = rx.recv();
    }
    dev.drain();
    engine.completer().wait_idle(END_TIMEOUT);
    if let Some(e) = shared
        .first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        bail!("{e}");
    }
    for e in verifier.errors().iter().take(4) {
        eprintln!(
            "read-back after {} {}: {e}",
            spec.mode.name(),
            spec.rw.name()
        );
    }
    Ok(verifier.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_random_pass_touches_every_block_once() {
        for n in [1u64, 2, 3, 7, 8, 9, 1000, 4096, 12345] {
            for seed in [0, 0x5eed, u64::MAX] {
                let mut seen = vec![false; n as usize];
                for i in 0..n {
                    let b = shuffle(i, n, seed);
                    assert!(b < n && !seen[b as usize], "n {n} seed {seed} i {i} -> {b}");
                    seen[b as usize] = true;
                }
            }
        }
        // Neither the identity nor sequential.
        let firsts: Vec<u64> = (0..8).map(|i| shuffle(i, 1 << 20, 1)).collect();
        assert!(firsts.windows(2).any(|w| w[1] != w[0] + 1), "{firsts:?}");
    }
}
