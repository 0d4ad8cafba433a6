//! `--memcg` below what the jobs need: the OOM killer kills the job
//! process inside the cgroup, and endio, outside it, says so, names the
//! size to give, and removes the cgroup, the loop device and the files.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;

#[test]
fn an_oom_killed_job_is_reported_and_cleaned_up() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: memory cgroups and loop devices need root");
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("skipped: no /dev/loop-control (modprobe loop)");
        return;
    }
    let dir = common::disk_dir("endio-oom-");
    let child = Command::new(env!("CARGO_BIN_EXE_endio"))
        .args([
            "bench",
            "--bdev",
            "--memcg",
            "20M",
            "--size",
            "64M",
            "--no-plot",
        ])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the endio binary runs");
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("no memory cgroup controller") {
        eprintln!("skipped: {stderr}");
        return;
    }
    assert!(!out.status.success(), "a 20M cgroup was enough:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("killed by the OOM killer in the 20.0 MiB memory cgroup")
            && stderr.contains("give --memcg"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let loops = common::loops_under(dir.path());
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
    let cgroups = common::cgroups_named(&format!("endio-bench-{pid}"));
    assert!(cgroups.is_empty(), "memory cgroups left: {cgroups:?}");
}
