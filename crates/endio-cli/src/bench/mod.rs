//! `endio bench`: fio-like I/O benchmarks that put buffered, dontcache and
//! direct I/O side by side — throughput, latency, CPU and, above all, the
//! page-cache footprint.
//!
//! 1. The target: `--target PATH` (a file, created if missing, or a block
//!    device), else a temporary file in `$TMPDIR` (the embedded default),
//!    or with `--bdev` a loop device over one. A temporary target, a file
//!    shorter than `--size`, or any target of a `--verify` run (all of
//!    which it reads back) is first laid out: written whole (direct I/O where possible), with the verify
//!    pattern when verifying.
//! 2. With `--memcg SIZE` the process moves into a memory cgroup of that
//!    limit first ([`memcg`]), and back out at the end.
//! 3. The jobs: for each `--mode` (default: buffered, dontcache, direct),
//!    each `--rw` pattern (default: write, then read) in turn, on the same
//!    target. Before each job the target's page cache is invalidated (fsync
//!    and `POSIX_FADV_DONTNEED`, fio's `invalidate=1`); each job has its own
//!    completer and engine, so its deferral counters are its own.
//! 4. A job ([`job`]) runs `--numjobs` clones of the workload at once, each
//!    keeping `--iodepth` bios in flight in a closed loop:
//!    each completion handler, run in task context by the completer,
//!    records the latency, checks a read against the verify pattern, and
//!    submits the next I/O. The main thread samples the target's page-cache
//!    residency every 100 ms (`cachestat(2)`) and draws the progress bar.
//!    A job ends after `--size` bytes or `--runtime`, whichever comes first
//!    (with `--time-based`, at `--runtime` only, going over the range again);
//!    a job that wrote then fsyncs (`--end-fsync`, on by default) and the
//!    time includes it.
//! 5. The report ([`report`]): a table per access pattern with a column per
//!    mode, `--json` (one object per job: endio's fields, [`JobReport`],
//!    plus fio's `jobs[].read|write` keys; with `--numjobs` above 1 the
//!    job's object is the aggregate of its clones, followed by one object
//!    per clone), and `--plot` ([`plot`]).
//!
//! fio's spellings of these options are understood or answered with what
//! endio does instead ([`fio`]).

mod cli_terms;
mod dontcache;
mod fio;
mod job;
mod leftovers;
mod loopdev;
mod memcg;
mod plot;
mod report;
mod spec;
mod supervise;
mod target;
pub(crate) mod units;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use endio::{Backend, Verifier};
use serde::Serialize;

use crate::interrupt;
pub(crate) use fio::translate as fio_spellings;
use memcg::Cgroup;
use report::{JobReport, RunReport};
use spec::JobSpec;
use target::Target;

/// How a job reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// Through the page cache.
    Buffered,
    /// Through the page cache, dropping what the I/O brought in once it is
    /// done (`RWF_DONTCACHE`, or endio's emulation of it).
    Dontcache,
    /// Around the page cache (`O_DIRECT`).
    Direct,
}

impl Mode {
    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Buffered => "buffered",
            Mode::Dontcache => "dontcache",
            Mode::Direct => "direct",
        }
    }
}

/// The access pattern, as fio's `rw` (whose names the variants keep).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Rw {
    /// Sequential reads.
    Read,
    /// Sequential writes.
    Write,
    /// Random reads.
    Randread,
    /// Random writes.
    Randwrite,
    /// Sequential, half reads and half writes at random.
    Rw,
    /// Random offsets, half reads and half writes.
    Randrw,
}

