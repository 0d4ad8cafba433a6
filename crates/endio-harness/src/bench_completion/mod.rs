//! `endio-harness bench-completion`: the completion path against what a
//! user would pick instead, side by side in one run, judged against the
//! completion path's goals (see [`report`]).
//!
//! The workload is the same for every contender: one producer thread per
//! online CPU, pinned to it, hands completions with a trivial handler to task
//! context. The handler notes the time it starts (when the completion is
//! timed) and counts itself for its producer.
//!
//! 1. For each offered load (a total rate over all producers, or saturation)
//!    and each contender, a *cell*: the contender is started afresh, the
//!    producers are started, and after a warm-up the measurement window
//!    opens for `--duration`.
//! 2. A producer keeps at most `--inflight` completions outstanding (handed
//!    over, handler not yet run), waiting with `yield_now` (outside any
//!    atomic section) while its window is full: memory stays bounded.
//! 3. At an offered load the producer is open-loop: it sends at fixed times
//!    `start + k × period` and sends at once when it is late. It waits for
//!    a send time the way an I/O reaper waits for the next completion: it
//!    sleeps (timer slack 1 µs), spinning only for the last few µs, so the
//!    CPU is idle between completions. Each completion handed over in the
//!    window is timed. Its sleeps are counted, so that the context switches
//!    of the hand-off can be told apart from those of the pacing (a spinning
//!    or yielding producer would instead turn every other runnable thread of
//!    this shared machine into context switches of ours).
//!    At saturation the producer sends as fast as its window allows and times
//!    one completion in `--sample-every`.
//! 4. A timed completion carries the instant taken just before the
//!    contender's submit call (which builds the closure or the bio, then
//!    completes it). The handler's first line takes the time again: the
//!    difference is the *handler-start latency*. At an offered load the
//!    latency from the scheduled send time (the former plus how late the
//!    producer was) is recorded too.
//! 5. At the window's edges the cell reads the completions of every
//!    producer, the process's `getrusage` (context switches, CPU time) and the
//!    contender's worker sleep count; the differences over the window give
//!    completions per second, context switches per completion and wakeups
//!    per completion.
//! 6. The producers stop, every handed-over completion is waited for, the
//!    contender is stopped and its threads joined before the next cell.

mod contenders;
mod report;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use endio::{Adaptive, Batching, Stats};
use hdrhistogram::Histogram;

use crate::rusage::{self, Usage};
use contenders::Contender;

/// How long a producer may find its window full without any of its
/// completions running, and how long the end of a cell may wait for the
/// last handlers.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A producer that is this close to its next send time spins instead of
/// sleeping.
const SPIN_NS: u64 = 5_000;

/// The largest latency the histograms hold (larger values are clamped).
const LATENCY_NS_MAX: u64 = 60_000_000_000;

/// Options of `endio-harness bench-completion`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Short cells for CI: 200 ms each after a 50 ms warm-up (all
    /// contenders and loads in well under a minute).
    #[arg(long)]
    quick: bool,

    /// Measured time per cell (contender × load), e.g. 3s or 500ms [default:
    /// 3s; 200ms with --quick].
    #[arg(long, value_parser = parse_positive_duration)]
    duration: Option<Duration>,

    /// Warm-up before each cell's measurement [default: 300ms; 50ms with
    /// --quick].
    #[arg(long, value_parser = parse_any_duration)]
    warmup: Option<Duration>,

    /// The most completions one producer has outstanding (handed over,
    /// handler not yet run).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    inflight: u64,

    /// The contenders to run, comma-separated [default: all].
    #[arg(long, value_enum, value_delimiter = ',')]
    contenders: Vec<Kind>,

    /// The offered loads, comma-separated: completions per second over all
    /// producers (1k, 10k, 100k, 250000) or `sat` for saturation [default:
    /// 1k,10k,100k,sat].
    #[arg(long, value_delimiter = ',', value_parser = Load::from_str)]
    loads: Vec<Load>,

    /// At saturation, time one completion in this many.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    sample_every: u64,

    /// Also write every number as JSON to FILE, or to standard output with
    /// `-` (the table then goes to standard error).
    #[arg(long, value_name = "FILE|-")]
    json: Option<PathBuf>,
}

