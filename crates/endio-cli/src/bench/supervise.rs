//! `--memcg`: the jobs run in a child process inside the memory cgroup;
//! the process the user started stays outside it, waits, reports and
//! cleans up, so an OOM kill in the cgroup cannot take the reporter with
//! it.
//!
//! 1. This process makes the cgroup ([`Memcg::create`]) and registers the
//!    undo of everything the child may leave (its temporary directories,
//!    named after this process; loop devices over them; the cgroup).
//! 2. It starts itself again (`/proc/self/exe`, the same arguments plus the
//!    hidden `--in-memcg DIR`) in a process group of its own, so a Ctrl-C
//!    at the terminal reaches this process only and is passed on once.
//!    Between fork and exec the child asks for SIGKILL at this process's
//!    death (no job outlives its cleaner) and moves itself into the cgroup,
//!    so everything it runs is charged there from its first page.
//! 3. The child runs the whole benchmark (target, jobs, table, `--json`,
//!    `--plot`) as it would without `--memcg`; its guards remove what it
//!    made. Signals this process gets are passed on to it
//!    ([`interrupt::set_child`]).
//! 4. When the child is gone: killed by SIGKILL while the cgroup counts an
//!    OOM kill, it was OOM-killed, and this process says so and names the
//!    minimum. In every case it removes what the child could not (loop
//!    devices clear themselves when the child's files close; its
//!    directories; the cgroup), then exits with the child's status.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::Command;

use anyhow::{Context as _, bail};

use super::interrupt::{self, Undo};
use super::memcg::{self, Memcg};
use super::units::fmt_bytes;
use super::{leftovers, loopdev};
use crate::sys::ProcsFile;

/// Runs the benchmark in a child process inside a memory cgroup of `limit`
/// bytes (`bdev`: on a loop device, for the minimum); see the module docs.
pub(crate) fn run(limit: u64, bdev: bool) -> anyhow::Result<()> {
    let memcg = Memcg::create(limit, bdev)?;
    let _dirs = interrupt::register(Undo::Call(leftovers::remove_own_dirs));
    let _loops = interrupt::register(Undo::Call(loopdev::detach_run_devices));
    let procs = ProcsFile::new(memcg.cgroup().dir()).with_context(|| {
        format!(
            "--memcg: bad cgroup path {}",
            memcg.cgroup().dir().display()
        )
    })?;
    let parent = rustix::process::getpid();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(std::env::args_os().skip(1))
        .arg("--in-memcg")
        .arg(memcg.cgroup().dir())
        .process_group(0);
    // SAFETY: the closure runs in the child between fork and exec. It makes
    // only async-signal-safe system calls (prctl, getppid, open, write) on
    // memory prepared before the fork, allocating nothing and taking no
    // lock, as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || procs.enter_in_child(parent));
    }
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "--memcg: cannot start the job process in {}; check that the cgroup accepts processes, or drop --memcg",
            memcg.cgroup().dir().display()
        )
    })?;
    let kill = interrupt::register(Undo::KillChild(child.id()));
    interrupt::set_child(child.id());
    let waited = child.wait();
    interrupt::set_child(0);
    drop(kill);
    let oom_kills = memcg.cgroup().oom_kills();
    // The child's guards ran unless it was killed; these find nothing then.
    loopdev::detach_run_devices();
    leftovers::remove_own_dirs();
    drop(memcg);
    let status = waited.context("--memcg: cannot wait for the job process")?;
    if let Some(code) = status.code() {
        if code == 0 {
            return Ok(());
        }
        // The child said what went wrong.
        std::process::exit(code);
    }
    let signal = status.signal().unwrap_or(0);
    if signal == libc::SIGKILL && oom_kills > 0 {
        bail!(
            "the job was killed by the OOM killer in the {} memory cgroup; endio needs at least {}{} with the default --bs and --iodepth (more with larger ones), give --memcg {}M or more",
            fmt_bytes(limit),
            fmt_bytes(memcg::min_bytes(bdev)),
            if bdev { " with --bdev" } else { "" },
            memcg::min_bytes(bdev) >> 20
        );
    }
    if let Some(code) = interrupt::exit_code() {
        std::process::exit(code);
    }
    bail!(
        "the job process was killed by signal {signal} (not by the OOM killer); what it made is removed"
    )
}
