//! `endio stress`: completes many no-op bios from atomic context on every
//! CPU and checks that every handler ran exactly once.
//!
//! 1. A [`Completer`] is built with the chosen batching policy.
//! 2. For each CPU that has a worker, `--producers-per-cpu` producer threads
//!    are pinned to it. The bio ids `0..bios` are split into one contiguous
//!    range per producer.
//! 3. A producer completes its bios one by one, each a [`Bio::nop`] flagged
//!    [`BioFlags::COMPLETE_IN_TASK`], inside an atomic section, so every one
//!    is deferred to the CPU's worker. Before each it waits (outside the
//!    atomic section) while `--inflight` of its bios are still outstanding,
//!    which bounds memory: a few spins, a few yields, then it parks until
//!    half of them have completed (see [`Producer::wait_for_room`]), so a
//!    producer whose handlers stall sleeps instead of spinning.
//! 4. A handler bumps its bio's slot in a shared array of counters and the
//!    completion count of its producer; the first and the last completion of a
//!    producer note the time.
//! 5. Once the producers are done, the completer is given a bounded time to
//!    go idle; then every slot must read exactly 1. A slot at 0 is a lost
//!    completion, one above 1 a duplicated one.

use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{
    AtomicU8, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use endio::{Batching, Bio, BioFlags, Completer, CpuStats, Stats, StatsSnapshot, context};
use serde::Serialize;

use crate::faults::{self, Churn, HandlerFaults, Transitions};
use crate::interrupt::{self, Undo};
use crate::output;
use crate::rusage::{self, Usage};

/// How long the completer may take to run the last deferred handlers, and how
/// long a producer waits for room before it gives up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The most bios one run can check: the check keeps one byte per bio.
const BIOS_MAX: u64 = 1_000_000_000;

/// Options of `endio stress`.
#[derive(Debug, clap::Args)]
pub(crate) struct StressArgs {
    /// Total number of bios to complete, over all producers (e.g. 10000000
    /// or 10_000_000).
    #[arg(long, default_value = "10_000_000", value_parser = parse_count)]
    bios: u64,

    /// Batching policy of the workers: immediate, fixed:DURATION (e.g.
    /// fixed:1ms) or adaptive[:DELAY_MAX] (e.g. adaptive:50us).
    #[arg(long, default_value = "adaptive", value_parser = Batching::from_str)]
    policy: Batching,

    /// Producer threads pinned to each CPU that has a worker.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    producers_per_cpu: u32,

    /// The most bios one producer has outstanding (deferred, handler not yet
    /// run); bounds memory.
    #[arg(long, default_value = "65536", value_parser = parse_count)]
    inflight: u64,

    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,

    /// Drive the lifecycle through the API while the producers run: every
    /// few ms a random CPU goes offline (down_prep + dead), has an offline
    /// rolled back (down_prep + online), or comes back online.
    #[arg(long)]
    hotplug_churn: bool,

    /// Take real CPUs of this machine offline and back every 0.2 s, forcing
    /// a rolled-back offline every third time (root only; every CPU is
    /// brought back online at the end, also on failure).
    #[arg(long)]
    real_hotplug: bool,

    /// Fraction of handlers that panic (after counting themselves), e.g.
    /// 0.001.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    panics: f64,

    /// Fraction of handlers that sleep past the stall timeout, e.g. 0.0001.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
    stalls: f64,

    /// The completer's stall timeout (rescue after a handler runs this
    /// long), e.g. 20ms.
    #[arg(long, default_value = "20ms", value_parser = parse_timeout)]
    stall_timeout: Duration,

    /// Seed of the fault decisions and the churn.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Parses a probability in [0, 1].
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{s:?} is not a fraction; give a number from 0 to 1, e.g. 0.001"
        )),
    }
}

/// Parses a non-zero duration such as `20ms`.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::bench::units::parse_runtime(s)
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 20ms, 500us or 1s"))
}

impl StressArgs {
    fn handler_faults(&self) -> HandlerFaults {
        HandlerFaults {
            panic_p: self.panics,
            stall_p: self.stalls,
            stall: self.stall_timeout * 3 / 2,
            seed: self.seed,
        }
    }

