//! Which dontcache path `endio bench` takes on a block device: the kernel's
//! native `RWF_DONTCACHE` from Linux 7.3 on, endio's emulation before, and
//! the emulation whenever `--dontcache-emulated` asks for it.
//!
//! The same test binary runs on the host and inside the Linux 7.3 VM
//! (`ci/vm.sh`, whose native test runs it with `ENDIO_BIN` naming the endio
//! binary there and `ENDIO_TEST_BDEV` a spare virtio disk).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The endio binary: `ENDIO_BIN` if set (the VM), else the one cargo built.
fn endio_bin() -> PathBuf {
    std::env::var_os("ENDIO_BIN").map_or_else(|| env!("CARGO_BIN_EXE_endio").into(), PathBuf::from)
}

/// The running kernel's (major, minor), from `/proc/sys/kernel/osrelease`.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    parse_release(&release).unwrap_or_else(|| panic!("kernel release {release:?}"))
}

fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What endio must pick for dontcache on a block device of this kernel.
fn expected_block_device_mode() -> &'static str {
    if kernel_version() >= (7, 3) {
        "native"
    } else {
        "emulated"
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a dontcache write and read job with `args`; the `dontcache.mode`
/// of each job, or `None` (with the reason printed) when the setup is not
/// possible here.
fn dontcache_modes(args: &[&str]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(endio_bin())
        .args([
            "bench",
            "--size",
            "32M",
            "--rw",
            "write,read",
            "--mode",
            "dontcache",
            "--no-plot",
            "--json",
            "-",
        ])
        .args(args)
        .env("TMPDIR", dir.path())
        .output()
        .expect("the endio binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("losetup") {
        eprintln!("skipped: no loop device here: {stderr}");
        return None;
    }
    assert!(
        out.status.success(),
        "endio bench {args:?}: {}\n{stderr}",
        out.status
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"]["kind"], "block_device", "{args:?}");
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        assert_eq!(job["errors"], 0, "{}", job["jobname"]);
    }
    Some(
        jobs.iter()
            .map(|j| j["dontcache"]["mode"].as_str().unwrap().to_string())
            .collect(),
    )
}

#[test]
fn kernel_releases_parse() {
    assert_eq!(parse_release("7.3-amd64\n"), Some((7, 3)));
    assert_eq!(parse_release("6.18.0-cloud"), Some((6, 18)));
    assert_eq!(parse_release("7.3.0-rc7+"), Some((7, 3)));
    assert_eq!(parse_release("garbage"), None);
    assert_eq!(parse_release(""), None);
}

#[test]
fn loop_device_dontcache_is_native_from_7_3_and_emulated_before() {
    if !is_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    let Some(modes) = dontcache_modes(&["--bdev"]) else {
        return;
    };
    let want = expected_block_device_mode();
    assert_eq!(
        modes,
        [want, want],
        "loop device on kernel {:?}",
        kernel_version()
    );
}

#[test]
fn forced_emulation_is_emulated_on_a_loop_device() {
    if !is_root() {
        eprintln!("skipped: loop devices need root");
        return;
    }
    let Some(modes) = dontcache_modes(&["--bdev", "--dontcache-emulated"]) else {
        return;
    };
    assert_eq!(modes, ["emulated", "emulated"]);
}

#[test]
fn spare_block_device_dontcache_mode_follows_the_kernel() {
    let Some(dev) = std::env::var_os("ENDIO_TEST_BDEV") else {
        eprintln!("skipped: ENDIO_TEST_BDEV names no spare block device (its data is overwritten)");
        return;
    };
    let dev = dev.to_str().unwrap().to_string();
    let modes = dontcache_modes(&["--target", &dev]).unwrap();
    let want = expected_block_device_mode();
    assert_eq!(
        modes,
        [want, want],
        "{dev} on kernel {:?}",
        kernel_version()
    );
}
