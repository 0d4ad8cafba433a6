//! Batching, run budget and panic policies, and the pacer that applies the
//! batching policy in a worker.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::sync::Instant;

/// When a worker drains the first bio of a new batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Drain at once (Linux 7.3 as merged: a plain work item, no delay).
    Immediate,
    /// Wait this long after the wakeup before draining, so more bios join the
    /// batch (the v6 patch: a 1-jiffy delayed work).
    Fixed(Duration),
    /// Drain at once when completions are sparse; under load, wait just long
    /// enough for a batch to gather, never longer than a bound.
    Adaptive(Adaptive),
}

impl Default for Batching {
    fn default() -> Batching {
        Batching::Adaptive(Adaptive::default())
    }
}

/// Settings of [`Batching::Adaptive`].
///
/// The worker keeps an estimate of the completion rate of its CPU (an
/// exponentially weighted moving average with time constant `window`). When
/// it is woken for a new batch it predicts how many bios would arrive within
/// `delay_max`: fewer than `busy_min` means the CPU is idle or lightly loaded
/// and it drains at once (the latency of [`Batching::Immediate`]); otherwise it
/// waits until about `batch_target` bios have gathered, at most `delay_max`
/// (the context switches of [`Batching::Fixed`]).
///
/// A high rate does not always mean company is coming: a submitter that waits
/// for its completions before issuing more (a queue depth of 1, or of 32 with
/// all 32 already queued) completes at a high rate, yet a delay only stalls
/// it. So when nothing arrived during a delay, or a delayed batch gathered
/// fewer than `busy_min` bios, the delay was futile and the next wakeups
/// drain at once; the number of such wakeups doubles with each futile delay
/// in a row (up to 256) and resets when a delay pays off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adaptive {
    /// The longest a first bio waits for company.
    pub delay_max: Duration,
    /// The batch size worth waiting for.
    pub batch_target: u32,
    /// Expected arrivals within `delay_max` from which the CPU counts as busy.
    pub busy_min: u32,
    /// Time constant of the rate estimate.
    pub window: Duration,
}

impl Default for Adaptive {
    fn default() -> Adaptive {
        Adaptive {
            delay_max: Duration::from_micros(50),
            batch_target: 64,
            busy_min: 2,
            window: Duration::from_millis(1),
        }
    }
}

/// How long one worker run may go on before it requeues itself and yields
/// (the `need_resched()` check of the kernel's worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Handlers per run.
    pub handlers_max: u32,
    /// Time per run; checked after every handler.
    pub time_max: Duration,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            handlers_max: 1024,
            time_max: Duration::from_millis(1),
        }
    }
}

/// What happens when a handler panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PanicPolicy {
    /// Catch the panic, count it, report it through `tracing`, and go on with
    /// the rest of the batch.
    #[default]
    Contain,
    /// Report it and abort the process.
    Abort,
}

/// A batching policy that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad batching policy {0:?}: expected immediate, fixed:DURATION (e.g. fixed:1ms) or adaptive[:DELAY_MAX] (e.g. adaptive:50us)"
)]
pub struct ParseBatchingError(String);

impl FromStr for Batching {
    type Err = ParseBatchingError;

    /// `immediate`, `fixed:1ms`, `adaptive` or `adaptive:100us`.
    fn from_str(s: &str) -> Result<Batching, ParseBatchingError> {
        let err = || ParseBatchingError(s.to_owned());
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, arg) {
            ("immediate", None) => Ok(Batching::Immediate),
            ("fixed", Some(d)) => Ok(Batching::Fixed(parse_duration(d).ok_or_else(err)?)),
            ("adaptive", None) => Ok(Batching::default()),
            ("adaptive", Some(d)) => Ok(Batching::Adaptive(Adaptive {
                delay_max: parse_duration(d).ok_or_else(err)?,
                ..Adaptive::default()
            })),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Batching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Batching::Immediate => f.write_str("immediate"),
            Batching::Fixed(d) => write!(f, "fixed:{}", format_duration(*d)),
            Batching::Adaptive(a) => write!(f, "adaptive:{}", format_duration(a.delay_max)),
        }
    }
}

