//! `endio model`: the questions of the kernel design's review, each named
//! for the property it is about, settled by exhaustive exploration (the
//! `endio-model` crate, whose docs hold the table from question to
//! property).
//!
//! 1. The designs and questions asked for are checked one pair at a time,
//!    each case of a question being one breadth-first exploration.
//! 2. Every property result becomes one row of the verdict table: question,
//!    design, case, property, verdict, states explored, time.
//! 3. Per question follow the reviewer's and author's exchange, what the
//!    model settles, each row's detail and, for every violation, its
//!    shortest counterexample as numbered steps.
//!
//! Rows are built from the design's own results, so a design that is not a
//! model of the kernel code reports into the same table: `--design endio`
//! runs endio's own checks of each question (the loom and shuttle
//! randomized-schedule tests of the real protocol code, and the tests of
//! each property) and turns their verdicts into rows. The protocol is not
//! re-implemented for this: those tests drive the library itself. It needs
//! the source checkout endio was built from, and cargo.
//!
//! Violations are findings, not failures: the command exits with status 0
//! once every check ran, whatever the verdicts.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::output;
use endio_model::{Bound, Config, Design, Property, Question, Trace, Verdict};
use serde::Serialize;

/// Options of `endio model`.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// The design to check: v6 (as posted), v6-fixed (with the fixes the
    /// author accepted), merged (as merged for Linux 7.3), all (those
    /// three), or endio (endio's own protocol, by running its loom, shuttle
    /// and per-question tests from the source checkout; takes minutes the
    /// first time, to build them).
    #[arg(long, default_value = "all", value_parser = parse_design)]
    design: Choice<DesignName>,

    /// The question to settle, by selector or by the property it is about:
    /// q1 (handler-mandatory), q2 (run-budget), q3
    /// (no-sleeping-lock-in-atomic), q4 (no-stranded-after-rollback), q5
    /// (rescuer-cross-cpu), q6 (redeferral-bounded), or all.
    #[arg(long, default_value = "all", value_parser = parse_question)]
    question: Choice<Question>,

    /// Print one JSON object instead of the table and counterexamples.
    #[arg(long)]
    json: bool,

    /// The most states to explore per case; a property not violated within
    /// the bound reads "bound reached", never "holds".
    #[arg(long, default_value_t = Config::MAX_STATES, value_parser = parse_states)]
    max_states: usize,

    /// CPUs in each model (1-3) instead of each question's smallest that
    /// shows its answer.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    cpus: Option<u8>,

    /// Bios in each model (1-4) instead of each question's default.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    bios: Option<u8>,
}

/// A design `endio model` can report on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DesignName {
    /// A version of the kernel design, checked on the explicit-state model.
    Kernel(Design),
    /// endio's own protocol, checked by its own tests.
    Endio,
}

impl DesignName {
    const ALL: [DesignName; 3] = [
        DesignName::Kernel(Design::V6),
        DesignName::Kernel(Design::V6Fixed),
        DesignName::Kernel(Design::Merged),
    ];

    fn name(self) -> &'static str {
        match self {
            DesignName::Kernel(d) => d.name(),
            DesignName::Endio => "endio",
        }
    }
}

/// `--design` or `--question`: all of them, or one.
#[derive(Clone, Copy, Debug)]
enum Choice<T> {
    All,
    One(T),
}

impl<T: Copy> Choice<T> {
    /// The chosen items, `all` standing for [`Choice::All`].
    fn items(self, all: &[T]) -> Vec<T> {
        match self {
            Choice::All => all.to_vec(),
            Choice::One(x) => vec![x],
        }
    }
}

/// Parses `--design`: a kernel design's name, `endio` or `all`.
fn parse_design(s: &str) -> Result<Choice<DesignName>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Choice::All);
    }
    if s.eq_ignore_ascii_case("endio") {
        return Ok(Choice::One(DesignName::Endio));
    }
    DesignName::ALL
        .into_iter()
        .find(|d| d.name().eq_ignore_ascii_case(s))
        .map(Choice::One)
        .ok_or_else(|| {
            let names: Vec<&str> = DesignName::ALL.iter().map(|d| d.name()).collect();
            format!(
                "unknown design {s:?}; give one of {}, endio or all",
                names.join(", ")
            )
        })
}