/// A contender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// endio, `Batching::Adaptive` (the default).
    EndioAdaptive,
    /// endio, `Batching::Immediate` (Linux 7.3 as merged).
    EndioImmediate,
    /// endio, `Batching::Fixed(1 ms)` (the v6 patch's 1-jiffy delay).
    #[value(name = "endio-fixed-1ms")]
    #[serde(rename = "endio-fixed-1ms")]
    EndioFixed1ms,
    /// A crossbeam-channel worker per CPU.
    Crossbeam,
    /// A `std::sync::mpsc` worker per CPU.
    StdMpsc,
    /// A `Mutex<VecDeque>` + `Condvar` worker per CPU.
    MutexCondvar,
    /// tokio `spawn_blocking` on a multi-thread runtime.
    TokioSpawnBlocking,
    /// The handler runs in the producer (the floor).
    Inline,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::EndioAdaptive,
        Kind::EndioImmediate,
        Kind::EndioFixed1ms,
        Kind::Crossbeam,
        Kind::StdMpsc,
        Kind::MutexCondvar,
        Kind::TokioSpawnBlocking,
        Kind::Inline,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::EndioAdaptive => "endio-adaptive",
            Kind::EndioImmediate => "endio-immediate",
            Kind::EndioFixed1ms => "endio-fixed-1ms",
            Kind::Crossbeam => "crossbeam",
            Kind::StdMpsc => "std-mpsc",
            Kind::MutexCondvar => "mutex-condvar",
            Kind::TokioSpawnBlocking => "tokio-spawn-blocking",
            Kind::Inline => "inline",
        }
    }

    pub(crate) fn is_endio(self) -> bool {
        matches!(
            self,
            Kind::EndioAdaptive | Kind::EndioImmediate | Kind::EndioFixed1ms
        )
    }

    /// What the wakeup count of this contender counts.
    pub(crate) fn wakeups_meaning(self) -> &'static str {
        match self {
            Kind::EndioAdaptive | Kind::EndioImmediate | Kind::EndioFixed1ms => {
                "worker parks (endio stats: wakeups)"
            }
            Kind::Crossbeam | Kind::StdMpsc => {
                "blocking receives after an empty try_recv (an upper bound: recv may spin and find a message without sleeping)"
            }
            Kind::MutexCondvar => "condvar waits",
            Kind::TokioSpawnBlocking => "not measurable: the blocking pool's threads are tokio's",
            Kind::Inline => "none: no worker",
        }
    }
}

/// An offered load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Load {
    /// Completions per second over all producers, sent open-loop.
    Rate(u64),
    /// As fast as the in-flight window allows.
    Saturation,
}

impl Load {
    const DEFAULT: [Load; 4] = [
        Load::Rate(1_000),
        Load::Rate(10_000),
        Load::Rate(100_000),
        Load::Saturation,
    ];

    pub(crate) fn rate_per_s(self) -> Option<u64> {
        match self {
            Load::Rate(r) => Some(r),
            Load::Saturation => None,
        }
    }
}

impl FromStr for Load {
    type Err = String;

    /// `sat`, `saturation`, or a rate: `1000`, `10k`, `2.5k`, `1M`, with an
    /// optional `/s`.
    fn from_str(s: &str) -> Result<Load, String> {
        let err = || {
            format!("{s:?} is not a load; give a rate per second (1k, 10k, 100k, 250000) or sat")
        };
        let t = s.trim();
        if t == "sat" || t == "saturation" {
            return Ok(Load::Saturation);
        }
        let t = t.strip_suffix("/s").unwrap_or(t);
        let (number, scale) = match t.strip_suffix(['k', 'K']) {
            Some(n) => (n, 1e3),
            None => match t.strip_suffix('M') {
                Some(n) => (n, 1e6),
                None => (t, 1.0),
            },
        };
        let value: f64 = number.parse().map_err(|_| err())?;
        let rate = (value * scale).round();
        if !(1.0..=1e9).contains(&rate) {
            return Err(err());
        }
        Ok(Load::Rate(rate as u64))
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Load::Saturation => f.write_str("saturation"),
            Load::Rate(r) if r >= 1_000_000 && r.is_multiple_of(1_000_000) => {
                write!(f, "{}M/s", r / 1_000_000)
            }
            Load::Rate(r) if r >= 1_000 && r.is_multiple_of(1_000) => write!(f, "{}k/s", r / 1_000),
            Load::Rate(r) => write!(f, "{r}/s"),
        }
    }
}

