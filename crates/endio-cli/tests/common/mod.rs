//! Helpers shared by the CLI's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};
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

/// `statfs` magic of tmpfs, which is all page cache and has no `O_DIRECT`.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// A fresh temporary directory on a disk filesystem (`O_DIRECT` works, the
/// page cache means something), named with `prefix`.
pub fn disk_dir(prefix: &str) -> tempfile::TempDir {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(t) = std::env::var_os("TMPDIR") {
        candidates.push(t.into());
    }
    candidates.extend(["/var/tmp".into(), "/tmp".into()]);
    candidates.push(env!("CARGO_TARGET_TMPDIR").into());
    for dir in &candidates {
        // `f_type` is an `i64` on x86_64 and narrower on some targets.
        #[allow(clippy::unnecessary_cast)]
        let tmpfs = rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC);
        if dir.is_dir()
            && !tmpfs
            && let Ok(t) = tempfile::Builder::new().prefix(prefix).tempdir_in(dir)
        {
            return t;
        }
    }
    panic!("no temporary directory on a disk filesystem among {candidates:?}; set TMPDIR");
}

/// The loop devices whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let back = fs::read_to_string(e.path().join("loop/backing_file")).ok()?;
            back.starts_with(dir.to_str()?)
                .then(|| format!("/dev/{}", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// Directories named `name` in the cgroup hierarchies, within 3 levels.
pub fn cgroups_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name().to_string_lossy() == name {
                out.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), name, depth - 1, out);
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let is_memory = right.starts_with("cgroup2 ")
            || (right.starts_with("cgroup ") && right.contains("memory"));
        if let Some(mp) = left.split(' ').nth(4)
            && is_memory
        {
            walk(Path::new(mp), name, 3, &mut out);
        }
    }
    out
}

/// The `endio` binary as uid 65534 (nobody) through `setpriv` when the tests
/// run as root, else as it is; `None` when root cannot drop its rights here
/// (no `setpriv`).
pub fn endio_unprivileged() -> Option<Command> {
    if !rustix::process::geteuid().is_root() {
        return Some(Command::new(env!("CARGO_BIN_EXE_endio")));
    }
    let setpriv = Command::new("setpriv").arg("--version").output();
    if !setpriv.is_ok_and(|o| o.status.success()) {
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        env!("CARGO_BIN_EXE_endio"),
    ]);
    Some(c)
}