impl Rw {
    /// Its name on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Rw::Read => "read",
            Rw::Write => "write",
            Rw::Randread => "randread",
            Rw::Randwrite => "randwrite",
            Rw::Rw => "rw",
            Rw::Randrw => "randrw",
        }
    }

    /// Whether it reads.
    pub(crate) fn reads(self) -> bool {
        !matches!(self, Rw::Write | Rw::Randwrite)
    }

    /// Whether it writes.
    pub(crate) fn writes(self) -> bool {
        !matches!(self, Rw::Read | Rw::Randread)
    }

    /// Whether offsets are random.
    pub(crate) fn random(self) -> bool {
        matches!(self, Rw::Randread | Rw::Randwrite | Rw::Randrw)
    }

    /// How the table heads it.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Rw::Read => "sequential read",
            Rw::Write => "sequential write",
            Rw::Randread => "random read",
            Rw::Randwrite => "random write",
            Rw::Rw => "sequential mixed read/write (50/50)",
            Rw::Randrw => "random mixed read/write (50/50)",
        }
    }
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    units::parse_size(s)
}

fn parse_backlog_arg(s: &str) -> Result<u64, String> {
    match units::parse_size(s) {
        Ok(0) => Err(
            "the backlog must hold at least one I/O; --dontcache-backlog takes a size such as 64M"
                .into(),
        ),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}; --dontcache-backlog takes a size such as 64M")),
    }
}

fn parse_memcg_arg(s: &str) -> Result<u64, String> {
    units::parse_size(s).map_err(|e| format!("{e}; --memcg takes the memory limit, e.g. 256M"))
}