fn parse_any_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; write e.g. 3s, 500ms or 50us");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    match unit {
        "ns" => Ok(Duration::from_nanos(n)),
        "us" | "µs" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        _ => Err(bad()),
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_any_duration(s)? {
        d if d.is_zero() => Err("a duration of 0 measures nothing; give e.g. 200ms".to_owned()),
        d => Ok(d),
    }
}

/// What one run measures, after the defaults are applied.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) cpus: Vec<usize>,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) inflight: u64,
    pub(crate) sample_every: u64,
    pub(crate) contenders: Vec<Kind>,
    pub(crate) loads: Vec<Load>,
    pub(crate) quick: bool,
}

impl Args {
    fn plan(&self, cpus: Vec<usize>) -> Plan {
        let (duration, warmup) = if self.quick {
            (Duration::from_millis(200), Duration::from_millis(50))
        } else {
            (Duration::from_secs(3), Duration::from_millis(300))
        };
        Plan {
            cpus,
            duration: self.duration.unwrap_or(duration),
            warmup: self.warmup.unwrap_or(warmup),
            inflight: self.inflight,
            sample_every: self.sample_every,
            contenders: if self.contenders.is_empty() {
                Kind::ALL.to_vec()
            } else {
                dedup(&self.contenders)
            },
            loads: if self.loads.is_empty() {
                Load::DEFAULT.to_vec()
            } else {
                dedup(&self.loads)
            },
            quick: self.quick,
        }
    }
}

fn dedup<T: PartialEq + Copy>(items: &[T]) -> Vec<T> {
    let mut out = Vec::new();
    for &item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Runs `endio-harness bench-completion`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let cpus = endio::testing::read_cpu_list(Path::new("/sys"), "online")
        .context("cannot learn which CPUs are online")?;
    let plan = args.plan(cpus);
    let started = report::MachineState::now();
    let mut cells = Vec::new();
    let total = plan.loads.len() * plan.contenders.len();
    for &load in &plan.loads {
        for &kind in &plan.contenders {
            let cell = run_cell(kind, load, &plan)
                .with_context(|| format!("{} at {load}", kind.name()))?;
            eprintln!(
                "[{:>2}/{total}] {}",
                cells.len() + 1,
                report::progress_line(&cell)
            );
            cells.push(cell);
        }
    }
    let outcome = report::Outcome::new(plan, started, cells);
    let table = outcome.table();
    match &args.json {
        Some(path) if path.as_os_str() == "-" => {
            eprint!("{table}");
            println!("{}", serde_json::to_string_pretty(&outcome.json())?);
        }
        Some(path) => {
            print!("{table}");
            let text = serde_json::to_string_pretty(&outcome.json())?;
            std::fs::write(path, text + "\n").with_context(|| {
                format!(
                    "cannot write the JSON report to {}; check the directory exists and is writable",
                    path.display()
                )
            })?;
        }
        None => print!("{table}"),
    }
    Ok(())
}

/// Pins the calling thread to `cpu`, warning if it cannot.
fn pin(cpu: usize, who: &str) {
    if let Err(e) = endio::testing::pin_current_thread(cpu) {
        eprintln!(
            "endio-harness bench-completion: warning: a {who} cannot pin itself to CPU {cpu} ({e}); it runs unpinned"
        );
    }
}

/// The latencies one producer's timed completions saw, in nanoseconds.
#[derive(Debug)]
pub(crate) struct Latency {
    /// From just before the submit call to the handler's start.
    pub(crate) from_call: Histogram<u64>,
    /// From the scheduled send time to the handler's start (offered loads).
    pub(crate) from_scheduled: Histogram<u64>,
}

impl Latency {
    pub(crate) fn new() -> Latency {
        let h = || {
            Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3)
                .expect("1 ns .. 60 s at 3 significant digits is a valid histogram")
        };
        Latency {
            from_call: h(),
            from_scheduled: h(),
        }
    }

    pub(crate) fn add(&mut self, other: &Latency) {
        // Same bounds, so adding cannot fail.
        let _ = self.from_call.add(&other.from_call);
        let _ = self.from_scheduled.add(&other.from_scheduled);
    }
}