/// Parses `--question`: `q1` to `q6`, a question's name, or `all`.
fn parse_question(s: &str) -> Result<Choice<Question>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Choice::All);
    }
    s.parse().map(Choice::One).map_err(|_| {
        let names: Vec<&str> = Question::ALL.iter().map(|q| q.name()).collect();
        format!(
            "unknown question {s:?}; give q1 to q6 or all, or a name: {}",
            names.join(", ")
        )
    })
}

/// Parses a state count written with or without `_` separators.
fn parse_states(s: &str) -> Result<usize, String> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    match digits.parse::<usize>() {
        Ok(0) => Err("a bound of 0 states explores nothing; give at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "{s:?} is not a state count; write digits, e.g. 1000000 or 1_000_000"
        )),
    }
}

/// One row of the verdict table.
#[derive(Debug, Serialize)]
struct Row {
    question: Question,
    design: &'static str,
    case: String,
    scenario: String,
    property: Property,
    property_text: &'static str,
    /// Whether the question is about this property (else it was found
    /// violated on the way).
    asked: bool,
    verdict: Verdict,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handlers_between_checks: Option<Bound>,
    states: usize,
    transitions: u64,
    bound_reached: bool,
    #[serde(rename = "time_ms", serialize_with = "serialize_ms")]
    time: Duration,
    counterexample: Option<Trace>,
}

fn serialize_ms<S: serde::Serializer>(time: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(time.as_secs_f64() * 1e3)
}

/// A question and the reviewer's and author's exchange on it.
#[derive(Debug, Serialize)]
struct QuestionInfo {
    id: Question,
    /// The property it is about ("run-budget").
    name: &'static str,
    title: &'static str,
    reviewer: &'static str,
    author: &'static str,
    finding: &'static str,
}

/// The whole run, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Output {
    max_states: usize,
    #[serde(rename = "time_ms", serialize_with = "serialize_ms")]
    time: Duration,
    questions: Vec<QuestionInfo>,
    results: Vec<Row>,
}

/// The rows of one question on one design.
fn rows(question: Question, design: DesignName, config: &Config) -> anyhow::Result<Vec<Row>> {
    Ok(match design {
        DesignName::Endio => endio_rows(question)?,
        DesignName::Kernel(d) => {
            let report = endio_model::check(question, d, config);
            let mut rows = Vec::new();
            for case in report.cases {
                for r in case.results {
                    rows.push(Row {
                        question,
                        design: design.name(),
                        case: case.name.clone(),
                        scenario: case.scenario.clone(),
                        property: r.property,
                        property_text: r.property.describe(),
                        asked: r.asked,
                        verdict: r.verdict,
                        detail: r.detail,
                        handlers_between_checks: r.handlers_between_checks,
                        states: case.states,
                        transitions: case.transitions,
                        bound_reached: case.bound_reached,
                        time: case.time,
                        counterexample: r.counterexample,
                    });
                }
            }
            rows
        }
    })
}

/// One of endio's own checks of a question's property.
struct EndioCheck {
    property: Property,
    /// What it runs, in words.
    what: &'static str,
    /// `cargo` arguments.
    args: &'static [&'static str],
    /// Extra `RUSTFLAGS` (the loom or shuttle build).
    rustflags: Option<&'static str>,
}