/// Options of `endio bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// File or block device to benchmark (a missing file is created). Its
    /// data in the range used is overwritten by write jobs and by the
    /// layout. Without it, a temporary file in $TMPDIR (or /var/tmp if that
    /// is tmpfs) is made and removed: the embedded default.
    #[arg(long, value_name = "PATH", visible_alias = "filename")]
    target: Option<PathBuf>,

    /// Run on a loop block device (root) over a temporary file instead of
    /// the file itself; endio creates it with losetup and removes it.
    #[arg(long, conflicts_with = "target")]
    bdev: bool,

    /// Bytes of the target to use, from offset 0 (k, m, g, t suffixes are
    /// powers of 1024). Default: the target's size; 1G for a temporary or
    /// new file.
    #[arg(long, value_parser = parse_size_arg, value_name = "SIZE")]
    size: Option<u64>,

    /// Access pattern: read, write, randread, randwrite, rw (sequential,
    /// reads and writes mixed as --rwmixread says), randrw. A comma list
    /// runs each in turn for every mode.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "write,read")]
    rw: Vec<Rw>,

    /// Percent of the I/Os of a mixed pattern (rw, randrw) that read; the
    /// rest write.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=100), value_name = "PERCENT")]
    rwmixread: u32,

    /// Block size of each I/O. Default: 1M for sequential patterns, 4k for
    /// random ones.
    #[arg(long, value_parser = parse_size_arg, value_name = "SIZE")]
    bs: Option<u64>,

    /// I/Os kept in flight (by each clone, with --numjobs).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    iodepth: u32,

    /// I/Os the io_uring backend gathers before one system call submits
    /// them (fio's iodepth_batch_submit): 1 submits each at once; --iodepth
    /// submits a whole pass of completions' resubmissions in one call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096), value_name = "N")]
    submit_batch: u32,

    /// Register a buffer pool for the job's buffers with the io_uring rings
    /// (fio's fixedbufs; `EngineBuilder::registered_buffers`), so the kernel
    /// does not pin each I/O's pages; --registered-buffers=false for
    /// ordinary buffers. Sized for the I/Os in flight; its pages are locked
    /// in memory (without root, RLIMIT_MEMLOCK may refuse it: then endio
    /// says so and uses the buffers as ordinary memory).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    registered_buffers: bool,

    /// Clones of each job run at the same time on the target, as fio's
    /// numjobs: each keeps its own --iodepth I/Os in flight, has its own
    /// random sequence (--seed plus its index) and does --size bytes (or
    /// runs until --runtime). The table shows their aggregate (throughput
    /// summed, latencies merged); in the JSON each job's entry is that
    /// aggregate, followed by one entry per clone with "clone": K (from
    /// 0) and the job's CPU, cache and deferral figures.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64), value_name = "N")]
    numjobs: u32,

    /// buffered, dontcache or direct; repeat or give a comma list to run
    /// several one after another on the same target (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    mode: Vec<Mode>,

    /// Stop a job after this long even if --size bytes are not done (10,
    /// 2.5, 500ms, 1m).
    #[arg(long, value_parser = units::parse_runtime, value_name = "TIME")]
    runtime: Option<Duration>,

    /// Keep going over the range until --runtime is over, instead of
    /// stopping after --size bytes (fio's time_based).
    #[arg(long, requires = "runtime", visible_alias = "time_based")]
    time_based: bool,

    /// I/O backend: uring, threads or null (default: io_uring, or the
    /// thread pool where io_uring is unavailable; ENDIO_BACKEND also
    /// chooses).
    #[arg(long, value_parser = Backend::from_str)]
    backend: Option<Backend>,

    /// Write a checksummed pattern and check every block read (as fio's
    /// verify=crc32c); after a write job, read the range back from the
    /// device and check it. Exits non-zero on any verify error.
    #[arg(long)]
    verify: bool,

    /// Seed of the random offsets, the read/write mix and the verify
    /// pattern.
    #[arg(long, default_value_t = 0x5eed, visible_alias = "randseed")]
    seed: u64,

    /// fsync at the end of a job that wrote, inside its time (unlike fio's
    /// end_fsync=0 default, so a buffered write is timed until its data is
    /// on the device); --end-fsync=false to leave it out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    end_fsync: bool,

    /// Force endio's dontcache emulation even where the kernel has
    /// RWF_DONTCACHE for the target.
    #[arg(long)]
    dontcache_emulated: bool,

    /// The dontcache backlog of each device: bytes written or read and not
    /// yet dropped from the page cache, beyond which submits wait (default
    /// 64M; also at most 1024 I/Os).
    #[arg(long, value_parser = parse_backlog_arg, value_name = "SIZE")]
    dontcache_backlog: Option<u64>,

    /// Write the results as JSON to FILE, or to standard output with `-`
    /// (the table then goes to standard error).
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,

    /// Plot throughput and page-cache residency over time to FILE.svg
    /// (default for the embedded default: endio-bench.svg).
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,

    /// Do not write a plot.
    #[arg(long, conflicts_with = "plot")]
    no_plot: bool,

    /// Run the jobs inside a memory cgroup with this limit (root; cgroup
    /// v2, else v1), created and removed by endio: the memory-pressure
    /// setup of the dontcache series (e.g. 256M). The jobs run in a child
    /// process there and need at least 48M (64M with --bdev) with the
    /// default --bs and --iodepth; if the OOM killer kills them, endio
    /// says so and removes what they made.
    #[arg(long, value_parser = parse_memcg_arg, value_name = "SIZE")]
    memcg: Option<u64>,

    /// The cgroup this process was started in by an outer `endio bench
    /// --memcg`, which cleans up after it (internal).
    #[arg(long, hide = true, requires = "memcg", value_name = "DIR")]
    in_memcg: Option<PathBuf>,
}

/// How long a run may take to stop after the first signal before the
/// signal thread removes what it made and exits: an interrupted job drains
/// its I/Os and fsyncs (seconds on a slow disk). The outer process of
/// `--memcg` waits longer than its job process.
const GRACE: Duration = Duration::from_secs(10);

/// The most I/Os in flight an engine takes (its queue depth): a job's
/// clones together.
const ENGINE_DEPTH_MAX: u64 = 4096;

/// The jobs of a run, in order.
fn job_list(modes: &[Mode], rws: &[Rw]) -> Vec<(Mode, Rw)> {
    let mut out = Vec::new();
    for &m in modes {
        for &rw in rws {
            if !out.contains(&(m, rw)) {
                out.push((m, rw));
            }
        }
    }
    out
}

/// The default block size of a pattern.
fn default_bs(rw: Rw) -> u64 {
    if rw.random() { 4096 } else { 1 << 20 }
}

