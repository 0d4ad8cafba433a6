//! `--bdev`: a loop block device over a temporary file, made with
//! `losetup` (root) and detached by its guard, also on failure and Ctrl-C.
//!
//! The device is set up with `--direct-io=on` where the kernel allows it,
//! so the backing file is not cached a second time below the block
//! device's own page cache: what the benchmark measures is the cache of the
//! block device, as on a real disk.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::interrupt::{self, Registration, Undo};

/// A loop device, detached when dropped.
#[derive(Debug)]
pub(crate) struct LoopDev {
    path: PathBuf,
    direct_io: bool,
    _registration: Registration,
}

fn losetup(args: &[&str], backing: &Path) -> anyhow::Result<Result<String, String>> {
    let out = match Command::new("losetup").args(args).arg(backing).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--bdev needs losetup, which is not installed; install util-linux (apt-get install mount) or drop --bdev"
        ),
        Err(e) => bail!("--bdev: cannot run losetup: {e}"),
    };
    Ok(if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    })
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
        let (dev, direct_io) = match losetup(&["--find", "--show", "--direct-io=on"], backing)? {
            Ok(dev) => (dev, true),
            Err(_) => match losetup(&["--find", "--show"], backing)? {
                Ok(dev) => (dev, false),
                Err(why) => bail!(
                    "--bdev: losetup --find --show {} failed: {why}; check that the loop module is loaded (modprobe loop) and /dev/loop-control exists",
                    backing.display()
                ),
            },
        };
        if dev.is_empty() {
            bail!("--bdev: losetup printed no device name");
        }
        let path = PathBuf::from(dev);
        let registration = interrupt::register(Undo::DetachLoop(path.clone()));
        let dev = LoopDev {
            path,
            direct_io,
            _registration: registration,
        };
        // udev may create the node a moment after the ioctl.
        for _ in 0..100 {
            if dev.path.exists() {
                return Ok(dev);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(anyhow::anyhow!("{} did not appear", dev.path.display()))
            .context("--bdev: the loop device node is missing")
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

impl Drop for LoopDev {
    fn drop(&mut self) {
        // The device can be busy for a moment after its last close.
        for _ in 0..100 {
            let ok = Command::new("losetup")
                .arg("-d")
                .arg(&self.path)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: could not detach {}; run `losetup -d {}`",
            self.path.display(),
            self.path.display()
        );
    }
}
