//! What a killed run left behind, and whose it is.
//!
//! A SIGKILL (or a crash) runs no cleanup. So everything a run makes
//! outside the process is named after the process that owns the run (the
//! one the user started; the job process, if any, is its child):
//! temporary directories `endio-bench-<pid>-XXXXXX` in `$TMPDIR` and
//! `/var/tmp`, the memory cgroup `endio-bench-<pid>`. Loop devices need no
//! name: they clear themselves ([`super::loopdev`]).
//!
//! 1. At its start, `endio bench` lists both kinds and reads the pid out of
//!    each name.
//! 2. A leftover is stale when no process of that pid exists, or the one
//!    that does is not endio (`/proc/<pid>/comm`): the pid was reused.
//!    A live endio process's run is never touched.
//! 3. Stale directories are removed with their contents; a stale cgroup
//!    only if no process is in it (a cgroup with a process cannot be
//!    removed, and that process is not ours to kill).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::memcg;

/// The owner's pid, 0 until [`set_owner`].
static OWNER: AtomicU32 = AtomicU32::new(0);

const PREFIX: &str = "endio-bench-";

/// Names the process that owns this run: leftovers are named after it.
pub(crate) fn set_owner(pid: u32) {
    OWNER.store(pid, Ordering::Relaxed);
}

/// The owner's pid (this process if none was set).
pub(crate) fn owner() -> u32 {
    match OWNER.load(Ordering::Relaxed) {
        0 => std::process::id(),
        pid => pid,
    }
}

/// The prefix of this run's temporary directories.
pub(crate) fn temp_prefix() -> String {
    format!("{PREFIX}{}-", owner())
}

/// The owner's pid in the name of a temporary directory
/// (`endio-bench-<pid>-XXXXXX`) or, with `cgroup`, of a memory cgroup
/// (`endio-bench-<pid>`).
fn owner_of(name: &str, cgroup: bool) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits = if cgroup {
        rest
    } else {
        let (digits, random) = rest.split_once('-')?;
        if random.is_empty() {
            return None;
        }
        digits
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Whether `pid` is a live endio process, judged from `proc_root`.
fn is_live_endio(proc_root: &Path, pid: u32) -> bool {
    fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .is_ok_and(|comm| comm.trim_end() == "endio")
}

/// The directories under `dirs` named like leftovers whose owner is not a
/// live endio process.
fn stale(dirs: &[PathBuf], cgroup: bool, proc_root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let Some(pid) = owner_of(&name.to_string_lossy(), cgroup) else {
                continue;
            };
            if pid != std::process::id()
                && !is_live_endio(proc_root, pid)
                && e.file_type().is_ok_and(|t| t.is_dir())
            {
                out.push(e.path());
            }
        }
    }
    out
}

/// Where temporary directories go (see `target`).
fn temp_bases() -> Vec<PathBuf> {
    let mut bases = vec![std::env::temp_dir()];
    let var_tmp = PathBuf::from("/var/tmp");
    if !bases.contains(&var_tmp) {
        bases.push(var_tmp);
    }
    bases
}

/// Removes what runs of endio processes that no longer exist left behind,
/// saying what it removed.
pub(crate) fn remove_stale() {
    let proc_root = Path::new("/proc");
    for dir in stale(&temp_bases(), false, proc_root) {
        match fs::remove_dir_all(&dir) {
            Ok(()) => eprintln!(
                "removed {}, left by an endio bench that was killed",
                dir.display()
            ),
            Err(e) => eprintln!(
                "warning: cannot remove {}, left by an endio bench that was killed: {e}; remove it with `rm -r {}`",
                dir.display(),
                dir.display()
            ),
        }
    }
    let Some(parent) = memcg::parent_dir() else {
        return;
    };
    for dir in stale(&[parent], true, proc_root) {
        let busy = fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|p| !p.trim().is_empty());
        if busy {
            continue;
        }
        if super::interrupt::remove_cgroup(&dir).is_ok() {
            eprintln!(
                "removed the memory cgroup {}, left by an endio bench that was killed",
                dir.display()
            );
        }
    }
}

/// Removes this run's temporary directories (after its job process died
/// without removing them).
pub(crate) fn remove_own_dirs() {
    let prefix = temp_prefix();
    for base in temp_bases() {
        let Ok(entries) = fs::read_dir(&base) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_names() {
        assert_eq!(owner_of("endio-bench-123-abcDEF", false), Some(123));
        assert_eq!(owner_of("endio-bench-123", true), Some(123));
        // Not ours, or not of this form.
        for (name, cgroup) in [
            ("endio-bench-123", false),
            ("endio-bench-123-", false),
            ("endio-bench-abcdef", false),
            ("endio-bench-12a-x", false),
            ("endio-bench--x", false),
            ("endio-bench-123-x", true),
            ("endio-bench-", true),
            ("other-123-x", false),
            ("endio-bench-99999999999-x", false),
        ] {
            assert_eq!(owner_of(name, cgroup), None, "{name} {cgroup}");
        }
    }

    #[test]
    fn only_dirs_of_dead_or_foreign_pids_are_stale() {
        let root = tempfile::tempdir().unwrap();
        let proc_root = root.path().join("proc");
        let tmp = root.path().join("tmp");
        for (pid, comm) in [(10, "endio\n"), (11, "bash\n")] {
            fs::create_dir_all(proc_root.join(pid.to_string())).unwrap();
            fs::write(proc_root.join(pid.to_string()).join("comm"), comm).unwrap();
        }
        for name in [
            "endio-bench-10-aaaaaa",
            "endio-bench-11-bbbbbb",
            "endio-bench-12-cccccc",
            "endio-bench-dddddd",
        ] {
            fs::create_dir_all(tmp.join(name)).unwrap();
        }
        fs::write(tmp.join("endio-bench-13-file"), "").unwrap();
        let mut got = stale(std::slice::from_ref(&tmp), false, &proc_root);
        got.sort();
        assert_eq!(
            got,
            [
                tmp.join("endio-bench-11-bbbbbb"),
                tmp.join("endio-bench-12-cccccc")
            ]
        );
    }
}
