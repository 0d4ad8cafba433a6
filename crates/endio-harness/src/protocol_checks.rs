//! `endio-harness protocol-checks`: endio's own protocol, checked against
//! the properties `endio model` settles for the kernel designs, by running
//! endio's tests of each property from the source checkout.
//!
//! 1. Every property asked for (by the same selectors as `endio model
//!    --question`) has one or more checks: a `cargo test` line, or the
//!    script of a model checker (`ci/loom.sh`, `ci/shuttle.sh`, which
//!    document their settings and clean up after themselves).
//! 2. Each check runs in the checkout; its output is read for the tests that
//!    passed and, for shuttle, the random schedules explored.
//! 3. A check holds when it exits with status 0 having passed at least one
//!    test; otherwise it is violated and its failure lines are shown.
//!
//! The protocol is not re-implemented for this: those tests drive the
//! library itself. Violations are findings, not failures: the command exits
//! with status 0 once every check ran, whatever the verdicts.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use endio_model::{Property, Question, Verdict};
use serde::Serialize;

/// Options of `endio-harness protocol-checks`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The property to check, by the selector `endio model` takes or by
    /// name: q1 (handler-mandatory), q2 (run-budget), q3
    /// (no-sleeping-lock-in-atomic), q4 (no-stranded-after-rollback), q5
    /// (rescuer-cross-cpu), q6 (redeferral-bounded), or all.
    #[arg(long, default_value = "all", value_parser = parse_question)]
    question: Selection,

    /// The source checkout to run the tests in [default: the one this
    /// binary was built from].
    #[arg(long, value_name = "DIR")]
    checkout: Option<PathBuf>,

    /// Print the checks that would run, and run none.
    #[arg(long)]
    list: bool,

    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// `--question`: every question, or one.
#[derive(Clone, Copy, Debug)]
enum Selection {
    All,
    One(Question),
}

/// Parses `--question`: `q1` to `q6`, a property's name, or `all`.
fn parse_question(s: &str) -> Result<Selection, String> {
    if s.eq_ignore_ascii_case("all") {
        return Ok(Selection::All);
    }
    s.parse().map(Selection::One).map_err(|_| {
        let names: Vec<&str> = Question::ALL.iter().map(|q| q.name()).collect();
        format!(
            "unknown question {s:?}; give q1 to q6 or all, or a name: {}",
            names.join(", ")
        )
    })
}

/// One of endio's checks of a question's property.
#[derive(Debug)]
struct Check {
    property: Property,
    /// What it runs, in words.
    what: &'static str,
    /// The program (`cargo` or `bash`) and its arguments.
    command: &'static [&'static str],
}

/// `cargo test -p endio --release` and `rest`.
macro_rules! cargo_test {
    ($($rest:literal),*) => {
        &["cargo", "test", "-p", "endio", "--release", $($rest),*]
    };
}

const LOOM: &[&str] = &["bash", "ci/loom.sh"];
const SHUTTLE: &[&str] = &["bash", "ci/shuttle.sh"];

/// endio's checks of `question`: its tests of the real protocol code.
fn checks(question: Question) -> Vec<Check> {
    let check = |property, what, command| Check {
        property,
        what,
        command,
    };
    match question {
        Question::HandlerMandatory => vec![check(
            Property::HandlerPresent,
            "compile_fail doctests: a Bio without a handler does not compile",
            cargo_test!("--doc", "bio"),
        )],
        Question::RunBudget => vec![check(
            Property::BoundedHandlerRun,
            "tests/run_budget.rs: a 200k flood; runs end at the budget, overrun by at most one handler",
            cargo_test!("--test", "run_budget"),
        )],
        Question::NoSleepingLockInAtomic => vec![
            check(
                Property::NoSleepInAtomic,
                "tests/producer_never_blocks.rs: 100k pushes return while the worker is blocked",
                cargo_test!("--test", "producer_never_blocks"),
            ),
            check(
                Property::ExactlyOnce,
                "loom, exhaustive: lock-free push / take-all / park-unpark, no lost wakeup",
                LOOM,
            ),
        ],
        Question::NoStrandedAfterRollback => vec![
            check(
                Property::NothingStranded,
                "shuttle: producers, workers, rescue, down_prep / dead / rollback / online under random schedules",
                SHUTTLE,
            ),
            check(
                Property::NothingStranded,
                "tests/hotplug_lifecycle.rs: rollback requeue, interrupted batch, dead drain",
                cargo_test!("--test", "hotplug_lifecycle"),
            ),
        ],
        Question::RescuerCrossCpu => vec![
            check(
                Property::MutualExclusion,
                "shuttle: a rescue thread drains another CPU's batch under random schedules",
                SHUTTLE,
            ),
            check(
                Property::ExactlyOnce,
                "tests/stall_rescue.rs: a stalled worker's batch is completed by a rescue thread",
                cargo_test!("--test", "stall_rescue"),
            ),
        ],
        Question::RedeferralBounded => vec![check(
            Property::BoundedRedeferral,
            "tests/redeferral_bounded.rs: AlwaysAtomic, a handler that always punts; the deferred mark as guard",
            cargo_test!("--test", "redeferral_bounded"),
        )],
    }
}

