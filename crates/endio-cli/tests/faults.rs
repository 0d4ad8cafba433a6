//! The host fault suite: `endio bench` on a block device that fails writes
//! (a loop device over a sparse file on a full filesystem: writes past its
//! free space fail, with the loop device's direct I/O on, flushes succeed),
//! in every mode and backend, sequential and random, 4 KiB and 1 MiB, with
//! and without the loop device's direct I/O, several trials each. The
//! oracle: the range read back from the loop device's medium (its backing
//! file) after each trial. No trial may
//! exit 0 for data that is not on the device. Root; skipped otherwise.

mod common;

#[path = "../../endio/tests/common/failing.rs"]
mod failing;

use std::collections::BTreeMap;
use std::process::Command;

use failing::FailingDevice;

const TRIALS: usize = 5;
const SIZE: u64 = 8 << 20;
/// What `endio bench` writes when it does not verify.
const FILL: u8 = 0xa5;

fn device(direct_io: bool) -> Result<FailingDevice, String> {
    FailingDevice::new(direct_io, common::disk_dir("endio-faults-"))
}

#[test]
fn no_run_reports_success_for_data_that_did_not_reach_the_device() {
    if let Err(why) = device(true) {
        eprintln!("skipping the fault suite: {why}");
        return;
    }
    let mut table: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut silent = Vec::new();
    for mode in ["buffered", "dontcache", "direct"] {
        for backend in ["uring", "threads"] {
            for rw in ["write", "randwrite"] {
                for bs in ["4k", "1M"] {
                    for direct_io in [true, false] {
                        let row = format!(
                            "{mode:<9} {backend:<7} {rw:<9} {bs:>2} loop-dio {}",
                            if direct_io { "on " } else { "off" }
                        );
                        for trial in 0..TRIALS {
                            let dev = device(direct_io).expect("a failing device");
                            let size = SIZE.to_string();
                            let out = Command::new(env!("CARGO_BIN_EXE_endio"))
                                .arg("bench")
                                .arg("--target")
                                .arg(dev.path())
                                .args(["--mode", mode, "--backend", backend, "--rw", rw])
                                .args(["--bs", bs, "--size", &size, "--no-plot"])
                                .args(["--seed", &trial.to_string()])
                                .output()
                                .expect("endio runs");
                            let code = out.status.code();
                            assert!(
                                code.is_some() && code != Some(101),
                                "{row} trial {trial}: endio crashed ({}):\n{}",
                                out.status,
                                String::from_utf8_lossy(&out.stderr)
                            );
                            let back = dev.read_back(SIZE);
                            let bad = back
                                .chunks(4096)
                                .filter(|c| c.iter().any(|&b| b != FILL))
                                .count();
                            assert!(
                                bad > 0,
                                "{row}: the device took all {SIZE} bytes; the fault is not there"
                            );
                            let e = table.entry(row.clone()).or_default();
                            e.0 += 1;
                            if out.status.success() {
                                e.2 += 1;
                                silent.push(format!(
                                    "{row} trial {trial}: exit 0 with {bad} of {} 4 KiB blocks not on the device",
                                    SIZE / 4096
                                ));
                            } else {
                                e.1 += 1;
                                let stderr = String::from_utf8_lossy(&out.stderr);
                                assert!(
                                    stderr.to_lowercase().contains("error"),
                                    "{row}: a failure without a message:\n{stderr}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    println!("mode      backend pattern   bs loop-dio  trials  reported  silent");
    for (row, (trials, reported, lost)) in &table {
        println!("{row}  {trials:>6}  {reported:>8}  {lost:>6}");
    }
    assert!(
        silent.is_empty(),
        "silent data loss:\n{}",
        silent.join("\n")
    );
}

#[test]
fn enospc_on_a_file_target_fails_in_every_mode() {
    let dev = match device(true) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping ENOSPC on files: {why}");
            return;
        }
    };
    // The full filesystem itself: a file target on it has no room.
    let mnt = dev.mount_point();
    for mode in ["buffered", "dontcache", "direct"] {
        let target = mnt.join(format!("target-{mode}"));
        let out = Command::new(env!("CARGO_BIN_EXE_endio"))
            .arg("bench")
            .arg("--target")
            .arg(&target)
            .args(["--mode", mode, "--rw", "write", "--size", "8M", "--no-plot"])
            .output()
            .expect("endio runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(101),
            "{mode} on a full filesystem: {}\n{stderr}",
            out.status
        );
        assert!(stderr.to_lowercase().contains("error"), "{mode}: {stderr}");
    }
}

#[test]
fn dontcache_without_end_fsync_fails_what_its_write_back_wait_saw() {
    for trial in 0..TRIALS {
        let dev = match device(true) {
            Ok(d) => d,
            Err(why) => {
                eprintln!("skipping dontcache without fsync: {why}");
                return;
            }
        };
        let out = Command::new(env!("CARGO_BIN_EXE_endio"))
            .arg("bench")
            .arg("--target")
            .arg(dev.path())
            .args(["--mode", "dontcache", "--rw", "write", "--size", "8M"])
            .args(["--end-fsync=false", "--no-plot", "--json", "-"])
            .output()
            .expect("endio runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(101),
            "trial {trial}: dontcache with --end-fsync=false on a failing device: {}\n{stderr}",
            out.status
        );
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("the JSON is written also when jobs fail");
        let job = &json["jobs"][0];
        assert!(job["writeback_errors"].as_u64().unwrap_or(0) > 0, "{job}");
        assert_eq!(job["error"].as_i64(), Some(i64::from(libc::EIO)), "{job}");
    }
}

#[test]
fn an_fsync_error_ends_its_own_job_only() {
    let dev = match device(true) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("skipping fsync error per job: {why}");
            return;
        }
    };
    let out = Command::new(env!("CARGO_BIN_EXE_endio"))
        .arg("bench")
        .arg("--target")
        .arg(dev.path())
        .args(["--mode", "buffered,dontcache,direct", "--rw", "write"])
        .args(["--size", "8M", "--no-plot", "--json", "-"])
        .output()
        .expect("endio runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("write-back errors"),
        "the table has the row:\n{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let jobs = json["jobs"].as_array().expect("jobs");
    let names: Vec<&str> = jobs.iter().filter_map(|j| j["jobname"].as_str()).collect();
    assert_eq!(
        names,
        ["buffered-write", "dontcache-write", "direct-write"],
        "{stderr}"
    );
    for job in jobs {
        assert_ne!(job["error"].as_i64(), Some(0), "{job}");
        assert!(
            job["bytes"].as_u64().unwrap_or(0) > 0,
            "its figures are kept: {job}"
        );
    }
}