/// One producer's state, shared with the handlers of its completions.
/// Aligned to its own cache lines: the producer and the workers running its
/// handlers touch `completed`; nobody else should.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Slot {
    completed: AtomicU64,
    /// Times the producer slept to wait for a send time (written by the
    /// producer only).
    pacing_sleeps: AtomicU64,
    latency: Mutex<Latency>,
}

/// When a timed completion was handed over.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    /// Just before the submit call.
    call: Instant,
    /// How late that was against the schedule (offered loads).
    late_ns: Option<u64>,
}

/// A completion: what the trivial handler needs.
#[derive(Debug)]
pub(crate) struct Job {
    slot: Arc<Slot>,
    stamp: Option<Stamp>,
}

impl Job {
    /// The handler: notes when it starts (if timed) and counts itself.
    pub(crate) fn run(self) {
        if let Some(stamp) = self.stamp {
            let ns = nanos(stamp.call.elapsed());
            let mut latency = self
                .slot
                .latency
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            latency.from_call.saturating_record(ns.max(1));
            if let Some(late) = stamp.late_ns {
                latency
                    .from_scheduled
                    .saturating_record(ns.saturating_add(late).max(1));
            }
        }
        self.slot.completed.fetch_add(1, Relaxed);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Phases of a cell, read by the producers.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// What one cell measured.
#[derive(Debug)]
pub(crate) struct Cell {
    pub(crate) kind: Kind,
    pub(crate) load: Load,
    pub(crate) seconds: f64,
    pub(crate) completions: u64,
    pub(crate) usage: Usage,
    /// Sleeps of the producers waiting for their send times.
    pub(crate) pacing_sleeps: u64,
    pub(crate) wakeups: Option<u64>,
    pub(crate) latency: Latency,
    /// The endio counters over the window (`batch_len_max` over the cell).
    pub(crate) endio: Option<Stats>,
    /// Completions handed over in the whole cell, warm-up included.
    pub(crate) handed_over: u64,
}

/// Starts contender `kind` and measures it at `load`.
fn run_cell(kind: Kind, load: Load, plan: &Plan) -> anyhow::Result<Cell> {
    let cpus = &plan.cpus;
    match kind {
        Kind::EndioAdaptive => measure(
            kind,
            contenders::Endio::start(Batching::Adaptive(Adaptive::default()))?,
            load,
            plan,
        ),
        Kind::EndioImmediate => measure(
            kind,
            contenders::Endio::start(Batching::Immediate)?,
            load,
            plan,
        ),
        Kind::EndioFixed1ms => measure(
            kind,
            contenders::Endio::start(Batching::Fixed(Duration::from_millis(1)))?,
            load,
            plan,
        ),
        Kind::Crossbeam => measure(kind, contenders::Crossbeam::start(cpus)?, load, plan),
        Kind::StdMpsc => measure(kind, contenders::StdMpsc::start(cpus)?, load, plan),
        Kind::MutexCondvar => measure(kind, contenders::MutexCondvar::start(cpus)?, load, plan),
        Kind::TokioSpawnBlocking => {
            measure(kind, contenders::TokioBlocking::start(cpus)?, load, plan)
        }
        Kind::Inline => measure(kind, contenders::Inline, load, plan),
    }
}

/// The counters read at an edge of the measurement window.
struct Edge {
    at: Instant,
    completed: u64,
    pacing_sleeps: u64,
    usage: Usage,
    wakeups: Option<u64>,
    endio: Option<Stats>,
}

fn edge<C: Contender>(contender: &C, slots: &[Arc<Slot>]) -> anyhow::Result<Edge> {
    Ok(Edge {
        completed: slots.iter().map(|s| s.completed.load(Relaxed)).sum(),
        pacing_sleeps: slots.iter().map(|s| s.pacing_sleeps.load(Relaxed)).sum(),
        usage: rusage::now()?,
        wakeups: contender.wakeups(),
        endio: contender.endio_stats(),
        at: Instant::now(),
    })
}

/// Steps 1-6 for one cell.
fn measure<C: Contender>(
    kind: Kind,
    contender: C,
    load: Load,
    plan: &Plan,
) -> anyhow::Result<Cell> {
    let slots: Vec<Arc<Slot>> = plan
        .cpus
        .iter()
        .map(|_| {
            Arc::new(Slot {
                completed: AtomicU64::new(0),
                pacing_sleeps: AtomicU64::new(0),
                latency: Mutex::new(Latency::new()),
            })
        })
        .collect();
    let phase = AtomicU8::new(WARMUP);
    let (before, after, issued) = thread::scope(|scope| -> anyhow::Result<_> {
        let mut handles = Vec::new();
        for (i, &cpu) in plan.cpus.iter().enumerate() {
            let (contender, slot, phase) = (&contender, &slots[i], &phase);
            let handle = thread::Builder::new()
                .name(format!("bench-producer/{cpu}"))
                .spawn_scoped(scope, move || {
                    produce(contender, i, cpu, slot, phase, load, plan)
                })
                .context("cannot start a producer thread")?;
            handles.push(handle);
        }
        thread::sleep(plan.warmup);
        phase.store(MEASURE, Relaxed);
        let before = edge(&contender, &slots);
        thread::sleep(plan.duration);
        let after = edge(&contender, &slots);
        phase.store(STOP, Relaxed);
        let mut issued = 0;
        for handle in handles {
            match handle.join() {
                Ok(n) => issued += n?,
                Err(_) => bail!("a producer thread panicked"),
            }
        }
        Ok((before?, after?, issued))
    })?;
    // Step 6: every handed-over completion runs before the numbers are read.
    let deadline = Instant::now() + STALL_TIMEOUT;
    let completed = || slots.iter().map(|s| s.completed.load(Relaxed)).sum::<u64>();
    while completed() < issued {
        if Instant::now() >= deadline {
            bail!(
                "{} of {issued} completions did not run within {} s",
                issued - completed(),
                STALL_TIMEOUT.as_secs()
            );
        }
        thread::sleep(Duration::from_millis(1));
    }
    contender.finish()?;
    let mut latency = Latency::new();
    for slot in &slots {
        latency.add(&slot.latency.lock().unwrap_or_else(PoisonError::into_inner));
    }
    Ok(Cell {
        kind,
        load,
        seconds: after.at.duration_since(before.at).as_secs_f64(),
        completions: after.completed - before.completed,
        usage: after.usage.since(&before.usage),
        pacing_sleeps: after.pacing_sleeps - before.pacing_sleeps,
        wakeups: match (before.wakeups, after.wakeups) {
            (Some(b), Some(a)) => Some(a.saturating_sub(b)),
            _ => None,
        },
        latency,
        endio: match (before.endio, after.endio) {
            (Some(b), Some(a)) => Some(stats_since(&a, &b)),
            _ => None,
        },
        handed_over: issued,
    })
}

/// The endio counters over the window; maxima are those of the whole cell.
fn stats_since(after: &Stats, before: &Stats) -> Stats {
    Stats {
        deferred: after.deferred - before.deferred,
        inline: after.inline - before.inline,
        handlers: after.handlers - before.handlers,
        batches: after.batches - before.batches,
        requeues: after.requeues - before.requeues,
        wakeups: after.wakeups - before.wakeups,
        panics: after.panics - before.panics,
        rescues: after.rescues - before.rescues,
        rescued: after.rescued - before.rescued,
        redirected: after.redirected - before.redirected,
        ..*after
    }
}

/// A producer (steps 2-4): hands completions to `contender` until the phase
/// is `STOP`; returns how many it handed over.
fn produce<C: Contender>(
    contender: &C,
    index: usize,
    cpu: usize,
    slot: &Arc<Slot>,
    phase: &AtomicU8,
    load: Load,
    plan: &Plan,
) -> anyhow::Result<u64> {
    pin(cpu, "producer");
    if load.rate_per_s().is_some() {
        // Sleeps of a few µs must not be stretched by the 50 µs default.
        let _ = endio::testing::set_timer_slack_ns(1_000);
    }
    let period = load
        .rate_per_s()
        .map(|rate| Duration::from_secs_f64(plan.cpus.len() as f64 / rate as f64));
    let mut next = Instant::now();
    let mut issued: u64 = 0;
    let mut untimed: u64 = 0;
    loop {
        let mut now_phase = phase.load(Relaxed);
        // Step 2: wait for room in the window.
        if issued - slot.completed.load(Relaxed) >= plan.inflight {
            let since = Instant::now();
            while issued - slot.completed.load(Relaxed) >= plan.inflight {
                if phase.load(Relaxed) == STOP {
                    return Ok(issued);
                }
                if since.elapsed() > STALL_TIMEOUT {
                    bail!(
                        "no completion of the producer on CPU {cpu} ran for {} s",
                        STALL_TIMEOUT.as_secs()
                    );
                }
                thread::yield_now();
            }
            now_phase = phase.load(Relaxed);
        }
        if now_phase == STOP {
            return Ok(issued);
        }
        // Step 3: pacing; step 4: the stamp.
        let stamp = match period {
            None => {
                untimed += 1;
                (now_phase == MEASURE && untimed.is_multiple_of(plan.sample_every)).then(|| Stamp {
                    call: Instant::now(),
                    late_ns: None,
                })
            }
            Some(period) => {
                let mut now = Instant::now();
                while now < next {
                    if phase.load(Relaxed) == STOP {
                        return Ok(issued);
                    }
                    let early = next - now;
                    if nanos(early) > SPIN_NS {
                        thread::sleep(early);
                        slot.pacing_sleeps.fetch_add(1, Relaxed);
                    } else {
                        std::hint::spin_loop();
                    }
                    now = Instant::now();
                }
                let late_ns = nanos(now.duration_since(next));
                next += period;
                (now_phase == MEASURE).then_some(Stamp {
                    call: now,
                    late_ns: Some(late_ns),
                })
            }
        };
        contender.submit(
            index,
            Job {
                slot: Arc::clone(slot),
                stamp,
            },
        );
        issued += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_parse_and_print() {
        for (text, load) in [
            ("1k", Load::Rate(1_000)),
            ("10k/s", Load::Rate(10_000)),
            ("100K", Load::Rate(100_000)),
            ("250000", Load::Rate(250_000)),
            ("2.5k", Load::Rate(2_500)),
            ("1M", Load::Rate(1_000_000)),
            ("sat", Load::Saturation),
            ("saturation", Load::Saturation),
        ] {
            assert_eq!(text.parse::<Load>(), Ok(load), "{text}");
        }
        for bad in ["", "k", "0", "-5", "fast", "1e12", "0.1"] {
            let e = bad.parse::<Load>().unwrap_err();
            assert!(e.contains("sat"), "{bad}: {e}");
        }
        assert_eq!(Load::Rate(1_000).to_string(), "1k/s");
        assert_eq!(Load::Rate(2_500).to_string(), "2500/s");
        assert_eq!(Load::Rate(3_000_000).to_string(), "3M/s");
        assert_eq!(Load::Saturation.to_string(), "saturation");
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(
            parse_positive_duration("200ms"),
            Ok(Duration::from_millis(200))
        );
        assert!(parse_positive_duration("0ms").is_err());
        assert!(parse_positive_duration("soon").is_err());
        assert_eq!(parse_any_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn a_job_counts_itself_and_its_latency() {
        let slot = Arc::new(Slot {
            completed: AtomicU64::new(0),
            pacing_sleeps: AtomicU64::new(0),
            latency: Mutex::new(Latency::new()),
        });
        let call = Instant::now();
        for stamp in [
            None,
            Some(Stamp {
                call,
                late_ns: None,
            }),
            Some(Stamp {
                call,
                late_ns: Some(5_000),
            }),
        ] {
            Job {
                slot: Arc::clone(&slot),
                stamp,
            }
            .run();
        }
        assert_eq!(slot.completed.load(Relaxed), 3);
        let latency = slot.latency.lock().unwrap();
        assert_eq!(latency.from_call.len(), 2);
        assert_eq!(latency.from_scheduled.len(), 1);
        assert!(latency.from_scheduled.max() >= 5_000);
    }

    #[test]
    fn every_contender_runs_every_job() {
        let plan = Args {
            quick: true,
            duration: Some(Duration::from_millis(20)),
            warmup: Some(Duration::from_millis(5)),
            inflight: 64,
            contenders: Vec::new(),
            loads: Vec::new(),
            sample_every: 4,
            json: None,
        }
        .plan(vec![0]);
        for kind in Kind::ALL {
            let cell = run_cell(kind, Load::Saturation, &plan).unwrap();
            assert!(cell.completions > 0, "{kind:?}");
            assert!(cell.handed_over >= cell.completions, "{kind:?}");
            assert!(!cell.latency.from_call.is_empty(), "{kind:?}");
        }
    }
}