    /// Tracing directives: with injected panics, the library's report of
    /// each contained panic is silenced (they are counted in the stats).
    pub(crate) fn log_directives(&self) -> &'static str {
        if self.panics > 0.0 {
            "warn,endio::task::protocol=off"
        } else {
            "warn"
        }
    }
}

/// Parses a positive count written with or without `_` separators.
fn parse_count(s: &str) -> Result<u64, String> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a count; write digits, e.g. 10000000 or 10_000_000"))?;
    if n == 0 {
        return Err("a count of 0 does nothing; give at least 1".to_owned());
    }
    Ok(n)
}

/// Runs `endio stress`: prints the report (or JSON) and fails if any
/// completion was lost or duplicated or the completer did not go idle.
pub(crate) fn run(args: &StressArgs) -> anyhow::Result<()> {
    if args.bios > BIOS_MAX {
        bail!(
            "--bios {} is more than the {BIOS_MAX} one run can check (one byte of memory per bio); \
             give a smaller --bios",
            args.bios
        );
    }
    if args.handler_faults().any() {
        faults::quiet_injected_panics();
    }
    if args.real_hotplug {
        // A signal brings back every CPU the churn took offline and exits
        // at once (a partial run has nothing to report); a panic does
        // through the churn's guard.
        interrupt::install(Duration::ZERO);
    }
    let completer = Completer::builder()
        .batching(args.policy)
        .stall_timeout(Some(args.stall_timeout))
        .build()
        .context("cannot start the endio completer")?;
    let outcome = stress(&completer, args)?;
    output::emit(args.json, &outcome.json(), "stress report", |w| {
        write_report(w, &outcome)
    })?;
    outcome.verdict()
}

/// One producer's share of the work and what its handlers recorded.
///
/// Aligned to its own cache lines: the producer and the worker of its CPU
/// both touch `completed`, nobody else should.
#[repr(align(128))]
#[derive(Debug)]
struct Producer {
    /// The ids of this producer's bios.
    ids: Range<usize>,
    /// One completion counter per bio id, shared by all producers.
    seen: Arc<[AtomicU8]>,
    /// Handlers of this producer's bios that have run.
    completed: AtomicU64,
    /// When the first handler ran, nanoseconds after `clock`.
    first_ns: AtomicU64,
    /// When the handler that completed the range ran, nanoseconds after
    /// `clock`.
    last_ns: AtomicU64,
    /// The common time origin.
    clock: Instant,
    /// Panics and stalls to inject.
    faults: HandlerFaults,
    /// The producer's thread, unparked by the handler that gives it room.
    thread: OnceLock<Thread>,
    /// While the producer is parked: the `completed` count it waits for;
    /// [`NOT_WAITING`] otherwise.
    wake_at: AtomicU64,
}

/// `wake_at` value meaning "the producer is not parked".
const NOT_WAITING: u64 = u64::MAX;

/// Spins, then yields, of a producer that finds no room before it parks.
/// The producer shares its CPU with the worker that runs its handlers, so
/// spinning long only delays them.
const WAIT_SPINS: u32 = 64;
const WAIT_YIELDS: u32 = 4;

/// The longest single park: a bound on the loop, should a wakeup be missed.
const PARK_MAX: Duration = Duration::from_millis(10);

/// Timestamp value meaning "not yet".
const NOT_YET: u64 = u64::MAX;

impl Producer {
    fn new(
        ids: Range<usize>,
        seen: Arc<[AtomicU8]>,
        clock: Instant,
        faults: HandlerFaults,
    ) -> Producer {
        Producer {
            ids,
            seen,
            completed: AtomicU64::new(0),
            first_ns: AtomicU64::new(NOT_YET),
            last_ns: AtomicU64::new(NOT_YET),
            clock,
            faults,
            thread: OnceLock::new(),
            wake_at: AtomicU64::new(NOT_WAITING),
        }
    }

    /// The number of bios this producer completes.
    fn len(&self) -> u64 {
        self.ids.len() as u64
    }

