//! Signals leave nothing behind: SIGINT, SIGTERM and SIGHUP at random
//! points of `endio bench --bdev --memcg`, of the embedded default and of
//! `endio stress --real-hotplug` leave no loop device over the run's files,
//! no temporary directory, no memory cgroup and no CPU offline; after a
//! SIGKILL the loop device clears itself and the next `endio bench` removes
//! the directory and the cgroup.
//!
//! The points are random but seeded: the seed is printed first, and
//! `ENDIO_SIGNALS_SEED=N` replays a run. Only what a run of this test made
//! is checked and cleaned (loop devices over files in its own temporary
//! directory, cgroups named after its own processes), so tests of other
//! programs on the machine are left alone. Each test restores the machine
//! when it fails: a guard detaches its loop devices, removes its
//! directories and cgroups and brings CPUs back online.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{cgroups_named, loops_under};

/// The tests of this file run one at a time: each `endio bench` removes the
/// leftovers of dead runs at its start, so one test's bench would remove
/// what the SIGKILL test expects the next bench of its own to find.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const SIGINT: i32 = 2;
const SIGHUP: i32 = 1;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// splitmix64, seeded once per test.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("ENDIO_SIGNALS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{test}: seed {seed} (rerun with ENDIO_SIGNALS_SEED={seed})");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// A duration in `lo..hi` milliseconds.
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

fn signal_name(s: i32) -> &'static str {
    match s {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGTERM => "SIGTERM",
        SIGKILL => "SIGKILL",
        _ => "?",
    }
}

fn send(pid: u32, signal: i32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal");
    // Gone already (it finished first): nothing to do.
    let _ = rustix::process::kill_process(pid, signal);
}

