//! SIGINT, SIGTERM and SIGHUP: whatever the command made (a memory cgroup,
//! a loop device, a temporary directory, CPUs taken offline, a job process)
//! is removed or brought back before it exits.
//!
//! 1. [`install`] starts one signal thread per process (signal-hook), with
//!    a grace period.
//! 2. A guard that owns a resource [`register`]s how to undo it and keeps
//!    the returned [`Registration`]; it undoes the resource itself when
//!    dropped (ordinary exit, error, after the first signal) and
//!    unregisters.
//! 3. The first signal sets the flag that jobs poll ([`interrupted`]) and is
//!    passed on to the job process, if one runs ([`set_child`]); the normal
//!    unwinding then removes everything, guard by guard, and `main` exits
//!    with 128 + the signal number ([`exit_code`]).
//! 4. A second signal, or a run that has not ended `grace` after the first,
//!    takes every registration, newest first (the job process is killed
//!    before its cgroup is removed, a loop device is detached before the
//!    directory of its backing file goes), undoes each from the signal
//!    thread and exits with 128 + the signal number.
//!
//! Why nothing is left: every resource is registered before it exists
//! outside the process (the directory is registered right after it is
//! made, before anything can fail), so at every point either its guard or
//! the registry undoes it; the undo actions tolerate a resource that is
//! already gone, so a guard and the signal thread racing on one do no harm.
//! CPUs are taken offline only through [`offline_cpu`], which refuses once
//! the undo ran, so none goes offline after it brought them back. What a
//! SIGKILL leaves (it cannot be caught) is named after the process and
//! removed by the next run (`bench::leftovers`); loop devices clear
//! themselves.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The first signal received, 0 before; jobs poll it.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The job process signals are passed on to, 0 if none.
static CHILD: AtomicU32 = AtomicU32::new(0);

/// What the signal thread undoes, newest last.
static UNDO: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// CPUs taken offline by this process and not known to be back, and whether
/// the undo ran (no CPU may go offline after it).
static HOTPLUG: Mutex<Hotplug> = Mutex::new(Hotplug {
    sysfs_root: None,
    cpus: Vec::new(),
    frozen: false,
});

#[derive(Debug)]
struct Hotplug {
    sysfs_root: Option<PathBuf>,
    cpus: Vec<usize>,
    frozen: bool,
}

/// A resource to undo.
#[derive(Debug, Clone)]
pub(crate) enum Undo {
    /// Remove this (empty) cgroup directory, retrying while it is busy.
    RemoveCgroup(PathBuf),
    /// Detach this loop device (it also clears itself once the process is
    /// gone: it is set up with auto-clear).
    DetachLoop(PathBuf),
    /// Remove this directory and what is in it.
    RemoveDir(PathBuf),
    /// SIGKILL the job process and wait (bounded) until it is gone.
    KillChild(u32),
    /// Bring back every CPU [`offline_cpu`] took offline.
    OnlineCpus,
    /// Call this (for resources found by name, not held).
    Call(fn()),
}

