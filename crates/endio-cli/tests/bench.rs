//! `endio bench`: bad arguments get clear messages; short runs on a
//! temporary file complete in every mode with no verify error; the JSON has
//! every documented field; the embedded default prints its table and plot;
//! as root, a loop device inside a memory cgroup, and Ctrl-C removes what
//! the benchmark made.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// A fresh temporary directory on a disk filesystem.
fn disk_dir() -> tempfile::TempDir {
    common::disk_dir("endio-cli-test-")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn endio() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_endio"));
    c.env_remove("ENDIO_BACKEND");
    c
}

fn bench(args: &[&str]) -> Output {
    endio()
        .arg("bench")
        .args(args)
        .output()
        .expect("the endio binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

use common::assert_success;

/// Asserts failure and that stderr names every one of `needles`.
fn assert_refused(output: &Output, needles: &[&str]) {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "accepted; stderr:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
}

#[test]
fn an_unknown_mode_is_refused_with_the_modes_named() {
    let out = bench(&["--mode", "buffered,fast"]);
    assert_refused(&out, &["fast", "buffered", "dontcache", "direct"]);
}

#[test]
fn a_size_that_is_not_a_number_is_refused_with_an_example() {
    let out = bench(&["--size", "lots"]);
    assert_refused(
        &out,
        &["--size", "\"lots\" is not a size", "e.g. 4k, 8M or 1G"],
    );
    let out = bench(&["--bs", "1.5k"]);
    assert_refused(&out, &["--bs", "is not a size"]);
}

#[test]
fn an_unknown_pattern_and_a_png_plot_are_refused() {
    let out = bench(&["--rw", "sideways"]);
    assert_refused(&out, &["sideways", "randwrite"]);
    let out = bench(&["--plot", "out.png"]);
    assert_refused(&out, &["PNG is not offered", "out.svg"]);
}

#[test]
fn memcg_without_root_is_refused() {
    let Some(mut cmd) = common::endio_unprivileged() else {
        eprintln!("skipped: running as root and setpriv (util-linux) is missing to drop root");
        return;
    };
    let out = cmd
        .args(["bench", "--memcg", "256M", "--size", "8M", "--no-plot"])
        .output()
        .expect("runs");
    let stderr = text(&out.stderr);
    if stderr.contains("Permission denied") && !stderr.contains("--memcg") {
        eprintln!("skipped: uid 65534 cannot execute the test binary here: {stderr}");
        return;
    }
    assert_refused(&out, &["--memcg needs root", "uid 65534", "drop --memcg"]);
}

/// Runs `endio bench ARGS` on a new file with `--json FILE`, asserts that
/// it succeeded (`what` names it), and returns its standard output and the
/// JSON.
fn bench_json_on_a_file(args: &[&str], what: &str) -> (String, Value) {
    let dir = disk_dir();
    let file = dir.path().join("t");
    let json = dir.path().join("out.json");
    let mut all = vec![
        "--target",
        file.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let stdout = assert_success(&bench(&all), what);
    let text = std::fs::read_to_string(&json).unwrap();
    (stdout, serde_json::from_str(&text).unwrap())
}

/// Every field of a job's report, and the fio keys, present and typed.
fn check_job_fields(job: &Value) {
    let name = job["jobname"].as_str().unwrap_or("?").to_owned();
    let num = |path: &[&str]| {
        let mut v = job;
        for p in path {
            v = &v[*p];
        }
        assert!(v.is_number(), "{name}: {path:?} is not a number: {v}");
        v.as_f64().unwrap()
    };
    for s in ["mode", "rw"] {
        assert!(job[s].is_string(), "{name}: {s}");
    }
    for f in ["bs", "bytes", "seconds", "mib_per_s", "iops"] {
        num(&[f]);
    }
    for f in ["p50", "p99", "p999", "max"] {
        num(&["lat_us", f]);
    }
    for f in ["user_s", "sys_s"] {
        num(&["cpu", f]);
    }
    for f in [
        "resident_start_bytes",
        "resident_max_bytes",
        "resident_end_bytes",
    ] {
        num(&["cache", f]);
    }
    for f in [
        "deferred",
        "inline",
        "batches",
        "max_batch",
        "requeues",
        "rescued",
        "wakeups",
        "reaped_by_worker",
        "reaped_by_reaper",
        "lane_takeovers",
        "registered_buffer_ios",
    ] {
        num(&["deferral", f]);
    }
    for f in ["checked_bytes", "errors"] {
        num(&["verify", f]);
    }
    // fio's shape.
    for dir in ["read", "write"] {
        for f in ["io_bytes", "bw_bytes", "bw", "iops", "runtime", "total_ios"] {
            num(&[dir, f]);
        }
        num(&[dir, "clat_ns", "percentile", "99.000000"]);
        num(&[dir, "clat_ns", "percentile", "50.000000"]);
        num(&[dir, "lat_ns", "mean"]);
    }
    for f in ["usr_cpu", "sys_cpu", "ctx", "error"] {
        num(&[f]);
    }
    let series = job["series"].as_array().expect("series");
    assert!(!series.is_empty(), "{name}: empty series");
    for p in series {
        assert!(p["t_s"].is_number() && p["mib_per_s"].is_number(), "{p}");
        assert!(p.get("resident_bytes").is_some(), "{p}");
    }
    assert!(job["samples"].as_array().is_some_and(|s| s.len() >= 2));
}

#[test]
fn json_has_every_documented_field_and_fio_keys() {
    let (stdout, v) = bench_json_on_a_file(
        &[
            "--size",
            "8M",
            "--mode",
            "buffered",
            "--mode",
            "dontcache",
            "--rw",
            "write,read",
        ],
        "bench --json FILE",
    );
    assert!(stdout.contains("sequential write"), "{stdout}");
    let jobs = v["jobs"].as_array().expect("jobs");
    let names: Vec<&str> = jobs
        .iter()
        .map(|j| j["jobname"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "buffered-write",
            "buffered-read",
            "dontcache-write",
            "dontcache-read"
        ]
    );
    for job in jobs {
        check_job_fields(job);
        assert_eq!(job["bytes"], 8 << 20, "{}", job["jobname"]);
    }
    assert!(jobs[0]["write"]["bw_bytes"].as_u64().unwrap() > 0);
    assert_eq!(jobs[0]["read"]["io_bytes"], 0);
    assert!(jobs[1]["read"]["bw_bytes"].as_u64().unwrap() > 0);
    assert!(jobs[2]["dontcache"]["mode"].is_string(), "{}", jobs[2]);
    assert!(jobs[0]["dontcache"].is_null());
    assert_eq!(v["target"]["kind"], "file");
    assert!(v["global options"]["iodepth"].is_number());
    // A buffered read leaves the file cached; the cache was dropped first.
    assert_eq!(jobs[1]["cache"]["resident_start_bytes"], 0);
    assert_eq!(jobs[1]["cache"]["resident_end_bytes"], 8 << 20);
}

#[test]
fn the_dontcache_backlog_is_bounded_as_asked_and_zero_is_refused() {
    let out = bench(&["--dontcache-backlog", "0"]);
    assert_refused(
        &out,
        &["--dontcache-backlog", "at least one I/O", "such as 64M"],
    );
    let (_, v) = bench_json_on_a_file(
        &[
            "--size",
            "32M",
            "--bs",
            "1M",
            "--mode",
            "dontcache",
            "--dontcache-emulated",
            "--rw",
            "write",
            "--dontcache-backlog",
            "4M",
            "--no-plot",
        ],
        "bench --dontcache-backlog 4M",
    );
    let stats = &v["jobs"][0]["dontcache"]["stats"];
    let max = stats["inflight_bytes_max"]
        .as_u64()
        .expect("inflight_bytes_max");
    assert!(max > 0 && max <= 4 << 20, "{stats}");
}

#[test]
fn every_mode_completes_with_no_verify_errors() {
    let dir = disk_dir();
    let file = dir.path().join("t");
    for mode in ["buffered", "dontcache", "direct"] {
        let out = bench(&[
            "--target",
            file.to_str().unwrap(),
            "--size",
            "8M",
            "--bs",
            "64k",
            "--iodepth",
            "8",
            "--runtime",
            "20",
            "--mode",
            mode,
            "--rw",
            "write,read,randrw",
            "--verify",
            "--json",
            "-",
        ]);
        let stdout = assert_success(&out, mode);
        let v: Value = serde_json::from_str(&stdout).expect("stdout is the JSON alone");
        let jobs = v["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 3, "{mode}");
        for job in jobs {
            let name = job["jobname"].as_str().unwrap();
            assert_eq!(job["verify"]["errors"], 0, "{name}");
            assert_eq!(job["errors"], 0, "{name}");
            assert!(
                job["verify"]["checked_bytes"].as_u64().unwrap() >= 4 << 20,
                "{name}: {}",
                job["verify"]
            );
            assert!(job["deferral"]["deferred"].as_u64().unwrap() > 0, "{name}");
        }
        // The table went to stderr.
        assert!(text(&out.stderr).contains("verify errors"), "{mode}");
    }
}

#[test]
fn the_embedded_default_prints_the_comparison_and_the_plot() {
    let dir = disk_dir();
    let out = endio()
        .args(["bench", "--size", "8M"])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let stdout = assert_success(&out, "embedded default");
    for want in [
        "sequential write",
        "sequential read",
        "buffered",
        "dontcache",
        "direct",
        "cache max",
        "lat p99.9",
        "plot: endio-bench.svg",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    let svg = std::fs::read_to_string(dir.path().join("endio-bench.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG");
    for label in [
        "throughput (MiB/s)",
        "resident (MiB)",
        "time since job start (s)",
    ] {
        assert!(svg.contains(label), "the plot lacks the label {label:?}");
    }
    // The temporary file is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("endio-bench-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Whether `dev` is still attached to a backing file made by endio bench.
fn still_attached(dev: &str) -> bool {
    Command::new("losetup")
        .args(["-n", "-O", "BACK-FILE", dev])
        .output()
        .is_ok_and(|o| o.status.success() && text(&o.stdout).contains("endio-bench-"))
}

#[test]
fn as_root_a_loop_device_in_a_memory_cgroup_is_made_and_removed() {
    if !is_root() {
        eprintln!("skipped: loop devices and memory cgroups need root");
        return;
    }
    let dir = disk_dir();
    let out = endio()
        .args([
            "bench", "--bdev", "--memcg", "64M", "--size", "16M", "--verify", "--json", "-",
        ])
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    if !out.status.success()
        && (stderr.contains("no memory cgroup controller") || stderr.contains("losetup"))
    {
        eprintln!("skipped: {stderr}");
        return;
    }
    let stdout = assert_success(&out, "--bdev --memcg");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["target"]["kind"], "block_device");
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 6);
    for job in jobs {
        assert_eq!(job["verify"]["errors"], 0, "{}", job["jobname"]);
        assert_eq!(job["errors"], 0, "{}", job["jobname"]);
    }
    let dc = jobs
        .iter()
        .find(|j| j["jobname"] == "dontcache-write")
        .unwrap();
    assert_eq!(
        dc["dontcache"]["mode"], "emulated",
        "loop devices have no RWF_DONTCACHE"
    );
    let memcg = Path::new(v["memcg"]["path"].as_str().unwrap());
    assert!(!memcg.exists(), "{} left behind", memcg.display());
    assert_eq!(v["memcg"]["limit_bytes"], 64 << 20);
    let dev = v["target"]["path"].as_str().unwrap();
    assert!(!still_attached(dev), "{dev} still attached");
}

#[test]
fn ctrl_c_stops_and_removes_what_the_benchmark_made() {
    let dir = disk_dir();
    let mut cmd = endio();
    cmd.args([
        "bench",
        "--size",
        "64M",
        "--bs",
        "4k",
        "--iodepth",
        "1",
        "--mode",
        "direct",
        "--rw",
        "randwrite",
        "--runtime",
        "60",
        "--no-plot",
    ]);
    let memcg = is_root();
    if memcg {
        cmd.args(["--memcg", "128M"]);
    }
    let mut child = cmd
        .current_dir(dir.path())
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // With --memcg the jobs run in a child process inside the cgroup,
    // which is named after this one.
    let cgroup_made = || {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|child| {
                std::fs::read_to_string(format!("/proc/{child}/cgroup"))
                    .is_ok_and(|c| c.contains(&format!("endio-bench-{pid}")))
            })
    };
    // Wait until the job runs (the temporary directory exists, and the
    // process is in its cgroup when root).
    let start = Instant::now();
    loop {
        let made = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().starts_with("endio-bench-"));
        if made && (!memcg || cgroup_made()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the benchmark did not start"
        );
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().unwrap();
            panic!("exited early ({status}): {}", text(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::INT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "an interrupted run succeeded");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    if memcg {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.lines().any(|l| {
                let mp = l.split(' ').nth(4).unwrap_or("");
                l.contains("cgroup") && walk_has(Path::new(mp), &format!("endio-bench-{pid}"), 3)
            }),
            "the memory cgroup of {pid} was left behind"
        );
    }
}

/// Whether a directory named `name` exists within `depth` levels of `dir`.
fn walk_has(dir: &Path, name: &str, depth: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_string_lossy() == name {
            return true;
        }
        if depth > 0 && walk_has(&e.path(), name, depth - 1) {
            return true;
        }
    }
    false
}
