//! fsx-style randomized test of dontcache I/O (xfstests' fsx runs
//! `RWF_DONTCACHE` by default): a seeded random mix of reads, writes
//! (page-aligned and unaligned, most of them over earlier data), `drain()`,
//! `fdatasync`, and close/reopen, with up to 8 non-overlapping I/Os in
//! flight, on an ext4 file and (as root) a loop block device, checked
//! against an in-memory model of the contents after every read. After every
//! `drain()` of a dontcache device nothing may be dirty: every write's
//! writeback finished before its drop.
//!
//! ```text
//! ENDIO_FSX_SEED=0x1234      replay a run (the seed is printed first)
//! ENDIO_FSX_OPS=1000000      operations per configuration (default 50000:
//!                            150000 in all, 100000 without root)
//! ENDIO_FSX_MODE=buffered    buffered I/O instead of dontcache; also:
//!                            dontcache (default: native where the kernel
//!                            has it, on the file; emulated forced on a
//!                            second file and the loop device), emulated,
//!                            mixed (buffered device, per-bio DONTCACHE on a
//!                            random half of the I/Os), all
//! ENDIO_FSX_DEBUG=1          after each drain with pages cached, list them
//!                            and the logged operations that touched them
//! ENDIO_BACKEND=threads      the thread-pool backend instead of io_uring
//! ```
//!
//! At the end, after a read of everything through a fresh open, at most
//! 10 % of the region may be cached in an all-dontcache mode: a systematic
//! leak (pages no drop ever covers) fails the run.
//!
//! The operation sequence depends on the seed only, not on completion
//! timing, so a seed replays the same operations.

mod common;

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::io_target::{disk_dir, engine, loop_device_or_skip};
use endio::CacheStatSource;
use endio::{Backend, Bio, BioFlags, Buf, Device, DontcacheStats, EndedBio, Engine, OpenOptions};

/// Bytes of the region the operations touch.
const SIZE: u64 = 4 << 20;
/// The longest read or write.
const IO_MAX: u64 = 32 << 10;
/// Operations in flight at most (non-overlapping).
const INFLIGHT_MAX: usize = 16;
/// Operations logged (the last 24 go into a failure report, all of them
/// into `ENDIO_FSX_DEBUG`'s).
const LOG_KEPT: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `OpenOptions::dontcache`: native where the kernel has it.
    Dontcache,
    /// `OpenOptions::dontcache_emulated`.
    Emulated,
    /// Plain buffered.
    Buffered,
    /// Buffered device, per-bio `BioFlags::DONTCACHE` on half the I/Os.
    Mixed,
}

impl Mode {
    fn options(self) -> OpenOptions {
        let o = OpenOptions::new().read(true).write(true);
        match self {
            Mode::Dontcache => o.dontcache(true),
            Mode::Emulated => o.dontcache_emulated(true),
            Mode::Buffered | Mode::Mixed => o,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Dontcache => "dontcache",
            Mode::Emulated => "emulated",
            Mode::Buffered => "buffered",
            Mode::Mixed => "mixed",
        }
    }

    fn all_dontcache(self) -> bool {
        matches!(self, Mode::Dontcache | Mode::Emulated)
    }
}

