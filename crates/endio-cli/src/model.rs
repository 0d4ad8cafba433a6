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
//! endio's own protocol is checked for the same properties by its tests
//! (loom, shuttle and one test per property), which the developer tool
//! `endio-harness protocol-checks` runs from the source checkout.
//!
//! Violations are findings, not failures: the command exits with status 0
//! once every check ran, whatever the verdicts.

use std::io::{self, Write};
use std::time::{Duration, Instant};

use crate::output;
use endio_model::{Bound, Config, Design, Property, Question, Trace, Verdict};
use serde::Serialize;

/// Options of `endio model`.
#[derive(Debug, clap::Args)]
pub(crate) struct ModelArgs {
    /// The design to check: v6 (as posted), v6-fixed (with the fixes the
    /// author accepted), merged (as merged for Linux 7.3), or all (those
    /// three).
    #[arg(long, default_value = "all", value_parser = parse_design)]
    design: Choice<Design>,

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

/// Parses `--design`: a kernel design's name or `all`.
fn parse_design(s: &str) -> Result<Choice<Design>, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Choice::All);
    }
    let names: Vec<&str> = Design::ALL.iter().map(|d| d.name()).collect();
    if s.eq_ignore_ascii_case("endio") {
        return Err(format!(
            "endio model checks the kernel designs ({}); endio's own protocol is checked by \
             its tests: run `cargo run -p endio-harness -- protocol-checks` in the source checkout",
            names.join(", ")
        ));
    }
    Design::ALL
        .into_iter()
        .find(|d| d.name().eq_ignore_ascii_case(s))
        .map(Choice::One)
        .ok_or_else(|| {
            format!(
                "unknown design {s:?}; give one of {} or all",
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
fn rows(question: Question, design: Design, config: &Config) -> Vec<Row> {
    let report = endio_model::check(question, design, config);
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
        for design in args.design.items(&Design::ALL) {
            results.extend(rows(question, design, &config));
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