    /// The handler of bio `id`.
    fn complete(&self, id: usize) {
        self.seen[id].fetch_add(1, Relaxed);
        // SeqCst: with the load of `wake_at` below, one half of the
        // store-then-load pair with `wait_for_room` (no lost wakeup).
        let before = self.completed.fetch_add(1, SeqCst);
        if before == 0 {
            self.first_ns.store(self.elapsed_ns(), Relaxed);
        }
        if before + 1 == self.len() {
            self.last_ns.store(self.elapsed_ns(), Relaxed);
        }
        // SeqCst: the other half of the pair (see `wait_for_room`).
        if before + 1 >= self.wake_at.load(SeqCst)
            && self.wake_at.swap(NOT_WAITING, Relaxed) != NOT_WAITING
            && let Some(t) = self.thread.get()
        {
            t.unpark();
        }
    }

    fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(NOT_YET - 1)
    }

    /// Bios completed by this producer whose handler has not run.
    fn outstanding(&self, issued: u64) -> u64 {
        issued.saturating_sub(self.completed.load(Relaxed))
    }

    /// Waits until fewer than `inflight` bios are outstanding; `false` if
    /// no handler ran for [`STALL_TIMEOUT`]. Called by the producer thread
    /// only.
    ///
    /// 1. Spin [`WAIT_SPINS`] times, then yield [`WAIT_YIELDS`] times,
    ///    checking for room: a short wait costs no sleep.
    /// 2. Then park until at most `inflight / 2` are outstanding (half the
    ///    window, so the producer wakes once per many completions, not once
    ///    per completion): store that count as `wake_at`, check `completed`
    ///    again, park. A handler bumps `completed`, then reads `wake_at`;
    ///    when its count reaches it, it takes `wake_at` back and unparks the
    ///    producer.
    ///
    /// No wakeup is lost: both sides store, then load, with `SeqCst`, so
    /// in their single total order either the producer's load of
    /// `completed` sees the completion that reaches `wake_at` (it does not
    /// park) or that handler's load of `wake_at` sees the producer's store
    /// (it unparks; an unpark before the park makes the park return at
    /// once). Each park is bounded by [`PARK_MAX`] besides.
    fn wait_for_room(&self, issued: u64, inflight: u64) -> bool {
        let has_room = || self.outstanding(issued) < inflight;
        for _ in 0..WAIT_SPINS {
            if has_room() {
                return true;
            }
            std::hint::spin_loop();
        }
        for _ in 0..WAIT_YIELDS {
            if has_room() {
                return true;
            }
            thread::yield_now();
        }
        let want = issued - (inflight / 2).min(issued);
        let mut seen = self.completed.load(Relaxed);
        let mut deadline = Instant::now() + STALL_TIMEOUT;
        loop {
            // SeqCst: see the pairing argument above.
            self.wake_at.store(want, SeqCst);
            let completed = self.completed.load(SeqCst);
            if completed >= want {
                self.wake_at.store(NOT_WAITING, Relaxed);
                return true;
            }
            let now = Instant::now();
            if completed != seen {
                seen = completed;
                deadline = now + STALL_TIMEOUT;
            } else if now >= deadline {
                self.wake_at.store(NOT_WAITING, Relaxed);
                return false;
            }
            thread::park_timeout((deadline - now).min(PARK_MAX));
        }
    }
}