/// Checks the plot path: SVG only (see the module docs of [`plot`]).
fn check_plot_path(path: &Path) -> anyhow::Result<()> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "svg" => Ok(()),
        Some(e) if e == "png" => bail!(
            "--plot {}: PNG is not offered: plotters draws text into bitmaps only with a font rasterizer and system fonts (fontconfig), which endio does not depend on; use --plot {} (any browser shows it; convert with `rsvg-convert -o {} {}` if you need a PNG)",
            path.display(),
            path.with_extension("svg").display(),
            path.display(),
            path.with_extension("svg").display()
        ),
        _ => bail!(
            "--plot {}: the plot is an SVG file; give a name ending in .svg, e.g. --plot endio-bench.svg",
            path.display()
        ),
    }
}

/// Runs `endio bench`.
pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let embedded = args.target.is_none();
    let plot_path = match (&args.plot, args.no_plot, embedded) {
        (Some(p), _, _) => Some(p.clone()),
        (None, false, true) => Some(PathBuf::from("endio-bench.svg")),
        _ => None,
    };
    if let Some(p) = &plot_path {
        check_plot_path(p)?;
    }
    // The output files are made before any job runs, so that a job's
    // results are never lost to a path that cannot be written.
    let json_file = args.json.as_deref().filter(|p| *p != Path::new("-"));
    for (flag, path) in [("--json", json_file), ("--plot", plot_path.as_deref())] {
        if let Some(path) = path {
            std::fs::File::create(path).with_context(|| {
                format!(
                    "cannot create {flag} {}; give a path in a writable directory",
                    path.display()
                )
            })?;
        }
    }
    let modes: Vec<Mode> = if args.mode.is_empty() {
        vec![Mode::Buffered, Mode::Dontcache, Mode::Direct]
    } else {
        args.mode.clone()
    };
    let jobs = job_list(&modes, &args.rw);
    let bs_of = |rw: Rw| args.bs.unwrap_or_else(|| default_bs(rw));
    let bs_max = jobs.iter().map(|&(_, rw)| bs_of(rw)).max().unwrap_or(4096);
    let bs_min = jobs.iter().map(|&(_, rw)| bs_of(rw)).min().unwrap_or(4096);
    if bs_min == 0 {
        bail!("--bs 0: a block size must be at least one byte; e.g. --bs 4k");
    }
    if bs_max > endio::MAX_IO_BYTES {
        bail!(
            "--bs {}: larger than one I/O can be ({} bytes); e.g. --bs 1M",
            bs_max,
            endio::MAX_IO_BYTES
        );
    }
    let null_backend = args.backend.or_else(|| {
        std::env::var(endio::Backend::ENV)
            .ok()
            .and_then(|v| Backend::parse_env(&v).ok().flatten())
    }) == Some(Backend::Null);
    if args.verify && null_backend {
        bail!(
            "--verify with the null backend: its devices are memory that lives for one job, so no job can read what another wrote; drop --verify or choose --backend uring or threads"
        );
    }
    let verify_block = if args.verify {
        let vb = if jobs.iter().all(|&(_, rw)| bs_of(rw).is_multiple_of(4096)) {
            4096
        } else {
            bs_min
        };
        if vb < endio::Verifier::BLOCK_MIN as u64 {
            bail!(
                "--verify with --bs {vb}: a verified block holds a {}-byte header, so --bs must be at least {} bytes; e.g. --bs 4k",
                endio::Verifier::HEADER_LEN,
                endio::Verifier::BLOCK_MIN
            );
        }
        if jobs.iter().any(|&(_, rw)| !bs_of(rw).is_multiple_of(vb)) {
            bail!(
                "--verify needs the block sizes of all patterns to be multiples of the smallest ({vb}); give one --bs, e.g. --bs 4k"
            );
        }
        Some(vb as usize)
    } else {
        None
    };
    if let Some(bs) = args.bs
        && modes.contains(&Mode::Direct)
        && !bs.is_multiple_of(512)
    {
        bail!(
            "--bs {bs} with --mode direct: direct I/O moves whole logical blocks (512 bytes or more), so its --bs must be a multiple of 512; use --bs {}, or leave direct out of --mode (e.g. --mode buffered,dontcache)",
            bs.div_ceil(512) * 512
        );
    }
    if u64::from(args.iodepth) * u64::from(args.numjobs) > ENGINE_DEPTH_MAX {
        bail!(
            "--iodepth {} with --numjobs {}: {} I/Os in flight, more than one engine keeps ({ENGINE_DEPTH_MAX}); give at most --iodepth {}",
            args.iodepth,
            args.numjobs,
            u64::from(args.iodepth) * u64::from(args.numjobs),
            ENGINE_DEPTH_MAX / u64::from(args.numjobs)
        );
    }
    if let Some(size) = args.size
        && size < bs_max
    {
        bail!(
            "--size {} is smaller than the block size {}; give --size at least {}",
            units::fmt_bytes(size),
            units::fmt_bytes(bs_max),
            bs_max
        );
    }

    // Signals: the first stops the job and the guards below clean up; see
    // `interrupt`.
    let outer = args.memcg.is_some() && args.in_memcg.is_none();
    interrupt::install(if outer { 2 * GRACE } else { GRACE });
    let memcg = match (args.memcg, &args.in_memcg) {
        (Some(limit), Some(dir)) => {
            // The job process of `supervise`: the cgroup and the leftovers
            // are its parent's.
            if let Some(parent) = rustix::process::getppid() {
                leftovers::set_owner(parent.as_raw_nonzero().get().unsigned_abs());
            }
            Some(Cgroup::joined(dir, limit))
        }
        (Some(limit), None) => {
            leftovers::remove_stale();
            return supervise::run(limit, args.bdev);
        }
        (None, _) => {
            leftovers::remove_stale();
            None
        }
    };
    let mut target = match (&args.target, args.bdev) {
        (Some(path), _) => Target::user(path, args.size)?,
        (None, true) => Target::temp_loop_device(args.size.unwrap_or(target::DEFAULT_SIZE))?,
        (None, false) => Target::temp_file(args.size.unwrap_or(target::DEFAULT_SIZE))?,
    };
    if let Some(note) = target.tmpfs_note(&modes) {
        eprintln!("{note}");
    }
    // Whole blocks of the largest block size.
    target.size -= target.size % bs_max;
    if target.size == 0 {
        bail!(
            "{} holds less than one block of {}; give a larger --size",
            target.path.display(),
            units::fmt_bytes(bs_max)
        );
    }

    let table_to_stderr = args.json.as_deref() == Some(Path::new("-"));
    let mut out: Box<dyn std::io::Write> = if table_to_stderr {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let progress = std::io::stderr().is_terminal();
    let seed = args.seed;
    let verifier = || verify_block.map(|vb| Arc::new(Verifier::new(vb, seed)));

    // With --verify every block is read: by a read job or by the read-back
    // after a write job, which checks the whole range even where a random
    // or --runtime-limited write did not reach. So all of it gets the
    // pattern first.
    if target.needs_layout || args.verify {
        eprintln!(
            "laying out {} ({}{})",
            target.path.display(),
            units::fmt_bytes(target.size),
            if args.verify { ", verify pattern" } else { "" }
        );
        target.lay_out(args.backend, verifier().as_deref())?;
    }

    let mut notes = Vec::new();
    if embedded {
        notes.push(format!(
            "embedded default: {} of {}; each job starts with the page cache of the target dropped",
            target.description,
            units::fmt_bytes(target.size)
        ));
    }
    let mut reports: Vec<JobReport> = Vec::new();
    let sampler = target.sampler();
    let mut backend_used = None;
    let mut failure = None;
    for &(mode, rw) in &jobs {
        if interrupt::interrupted() {
            break;
        }
        let spec = JobSpec {
            mode,
            rw,
            bs: bs_of(rw),
            iodepth: args.iodepth,
            submit_batch: args.submit_batch,
            registered_buffers: args.registered_buffers,
            runtime: args.runtime,
            time_based: args.time_based,
            backend: args.backend,
            end_fsync: args.end_fsync,
            seed,
            dontcache_emulated: args.dontcache_emulated,
            dontcache_backlog: args.dontcache_backlog,
            rwmixread: args.rwmixread,
            numjobs: args.numjobs,
        };
        match job::run(&target, &spec, sampler.as_ref(), verifier(), progress) {
            Ok(job::JobResult {
                aggregate: mut report,
                clones,
                backend,
            }) => {
                backend_used.get_or_insert(backend);
                if args.verify && rw.writes() && !report.failed() && !interrupt::interrupted() {
                    match job::verify_pass(&target, &spec, verifier()) {
                        Ok(stats) => {
                            report.verify.checked_bytes += stats.checked_bytes;
                            report.verify.errors += stats.errors;
                        }
                        Err(e) => {
                            failure = Some(e.context(format!(
                                "reading back {} after {} {}",
                                target.path.display(),
                                mode.name(),
                                rw.name()
                            )));
                        }
                    }
                }
                reports.push(report);
                reports.extend(clones);
            }
            Err(e) => {
                failure = Some(e.context(format!("{} {} job", mode.name(), rw.name())));
            }
        }
        if failure.is_some() {
            break;
        }
    }
    let run = RunReport::new(
        &target,
        args,
        backend_used,
        memcg.as_ref().map(Cgroup::report),
        notes,
        reports,
    );
    if !run.jobs.is_empty() {
        report::print_table(&mut out, &run).context("cannot print the table")?;
        out.flush().ok();
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&run).context("cannot encode the JSON")?;
        if path == Path::new("-") {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("cannot write --json {}", path.display()))?;
        }
    }
    if let Some(path) = &plot_path
        && !run.jobs.is_empty()
    {
        plot::write_svg(path, &run)
            .with_context(|| format!("cannot write the plot {}", path.display()))?;
        writeln!(out, "plot: {}", path.display()).ok();
    }
    drop(sampler);
    if failure.is_none() && !interrupt::interrupted() {
        target.keep();
    }
    drop(target);
    drop(memcg);
    if let Some(e) = failure {
        return Err(e);
    }
    if let Some(signal) = interrupt::signal_name() {
        bail!(
            "interrupted by {signal}; the results above are of the jobs that ran, and what the benchmark made is removed"
        );
    }
    let failed: Vec<&str> = run
        .aggregates()
        .filter(|j| j.failed())
        .map(|j| j.jobname.as_str())
        .collect();
    if !failed.is_empty() {
        let io_errors: u64 = run.aggregates().map(|j| j.errors).sum();
        let wb_errors: u64 = run.aggregates().map(|j| j.writeback_errors).sum();
        let verify_errors: u64 = run.aggregates().map(|j| j.verify.errors).sum();
        bail!(
            "{} failed: {io_errors} I/O errors, {wb_errors} write-back errors, {verify_errors} verify errors (see the table and the messages above); data those jobs wrote may not be on {}",
            failed.join(", "),
            run.target.path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_every_pattern_per_mode_once() {
        let jobs = job_list(
            &[Mode::Buffered, Mode::Direct, Mode::Buffered],
            &[Rw::Write, Rw::Read],
        );
        assert_eq!(
            jobs,
            [
                (Mode::Buffered, Rw::Write),
                (Mode::Buffered, Rw::Read),
                (Mode::Direct, Rw::Write),
                (Mode::Direct, Rw::Read)
            ]
        );
    }

    #[test]
    fn only_svg_plots_are_written() {
        check_plot_path(Path::new("a.svg")).unwrap();
        check_plot_path(Path::new("A.SVG")).unwrap();
        let e = check_plot_path(Path::new("a.png")).unwrap_err().to_string();
        assert!(e.contains("a.svg") && e.contains("fontconfig"), "{e}");
        assert!(check_plot_path(Path::new("a")).is_err());
    }
}
