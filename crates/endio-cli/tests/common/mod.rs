//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};

/// Runs `endio SUBCOMMAND ARGS...` and returns its output.
pub fn endio(subcommand: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_endio"))
        .arg(subcommand)
        .args(args)
        .output()
        .expect("the endio binary runs")
}

/// Asserts a zero exit status, showing the output otherwise; returns stdout.
pub fn assert_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
