//! The `endio` command.
//!
//! One subcommand per job; each lives in its own module with a clap `Args`
//! struct and a `run` function, and `main` only parses and dispatches.

mod bench;
mod faults;
mod interrupt;
mod model;
mod output;
mod rusage;
mod stat;
mod stress;
mod sys;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Task-context I/O completion and dontcache buffered I/O.
#[derive(Debug, Parser)]
#[command(name = "endio", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Completes many no-op bios from atomic context on every CPU and checks
    /// that each handler ran exactly once; reports throughput, context
    /// switches and the completer's statistics.
    Stress(stress::StressArgs),
    /// Checks the kernel design of task-context completion (v6, v6-fixed,
    /// merged) for each property it must have (handler mandatory, run
    /// budget, no sleeping lock in atomic context, nothing stranded after a
    /// rolled-back offline, the rescuer on another CPU, re-deferral bounded)
    /// by exhaustive exploration of a model: a verdict table, then a
    /// shortest counterexample for every violation.
    Model(model::ModelArgs),
    /// fio-like I/O benchmark of buffered, dontcache and direct I/O side by
    /// side: throughput, latency, CPU and page-cache footprint. Without
    /// --target: a temporary 1 GiB file, a sequential write then read in
    /// each mode, the table and endio-bench.svg.
    Bench(bench::BenchArgs),
    /// Page-cache residency of files or block devices: resident, dirty and
    /// writeback bytes and pages (like fincore).
    Stat(stat::StatArgs),
}

/// Runs the subcommand; a failure is one `error:` line (the message and its
/// causes, without a backtrace) and exit status 1.
fn main() -> ExitCode {
    let mut argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("bench") {
        // fio's spellings of the benchmark's options (see `bench::fio`).
        match bench::fio_spellings(&argv[2..]) {
            Ok(t) => {
                for note in &t.notes {
                    eprintln!("{note}");
                }
                argv.truncate(2);
                argv.extend(t.args);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match run(Cli::parse_from(argv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // The library reports through `tracing` (contained handler panics, a
    // worker that cannot pin itself); show warnings and errors on stderr,
    // more with RUST_LOG=endio=debug.
    #[allow(unreachable_patterns)]
    let directives = match &cli.command {
        Command::Stress(args) => args.log_directives(),
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a log file or a pipe gets text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives)),
        )
        .init();
    let result = match cli.command {
        Command::Stress(args) => stress::run(&args),
        Command::Model(args) => model::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Stat(args) => stat::run(&args),
    };
    // Stopped by a signal, after the cleanup: 128 + its number, as a shell
    // reports a process the signal killed.
    if let Some(code) = interrupt::exit_code() {
        if let Err(e) = &result {
            eprintln!("Error: {e:#}");
        }
        std::process::exit(code);
    }
    result
}