/// The producer thread: pins itself to `cpu`, then completes its bios from
/// atomic context. Returns `false` if it gave up because its bios stopped
/// completing.
fn produce(completer: &Completer, producer: &Arc<Producer>, cpu: usize, inflight: u64) -> bool {
    if let Err(e) = endio::testing::pin_current_thread(cpu) {
        eprintln!(
            "endio stress: warning: a producer cannot pin itself to CPU {cpu} ({e}); it runs unpinned"
        );
    }
    let _ = producer.thread.set(thread::current());
    for (issued, id) in (0_u64..).zip(producer.ids.clone()) {
        if !producer.wait_for_room(issued, inflight) {
            return false;
        }
        let handler_producer = Arc::clone(producer);
        let bio = Bio::nop(move |_ended| {
            handler_producer.complete(id);
            handler_producer.faults.inject(id as u64);
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK);
        {
            let _atomic = context::atomic();
            completer.endio(bio);
        }
    }
    true
}

/// The id range of producer `index` of `producers` when `bios` are split
/// evenly.
fn share(bios: usize, producers: usize, index: usize) -> Range<usize> {
    let at = |i: usize| {
        let n = bios as u128 * i as u128 / producers as u128;
        usize::try_from(n).unwrap_or(bios)
    };
    at(index)..at(index + 1)
}

/// What a stress run measured.
#[derive(Debug)]
struct Outcome {
    policy: Batching,
    bios: u64,
    cpus: usize,
    producers_per_cpu: u32,
    inflight: u64,
    /// Handlers that ran, counted by the handlers themselves.
    completions: u64,
    /// From the first to the last completion.
    seconds: f64,
    /// Of the whole process, from before the producers start until idle.
    usage: Usage,
    lost: u64,
    duplicated: u64,
    /// The completer went idle within [`STALL_TIMEOUT`].
    idle: bool,
    /// Producers that gave up waiting for their bios to complete.
    stalled_producers: usize,
    stats: StatsSnapshot,
    faults: Faults,
}

/// Runs the producers on `completer` and collects the outcome.
fn stress(completer: &Completer, args: &StressArgs) -> anyhow::Result<Outcome> {
    let bios = usize::try_from(args.bios).context("--bios does not fit in memory here")?;
    let cpus = completer.online_cpus().to_vec();
    let per_cpu = args.producers_per_cpu as usize;
    let count = cpus.len() * per_cpu;
    let seen: Arc<[AtomicU8]> = (0..bios).map(|_| AtomicU8::new(0)).collect();
    let clock = Instant::now();
    let producers: Vec<Arc<Producer>> = (0..count)
        .map(|i| {
            Arc::new(Producer::new(
                share(bios, count, i),
                Arc::clone(&seen),
                clock,
                args.handler_faults(),
            ))
        })
        .collect();

    let before = rusage::now()?;
    let api_churn = args
        .hotplug_churn
        .then(|| Churn::api(completer, args.seed))
        .transpose()?;
    let _restore = args
        .real_hotplug
        .then(|| interrupt::register(Undo::OnlineCpus));
    let real_churn = args
        .real_hotplug
        .then(|| Churn::real(Path::new("/sys")))
        .transpose()?;
    let stalled_producers = run_producers(completer, &producers, &cpus, per_cpu, args.inflight)?;
    // Every CPU is online again once the churn stopped: the liveness phase.
    let api_churn = api_churn.map(Churn::stop).transpose()?;
    let real_churn = real_churn.map(Churn::stop).transpose()?;
    if real_churn.is_some() {
        // Let the watcher see the last transition back online.
        thread::sleep(Duration::from_millis(200));
    }
    let idle = completer.wait_idle(STALL_TIMEOUT);
    let usage = rusage::now()?.since(&before);
    let stats = completer.stats();
    let (lost, duplicated) = check(&seen);

    Ok(Outcome {
        policy: args.policy,
        bios: args.bios,
        cpus: cpus.len(),
        producers_per_cpu: args.producers_per_cpu,
        inflight: args.inflight,
        completions: producers.iter().map(|p| p.completed.load(Relaxed)).sum(),
        seconds: span_seconds(&producers),
        usage,
        lost,
        duplicated,
        idle,
        stalled_producers,
        stats,
        faults: Faults {
            panics: args.panics,
            stalls: args.stalls,
            stall_timeout_ms: args.stall_timeout.as_secs_f64() * 1e3,
            seed: args.seed,
            hotplug_churn: api_churn,
            real_hotplug: real_churn,
        },
    })
}

/// The faults a run injected and the transitions its churn threads made.
#[derive(Debug, Serialize)]
struct Faults {
    panics: f64,
    stalls: f64,
    stall_timeout_ms: f64,
    seed: u64,
    hotplug_churn: Option<Transitions>,
    real_hotplug: Option<Transitions>,
}

/// Starts producer `i` pinned to `cpus[i / per_cpu]` and waits for all of
/// them; returns how many gave up.
fn run_producers(
    completer: &Completer,
    producers: &[Arc<Producer>],
    cpus: &[usize],
    per_cpu: usize,
    inflight: u64,
) -> anyhow::Result<usize> {
    thread::scope(|scope| {
        let mut handles = Vec::with_capacity(producers.len());
        for (i, producer) in producers.iter().enumerate() {
            let cpu = cpus[i / per_cpu];
            let handle = thread::Builder::new()
                .name(format!("endio-stress/{cpu}.{}", i % per_cpu))
                .spawn_scoped(scope, move || produce(completer, producer, cpu, inflight))
                .with_context(|| {
                    format!("cannot start a producer thread for CPU {cpu}; raise the thread limit (ulimit -u) or give a smaller --producers-per-cpu")
                })?;
            handles.push(handle);
        }
        let mut stalled = 0;
        for handle in handles {
            match handle.join() {
                Ok(true) => {}
                Ok(false) => stalled += 1,
                Err(_) => bail!("a producer thread panicked"),
            }
        }
        Ok(stalled)
    })
}

/// Counts the ids whose handler never ran and those whose handler ran more
/// than once.
fn check(seen: &[AtomicU8]) -> (u64, u64) {
    let mut lost = 0;
    let mut duplicated = 0;
    for slot in seen {
        match slot.load(Relaxed) {
            0 => lost += 1,
            1 => {}
            _ => duplicated += 1,
        }
    }
    (lost, duplicated)
}

/// Seconds from the first completion of any producer to the last completion
/// of all; 0 if nothing completed.
fn span_seconds(producers: &[Arc<Producer>]) -> f64 {
    let first = producers
        .iter()
        .map(|p| p.first_ns.load(Relaxed))
        .filter(|&t| t != NOT_YET)
        .min();
    let last = producers
        .iter()
        .map(|p| p.last_ns.load(Relaxed))
        .filter(|&t| t != NOT_YET)
        .max();
    match (first, last) {
        (Some(first), Some(last)) => last.saturating_sub(first) as f64 / 1e9,
        _ => 0.0,
    }
}

impl Outcome {
    fn completions_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completions as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn ctx_switches_per_completion(&self) -> f64 {
        if self.completions > 0 {
            self.usage.ctx_switches() as f64 / self.completions as f64
        } else {
            0.0
        }
    }

    /// `Ok` if every handler ran exactly once and the completer went idle.
    fn verdict(&self) -> anyhow::Result<()> {
        if self.lost == 0 && self.duplicated == 0 && self.idle && self.stalled_producers == 0 {
            return Ok(());
        }
        let mut message = format!(
            "stress failed: lost={} duplicated={} of {} bios (policy {})",
            self.lost, self.duplicated, self.bios, self.policy
        );
        if !self.idle {
            message += &format!(
                "; the completer did not go idle within {} s, {} deferred bios still queued",
                STALL_TIMEOUT.as_secs(),
                self.stats.total.queued()
            );
        }
        if self.stalled_producers > 0 {
            message += &format!(
                "; {} producers gave up after no handler ran for {} s",
                self.stalled_producers,
                STALL_TIMEOUT.as_secs()
            );
        }
        bail!(message)
    }

    fn json(&self) -> JsonReport<'_> {
        JsonReport {
            policy: self.policy.to_string(),
            bios: self.bios,
            cpus: self.cpus,
            producers_per_cpu: self.producers_per_cpu,
            inflight: self.inflight,
            seconds: self.seconds,
            completions_per_s: self.completions_per_s(),
            ctx_switches_voluntary: self.usage.voluntary_ctx_switches,
            ctx_switches_involuntary: self.usage.involuntary_ctx_switches,
            ctx_switches_per_completion: self.ctx_switches_per_completion(),
            lost: self.lost,
            duplicated: self.duplicated,
            timed_out: !self.idle,
            faults: &self.faults,
            stats: JsonStats {
                total: JsonTotal {
                    stats: &self.stats.total,
                    batch_len_mean: self.stats.total.batch_len_mean(),
                },
                per_cpu: &self.stats.per_cpu,
            },
        }
    }
}

