//! `endio stat`: the residency of a file follows what was written and
//! dropped, in both output forms; bad paths are named and do not hide the
//! good ones.

use std::io::Write as _;
use std::process::{Command, Output};

use serde_json::Value;

mod common;

/// A fresh temporary directory on a disk filesystem.
fn disk_dir() -> tempfile::TempDir {
    common::disk_dir("endio-stat-test-")
}

fn stat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_endio"))
        .arg("stat")
        .args(args)
        .output()
        .expect("the endio binary runs")
}

fn json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = stat(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn residency_follows_writes_and_drops() {
    let dir = disk_dir();
    let path = dir.path().join("f");
    let p = path.to_str().unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&vec![7u8; 4 << 20]).unwrap();

    let s = &json(&[p])[0];
    assert_eq!(s["size_bytes"], 4 << 20);
    assert_eq!(s["cached_bytes"], 4 << 20, "{s}");
    assert_eq!(
        s["cached_pages"],
        (4 << 20) / s["page_size"].as_u64().unwrap()
    );
    if s["source"] == "cachestat" {
        let dirty = s["dirty_bytes"].as_u64().unwrap() + s["writeback_bytes"].as_u64().unwrap();
        assert!(dirty > 0, "just written, not synced: {s}");
    }
    assert_eq!(s["kind"], "file");

    f.sync_all().unwrap();
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let s = &json(&[p])[0];
    assert_eq!(s["cached_bytes"], 0, "{s}");
    assert_eq!(s["dirty_bytes"], 0, "{s}");

    let out = stat(&[p]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["RES", "PAGES", "DIRTY", "WRITEBACK", "SIZE", "FILE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with("       0 B") && row.ends_with(p), "{row}");
    assert!(row.contains("4.0 MiB"), "{row}");
}

#[test]
fn bad_paths_are_named_and_the_good_ones_still_shown() {
    let dir = disk_dir();
    let good = dir.path().join("g");
    std::fs::write(&good, b"hello").unwrap();
    let missing = dir.path().join("missing");
    let out = stat(&[
        good.to_str().unwrap(),
        missing.to_str().unwrap(),
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains(good.to_str().unwrap()), "{stdout}");
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(stderr.contains("2 of 3 paths"), "{stderr}");
}

#[test]
fn a_path_is_required() {
    let out = stat(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PATH"));
}
