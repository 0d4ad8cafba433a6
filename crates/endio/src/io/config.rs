//! The engine's settings: which backend, and why an engine could not be
//! built.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::time::Duration;

use crate::sys::UringUnavailable;

/// Where the I/O is performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// io_uring: a ring and a pinned reaper thread per CPU.
    Uring,
    /// A pool of threads doing `pread`/`pwrite`: the portable fallback.
    Threads,
    /// In-memory devices completed by an interrupt-like thread per CPU after
    /// a configurable latency: the completion path alone.
    Null,
}

impl Backend {
    /// The environment variable that picks a backend when the builder does
    /// not: `ENDIO_BACKEND=uring|threads|null|auto`.
    pub const ENV: &'static str = "ENDIO_BACKEND";

    /// The name `ENDIO_BACKEND` takes.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Threads => "threads",
            Backend::Null => "null",
        }
    }

    /// Reads a value of `ENDIO_BACKEND`: `Ok(None)` for automatic (empty
    /// or `auto`).
    pub fn parse_env(value: &str) -> Result<Option<Backend>, EngineError> {
        match value.trim() {
            "" | "auto" => Ok(None),
            other => other.parse().map(Some),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Backend, EngineError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "threads" | "thread" | "pool" => Ok(Backend::Threads),
            "null" => Ok(Backend::Null),
            _ => Err(EngineError::UnknownBackend {
                value: s.to_owned(),
            }),
        }
    }
}

/// Why an [`Engine`](crate::Engine) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// A backend name that is not one.
    #[error(
        "unknown I/O backend {value:?}; use uring, threads or null (in ENDIO_BACKEND: unset it or use auto for the automatic choice)"
    )]
    UnknownBackend {
        /// What was given.
        value: String,
    },
    /// io_uring was asked for explicitly and cannot be used.
    #[error(
        "{source} (io_uring was asked for explicitly; use Backend::Threads or ENDIO_BACKEND=threads to run without it)"
    )]
    Uring {
        /// Why, and the fix.
        #[from]
        source: UringUnavailable,
    },
    /// A setting is out of range.
    #[error("invalid engine setting: {0}")]
    Invalid(String),
    /// A thread could not be started.
    #[error(
        "cannot start the endio {what} thread: {source}; raise the thread limit (ulimit -u) or free memory"
    )]
    Spawn {
        /// Which thread.
        what: &'static str,
        /// What went wrong.
        source: io::Error,
    },
}

#[derive(Debug, Clone)]
/// Settings the backend threads read.
pub(crate) struct Config {
    pub(crate) null_latency: Duration,
    pub(crate) pin: bool,
    /// `EngineBuilder::steer_direct_io`.
    pub(crate) steer_direct: bool,
    /// `EngineBuilder::submit_batch`.
    pub(crate) submit_batch: u32,
    pub(crate) shutdown_grace: Duration,
}