/// The `--json` output.
#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    policy: String,
    bios: u64,
    cpus: usize,
    producers_per_cpu: u32,
    inflight: u64,
    seconds: f64,
    completions_per_s: f64,
    ctx_switches_voluntary: u64,
    ctx_switches_involuntary: u64,
    ctx_switches_per_completion: f64,
    lost: u64,
    duplicated: u64,
    timed_out: bool,
    faults: &'a Faults,
    stats: JsonStats<'a>,
}

/// A [`StatsSnapshot`] with the mean batch length of the total.
#[derive(Debug, Serialize)]
struct JsonStats<'a> {
    total: JsonTotal<'a>,
    per_cpu: &'a [CpuStats],
}

/// [`Stats`] plus [`Stats::batch_len_mean`].
#[derive(Debug, Serialize)]
struct JsonTotal<'a> {
    #[serde(flatten)]
    stats: &'a Stats,
    batch_len_mean: f64,
}

/// Writes the human report; the first line is `lost=N duplicated=N`.
fn write_report(w: &mut dyn Write, o: &Outcome) -> io::Result<()> {
    let t = &o.stats.total;
    writeln!(w, "lost={} duplicated={}", o.lost, o.duplicated)?;
    writeln!(w, "policy         {}", o.policy)?;
    writeln!(
        w,
        "bios           {} ({} CPUs, {} producers per CPU, at most {} in flight per producer)",
        o.bios, o.cpus, o.producers_per_cpu, o.inflight
    )?;
    writeln!(w, "seconds        {:.3}", o.seconds)?;
    writeln!(w, "completions/s  {}", format_rate(o.completions_per_s()))?;
    writeln!(
        w,
        "ctx switches   {:.4} per completion ({} voluntary, {} involuntary)",
        o.ctx_switches_per_completion(),
        o.usage.voluntary_ctx_switches,
        o.usage.involuntary_ctx_switches
    )?;
    writeln!(w, "deferred       {}", t.deferred)?;
    writeln!(w, "inline         {}", t.inline)?;
    writeln!(w, "handlers       {}", t.handlers)?;
    writeln!(w, "batches        {}", t.batches)?;
    writeln!(w, "mean batch     {:.1}", t.batch_len_mean())?;
    writeln!(w, "batch_len_max  {}", t.batch_len_max)?;
    writeln!(w, "requeues       {}", t.requeues)?;
    writeln!(w, "wakeups        {}", t.wakeups)?;
    writeln!(w, "panics         {}", t.panics)?;
    writeln!(w, "run_len_max    {}", t.run_len_max)?;
    writeln!(w, "run_ns_max     {}", t.run_ns_max)?;
    writeln!(
        w,
        "lifecycle      onlines={} down_preps={} deads={} rollbacks={} requeued_on_online={} drained={} redirected={} repins={}",
        t.onlines,
        t.down_preps,
        t.deads,
        t.rollbacks,
        t.requeued_on_online,
        t.drained,
        t.redirected,
        t.repins
    )?;
    writeln!(
        w,
        "rescue         rescues={} rescued={}",
        t.rescues, t.rescued
    )?;
    let f = &o.faults;
    if f.panics > 0.0 || f.stalls > 0.0 {
        writeln!(
            w,
            "faults         panics={} stalls={} stall_timeout={:.0}ms seed={}",
            f.panics, f.stalls, f.stall_timeout_ms, f.seed
        )?;
    }
    for (name, churn) in [
        ("hotplug churn", &f.hotplug_churn),
        ("real hotplug", &f.real_hotplug),
    ] {
        if let Some(c) = churn {
            writeln!(
                w,
                "{name:<14} offlines={} rollbacks={} onlines={}",
                c.offlines, c.rollbacks, c.onlines
            )?;
        }
    }
    for cpu in &o.stats.per_cpu {
        writeln!(w, "{}", format_cpu(cpu))?;
    }
    Ok(())
}