impl Undo {
    /// Undoes it, best effort, saying what failed.
    pub(crate) fn run(&self) {
        match self {
            Undo::RemoveCgroup(dir) => {
                if let Err(e) = remove_cgroup(dir) {
                    eprintln!(
                        "warning: cannot remove the memory cgroup {}: {e}; remove it with `rmdir {}`",
                        dir.display(),
                        dir.display()
                    );
                }
            }
            Undo::DetachLoop(dev) => {
                // ENXIO: no longer attached.
                let result = std::fs::OpenOptions::new()
                    .read(true)
                    .open(dev)
                    .and_then(|f| crate::sys::loop_clear(&f));
                if let Err(e) = result
                    && e.raw_os_error() != Some(libc::ENXIO)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    eprintln!(
                        "warning: cannot detach {}: {e}; run `losetup -d {}`",
                        dev.display(),
                        dev.display()
                    );
                }
            }
            Undo::RemoveDir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Undo::KillChild(pid) => {
                crate::sys::send_signal(*pid, libc::SIGKILL);
                let proc = PathBuf::from(format!("/proc/{pid}/stat"));
                for _ in 0..200 {
                    let gone = std::fs::read_to_string(&proc).map_or(true, |stat| {
                        // `pid (comm) STATE ...`: a zombie has left its
                        // cgroup and closed its files.
                        stat.rsplit_once(')')
                            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
                    });
                    if gone {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            Undo::OnlineCpus => restore_cpus(),
            Undo::Call(f) => f(),
        }
    }
}

/// Removes a cgroup directory; a just-emptied cgroup can be busy for a
/// moment, so this retries for up to a second.
pub(crate) fn remove_cgroup(dir: &std::path::Path) -> std::io::Result<()> {
    let mut last = Ok(());
    for _ in 0..50 {
        last = std::fs::remove_dir(dir);
        match &last {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    last
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

/// Registers `undo` for the signal thread.
pub(crate) fn register(undo: Undo) -> Registration {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    UNDO.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((id, undo));
    Registration(id)
}

/// Whether a signal asked the command to stop.
pub(crate) fn interrupted() -> bool {
    SIGNAL.load(Ordering::Relaxed) != 0
}

/// 128 + the number of the first signal, if one came: the exit status.
pub(crate) fn exit_code() -> Option<i32> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        s => Some(128 + s),
    }
}

/// The name of the first signal, if one came.
pub(crate) fn signal_name() -> Option<&'static str> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        s => Some(name(s)),
    }
}

fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Passes signals on to the job process `pid` (0: none any more).
pub(crate) fn set_child(pid: u32) {
    CHILD.store(pid, Ordering::Relaxed);
    // A signal that came before the child existed is passed on now.
    let s = SIGNAL.load(Ordering::Relaxed);
    if pid != 0 && s != 0 {
        crate::sys::send_signal(pid, s);
    }
}

/// Takes `cpu` offline through `offline`, recording it so that the undo
/// brings it back; `Ok(None)` once the undo ran (the caller stops).
/// `offline` returns whether the CPU went offline.
pub(crate) fn offline_cpu(
    sysfs_root: &std::path::Path,
    cpu: usize,
    offline: impl FnOnce() -> std::io::Result<bool>,
) -> std::io::Result<Option<bool>> {
    let mut h = HOTPLUG.lock().unwrap_or_else(|p| p.into_inner());
    if h.frozen {
        return Ok(None);
    }
    h.sysfs_root.get_or_insert_with(|| sysfs_root.to_owned());
    if !h.cpus.contains(&cpu) {
        h.cpus.push(cpu);
    }
    offline().map(Some)
}

/// Notes that every CPU [`offline_cpu`] took offline is back online.
pub(crate) fn cpus_restored() {
    HOTPLUG
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .cpus
        .clear();
}

fn restore_cpus() {
    let mut h = HOTPLUG.lock().unwrap_or_else(|p| p.into_inner());
    h.frozen = true;
    let Some(root) = h.sysfs_root.clone() else {
        return;
    };
    for &cpu in &h.cpus {
        let _ = endio::testing::hotplug::clear_fail(&root, cpu);
        // A failed injection can make one bringup fail: try twice.
        let result = endio::testing::hotplug::set_cpu_online(&root, cpu, true)
            .or_else(|_| endio::testing::hotplug::set_cpu_online(&root, cpu, true));
        if let Err(e) = result {
            eprintln!("warning: cannot bring CPU {cpu} back online: {e}");
        }
    }
    h.cpus.clear();
}

fn undo_all_and_exit(signal: i32) -> ! {
    let undo = std::mem::take(&mut *UNDO.lock().unwrap_or_else(|p| p.into_inner()));
    for (_, u) in undo.iter().rev() {
        u.run();
    }
    std::process::exit(128 + signal);
}

/// Starts the signal thread (once; later calls do nothing). `grace`: how
/// long the run may take to end after the first signal before the signal
/// thread undoes everything itself; zero undoes at once.
pub(crate) fn install(grace: Duration) {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::Relaxed) {
        return;
    }
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "warning: cannot handle SIGINT, SIGTERM and SIGHUP ({e}); an interrupted run may leave its cgroup, files or offline CPUs behind"
            );
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("endio-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let child = CHILD.load(Ordering::Relaxed);
                if child != 0 {
                    crate::sys::send_signal(child, signal);
                }
                let first = SIGNAL
                    .compare_exchange(0, signal, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
                if !first || grace.is_zero() {
                    undo_all_and_exit(SIGNAL.load(Ordering::Relaxed));
                }
                // The job process, if any, says it.
                if child == 0 {
                    eprintln!(
                        "\n{}: stopping and removing what endio made (a second signal exits at once)",
                        name(signal)
                    );
                }
                let watchdog = std::thread::Builder::new()
                    .name("endio-signals-grace".into())
                    .spawn(move || {
                        std::thread::sleep(grace);
                        eprintln!(
                            "the run did not end within {} s of {}; removing what endio made and exiting",
                            grace.as_secs(),
                            name(signal)
                        );
                        undo_all_and_exit(signal);
                    });
                if watchdog.is_err() {
                    eprintln!("warning: no grace timer: a second signal exits at once");
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!(
            "warning: cannot start the signal thread ({e}); an interrupted run may leave its cgroup, files or offline CPUs behind"
        );
    }
}
