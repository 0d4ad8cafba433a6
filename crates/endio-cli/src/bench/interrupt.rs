//! Ctrl-C during a benchmark: the first stops the running job, and the
//! normal unwinding of `run` removes what the benchmark made (the memory
//! cgroup, the loop device, the temporary file), each by its guard. A
//! second Ctrl-C, for a job that does not stop, undoes the registered
//! resources from the signal thread and exits with status 130.
//!
//! 1. [`install`] sets the handler once per process.
//! 2. A guard that owns a resource [`register`]s how to undo it and keeps
//!    the returned [`Registration`]; it undoes the resource itself when
//!    dropped (ordinary exit, error, first Ctrl-C) and unregisters.
//! 3. The second Ctrl-C takes every registration, newest first (a loop
//!    device is detached before the temporary directory holding its
//!    backing file goes), and undoes each.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Set by the first Ctrl-C; jobs poll it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// What the second Ctrl-C undoes, newest last.
static UNDO: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A resource to undo.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// Move the process to `procs` (a `cgroup.procs` file), then remove the
    /// cgroup directory `dir`.
    LeaveCgroup {
        /// The original cgroup's `cgroup.procs`.
        procs: PathBuf,
        /// The benchmark's cgroup.
        dir: PathBuf,
    },
    /// `losetup -d` this device.
    DetachLoop(PathBuf),
    /// Remove this directory and what is in it.
    RemoveDir(PathBuf),
}

impl Undo {
    /// Undoes it, best effort, saying what failed.
    pub(crate) fn run(&self) {
        match self {
            Undo::LeaveCgroup { procs, dir } => {
                let pid = std::process::id().to_string();
                if let Err(e) = std::fs::write(procs, &pid) {
                    eprintln!("warning: cannot move back to {}: {e}", procs.display());
                }
                if let Err(e) = std::fs::remove_dir(dir) {
                    eprintln!(
                        "warning: cannot remove the memory cgroup {}: {e}; remove it with `rmdir {}`",
                        dir.display(),
                        dir.display()
                    );
                }
            }
            Undo::DetachLoop(dev) => {
                let ok = Command::new("losetup")
                    .arg("-d")
                    .arg(dev)
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !ok {
                    eprintln!(
                        "warning: cannot detach {}; run `losetup -d {}`",
                        dev.display(),
                        dev.display()
                    );
                }
            }
            Undo::RemoveDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A registered resource; dropping it unregisters (the owner has undone it).
#[derive(Debug)]
pub(crate) struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        let mut undo = UNDO.lock().unwrap_or_else(|p| p.into_inner());
        undo.retain(|(id, _)| *id != self.0);
    }
}

/// Registers `undo` for a second Ctrl-C.
pub(crate) fn register(undo: Undo) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    UNDO.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, undo));
    Registration(id)
}

/// Whether Ctrl-C was pressed.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Installs the handler (once; later calls do nothing).
pub(crate) fn install() {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    let result = ctrlc::set_handler(|| {
        if !INTERRUPTED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "\ninterrupted: stopping the job and removing what the benchmark made (Ctrl-C again to exit at once)"
            );
            return;
        }
        let undo = std::mem::take(&mut *UNDO.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, u) in undo.iter().rev() {
            u.run();
        }
        std::process::exit(130);
    });
    if let Err(e) = result {
        eprintln!(
            "warning: cannot handle Ctrl-C ({e}); an interrupted benchmark may leave its cgroup or loop device behind"
        );
    }
}
