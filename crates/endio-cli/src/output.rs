//! Writing a subcommand's result to standard output: one JSON object, or the
//! human report.

use std::io::{self, Write};

use anyhow::Context as _;
use serde::Serialize;

/// Writes `value` as one line of JSON when `json`, else the human report
/// that `human` writes. A reader that stopped early (`| head`) is not an
/// error; any other write failure is, naming `what`.
pub(crate) fn emit<T: Serialize>(
    json: bool,
    value: &T,
    what: &str,
    human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut stdout, value)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(stdout))
    } else {
        human(&mut stdout)
    };
    match written.and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(e).with_context(|| format!("cannot write the {what} to standard output"))
        }
        _ => Ok(()),
    }
}
