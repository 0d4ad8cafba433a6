//! The report of `endio-harness bench-completion`: the table, the goals of
//! the completion path and the JSON.
//!
//! The goals, each with its threshold in [`Outcome::goals`]: endio's
//! adaptive batching against the best non-endio contender's throughput at
//! saturation, its context switches per completion, its handler-start
//! latency at 10k/s, and its CPU time per completion against tokio's
//! `spawn_blocking`.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Cell, Kind, Load, Plan};

/// The line that introduces the goals in the table.
pub(crate) const GOALS_HEADING: &str = "goals of the completion path:";

/// The machine's state, for the record: the numbers of a noisy machine mean
/// little without it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MachineState {
    kernel: String,
    /// `/proc/loadavg`'s first three fields.
    loadavg: String,
}

impl MachineState {
    pub(crate) fn now() -> MachineState {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let loadavg = read("/proc/loadavg");
        MachineState {
            kernel: read("/proc/sys/kernel/osrelease"),
            loadavg: loadavg
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// A run's cells and what they say about the goals.
#[derive(Debug)]
pub(crate) struct Outcome {
    plan: Plan,
    started: MachineState,
    ended: MachineState,
    cells: Vec<Cell>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Percentiles {
    samples: u64,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Option<Percentiles> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Some(Percentiles {
            samples: h.len(),
            p50: us(h.value_at_quantile(0.5)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1e3,
        })
    }
}

/// Derived numbers of a cell.
impl Cell {
    fn per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.completions as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn per_completion(&self, n: f64) -> Option<f64> {
        (self.completions > 0).then(|| n / self.completions as f64)
    }

    /// All context switches of the process (getrusage).
    fn ctx_switches_per_completion(&self) -> Option<f64> {
        self.per_completion(self.usage.ctx_switches() as f64)
    }

    /// Context switches of the process less the producers' pacing sleeps
    /// (each one voluntary switch): those of the hand-off.
    fn handoff_ctx_switches_per_completion(&self) -> Option<f64> {
        self.per_completion(self.usage.ctx_switches().saturating_sub(self.pacing_sleeps) as f64)
    }

    fn wakeups_per_completion(&self) -> Option<f64> {
        self.per_completion(self.wakeups? as f64)
    }

    fn cpu_ns_per_completion(&self) -> Option<f64> {
        self.per_completion((self.usage.user + self.usage.system).as_secs_f64() * 1e9)
    }

    fn batch_len_mean(&self) -> Option<f64> {
        self.endio
            .as_ref()
            .filter(|s| s.batches > 0)
            .map(|s| s.batch_len_mean())
    }
}

/// One line per finished cell, for the progress on standard error.
pub(crate) fn progress_line(cell: &Cell) -> String {
    let p99 = Percentiles::of(&cell.latency.from_call)
        .map_or_else(|| "-".to_owned(), |p| format!("{:.1} µs", p.p99));
    format!(
        "{:<20} {:<10} {:>11}  cs/c {:>7}  p99 {}",
        cell.kind.name(),
        cell.load.to_string(),
        format_rate(cell.per_s()),
        format_opt(cell.handoff_ctx_switches_per_completion(), 4),
        p99
    )
}

/// A goal of the completion path, judged on the cells that were run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Goal {
    /// What is asked.
    goal: &'static str,
    /// The measured figure (a ratio, a count or microseconds, see `goal`).
    measured: Option<f64>,
    /// `None`: the cells it needs were not run, or measured nothing.
    met: Option<bool>,
    /// The figures behind it.
    detail: String,
}

impl Goal {
    fn new(goal: &'static str, measured: Option<f64>, ok: impl Fn(f64) -> bool) -> Goal {
        Goal {
            goal,
            measured,
            met: measured.map(ok),
            detail: String::new(),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "MET",
            Some(false) => "MISSED",
            None => "NOT RUN",
        }
    }
}

impl Outcome {
    pub(crate) fn new(plan: Plan, started: MachineState, cells: Vec<Cell>) -> Outcome {
        Outcome {
            plan,
            started,
            ended: MachineState::now(),
            cells,
        }
    }

    fn cell(&self, kind: Kind, load: Load) -> Option<&Cell> {
        self.cells.iter().find(|c| c.kind == kind && c.load == load)
    }

    pub(crate) fn goals(&self) -> Vec<Goal> {
        let sat = |kind| self.cell(kind, Load::Saturation);
        let adaptive = sat(Kind::EndioAdaptive);
        let rivals = [
            Kind::Crossbeam,
            Kind::StdMpsc,
            Kind::MutexCondvar,
            Kind::TokioSpawnBlocking,
        ];
        let best_rival = rivals
            .iter()
            .filter_map(|&k| sat(k))
            .max_by(|a, b| a.per_s().total_cmp(&b.per_s()));

        let mut throughput = Goal::new(
            "endio-adaptive at saturation >= 2x the best non-endio contender's throughput",
            adaptive
                .zip(best_rival)
                .filter(|(_, r)| r.per_s() > 0.0)
                .map(|(a, r)| a.per_s() / r.per_s()),
            |ratio| ratio >= 2.0,
        );
        if let (Some(a), Some(r)) = (adaptive, best_rival) {
            // On a shared machine the process does not always get every CPU;
            // CPU time per completion does not depend on that.
            throughput.detail = format!(
                "{} vs {} {}; per CPU time: {} vs {} ns per completion, {}x",
                format_rate(a.per_s()),
                r.kind.name(),
                format_rate(r.per_s()),
                format_opt(a.cpu_ns_per_completion(), 0),
                format_opt(r.cpu_ns_per_completion(), 0),
                format_opt(
                    a.cpu_ns_per_completion()
                        .zip(r.cpu_ns_per_completion())
                        .map(|(a, r)| r / a),
                    2
                ),
            );
        }

        let mut switches = Goal::new(
            "endio-adaptive <= 0.1 context switches per completion at saturation",
            adaptive.and_then(Cell::ctx_switches_per_completion),
            |cs| cs <= 0.1,
        );
        if let Some(a) = adaptive {
            switches.detail = format!(
                "{} voluntary + {} involuntary over {} completions",
                a.usage.voluntary_ctx_switches, a.usage.involuntary_ctx_switches, a.completions
            );
        }

        let at_10k = self.cell(Kind::EndioAdaptive, Load::Rate(10_000));
        let at_10k_p = at_10k.and_then(|c| Percentiles::of(&c.latency.from_call));
        let mut latency = Goal::new(
            "endio-adaptive p99 handler-start latency at 10k/s <= 50 us",
            at_10k_p.map(|p| p.p99),
            |p99| p99 <= 50.0,
        );
        if let Some(p) = at_10k_p {
            latency.detail = format!(
                "p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us over {} completions",
                p.p50, p.p99, p.p999, p.samples
            );
        }

        let tokio = sat(Kind::TokioSpawnBlocking);
        let mut cost = Goal::new(
            "endio-adaptive >= 10x cheaper per completion than tokio spawn_blocking (CPU time per completion at saturation)",
            adaptive
                .zip(tokio)
                .and_then(|(a, t)| Some(t.cpu_ns_per_completion()? / a.cpu_ns_per_completion()?)),
            |ratio| ratio >= 10.0,
        );
        if let (Some(a), Some(t)) = (adaptive, tokio) {
            cost.detail = format!(
                "{} vs {} ns CPU per completion; throughput {:.1}x",
                format_opt(a.cpu_ns_per_completion(), 0),
                format_opt(t.cpu_ns_per_completion(), 0),
                if t.per_s() > 0.0 {
                    a.per_s() / t.per_s()
                } else {
                    f64::INFINITY
                }
            );
        }
        vec![throughput, switches, latency, cost]
    }

    /// The human report: settings, the table, its legend, the goals.
    pub(crate) fn table(&self) -> String {
        let p = &self.plan;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "endio-harness bench-completion{}: {} CPUs ({}), one pinned producer per CPU, in-flight window {} per producer",
            if p.quick { " --quick" } else { "" },
            p.cpus.len(),
            p.cpus
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            p.inflight,
        );
        let _ = writeln!(
            out,
            "{:.2} s per cell after {:.2} s warm-up; kernel {}; load average {} at start, {} at end",
            p.duration.as_secs_f64(),
            p.warmup.as_secs_f64(),
            self.started.kernel,
            self.started.loadavg,
            self.ended.loadavg,
        );
        let _ = writeln!(out);
        let header = [
            "load",
            "contender",
            "completions/s",
            "cs/compl",
            "wake/compl",
            "CPU ns/c",
            "batch",
            "p50 µs",
            "p99 µs",
            "p99.9 µs",
        ];
        let mut rows = vec![header.map(str::to_owned).to_vec()];
        for c in &self.cells {
            let lat = Percentiles::of(&c.latency.from_call);
            rows.push(vec![
                c.load.to_string(),
                c.kind.name().to_owned(),
                format_rate(c.per_s()),
                format_opt(c.handoff_ctx_switches_per_completion(), 4),
                format_opt(c.wakeups_per_completion(), 4),
                format_opt(c.cpu_ns_per_completion(), 0),
                format_opt(c.batch_len_mean(), 1),
                format_opt(lat.map(|l| l.p50), 1),
                format_opt(lat.map(|l| l.p99), 1),
                format_opt(lat.map(|l| l.p999), 1),
            ]);
        }
        write_rows(&mut out, &rows);
        let _ = writeln!(
            out,
            "\ncompletions/s: handlers run per second in the window (at an offered load it should match the load).\n\
             cs/compl: voluntary + involuntary context switches of the whole process (getrusage) per completion,\n  \
             less the producers' pacing sleeps at offered loads (the JSON has both).\n\
             wake/compl: worker sleeps per completion: endio, its worker parks; crossbeam and std-mpsc, blocking\n  \
             receives after an empty try_recv (an upper bound); mutex-condvar, condvar waits; tokio, not measurable (-).\n\
             CPU ns/c: user + system CPU time of the process per completion (producers included); at offered loads it\n  \
             is mostly the producers' own sleeps and wakeups, and getrusage's tick-sampled split makes it noisy.\n\
             batch: endio only, handlers per take of the per-CPU list.\n\
             latency: from the instant taken just before the submit call (which builds the bio or closure) to the\n  \
             handler's first line; every completion at an offered load (open loop; the JSON also has it from the\n  \
             scheduled send time), 1 in {} at saturation, where it is mostly the wait behind the window.",
            p.sample_every
        );
        let _ = writeln!(out, "\n{GOALS_HEADING}");
        for g in self.goals() {
            let _ = writeln!(
                out,
                "  {:<7} {}: {}{}",
                g.verdict(),
                g.goal,
                format_opt(g.measured, 3),
                if g.detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", g.detail)
                }
            );
        }
        out
    }

    /// Every number, for `--json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        let p = &self.plan;
        let cells: Vec<serde_json::Value> = self
            .cells
            .iter()
            .map(|c| {
                serde_json::json!({
                    "contender": c.kind.name(),
                    "endio": c.kind.is_endio(),
                    "load": c.load.to_string(),
                    "offered_per_s": c.load.rate_per_s(),
                    "seconds": c.seconds,
                    "completions": c.completions,
                    "completions_per_s": c.per_s(),
                    "handed_over_in_cell": c.handed_over,
                    "ctx_switches_voluntary": c.usage.voluntary_ctx_switches,
                    "ctx_switches_involuntary": c.usage.involuntary_ctx_switches,
                    "ctx_switches_per_completion": c.ctx_switches_per_completion(),
                    "producer_pacing_sleeps": c.pacing_sleeps,
                    "handoff_ctx_switches_per_completion": c.handoff_ctx_switches_per_completion(),
                    "wakeups": c.wakeups,
                    "wakeups_per_completion": c.wakeups_per_completion(),
                    "wakeups_meaning": c.kind.wakeups_meaning(),
                    "cpu": {
                        "user_s": c.usage.user.as_secs_f64(),
                        "sys_s": c.usage.system.as_secs_f64(),
                        "ns_per_completion": c.cpu_ns_per_completion(),
                    },
                    "latency_us": Percentiles::of(&c.latency.from_call),
                    "latency_from_scheduled_us": Percentiles::of(&c.latency.from_scheduled),
                    "endio_stats": c.endio.map(|s| serde_json::json!({
                        "deferred": s.deferred,
                        "inline": s.inline,
                        "handlers": s.handlers,
                        "batches": s.batches,
                        "batch_len_mean": c.batch_len_mean(),
                        "batch_len_max": s.batch_len_max,
                        "requeues": s.requeues,
                        "wakeups": s.wakeups,
                        "run_len_max": s.run_len_max,
                        "run_ns_max": s.run_ns_max,
                    })),
                })
            })
            .collect();
        serde_json::json!({
            "benchmark": "bench-completion",
            "quick": p.quick,
            "settings": {
                "cpus": p.cpus,
                "producers": p.cpus.len(),
                "inflight_per_producer": p.inflight,
                "duration_s": p.duration.as_secs_f64(),
                "warmup_s": p.warmup.as_secs_f64(),
                "sample_every_at_saturation": p.sample_every,
                "latency_from": "the instant just before the submit call (latency_us); the scheduled send time (latency_from_scheduled_us, offered loads only)",
                "pacing": "open loop: sleep (1 us timer slack) until 5 us before each scheduled send time, then spin; a late producer sends at once",
            },
            "machine": { "start": &self.started, "end": &self.ended },
            "contenders": p.contenders.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "loads": p.loads.iter().map(Load::to_string).collect::<Vec<_>>(),
            "cells": cells,
            "goals": self.goals(),
        })
    }
}

