//! `endio-harness`: the developer tools that measure and cross-check endio,
//! kept out of the shipped `endio` binary so that installing endio pulls in
//! no rival runtime.
//!
//! One subcommand per tool; each lives in its own module with a clap `Args`
//! struct and a `run` function, and `main` only parses and dispatches.

mod bench_completion;
mod protocol_checks;
mod rusage;

use clap::{Parser, Subcommand};

/// Developer tools of endio: benchmarks against rivals and cross-checks.
#[derive(Debug, Parser)]
#[command(name = "endio-harness", version, about)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Measures the completion path against its peers (endio's batching
    /// policies, channel and condvar worker pools, tokio spawn_blocking,
    /// inline) in one run: throughput, context switches, wakeups and
    /// handler-start latency per offered load, judged against the
    /// completion path's goals.
    BenchCompletion(bench_completion::Args),
    /// Checks endio's own protocol for each property `endio model` settles
    /// on the kernel designs, by running endio's loom, shuttle and
    /// per-property tests in the source checkout (takes minutes the first
    /// time, to build them).
    ProtocolChecks(protocol_checks::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The library reports through `tracing` (a worker that cannot pin
    // itself); show warnings and errors on stderr, more with
    // RUST_LOG=endio=debug.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        Command::BenchCompletion(args) => bench_completion::run(&args),
        Command::ProtocolChecks(args) => protocol_checks::run(&args),
    }
}