/// One line of per-CPU counters.
fn format_cpu(cpu: &CpuStats) -> String {
    let s = &cpu.stats;
    format!(
        "cpu {}: deferred={} inline={} handlers={} batches={} mean_batch={:.1} batch_len_max={} \
         requeues={} wakeups={} panics={} run_len_max={} run_ns_max={}",
        cpu.cpu,
        s.deferred,
        s.inline,
        s.handlers,
        s.batches,
        s.batch_len_mean(),
        s.batch_len_max,
        s.requeues,
        s.wakeups,
        s.panics,
        s.run_len_max,
        s.run_ns_max
    )
}

/// `3.21 M/s`, `812.50 k/s` or `42 /s`.
fn format_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M/s", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.2} k/s", per_s / 1e3)
    } else {
        format!("{per_s:.0} /s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_underscores_and_reject_the_rest() {
        assert_eq!(parse_count("10_000_000"), Ok(10_000_000));
        assert_eq!(parse_count("65536"), Ok(65536));
        for bad in ["", "_", "0", "ten", "-1", "1e6", "1.5"] {
            assert!(parse_count(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn shares_cover_every_id_once() {
        for (bios, producers) in [(10, 3), (2, 4), (1_000_003, 8), (7, 7)] {
            let mut next = 0;
            for i in 0..producers {
                let r = share(bios, producers, i);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, bios);
        }
    }

    #[test]
    fn a_parked_producer_wakes_when_half_its_window_has_completed() {
        const INFLIGHT: u64 = 64;
        let seen: Arc<[AtomicU8]> = (0..INFLIGHT).map(|_| AtomicU8::new(0)).collect();
        let faults = HandlerFaults {
            panic_p: 0.0,
            stall_p: 0.0,
            stall: Duration::ZERO,
            seed: 1,
        };
        let p = Arc::new(Producer::new(0..64, seen, Instant::now(), faults));
        let _ = p.thread.set(thread::current());
        let handlers = {
            let p = Arc::clone(&p);
            thread::spawn(move || {
                // Long enough for the producer to spin, yield and park.
                thread::sleep(Duration::from_millis(50));
                for id in 0..INFLIGHT as usize {
                    p.complete(id);
                    thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let t = Instant::now();
        assert!(p.wait_for_room(INFLIGHT, INFLIGHT));
        let completed = p.completed.load(Relaxed);
        // Woken at the low-water mark, not by the first completion.
        assert!(
            completed >= INFLIGHT / 2,
            "woke after {completed} completions"
        );
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!(p.wake_at.load(Relaxed), NOT_WAITING);
        handlers.join().unwrap();
        assert!(p.seen.iter().all(|s| s.load(Relaxed) == 1));
    }

    #[test]
    fn check_counts_lost_and_duplicated() {
        let seen: Vec<AtomicU8> = [1, 0, 2, 1, 3, 0].into_iter().map(AtomicU8::new).collect();
        assert_eq!(check(&seen), (2, 2));
    }

    fn outcome(lost: u64, duplicated: u64, idle: bool) -> Outcome {
        Outcome {
            policy: Batching::Immediate,
            bios: 10,
            cpus: 1,
            producers_per_cpu: 1,
            inflight: 1,
            completions: 10 - lost + duplicated,
            seconds: 1.0,
            usage: Usage::default(),
            lost,
            duplicated,
            idle,
            stalled_producers: 0,
            stats: StatsSnapshot {
                total: Stats::default(),
                per_cpu: Vec::new(),
            },
            faults: Faults {
                panics: 0.0,
                stalls: 0.0,
                stall_timeout_ms: 20.0,
                seed: 1,
                hotplug_churn: None,
                real_hotplug: None,
            },
        }
    }

    #[test]
    fn verdict_names_the_counts() {
        assert!(outcome(0, 0, true).verdict().is_ok());
        let e = outcome(2, 0, true).verdict().unwrap_err().to_string();
        assert!(e.contains("lost=2 duplicated=0"), "{e}");
        let e = outcome(0, 1, true).verdict().unwrap_err().to_string();
        assert!(e.contains("lost=0 duplicated=1"), "{e}");
        let e = outcome(0, 0, false).verdict().unwrap_err().to_string();
        assert!(e.contains("did not go idle"), "{e}");
    }

    #[test]
    fn report_starts_with_the_verdict_counts() {
        let mut out = Vec::new();
        write_report(&mut out, &outcome(3, 1, true)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().next(), Some("lost=3 duplicated=1"));
        assert!(text.contains("completions/s  8 /s"), "{text}");
    }

    #[test]
    fn rates_are_scaled() {
        assert_eq!(format_rate(3_210_000.0), "3.21 M/s");
        assert_eq!(format_rate(812_500.0), "812.50 k/s");
        assert_eq!(format_rate(42.0), "42 /s");
    }
}