/// The source checkout: `dir`, or the one this binary was built from.
fn checkout(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let root = match dir {
        Some(dir) => dir.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    if root.join("ci/shuttle.sh").is_file() && root.join("crates/endio/Cargo.toml").is_file() {
        Ok(root)
    } else {
        anyhow::bail!(
            "protocol-checks runs endio's own tests, which need a source checkout; {} is not one \
             (no ci/shuttle.sh or crates/endio/Cargo.toml); give a clone's root with --checkout",
            root.display()
        )
    }
}

/// One row of the table.
#[derive(Debug, Serialize)]
struct Row {
    question: Question,
    /// The property the question is about ("run-budget").
    name: &'static str,
    property: Property,
    property_text: &'static str,
    check: &'static str,
    command: String,
    verdict: Verdict,
    /// Tests passed.
    tests: usize,
    /// Random schedules explored (shuttle).
    schedules: usize,
    #[serde(rename = "time_ms", serialize_with = "serialize_ms")]
    time: Duration,
    /// The failure lines of a violated check.
    failure: Vec<String>,
}

fn serialize_ms<S: serde::Serializer>(time: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(time.as_secs_f64() * 1e3)
}

/// The whole run, as printed with `--json`.
#[derive(Debug, Serialize)]
struct Output {
    #[serde(rename = "time_ms", serialize_with = "serialize_ms")]
    time: Duration,
    results: Vec<Row>,
}

/// Tests passed, summed over `test result:` lines.
fn tests_passed(text: &str) -> usize {
    text.lines()
        .filter_map(|l| l.strip_prefix("test result: "))
        .filter_map(|l| l.split_once(" passed").map(|(a, _)| a))
        .filter_map(|a| a.rsplit(' ').next()?.parse::<usize>().ok())
        .sum()
}

/// Schedules explored, summed over the `shuttle STEPS: seed S, N schedules`
/// line each shuttle test prints first.
fn schedules_explored(text: &str) -> usize {
    text.lines()
        .filter(|l| l.starts_with("shuttle "))
        .filter_map(|l| {
            l.split(", ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// Runs `check` in `root` and makes a row of it.
fn run_check(question: Question, check: &Check, root: &Path) -> anyhow::Result<Row> {
    let start = Instant::now();
    let (program, args) = check
        .command
        .split_first()
        .expect("every check names a program");
    let program = match *program {
        "cargo" => std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()),
        other => other.into(),
    };
    let out = std::process::Command::new(&program)
        .args(args)
        .current_dir(root)
        .output()
        .with_context(|| format!("cannot run {program:?} for protocol-checks; is it on PATH?"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tests = tests_passed(&text);
    let ok = out.status.success() && tests > 0;
    let failure = if ok {
        Vec::new()
    } else {
        text.lines()
            .filter(|l| {
                l.contains("panicked")
                    || l.contains("assert")
                    || l.contains("seed")
                    || l.contains("FAILED")
                    || l.starts_with("error")
            })
            .take(12)
            .map(str::to_owned)
            .collect()
    };
    Ok(Row {
        question,
        name: question.name(),
        property: check.property,
        property_text: check.property.describe(),
        check: check.what,
        command: check.command.join(" "),
        verdict: if ok {
            Verdict::Holds
        } else {
            Verdict::Violated
        },
        tests,
        schedules: schedules_explored(&text),
        time: start.elapsed(),
        failure,
    })
}

/// Runs `endio-harness protocol-checks`.
pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let questions = match args.question {
        Selection::One(q) => vec![q],
        Selection::All => Question::ALL.to_vec(),
    };
    if args.list {
        for &question in &questions {
            for check in checks(question) {
                println!(
                    "{} ({}): {}: {}\n  {}",
                    question,
                    question.name(),
                    check.property,
                    check.what,
                    check.command.join(" ")
                );
            }
        }
        return Ok(());
    }
    let root = checkout(args.checkout.as_deref())?;
    let start = Instant::now();
    let mut results = Vec::new();
    for &question in &questions {
        for check in checks(question) {
            if !args.json {
                eprintln!("running {}", check.command.join(" "));
            }
            results.push(run_check(question, &check, &root)?);
        }
    }
    let output = Output {
        time: start.elapsed(),
        results,
    };
    let mut stdout = io::stdout().lock();
    let written = if args.json {
        serde_json::to_writer(&mut stdout, &output)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        write_report(&mut stdout, &output)
    };
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the protocol-checks report to standard output")
        }
        _ => Ok(()),
    }
}

/// The table, then the failure lines of every violated check.
fn write_report(w: &mut dyn Write, output: &Output) -> io::Result<()> {
    let violated = output
        .results
        .iter()
        .filter(|r| r.verdict == Verdict::Violated)
        .count();
    writeln!(
        w,
        "endio-harness protocol-checks: {} checks ({} violated) of endio's own protocol, in {:.1} s",
        output.results.len(),
        violated,
        output.time.as_secs_f64()
    )?;
    writeln!(w)?;
    for r in &output.results {
        let counts = if r.schedules > 0 {
            format!("{} tests, {} random schedules", r.tests, r.schedules)
        } else {
            format!("{} tests", r.tests)
        };
        writeln!(
            w,
            "{} ({}): {}: {} ({counts}, {:.1} s)",
            r.question,
            r.name,
            r.property_text,
            r.verdict,
            r.time.as_secs_f64()
        )?;
        writeln!(w, "  {}", r.check)?;
        writeln!(w, "  $ {}", r.command)?;
        for line in &r.failure {
            writeln!(w, "  | {line}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_question_has_a_check_of_its_properties() {
        for question in Question::ALL {
            assert!(!checks(question).is_empty(), "{question}");
        }
    }

    #[test]
    fn cargo_output_is_counted() {
        let text = "test result: ok. 3 passed; 0 failed\n\
                    shuttle Rollback: seed 7, 20000 schedules (replay: ...)\n\
                    test result: ok. 2 passed; 0 failed\n";
        assert_eq!(tests_passed(text), 5);
        assert_eq!(schedules_explored(text), 20000);
    }
}