/// endio's checks of `question`: its tests of the real protocol code.
fn endio_checks(question: Question) -> Vec<EndioCheck> {
    const SHUTTLE: &[&str] = &[
        "test",
        "-p",
        "endio",
        "--lib",
        "--release",
        "--target-dir",
        "target/shuttle",
        "--",
        "shuttle_tests",
        "--test-threads=1",
        "--nocapture",
    ];
    const LOOM: &[&str] = &[
        "test",
        "-p",
        "endio",
        "--lib",
        "--release",
        "--target-dir",
        "target/loom",
        "--",
        "loom_tests",
    ];
    let test = |property, what, args| EndioCheck {
        property,
        what,
        args,
        rustflags: None,
    };
    match question {
        Question::HandlerMandatory => vec![test(
            Property::HandlerPresent,
            "compile_fail doctests: a Bio without a handler does not compile",
            &["test", "-p", "endio", "--release", "--doc", "bio"],
        )],
        Question::RunBudget => vec![test(
            Property::BoundedHandlerRun,
            "tests/run_budget.rs: a 200k flood; runs end at the budget, overrun by at most one handler",
            &["test", "-p", "endio", "--release", "--test", "run_budget"],
        )],
        Question::NoSleepingLockInAtomic => vec![
            test(
                Property::NoSleepInAtomic,
                "tests/producer_never_blocks.rs: 100k pushes return while the worker is blocked",
                &[
                    "test",
                    "-p",
                    "endio",
                    "--release",
                    "--test",
                    "producer_never_blocks",
                ],
            ),
            EndioCheck {
                property: Property::ExactlyOnce,
                what: "loom, exhaustive: lock-free push / take-all / park-unpark, no lost wakeup",
                args: LOOM,
                rustflags: Some("--cfg loom"),
            },
        ],
        Question::NoStrandedAfterRollback => vec![
            EndioCheck {
                property: Property::NothingStranded,
                what: "shuttle: producers, workers, rescue, down_prep / dead / rollback / online under random schedules",
                args: SHUTTLE,
                rustflags: Some("--cfg shuttle"),
            },
            test(
                Property::NothingStranded,
                "tests/hotplug_lifecycle.rs: rollback requeue, interrupted batch, dead drain",
                &[
                    "test",
                    "-p",
                    "endio",
                    "--release",
                    "--test",
                    "hotplug_lifecycle",
                ],
            ),
        ],
        Question::RescuerCrossCpu => vec![
            EndioCheck {
                property: Property::MutualExclusion,
                what: "shuttle: a rescue thread drains another CPU's batch under random schedules",
                args: SHUTTLE,
                rustflags: Some("--cfg shuttle"),
            },
            test(
                Property::ExactlyOnce,
                "tests/stall_rescue.rs: a stalled worker's batch is completed by a rescue thread",
                &["test", "-p", "endio", "--release", "--test", "stall_rescue"],
            ),
        ],
        Question::RedeferralBounded => vec![test(
            Property::BoundedRedeferral,
            "tests/redeferral_bounded.rs: AlwaysAtomic, a handler that always punts; the deferred mark as guard",
            &[
                "test",
                "-p",
                "endio",
                "--release",
                "--test",
                "redeferral_bounded",
            ],
        )],
    }
}

/// The source checkout endio was built from.
fn checkout() -> anyhow::Result<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if root
        .join("crates/endio/src/task/shuttle_tests.rs")
        .is_file()
    {
        Ok(root)
    } else {
        anyhow::bail!(
            "--design endio runs endio's own tests, which need the source checkout this binary was \
             built from ({}); run it from a clone of the repository",
            root.display()
        )
    }
}