/// Parses `250ns`, `50us`, `1ms`, `2s`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    match unit {
        "ns" => Some(Duration::from_nanos(n)),
        "us" | "µs" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        _ => None,
    }
}

fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

/// Applies a [`Batching`] policy in one worker: tells, at each wakeup for a
/// new batch, how long to wait before draining.
#[derive(Debug)]
pub(crate) struct Pacer {
    batching: Batching,
    /// Estimated completions per second on this CPU.
    rate_per_s: f64,
    /// When the estimate was last updated.
    last: Option<Instant>,
    /// Handlers run since `last`.
    ran_since_last: u64,
    /// The current wakeup was delayed; its batch tells whether that helped.
    delayed: bool,
    /// Wakeups still to drain at once after a futile delay.
    skip: u32,
    /// Length of the last skip run (doubles on each futile delay in a row).
    backoff: u32,
}

/// The longest run of undelayed wakeups after futile delays.
const BACKOFF_MAX: u32 = 256;

impl Pacer {
    pub(crate) fn new(batching: Batching) -> Pacer {
        Pacer {
            batching,
            rate_per_s: 0.0,
            last: None,
            ran_since_last: 0,
            delayed: false,
            skip: 0,
            backoff: 0,
        }
    }

    /// Records that a run completed `handlers` bios.
    pub(crate) fn ran(&mut self, handlers: u64) {
        self.ran_since_last += handlers;
        if let (true, Batching::Adaptive(a)) = (self.delayed, self.batching) {
            self.delayed = false;
            if handlers < u64::from(a.busy_min) {
                self.futile();
            } else {
                self.backoff = 0;
            }
        }
    }

    /// Records whether any bio arrived while the worker waited out the delay
    /// it was given; if none did, the delay was futile.
    pub(crate) fn delay_ended(&mut self, grew: bool) {
        if self.delayed && !grew {
            self.delayed = false;
            self.futile();
        }
    }

    fn futile(&mut self) {
        self.backoff = (self.backoff * 2).clamp(1, BACKOFF_MAX);
        self.skip = self.backoff;
    }

    /// Called when the worker wakes up for a new batch at `now`: how long to
    /// wait before draining it.
    pub(crate) fn delay_at_wakeup(&mut self, now: Instant) -> Duration {
        match self.batching {
            Batching::Immediate => Duration::ZERO,
            Batching::Fixed(delay) => delay,
            Batching::Adaptive(a) => {
                self.update_rate(now, a.window);
                let expected = self.rate_per_s * a.delay_max.as_secs_f64();
                if self.skip > 0 {
                    self.skip -= 1;
                    Duration::ZERO
                } else if expected < f64::from(a.busy_min) {
                    Duration::ZERO
                } else {
                    self.delayed = true;
                    let to_target = f64::from(a.batch_target) / self.rate_per_s;
                    a.delay_max.min(Duration::from_secs_f64(to_target))
                }
            }
        }
    }

    /// The current rate estimate (completions per second).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    fn update_rate(&mut self, now: Instant, window: Duration) {
        let Some(last) = self.last else {
            self.last = Some(now);
            self.ran_since_last = 0;
            return;
        };
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        if elapsed <= 0.0 {
            return;
        }
        // In a steady state the bios run since the last wakeup are the bios
        // that arrived in one interval between wakeups.
        let instant = self.ran_since_last as f64 / elapsed;
        // Weight by elapsed time: after an idle gap of a whole window or more,
        // the old estimate is forgotten at once, so an idle CPU answers the
        // next bio immediately.
        let alpha = (elapsed / window.as_secs_f64()).min(1.0);
        self.rate_per_s += alpha * (instant - self.rate_per_s);
        self.last = Some(now);
        self.ran_since_last = 0;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_policies() {
        assert_eq!(
            "immediate".parse::<Batching>().unwrap(),
            Batching::Immediate
        );
        assert_eq!(
            "fixed:1ms".parse::<Batching>().unwrap(),
            Batching::Fixed(Duration::from_millis(1))
        );
        assert_eq!("adaptive".parse::<Batching>().unwrap(), Batching::default());
        let Batching::Adaptive(a) = "adaptive:20us".parse::<Batching>().unwrap() else {
            panic!()
        };
        assert_eq!(a.delay_max, Duration::from_micros(20));
        for bad in [
            "",
            "fixed",
            "fixed:",
            "fixed:1",
            "fixed:1h",
            "lazy",
            "immediate:1ms",
        ] {
            let e = bad.parse::<Batching>().unwrap_err().to_string();
            assert!(e.contains("fixed:1ms"), "{e}");
        }
        for p in ["immediate", "fixed:1ms", "fixed:250us", "adaptive:50us"] {
            assert_eq!(p.parse::<Batching>().unwrap().to_string(), p);
        }
    }

