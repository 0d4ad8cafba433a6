//! `endio bench` as a fio user types it: fio's spellings with the same
//! meaning run as endio's options (and say which), those without a
//! counterpart are refused naming what to use; `--rwmixread` sets the mix;
//! `--numjobs` runs clones reported each and summed; every job reports
//! device-read bytes and minimum and average latency.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_endio"))
        .env_remove("ENDIO_BACKEND")
        .arg("bench")
        .args(args)
        .output()
        .expect("the endio binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    let stdout = common::assert_success(o, "endio bench");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn a_fio_command_line_runs_as_the_endio_options_it_means() {
    let dir = common::disk_dir("endio-fio-");
    let target = dir.path().join("t");
    let target = target.to_str().unwrap();
    let out = bench(&[
        "--name=randread",
        "--filename",
        target,
        "--direct=1",
        "--ioengine=psync",
        "--rw=randread",
        "--bs=4k",
        "--size=8M",
        "--iodepth=4",
        "--output-format=json",
    ]);
    let doc = json(&out);
    let err = stderr(&out);
    for said in ["--mode direct", "--backend threads", "--json -"] {
        assert!(err.contains(said), "no note names {said}:\n{err}");
    }
    assert_eq!(doc["backend"], "threads");
    assert_eq!(doc["target"]["path"], target);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "one mode, one pattern: {jobs:?}");
    let job = &jobs[0];
    assert_eq!(job["jobname"], "direct-randread");
    let read = job["read"]["io_bytes"].as_u64().unwrap();
    assert_eq!(read, 8 << 20);
    // Every byte of a direct read comes from the device, none from the cache.
    let device = job["device_read_bytes"]
        .as_u64()
        .expect("this kernel accounts the process's storage reads");
    assert!(device >= read, "device read {device} < read {read}");
    assert_eq!(job["cache_hit_bytes"], 0);
    let lat = &job["lat_us"];
    let (min, avg, max) = (
        lat["min"].as_f64().unwrap(),
        lat["avg"].as_f64().unwrap(),
        lat["max"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= avg && avg <= max, "{lat}");
    // The table went to standard error, with the new rows.
    for row in ["device read  MiB", "lat min      µs", "lat avg      µs"] {
        assert!(err.contains(row), "the table lacks {row:?}:\n{err}");
    }
}

#[test]
fn fio_options_endio_has_no_counterpart_for_name_what_to_use() {
    for (arg, needle) in [
        ("--iodepth_batch_submit=8", "--iodepth"),
        ("--iodepth_batch=8", "--iodepth"),
        ("--ioengine=libaio", "--backend uring"),
        ("--output-format=terse", "--json"),
    ] {
        let out = bench(&[arg]);
        assert_eq!(out.status.code(), Some(2), "{arg} accepted");
        let err = stderr(&out);
        assert!(
            err.contains(needle),
            "{arg}: no mention of {needle}:\n{err}"
        );
    }
}

#[test]
fn rwmixread_sets_the_share_of_reads() {
    let dir = common::disk_dir("endio-fio-");
    let target = dir.path().join("t");
    let target = target.to_str().unwrap();
    let run = |mix: &str| {
        json(&bench(&[
            "--target",
            target,
            "--mode",
            "buffered",
            "--rw",
            "randrw",
            "--bs",
            "4k",
            "--size",
            "4M",
            "--rwmixread",
            mix,
            "--json",
            "-",
            "--backend",
            "threads",
        ]))
    };
    let all_reads = run("100");
    let job = &all_reads["jobs"][0];
    assert_eq!(job["rwmixread"], 100);
    assert_eq!(job["write"]["io_bytes"], 0);
    assert_eq!(job["read"]["io_bytes"], 4 << 20);
    let all_writes = run("0");
    let job = &all_writes["jobs"][0];
    assert_eq!(job["read"]["io_bytes"], 0);
    assert_eq!(job["write"]["io_bytes"], 4 << 20);
    let mostly = run("75");
    let job = &mostly["jobs"][0];
    let r = job["read"]["total_ios"].as_f64().unwrap();
    let w = job["write"]["total_ios"].as_f64().unwrap();
    let share = r / (r + w);
    assert!((0.70..0.80).contains(&share), "read share {share}");
    let out = bench(&["--rwmixread", "101"]);
    assert!(!out.status.success());
}

#[test]
fn numjobs_runs_clones_reported_each_and_summed() {
    let dir = common::disk_dir("endio-fio-");
    let target = dir.path().join("t");
    let target = target.to_str().unwrap();
    let out = bench(&[
        "--target",
        target,
        "--mode",
        "buffered",
        "--numjobs",
        "3",
        "--rw",
        "randread",
        "--size",
        "4M",
        "--iodepth",
        "4",
        "--json",
        "-",
        "--backend",
        "threads",
    ]);
    let doc = json(&out);
    let err = stderr(&out);
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 4, "the aggregate and 3 clones: {jobs:?}");
    let aggregate = &jobs[0];
    assert!(aggregate.get("clone").is_none(), "{aggregate}");
    assert_eq!(aggregate["jobname"], "buffered-randread");
    let mut sum = 0;
    let mut ios = 0;
    for (k, clone) in jobs[1..].iter().enumerate() {
        assert_eq!(clone["clone"], k as u64);
        assert_eq!(clone["jobname"], "buffered-randread");
        assert_eq!(clone["bytes"], 4 << 20, "clone {k}");
        assert_eq!(clone["read"]["io_bytes"], 4 << 20, "clone {k}");
        sum += clone["bytes"].as_u64().unwrap();
        ios += clone["read"]["clat_ns"]["N"].as_u64().unwrap();
    }
    assert_eq!(aggregate["bytes"].as_u64().unwrap(), sum);
    assert_eq!(aggregate["read"]["io_bytes"].as_u64().unwrap(), sum);
    // The latency histograms are merged.
    assert_eq!(aggregate["read"]["clat_ns"]["N"].as_u64().unwrap(), ios);
    assert_eq!(doc["global options"]["numjobs"], 3);
    // The table (on standard error) shows the aggregate: one column.
    assert!(err.contains("numjobs 3"), "{err}");
    let head = err
        .lines()
        .skip_while(|l| !l.starts_with("random read"))
        .nth(1)
        .unwrap_or_default();
    assert_eq!(head.split_whitespace().collect::<Vec<_>>(), ["buffered"]);
    let mib = sum as f64 / f64::from(1 << 20) / aggregate["seconds"].as_f64().unwrap();
    let row = err
        .lines()
        .find(|l| l.starts_with("throughput"))
        .unwrap_or_default();
    let shown: f64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!((shown - mib).abs() < 0.1 + mib * 0.01, "{row} vs {mib}");
}

#[test]
fn numjobs_one_keeps_one_entry_per_job() {
    let dir = common::disk_dir("endio-fio-");
    let target = dir.path().join("t");
    let doc = json(&bench(&[
        "--target",
        target.to_str().unwrap(),
        "--mode",
        "buffered",
        "--rw",
        "read",
        "--size",
        "4M",
        "--numjobs=1",
        "--json",
        "-",
        "--backend",
        "threads",
    ]));
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].get("clone").is_none());
    assert!(doc["global options"].get("numjobs").is_none());
    let out = bench(&["--numjobs", "65"]);
    assert_eq!(out.status.code(), Some(2));
    let out = bench(&["--numjobs", "64", "--iodepth", "128", "--no-plot"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--iodepth 64"), "{}", stderr(&out));
}
