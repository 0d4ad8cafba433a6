//! Real I/O targets for the engine's tests: a temporary directory on a disk
//! filesystem (for `O_DIRECT`), loop block devices (root only), and engines
//! of each backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use endio::{Backend, Completer, Engine};

/// `statfs` magic of tmpfs, which has no `O_DIRECT`.
const TMPFS_MAGIC: i64 = 0x0102_1994;

fn is_tmpfs(dir: &Path) -> bool {
    // `f_type` is an `i64` on x86_64 and narrower on some targets.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(dir).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC)
}

/// A fresh temporary directory on a filesystem that can do `O_DIRECT`:
/// `$TMPDIR`, `/var/tmp`, `/tmp` or Cargo's target tmp dir, the first that
/// exists and is not tmpfs.
pub fn disk_dir() -> tempfile::TempDir {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(t) = std::env::var_os("TMPDIR") {
        candidates.push(t.into());
    }
    candidates.push("/var/tmp".into());
    candidates.push("/tmp".into());
    candidates.push(env!("CARGO_TARGET_TMPDIR").into());
    for dir in &candidates {
        if dir.is_dir()
            && !is_tmpfs(dir)
            && let Ok(t) = tempfile::Builder::new()
                .prefix("endio-test-")
                .tempdir_in(dir)
        {
            return t;
        }
    }
    panic!(
        "no temporary directory on a disk filesystem among {candidates:?}; set TMPDIR to one (not tmpfs)"
    );
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A loop block device over a sparse temporary file, detached when dropped
/// (also when the test panics: the guard unwinds).
pub struct LoopDev {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    /// `size` bytes with `sector_size`-byte logical blocks (512 if `None`),
    /// or why not (not root, no `losetup`, no loop devices).
    pub fn new(size: u64, sector_size: Option<u32>) -> Result<LoopDev, String> {
        if !is_root() {
            return Err("loop devices need root".into());
        }
        let dir = disk_dir();
        let backing = dir.path().join("backing.img");
        let file = std::fs::File::create(&backing).map_err(|e| format!("backing file: {e}"))?;
        file.set_len(size)
            .map_err(|e| format!("backing file: {e}"))?;
        drop(file);
        let mut cmd = Command::new("losetup");
        cmd.arg("--find").arg("--show");
        if let Some(s) = sector_size {
            cmd.arg("--sector-size").arg(s.to_string());
        }
        cmd.arg(&backing);
        let out = match cmd.output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("losetup is not installed (util-linux / mount package)".into());
            }
            Err(e) => return Err(format!("cannot run losetup: {e}")),
        };
        if !out.status.success() {
            return Err(format!(
                "losetup --find --show failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDev { path, _dir: dir })
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // The device may be briefly busy right after the last close; retry.
        for _ in 0..50 {
            match Command::new("losetup").arg("-d").arg(&self.path).output() {
                Ok(out) if out.status.success() => return,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!(
            "warning: could not detach {}; run `losetup -d {}`",
            self.path.display(),
            self.path.display()
        );
    }
}

/// A loop device, or `None` after printing why the test skips.
pub fn loop_device_or_skip(test: &str, size: u64, sector_size: Option<u32>) -> Option<LoopDev> {
    match LoopDev::new(size, sector_size) {
        Ok(dev) => Some(dev),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

/// The backends to test here: all three, io_uring only where the kernel
/// allows it (printed otherwise).
pub fn backends() -> Vec<Backend> {
    let mut v = Vec::new();
    match endio::testing::probe_io_uring(Path::new("/proc")) {
        Ok(()) => v.push(Backend::Uring),
        Err(e) => eprintln!("io_uring backend not tested: {e}"),
    }
    v.push(Backend::Threads);
    v.push(Backend::Null);
    v
}

/// A completer and an engine of `backend` with `depth` slots per lane.
pub fn engine(backend: Backend, depth: u32) -> (Completer, Engine) {
    let completer = Completer::builder().build().expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(backend)
        .queue_depth(depth)
        .build()
        .unwrap_or_else(|e| panic!("{backend} engine: {e}"));
    (completer, engine)
}