/// The modes this run covers for a target whose default is `default`.
fn modes(default: Mode) -> Vec<Mode> {
    match std::env::var("ENDIO_FSX_MODE").as_deref() {
        Ok("buffered") => vec![Mode::Buffered],
        Ok("dontcache") => vec![Mode::Dontcache],
        Ok("emulated") => vec![Mode::Emulated],
        Ok("mixed") => vec![Mode::Mixed],
        Ok("all") => vec![Mode::Dontcache, Mode::Emulated, Mode::Buffered, Mode::Mixed],
        Ok("") | Err(_) => vec![default],
        Ok(other) => {
            panic!("ENDIO_FSX_MODE={other}: use dontcache, emulated, buffered, mixed or all")
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The run's seed: `ENDIO_FSX_SEED`, else from the clock.
fn seed() -> u64 {
    env_u64("ENDIO_FSX_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ u64::from(std::process::id()) << 32
    })
}

/// The command that replays the run of `mode` with `seed` on the target of
/// the test function `test` (`fsx_file` or `fsx_loop_device`).
fn replay(test: &str, mode: Mode, seed: u64) -> String {
    format!(
        "ENDIO_FSX_SEED={seed:#x} ENDIO_FSX_MODE={} cargo test --release -p endio --test fsx {test} -- --exact --nocapture",
        mode.name()
    )
}

/// splitmix64: a small, good, seedable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let x = self.next().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Read { range: Range<u64>, dontcache: bool },
    Write { range: Range<u64>, dontcache: bool },
    Flush,
    Drain,
    Reopen,
}

/// Draws operation `n` (the sequence depends on the seed only).
fn draw(rng: &mut Rng, mode: Mode, written_end: u64) -> Op {
    let page = 4096;
    let dontcache = mode == Mode::Mixed && rng.below(2) == 0;
    let pick = rng.below(1000);
    let range = |rng: &mut Rng| -> Range<u64> {
        if rng.below(2) == 0 {
            // Page-aligned.
            let len = (1 + rng.below(IO_MAX / page)) * page;
            let start = rng.below((SIZE - len) / page + 1) * page;
            start..start + len
        } else {
            let len = 1 + rng.below(IO_MAX);
            let start = rng.below(SIZE - len + 1);
            start..start + len
        }
    };
    match pick {
        0..=439 => {
            let mut r = range(rng);
            // Most reads look at written data.
            if written_end > 0 && rng.below(4) != 0 && r.start >= written_end {
                let len = r.end - r.start;
                let start = rng.below(written_end);
                r = start..(start + len).min(SIZE);
            }
            Op::Read {
                range: r,
                dontcache,
            }
        }
        440..=979 => {
            let mut r = range(rng);
            // Overwrites: most writes land on data already written.
            if written_end > 0 && rng.below(3) != 0 && r.start >= written_end {
                let len = r.end - r.start;
                let start = rng.below(written_end);
                r = start..(start + len).min(SIZE);
            }
            Op::Write {
                range: r,
                dontcache,
            }
        }
        980..=989 => Op::Flush,
        990..=997 => Op::Drain,
        _ => Op::Reopen,
    }
}

/// A completion: the operation's number and its ended bio.
type Done = (u64, EndedBio);

struct Fsx {
    name: String,
    replay: String,
    seed: u64,
    mode: Mode,
    engine: Engine,
    path: PathBuf,
    dev: Option<Device>,
    model: Vec<u8>,
    /// Operations in flight: number, range (empty for a flush), op.
    inflight: Vec<(u64, Range<u64>, Op)>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    log: VecDeque<(u64, Op)>,
    reads: u64,
    read_bytes: u64,
    writes: u64,
    drains: u64,
    reopens: u64,
    dirty_checks: u64,
    debug_seen: Vec<u64>,
    stats: DontcacheStats,
}

impl Fsx {
    fn fail(&self, n: u64, what: String) -> ! {
        let skip = self.log.len().saturating_sub(24);
        let log: Vec<String> = self
            .log
            .iter()
            .skip(skip)
            .map(|(i, op)| format!("  #{i}: {op:?}"))
            .collect();
        panic!(
            "fsx {} failed at operation #{n}: {what}\nlast operations:\n{}\nreplay: {}",
            self.name,
            log.join("\n"),
            self.replay,
        );
    }

    /// Closes the device, adding its dontcache counters to the run's.
    fn close(&mut self) {
        if let Some(dev) = self.dev.take() {
            let s = dev.dontcache_stats();
            let t = &mut self.stats;
            t.native_ios += s.native_ios;
            t.emulated_ios += s.emulated_ios;
            t.drops += s.drops;
            t.drop_calls += s.drop_calls;
            t.coalesced += s.coalesced;
            t.redrops += s.redrops;
            t.abandoned_bytes += s.abandoned_bytes;
            t.bytes_dropped += s.bytes_dropped;
            t.native_leftover_bytes += s.native_leftover_bytes;
            t.kept_bytes += s.kept_bytes;
            t.writeback_waits += s.writeback_waits;
            t.writeback_errors += s.writeback_errors;
            t.inflight_bytes_max = t.inflight_bytes_max.max(s.inflight_bytes_max);
            t.backpressure_waits += s.backpressure_waits;
            t.rescue_calls += s.rescue_calls;
            t.residency_queries += s.residency_queries;
        }
    }

    fn dev(&self) -> &Device {
        self.dev.as_ref().expect("device open")
    }

    fn open(&mut self) {
        let dev = self
            .engine
            .open(&self.path, self.mode.options())
            .unwrap_or_else(|e| panic!("fsx {}: open: {e}", self.name));
        self.dev = Some(dev);
    }

    /// Handles one completion (blocking until it comes).
    fn reap_one(&mut self) {
        let (n, ended) = self
            .rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| self.fail(u64::MAX, "no completion within 60 s".into()));
        let at = self
            .inflight
            .iter()
            .position(|(i, ..)| *i == n)
            .unwrap_or_else(|| self.fail(n, "completion of an operation not in flight".into()));
        let (_, range, op) = self.inflight.swap_remove(at);
        match op {
            Op::Read { .. } => {
                let len = (range.end - range.start) as usize;
                match ended.result() {
                    Ok(got) if got == len => {}
                    other => self.fail(n, format!("read of {range:?} returned {other:?}")),
                }
                let want = &self.model[range.start as usize..range.end as usize];
                if &ended.buf()[..] != want {
                    let first = ended
                        .buf()
                        .iter()
                        .zip(want)
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    self.fail(
                        n,
                        format!(
                            "read of {range:?} differs from the model first at byte {} (offset {}): got {:#04x}, want {:#04x}",
                            first,
                            range.start + first as u64,
                            ended.buf()[first],
                            want[first]
                        ),
                    );
                }
                self.reads += 1;
                self.read_bytes += len as u64;
            }
            Op::Write { .. } => match ended.result() {
                Ok(got) if got as u64 == range.end - range.start => self.writes += 1,
                other => self.fail(n, format!("write of {range:?} returned {other:?}")),
            },
            Op::Flush => {
                if let Err(e) = ended.result() {
                    self.fail(n, format!("fdatasync failed: {e}"));
                }
            }
            Op::Drain | Op::Reopen => unreachable!(),
        }
    }

    fn quiesce(&mut self) {
        while !self.inflight.is_empty() {
            self.reap_one();
        }
    }

    /// After a drain of an all-dontcache device: nothing dirty, nothing
    /// under writeback (every write's writeback finished before its drop).
    fn check_clean(&mut self, n: u64) {
        if !self.mode.all_dontcache() {
            return;
        }
        let file = std::fs::File::open(&self.path).expect("open for cachestat");
        let r = endio::residency(&file, 0..SIZE).expect("residency");
        if std::env::var_os("ENDIO_FSX_DEBUG").is_some() && r.cached_bytes > 0 {
            eprintln!("#{n}: after drain {r:?}");
            for pg in 0..SIZE / 4096 {
                let one = endio::residency(&file, pg * 4096..(pg + 1) * 4096).unwrap();
                if one.cached_bytes > 0 && !self.debug_seen.contains(&pg) {
                    self.debug_seen.push(pg);
                    let (s, e) = (pg * 4096, (pg + 1) * 4096);
                    let touching: Vec<String> = self
                        .log
                        .iter()
                        .filter(|(_, op)| match op {
                            Op::Read { range, .. } | Op::Write { range, .. } => {
                                range.start < e && s < range.end
                            }
                            _ => false,
                        })
                        .map(|(i, op)| format!("#{i} {op:?}"))
                        .collect();
                    eprintln!("  page {pg} cached; touched by {touching:?}");
                }
            }
        }
        if r.source != CacheStatSource::Cachestat {
            return;
        }
        if r.dirty_bytes + r.writeback_bytes != 0 {
            self.fail(n, format!("after drain(), {r:?}: dirty or under writeback"));
        }
        self.dirty_checks += 1;
    }

    fn run(&mut self, ops: u64) {
        let mut rng = Rng(self.seed);
        let mut written_end = 0u64;
        for n in 0..ops {
            let op = draw(&mut rng, self.mode, written_end);
            if self.log.len() == LOG_KEPT {
                self.log.pop_front();
            }
            self.log.push_back((n, op.clone()));
            match &op {
                Op::Drain => {
                    self.quiesce();
                    self.dev().drain();
                    self.drains += 1;
                    self.check_clean(n);
                    continue;
                }
                Op::Reopen => {
                    self.quiesce();
                    self.dev().drain();
                    self.check_clean(n);
                    self.close();
                    self.open();
                    self.reopens += 1;
                    continue;
                }
                _ => {}
            }
            let range = match &op {
                Op::Read { range, .. } | Op::Write { range, .. } => range.clone(),
                _ => 0..0,
            };
            // Wait for room and for every overlapping I/O to finish.
            while self.inflight.len() >= INFLIGHT_MAX
                || self
                    .inflight
                    .iter()
                    .any(|(_, r, _)| r.start < range.end && range.start < r.end)
            {
                self.reap_one();
            }
            let tx = self.tx.clone();
            let handler = move |e: EndedBio| {
                let _ = tx.send((n, e));
            };
            let len = (range.end - range.start) as usize;
            let bio = match &op {
                Op::Read { dontcache, .. } => {
                    let b = Bio::read(range.start, Buf::zeroed(len, 1), handler);
                    if *dontcache {
                        b.with_flags(BioFlags::DONTCACHE)
                    } else {
                        b
                    }
                }
                Op::Write { dontcache, .. } => {
                    let mut buf = Buf::zeroed(len, 1);
                    rng.fill(&mut buf);
                    self.model[range.start as usize..range.end as usize].copy_from_slice(&buf);
                    written_end = written_end.max(range.end);
                    let b = Bio::write(range.start, buf, handler);
                    if *dontcache {
                        b.with_flags(BioFlags::DONTCACHE)
                    } else {
                        b
                    }
                }
                Op::Flush => Bio::flush(handler),
                Op::Drain | Op::Reopen => unreachable!(),
            };
            // Half the handlers run in task context, half inline in the
            // backend's (atomic) completion thread.
            let bio = if n % 2 == 0 {
                bio.with_flags(BioFlags::COMPLETE_IN_TASK)
            } else {
                bio
            };
            self.inflight.push((n, range, op));
            if let Err(e) = self.dev().submit(bio) {
                self.fail(n, format!("submit refused: {e}"));
            }
        }
        self.quiesce();
        self.dev().drain();
        self.check_clean(ops);
        // Everything once more, through a fresh open of the device.
        self.close();
        self.open();
        let mut at = 0;
        while at < SIZE {
            let len = IO_MAX.min(SIZE - at);
            let n = ops + at / IO_MAX;
            let tx = self.tx.clone();
            self.inflight.push((
                n,
                at..at + len,
                Op::Read {
                    range: at..at + len,
                    dontcache: false,
                },
            ));
            self.dev()
                .submit(Bio::read(at, Buf::zeroed(len as usize, 1), move |e| {
                    let _ = tx.send((n, e));
                }))
                .unwrap();
            self.reap_one();
            at += len;
        }
        self.dev().drain();
    }
}