/// Writes `rows` as columns, the first row a header underlined; the first
/// two columns left-aligned, the rest right-aligned.
fn write_rows(out: &mut String, rows: &[Vec<String>]) {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            let pad = w - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if i < 2 {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            let _ = writeln!(out, "{}", rule.join("  "));
        }
    }
}

fn format_opt(x: Option<f64>, decimals: usize) -> String {
    match x {
        Some(x) if x.is_finite() => format!("{x:.decimals$}"),
        Some(_) => "inf".to_owned(),
        None => "-".to_owned(),
    }
}

/// `3.21 M`, `812.5 k` or `42`.
fn format_rate(per_s: f64) -> String {
    if per_s >= 1e6 {
        format!("{:.2} M", per_s / 1e6)
    } else if per_s >= 1e3 {
        format!("{:.1} k", per_s / 1e3)
    } else {
        format!("{per_s:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Latency, Stats};
    use super::*;
    use crate::rusage::Usage;
    use std::time::Duration;

    fn cell(kind: Kind, load: Load, per_s: u64, cs: u64, cpu_ms: u64, p99_us: u64) -> Cell {
        let mut latency = Latency::new();
        for _ in 0..100 {
            latency.from_call.record(p99_us * 1_000).unwrap();
        }
        Cell {
            kind,
            load,
            seconds: 1.0,
            completions: per_s,
            pacing_sleeps: 0,
            usage: Usage {
                user: Duration::from_millis(cpu_ms),
                system: Duration::ZERO,
                voluntary_ctx_switches: cs,
                involuntary_ctx_switches: 0,
            },
            wakeups: kind.is_endio().then_some(cs),
            latency,
            endio: kind.is_endio().then(Stats::default),
            handed_over: per_s,
        }
    }

    fn outcome(cells: Vec<Cell>) -> Outcome {
        let plan = Plan {
            cpus: vec![0, 1],
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            inflight: 4096,
            sample_every: 64,
            contenders: Kind::ALL.to_vec(),
            loads: Load::DEFAULT.to_vec(),
            quick: false,
        };
        Outcome::new(plan, MachineState::now(), cells)
    }

    #[test]
    fn goals_are_judged_from_the_cells() {
        let sat = Load::Saturation;
        let o = outcome(vec![
            cell(Kind::EndioAdaptive, sat, 10_000_000, 10_000, 2_000, 900),
            cell(Kind::Crossbeam, sat, 4_000_000, 1_000_000, 2_000, 900),
            cell(Kind::TokioSpawnBlocking, sat, 500_000, 900_000, 2_000, 900),
            cell(
                Kind::EndioAdaptive,
                Load::Rate(10_000),
                10_000,
                10_000,
                20,
                60,
            ),
        ]);
        let goals = o.goals();
        let verdicts: Vec<_> = goals.iter().map(Goal::verdict).collect();
        assert_eq!(verdicts, ["MET", "MET", "MISSED", "MET"], "{goals:?}");
        assert_eq!(goals[0].measured, Some(2.5));
        assert_eq!(goals[1].measured, Some(0.001));
        assert!(goals[2].measured.unwrap() >= 59.0);
        assert_eq!(goals[3].measured, Some(20.0));
        let table = o.table();
        assert!(table.contains("MISSED  endio-adaptive p99"), "{table}");
        assert!(table.contains("crossbeam"), "{table}");
    }

    #[test]
    fn goals_without_their_cells_are_not_run() {
        let o = outcome(vec![cell(Kind::Inline, Load::Saturation, 1_000, 0, 1, 1)]);
        assert!(o.goals().iter().all(|g| g.met.is_none()));
        let json = o.json();
        assert_eq!(json["cells"][0]["contender"], "inline");
        assert_eq!(json["goals"][0]["met"], serde_json::Value::Null);
    }

    #[test]
    fn rows_line_up() {
        let mut out = String::new();
        write_rows(
            &mut out,
            &[
                vec!["a".into(), "bb".into(), "n".into()],
                vec!["ccc".into(), "d".into(), "1234".into()],
            ],
        );
        assert_eq!(out, "a    bb     n\n---  --  ----\nccc  d   1234\n");
    }

    #[test]
    fn rates_are_scaled() {
        assert_eq!(format_rate(3_210_000.0), "3.21 M");
        assert_eq!(format_rate(812_500.0), "812.5 k");
        assert_eq!(format_rate(42.0), "42");
    }
}