/// The temporary directories of the run owned by `pid` under `dir`.
fn run_dirs(dir: &Path, pid: u32) -> Vec<String> {
    let prefix = format!("endio-bench-{pid}-");
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn online(cpu: usize) -> bool {
    fs::read_to_string(format!("/sys/devices/system/cpu/cpu{cpu}/online"))
        .map_or(true, |s| s.trim() == "1")
}

fn set_online(cpu: usize) {
    let _ = fs::write(
        format!("/sys/devices/system/cpu/cpu{cpu}/hotplug/fail"),
        "-1",
    );
    let _ = fs::write(format!("/sys/devices/system/cpu/cpu{cpu}/online"), "1");
}

/// Restores the machine when a test ends, also when it fails: kills the
/// processes it started, detaches loop devices over its files, removes its
/// cgroups and brings back the CPUs it watches.
struct Restore {
    tmp: tempfile::TempDir,
    pids: Vec<u32>,
    cpus: Vec<usize>,
}

impl Restore {
    fn new() -> Restore {
        Restore {
            tmp: common::disk_dir("endio-signals-"),
            pids: Vec::new(),
            cpus: Vec::new(),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        for &pid in &self.pids {
            send(pid, SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(100));
        for dev in loops_under(self.tmp.path()) {
            let _ = Command::new("losetup").arg("-d").arg(&dev).status();
        }
        for &pid in &self.pids {
            for cg in cgroups_named(&format!("endio-bench-{pid}")) {
                let _ = fs::remove_dir(cg);
            }
        }
        for &cpu in &self.cpus {
            if !online(cpu) {
                set_online(cpu);
            }
        }
    }
}

/// Starts `endio ARGS` in `restore`'s directory (also its TMPDIR), output
/// to files there.
fn start(restore: &mut Restore, args: &[&str]) -> Child {
    let out = restore.dir().join("out");
    fs::create_dir_all(&out).unwrap();
    let n = restore.pids.len();
    let child = Command::new(env!("CARGO_BIN_EXE_endio"))
        .args(args)
        .current_dir(&out)
        .env("TMPDIR", restore.dir())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(fs::File::create(out.join(format!("{n}.stdout"))).unwrap())
        .stderr(fs::File::create(out.join(format!("{n}.stderr"))).unwrap())
        .spawn()
        .expect("the endio binary runs");
    restore.pids.push(child.id());
    child
}

fn stderr_of(restore: &Restore, n: usize) -> String {
    fs::read_to_string(restore.dir().join("out").join(format!("{n}.stderr"))).unwrap_or_default()
}

/// Waits (bounded) for `child` to exit.
fn wait(child: &mut Child, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: did not exit within 60 s of the signal"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Asserts that the run of `pid` left no loop device, directory or cgroup.
fn assert_nothing_left(restore: &Restore, pid: u32, what: &str) {
    let loops = loops_under(restore.dir());
    assert!(loops.is_empty(), "{what}: loop devices left: {loops:?}");
    let dirs = run_dirs(restore.dir(), pid);
    assert!(dirs.is_empty(), "{what}: directories left: {dirs:?}");
    let cgroups = cgroups_named(&format!("endio-bench-{pid}"));
    assert!(
        cgroups.is_empty(),
        "{what}: memory cgroups left: {cgroups:?}"
    );
}

/// Whether the machine can run `bench --bdev --memcg`; says why not.
fn bdev_and_memcg_available() -> bool {
    if !is_root() {
        eprintln!("skipped: loop devices and memory cgroups need root");
        return false;
    }
    if !Path::new("/dev/loop-control").exists() {
        eprintln!("skipped: no /dev/loop-control (modprobe loop)");
        return false;
    }
    true
}

/// Sends each signal (once, or twice in a row) at random points of runs of
/// `endio ARGS`, waits, and checks that nothing is left; returns how many
/// runs the signal stopped (not ones that finished first).
fn signal_runs(test: &str, args: &[&str], window_ms: u64) -> usize {
    let _serial = serial();
    let mut rng = Rng::new(test);
    let mut restore = Restore::new();
    let mut stopped = 0;
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        for twice in [false, true] {
            let n = restore.pids.len();
            let mut child = start(&mut restore, args);
            let pid = child.id();
            let at = rng.ms(0, window_ms);
            std::thread::sleep(at);
            send(pid, signal);
            let again = twice.then(|| rng.ms(0, 300));
            if let Some(after) = again {
                std::thread::sleep(after);
                send(pid, signal);
            }
            let what = format!(
                "{test}: {} at {at:?}{}",
                signal_name(signal),
                again.map_or(String::new(), |a| format!(" and again {a:?} later"))
            );
            let status = wait(&mut child, &what);
            let stderr = stderr_of(&restore, n);
            eprintln!("{what}: {status}");
            match status.code() {
                Some(0) => eprintln!("{what}: finished before the signal"),
                Some(code) => {
                    assert_eq!(code, 128 + signal, "{what}: exit status\n{stderr}");
                    stopped += 1;
                }
                // A signal in the first milliseconds, before endio has
                // installed its handler (and made anything), ends the
                // process by the default action: allowed, if it left
                // nothing (checked below), and not counted as stopped.
                None => eprintln!("{what}: ended by the signal before its handler was installed"),
            }
            // The loop device of a job process is cleared by the kernel
            // after the last close; give it a moment.
            eventually(Duration::from_secs(3), || {
                loops_under(restore.dir()).is_empty()
            });
            assert_nothing_left(&restore, pid, &what);
        }
    }
    stopped
}

#[test]
fn signals_during_bench_bdev_memcg_leave_nothing() {
    if !bdev_and_memcg_available() {
        return;
    }
    let stopped = signal_runs(
        "bench --bdev --memcg",
        &[
            "bench",
            "--bdev",
            "--memcg",
            "256M",
            "--size",
            "64M",
            // Timed, so that the run outlasts the signals however fast the
            // device is (64 MiB alone can be done in under a second).
            "--runtime",
            "0.5",
            "--time-based",
            "--no-plot",
            "--json",
            "-",
        ],
        1000,
    );
    assert!(
        stopped >= 3,
        "only {stopped} of 6 runs were stopped by the signal"
    );
}

#[test]
fn signals_during_the_embedded_default_leave_nothing() {
    let stopped = signal_runs("bench (embedded default)", &["bench", "--size", "64M"], 600);
    assert!(
        stopped >= 3,
        "only {stopped} of 6 runs were stopped by the signal"
    );
}

#[test]
fn signals_during_real_hotplug_stress_bring_every_cpu_back() {
    if !is_root() {
        eprintln!("skipped: CPU hotplug needs root");
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writable = fs::OpenOptions::new()
        .write(true)
        .open("/sys/devices/system/cpu/cpu1/online")
        .is_ok();
    if cpus < 2 || !writable || !online(1) {
        eprintln!("skipped: needs 2 CPUs and cpu1 hot-pluggable and online");
        return;
    }
    let _serial = serial();
    let mut rng = Rng::new("stress --real-hotplug");
    let mut restore = Restore::new();
    restore.cpus.push(1);
    let mut seen_offline = 0;
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        for _ in 0..2 {
            let n = restore.pids.len();
            let mut child = start(
                &mut restore,
                &["stress", "--real-hotplug", "--bios", "200_000_000"],
            );
            let pid = child.id();
            // Watch cpu1 until the signal, so the test knows the signal
            // came while the churn was taking CPUs offline.
            let at = rng.ms(300, 1500);
            let start = Instant::now();
            let mut offline_seen = false;
            while start.elapsed() < at {
                offline_seen |= !online(1);
                std::thread::sleep(Duration::from_millis(5));
            }
            let offline_now = !online(1);
            send(pid, signal);
            let what = format!(
                "stress --real-hotplug: {} at {at:?} (cpu1 {})",
                signal_name(signal),
                if offline_now { "offline" } else { "online" }
            );
            let status = wait(&mut child, &what);
            let stderr = stderr_of(&restore, n);
            eprintln!("{what}: {status}");
            assert_eq!(
                status.code(),
                Some(128 + signal),
                "{what}: exit status\n{stderr}"
            );
            assert!(online(1), "{what}: cpu1 left offline\n{stderr}");
            seen_offline += usize::from(offline_seen);
        }
    }
    assert!(
        seen_offline > 0,
        "the churn never took cpu1 offline before a signal: the test checked nothing"
    );
}

#[test]
fn after_sigkill_the_loop_device_clears_and_the_next_bench_removes_the_rest() {
    if !bdev_and_memcg_available() {
        return;
    }
    let _serial = serial();
    let mut restore = Restore::new();
    let mut child = start(
        &mut restore,
        &[
            "bench",
            "--bdev",
            "--memcg",
            "256M",
            "--size",
            "256M",
            "--no-plot",
        ],
    );
    let pid = child.id();
    assert!(
        eventually(Duration::from_secs(30), || !loops_under(restore.dir())
            .is_empty()),
        "the loop device never appeared\n{}",
        stderr_of(&restore, 0)
    );
    send(pid, SIGKILL);
    let status = wait(&mut child, "SIGKILL");
    assert_eq!(status.code(), None, "not killed: {status}");
    assert!(
        eventually(Duration::from_secs(5), || loops_under(restore.dir())
            .is_empty()),
        "the loop device did not clear itself after SIGKILL: {:?}",
        loops_under(restore.dir())
    );
    // What a SIGKILL cannot clean is still there, named after the process.
    let dirs = run_dirs(restore.dir(), pid);
    assert_eq!(
        dirs.len(),
        1,
        "the run's directory is not there: {:?}\n{}",
        fs::read_dir(restore.dir())
            .map(|d| d
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect::<Vec<_>>())
            .unwrap_or_default(),
        stderr_of(&restore, 0)
    );
    let cgroups = cgroups_named(&format!("endio-bench-{pid}"));
    assert_eq!(cgroups.len(), 1, "{cgroups:?}");
    assert!(
        eventually(Duration::from_secs(5), || {
            fs::read_to_string(cgroups[0].join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty())
        }),
        "the job process outlived its parent"
    );

    let n = restore.pids.len();
    let mut next = start(
        &mut restore,
        &[
            "bench",
            "--size",
            "4M",
            "--mode",
            "direct",
            "--rw",
            "write",
            "--no-plot",
        ],
    );
    let status = wait(&mut next, "the next bench");
    let stderr = stderr_of(&restore, n);
    assert!(
        status.success(),
        "the next bench failed: {status}\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("endio-bench-{pid}-")) && stderr.contains("removed"),
        "the next bench did not say what it removed:\n{stderr}"
    );
    assert_nothing_left(&restore, pid, "after the next bench");
    assert_nothing_left(&restore, next.id(), "the next bench itself");
}