/// Runs endio's checks of `question` and makes rows of them.
fn endio_rows(question: Question) -> anyhow::Result<Vec<Row>> {
    let root = checkout()?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut rows = Vec::new();
    for check in endio_checks(question) {
        let start = Instant::now();
        let mut command = std::process::Command::new(&cargo);
        command.args(check.args).current_dir(&root);
        if let Some(flags) = check.rustflags {
            command.env("RUSTFLAGS", flags);
        }
        // As many random schedules as CI runs (ci/shuttle.sh).
        if std::env::var_os("ENDIO_SHUTTLE_ITERATIONS").is_none() {
            command.env("ENDIO_SHUTTLE_ITERATIONS", "20000");
        }
        let out = command.output().with_context(|| {
            format!("cannot run cargo ({cargo:?}) for --design endio; is it on PATH?")
        })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let passed: usize = text
            .lines()
            .filter_map(|l| l.strip_prefix("test result: "))
            .filter_map(|l| l.split_once(" passed").map(|(a, _)| a))
            .filter_map(|a| a.rsplit(' ').next()?.parse::<usize>().ok())
            .sum();
        // Shuttle tests say how many schedules each explored.
        let schedules: usize = text
            .lines()
            .filter(|l| l.starts_with("shuttle "))
            .filter_map(|l| {
                l.split(", ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum();
        let ok = out.status.success() && passed > 0;
        let detail = if schedules > 0 {
            format!(
                "{}; {passed} tests, {schedules} random schedules",
                check.what
            )
        } else {
            format!("{}; {passed} tests", check.what)
        };
        let counterexample = (!ok).then(|| Trace {
            steps: text
                .lines()
                .filter(|l| {
                    l.contains("panicked")
                        || l.contains("assert")
                        || l.contains("seed")
                        || l.contains("FAILED")
                })
                .take(12)
                .map(str::to_owned)
                .collect(),
            cycle_start: None,
        });
        rows.push(Row {
            question,
            design: DesignName::Endio.name(),
            case: "endio's own tests".to_owned(),
            scenario: format!("cargo {}", check.args.join(" ")),
            property: check.property,
            property_text: check.property.describe(),
            asked: true,
            verdict: if ok {
                Verdict::Holds
            } else {
                Verdict::Violated
            },
            detail,
            handlers_between_checks: None,
            states: schedules.max(passed),
            transitions: 0,
            bound_reached: false,
            time: start.elapsed(),
            counterexample,
        });
    }
    Ok(rows)
}

/// Runs `endio model`.
pub(crate) fn run(args: &ModelArgs) -> anyhow::Result<()> {
    let config = Config {
        max_states: args.max_states,
        cpus: args.cpus.map(usize::from),
        bios: args.bios.map(usize::from),
    };
    let questions = args.question.items(&Question::ALL);
    let start = Instant::now();
    let mut results = Vec::new();
    for &question in &questions {
        for design in args.design.items(&DesignName::ALL) {
            results.extend(rows(question, design, &config)?);
        }
    }
    let output = Output {
        max_states: config.max_states,
        time: start.elapsed(),
        questions: questions
            .iter()
            .map(|&q| QuestionInfo {
                id: q,
                name: q.name(),
                title: q.title(),
                reviewer: q.reviewer(),
                author: q.author(),
                finding: q.finding(),
            })
            .collect(),
        results,
    };
    output::emit(args.json, &output, "model report", |w| {
        write_report(w, &output)
    })
}

/// Milliseconds, to a useful precision.
fn ms(time: Duration) -> String {
    let ms = time.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// The table, then per question the exchange, the details and the
/// counterexamples.
fn write_report(w: &mut dyn Write, output: &Output) -> io::Result<()> {
    let violated = output
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Violated)
        .count();
    let bounded = output
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::BoundReached)
        .count();
    writeln!(
        w,
        "endio model: {} results ({} violated, {} bound reached) by breadth-first exploration, at most {} states per case, in {}",
        output.results.len(),
        violated,
        bounded,
        output.max_states,
        ms(output.time)
    )?;
    writeln!(w)?;
    let header = [
        "QUESTION", "DESIGN", "CASE", "PROPERTY", "VERDICT", "STATES", "TIME",
    ];
    let cells: Vec<[String; 7]> = output
        .results
        .iter()
        .map(|r| {
            let verdict = match r.handlers_between_checks {
                Some(bound) => format!("{} ({bound})", r.verdict),
                None => r.verdict.to_string(),
            };
            [
                r.question.to_string(),
                r.design.to_owned(),
                r.case.clone(),
                if r.asked {
                    r.property_text.to_owned()
                } else {
                    format!("also: {}", r.property_text)
                },
                verdict,
                r.states.to_string(),
                ms(r.time),
            ]
        })
        .collect();
    let mut width = header.map(str::len);
    for row in &cells {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |w: &mut dyn Write, row: [&str; 7]| -> io::Result<()> {
        let mut text = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = width[i];
            // Numbers to the right, words to the left.
            let part = if i >= 5 {
                format!("{cell:>pad$}")
            } else {
                format!("{cell:<pad$}")
            };
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(&part);
        }
        writeln!(w, "{}", text.trim_end())
    };
    line(w, header)?;
    let mut previous = None;
    for (row, r) in cells.iter().zip(&output.results) {
        if previous.is_some() && previous != Some(r.question) {
            writeln!(w)?;
        }
        previous = Some(r.question);
        line(w, row.each_ref().map(String::as_str))?;
    }

    for info in &output.questions {
        writeln!(w)?;
        writeln!(
            w,
            "== {} ({}): {}",
            info.id.id().to_uppercase(),
            info.name,
            info.title
        )?;
        writeln!(w, "reviewer: {}", info.reviewer)?;
        writeln!(w, "author:   {}", info.author)?;
        writeln!(w, "model:    {}", info.finding)?;
        for r in output.results.iter().filter(|r| r.question == info.id) {
            writeln!(w)?;
            writeln!(
                w,
                "- {} / {}: {}: {}",
                r.design, r.case, r.property_text, r.verdict
            )?;
            writeln!(w, "  {}", r.detail)?;
            writeln!(w, "  model: {}", r.scenario)?;
            writeln!(
                w,
                "  {} states, {} transitions, {}",
                r.states,
                r.transitions,
                ms(r.time)
            )?;
            if let Some(trace) = &r.counterexample {
                writeln!(w, "  counterexample:")?;
                for (i, step) in trace.steps.iter().enumerate() {
                    if trace.cycle_start == Some(i) {
                        writeln!(w, "     -- from here on the steps repeat forever --")?;
                    }
                    writeln!(w, "  {:>2}. {step}", i + 1)?;
                }
            }
        }
    }
    Ok(())
}