/// Runs `ENDIO_FSX_OPS` (else `default_ops`) operations on `path` (a file
/// or a loop device; `test` names the test function of that target) in
/// `mode`. Prints the seed first.
fn fsx(test: &str, path: &Path, mode: Mode, default_ops: u64) {
    let ops = env_u64("ENDIO_FSX_OPS").unwrap_or(default_ops);
    let seed = seed();
    let name = format!("{test}[{}]", mode.name());
    let replay = replay(test, mode, seed);
    eprintln!("fsx {name}: seed {seed:#x} (replay: {replay})");
    // The model starts as zeros, uncached: so must the target (a loop
    // device is reused across modes).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open the target");
        f.write_all_at(&vec![0u8; SIZE as usize], 0)
            .expect("zero the target");
        f.sync_data().expect("fdatasync the target");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    }
    let backend = match std::env::var("ENDIO_BACKEND")
        .ok()
        .and_then(|v| Backend::parse_env(&v).ok().flatten())
    {
        Some(b) => b,
        None if endio::testing::probe_io_uring(Path::new("/proc")).is_ok() => Backend::Uring,
        None => Backend::Threads,
    };
    let (completer, engine) = engine(backend, 32);
    let (tx, rx) = mpsc::channel();
    let mut fsx = Fsx {
        name: name.clone(),
        replay,
        seed,
        mode,
        engine,
        path: path.to_owned(),
        dev: None,
        model: vec![0u8; SIZE as usize],
        inflight: Vec::new(),
        tx,
        rx,
        log: VecDeque::new(),
        reads: 0,
        read_bytes: 0,
        writes: 0,
        drains: 0,
        reopens: 0,
        dirty_checks: 0,
        debug_seen: Vec::new(),
        stats: DontcacheStats::default(),
    };
    fsx.open();
    let dc_mode = fsx.dev().dontcache_mode();
    let start = Instant::now();
    fsx.run(ops);
    let end = std::fs::File::open(path)
        .and_then(|f| endio::residency(&f, 0..SIZE))
        .expect("residency");
    fsx.close();
    let stats = fsx.stats;
    eprintln!(
        "fsx {name}: {ops} ops ({} reads of {} MiB checked, {} writes, {} drains, {} reopens, {} clean checks) in {:.1} s on {backend}, {mode:?} ({dc_mode:?}); {} KiB of {} KiB cached at the end; dontcache {stats:?}",
        fsx.reads,
        fsx.read_bytes >> 20,
        fsx.writes,
        fsx.drains,
        fsx.reopens,
        fsx.dirty_checks,
        start.elapsed().as_secs_f64(),
        end.cached_bytes >> 10,
        SIZE >> 10,
    );
    if mode.all_dontcache() && end.source == CacheStatSource::Cachestat {
        assert!(
            end.cached_bytes <= SIZE / 10,
            "fsx {name}: {} KiB of {} KiB still cached at the end of a dontcache run (seed {seed:#x})",
            end.cached_bytes >> 10,
            SIZE >> 10
        );
    }
    drop(fsx);
    assert!(completer.wait_idle(Duration::from_secs(60)));
}

fn file_target(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(SIZE))
        .expect("fsx file");
    path
}

#[test]
fn fsx_file() {
    let dir = disk_dir();
    for mode in modes(Mode::Dontcache) {
        let path = file_target(dir.path(), &format!("fsx-{mode:?}"));
        fsx("fsx_file", &path, mode, 50_000);
    }
}

#[test]
fn fsx_file_emulated() {
    if std::env::var("ENDIO_FSX_MODE").is_ok_and(|m| !m.is_empty() && m != "dontcache") {
        eprintln!("skipped fsx_file_emulated: ENDIO_FSX_MODE picks the modes of fsx_file");
        return;
    }
    let dir = disk_dir();
    let path = file_target(dir.path(), "fsx-emulated");
    // Replayed by fsx_file with ENDIO_FSX_MODE=emulated.
    fsx("fsx_file", &path, Mode::Emulated, 50_000);
}

#[test]
fn fsx_loop_device() {
    let Some(lo) = loop_device_or_skip("fsx_loop_device", SIZE, None) else {
        return;
    };
    for mode in modes(Mode::Dontcache) {
        fsx("fsx_loop_device", lo.path(), mode, 50_000);
    }
}