    fn drive(pacer: &mut Pacer, start: Instant, period: Duration, wakeups: u32) -> Duration {
        let mut delay = Duration::ZERO;
        for i in 1..=wakeups {
            delay = pacer.delay_at_wakeup(start + period * i);
            pacer.ran(1);
        }
        delay
    }

    #[test]
    fn adaptive_is_immediate_when_sparse_and_batches_under_load() {
        let a = Adaptive::default();
        let start = Instant::now();
        // 10k completions per second, one per wakeup: 0.5 expected within
        // 50 µs, so no delay.
        let mut pacer = Pacer::new(Batching::Adaptive(a));
        assert_eq!(
            drive(&mut pacer, start, Duration::from_micros(100), 50),
            Duration::ZERO
        );
        let rate = pacer.rate_per_s();
        assert!((9_000.0..11_000.0).contains(&rate), "{rate}");

        // A flood: wakeups every 20 µs that each find 63 bios more than the
        // waking one (3.2M/s): wait for the batch, which takes 20 µs.
        let mut pacer = Pacer::new(Batching::Adaptive(a));
        let mut delay = Duration::ZERO;
        for i in 1..=200 {
            delay = pacer.delay_at_wakeup(start + Duration::from_micros(20) * i);
            pacer.ran(64);
        }
        assert!(
            delay > Duration::from_micros(15) && delay <= a.delay_max,
            "{delay:?}"
        );

        // After an idle gap of a window the flood is forgotten at once.
        let later = start + Duration::from_millis(500);
        assert_eq!(pacer.delay_at_wakeup(later), Duration::ZERO);
    }

    #[test]
    fn futile_delays_back_off() {
        // Queue depth 1: one bio per wakeup, every 10 µs (100k/s), each
        // issued only after the previous one completed, so a delay never
        // gathers company.
        let mut pacer = Pacer::new(Batching::default());
        let start = Instant::now();
        let mut delayed = 0;
        for i in 1..=2000 {
            if !pacer
                .delay_at_wakeup(start + Duration::from_micros(10) * i)
                .is_zero()
            {
                delayed += 1;
            }
            pacer.ran(1);
        }
        assert!(delayed <= 20, "{delayed} futile delays out of 2000 wakeups");

        // A delay during which nothing arrived is futile too, even if the
        // batch it found was large (a full queue depth).
        let mut pacer = Pacer::new(Batching::default());
        pacer.delayed = true;
        pacer.delay_ended(false);
        pacer.ran(32);
        assert_eq!((pacer.backoff, pacer.skip), (1, 1));

        // When a delay does gather a batch, the backoff resets.
        let mut pacer = Pacer::new(Batching::default());
        pacer.delayed = true;
        pacer.backoff = 64;
        pacer.ran(64);
        assert_eq!((pacer.backoff, pacer.skip), (0, 0));
    }

    #[test]
    fn immediate_and_fixed_are_constant() {
        let now = Instant::now();
        assert_eq!(
            Pacer::new(Batching::Immediate).delay_at_wakeup(now),
            Duration::ZERO
        );
        let d = Duration::from_millis(1);
        assert_eq!(Pacer::new(Batching::Fixed(d)).delay_at_wakeup(now), d);
    }
}
