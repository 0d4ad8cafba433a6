//! `--bdev`: a loop block device over a temporary file (root), attached
//! through `/dev/loop-control` and detached by its guard, also on failure
//! and on a signal.
//!
//! 1. `LOOP_CTL_GET_FREE` names a free device; it is opened and attached to
//!    the backing file with `LOOP_CONFIGURE`, auto-clear set in the same
//!    step (older kernels: `LOOP_SET_FD`, then `LOOP_SET_STATUS64`). Another
//!    process can take the same free device first (`EBUSY`): then the next
//!    free one is tried.
//! 2. The guard keeps the device open for the whole run. Auto-clear detaches
//!    it at its last close, so even a SIGKILL, which no handler sees, leaves
//!    no device once the process is gone; dropping the guard detaches it at
//!    once.
//! 3. Direct I/O to the backing file is asked for where the kernel allows
//!    it, so the backing file is not cached a second time below the block
//!    device's own page cache: what the benchmark measures is the cache of
//!    the block device, as on a real disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use super::interrupt::{self, Registration, Undo};
use crate::sys::{self, LO_FLAGS_AUTOCLEAR, LO_FLAGS_DIRECT_IO};

/// A loop device, detached when dropped.
#[derive(Debug)]
pub(crate) struct LoopDev {
    path: PathBuf,
    direct_io: bool,
    /// Held open: the device clears itself when the last fd closes.
    file: Option<File>,
    _registration: Registration,
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Opens `/dev/loopN`, waiting a moment for udev to make the node.
fn open_node(path: &Path) -> io::Result<File> {
    let mut last = None;
    for _ in 0..100 {
        match open_rw(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => last = Some(e),
            Err(e) => return Err(e),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)))
}

/// Attaches with `flags`, by `LOOP_CONFIGURE` or, where the kernel lacks
/// it, `LOOP_SET_FD` + `LOOP_SET_STATUS64`.
fn configure(dev: &File, backing: &File, flags: u32) -> io::Result<()> {
    match sys::loop_configure(dev, backing, flags) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
            sys::loop_set_fd_and_flags(dev, backing, flags)
        }
        r => r,
    }
}

impl LoopDev {
    /// Attaches `backing` (an existing regular file) to a free loop device.
    pub(crate) fn attach(backing: &Path) -> anyhow::Result<LoopDev> {
        let uid = rustix::process::geteuid();
        if !uid.is_root() {
            bail!(
                "--bdev needs root to create a loop device (uid {} may not); run as root (e.g. with sudo), or drop --bdev to benchmark a temporary file",
                uid.as_raw()
            );
        }
        let control = open_rw(Path::new("/dev/loop-control")).map_err(|e| {
            anyhow::anyhow!(
                "--bdev: cannot open /dev/loop-control: {e}; load the loop module (modprobe loop) or drop --bdev"
            )
        })?;
        let backing_file = open_rw(backing)
            .map_err(|e| anyhow::anyhow!("--bdev: cannot open {}: {e}", backing.display()))?;
        let mut last_error = None;
        for _ in 0..16 {
            let n = sys::loop_get_free(&control).map_err(|e| {
                anyhow::anyhow!(
                    "--bdev: no free loop device ({e}); detach unused ones (losetup -D) or raise max_loop"
                )
            })?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let file = open_node(&path)
                .map_err(|e| anyhow::anyhow!("--bdev: cannot open {}: {e}", path.display()))?;
            // Registered before the attach: from the ioctl on, the signal
            // thread detaches it too.
            let registration = interrupt::register(Undo::DetachLoop(path.clone()));
            let attached = match configure(
                &file,
                &backing_file,
                LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
            ) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    configure(&file, &backing_file, LO_FLAGS_AUTOCLEAR)
                }
                r => r,
            };
            match attached {
                Ok(()) => {
                    let flags = sys::loop_flags(&file).unwrap_or(0);
                    if flags & LO_FLAGS_AUTOCLEAR == 0 {
                        let _ = sys::loop_clear(&file);
                        bail!(
                            "--bdev: the kernel did not set auto-clear on {}; drop --bdev",
                            path.display()
                        );
                    }
                    return Ok(LoopDev {
                        path,
                        direct_io: flags & LO_FLAGS_DIRECT_IO != 0,
                        file: Some(file),
                        _registration: registration,
                    });
                }
                // Taken by another process since LOOP_CTL_GET_FREE.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last_error = Some(e),
                Err(e) => bail!(
                    "--bdev: cannot attach {} to {}: {e}; check that the loop module is loaded (modprobe loop)",
                    backing.display(),
                    path.display()
                ),
            }
        }
        bail!(
            "--bdev: every free loop device was taken by another process first ({}); try again",
            last_error.map_or_else(String::new, |e| e.to_string())
        )
    }

    /// `/dev/loopN`.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the backing file is accessed with direct I/O (not cached
    /// twice).
    pub(crate) fn direct_io(&self) -> bool {
        self.direct_io
    }
}

/// `/sys/block/loopN/loop`, present while the device is attached.
fn sysfs_loop_dir(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?;
    Some(Path::new("/sys/block").join(name).join("loop"))
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // With auto-clear set and this the last opener, the device is
        // detached when `file` closes; LOOP_CLR_FD says so explicitly and
        // reports a failure. The device can be busy for a moment after the
        // jobs' last close.
        let Some(file) = self.file.take() else {
            return;
        };
        let mut result = Ok(());
        for _ in 0..50 {
            result = sys::loop_clear(&file);
            match &result {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => break,
            }
        }
        drop(file);
        if let Err(e) = result
            && e.raw_os_error() != Some(libc::ENXIO)
        {
            eprintln!(
                "warning: could not detach {}: {e}; run `losetup -d {}`",
                self.path.display(),
                self.path.display()
            );
            return;
        }
        // The kernel detaches after the close; wait for it (bounded) so the
        // device is free when the run ends.
        if let Some(dir) = sysfs_loop_dir(&self.path) {
            for _ in 0..100 {
                if !dir.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// The loop devices whose backing file is in one of this run's temporary
/// directories (`/sys/block/loopN/loop/backing_file`).
fn run_devices() -> Vec<PathBuf> {
    let prefix = super::leftovers::temp_prefix();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter(|e| {
            std::fs::read_to_string(e.path().join("loop/backing_file")).is_ok_and(|back| {
                Path::new(back.trim_end())
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with(&prefix))
            })
        })
        .map(|e| Path::new("/dev").join(e.file_name()))
        .collect()
}

/// After the job process is gone: waits (bounded) until the loop devices
/// over this run's files cleared themselves, and detaches any that did not
/// (another opener kept one).
pub(crate) fn detach_run_devices() {
    for round in 0..100 {
        let devices = run_devices();
        if devices.is_empty() {
            return;
        }
        if round >= 50 {
            for dev in &devices {
                Undo::DetachLoop(dev.clone()).run();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for dev in run_devices() {
        eprintln!(
            "warning: {} is still attached to a file of this run; run `losetup -d {}`",
            dev.display(),
            dev.display()
        );
    }
}
