//! A block device that fails writes: a loop device over a sparse file on a
//! small ext4 filesystem that is full, so writes past what is allocated fail
//! (ENOSPC in the backing file, EIO on the loop device) — what a
//! thin-provisioned volume out of space does. With `direct_io` the loop
//! device writes the backing file with O_DIRECT (the write fails, a flush
//! succeeds); without, through the backing file's page cache.
//!
//! Everything is undone on drop, also when a test panics: the loop device
//! is detached, the filesystem unmounted (its own loop device auto-clears),
//! the directory removed.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Size of the sparse backing file: the device's size.
pub const DEVICE_BYTES: u64 = 64 << 20;

/// Bytes left free on the filesystem after filling it: writes succeed up to
/// about this much, then fail.
pub const FREE_BYTES: u64 = 3 << 20;

#[derive(Debug)]
pub struct FailingDevice {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    dev: Option<PathBuf>,
    mounted: bool,
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl FailingDevice {
    /// Makes one in `dir` (on a disk filesystem; removed on drop), or says
    /// why it cannot (not root, a tool missing).
    pub fn new(direct_io: bool, dir: tempfile::TempDir) -> Result<FailingDevice, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root (mount, losetup)".into());
        }
        for tool in ["mkfs.ext4", "losetup", "mount", "umount"] {
            if Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                return Err(format!("{tool} is not installed (e2fsprogs, mount)"));
            }
        }
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let mut me = FailingDevice {
            dir,
            mnt: mnt.clone(),
            dev: None,
            mounted: false,
        };
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(DEVICE_BYTES + (16 << 20)))
            .map_err(|e| e.to_string())?;
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0"])
            .arg(&img))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt))?;
        me.mounted = true;
        let backing = mnt.join("backing");
        std::fs::File::create(&backing)
            .and_then(|f| f.set_len(DEVICE_BYTES))
            .map_err(|e| e.to_string())?;
        // Fill the filesystem but for FREE_BYTES.
        let st = rustix::fs::statvfs(&mnt).map_err(|e| e.to_string())?;
        let free = st.f_bavail * st.f_frsize;
        let fill = free.saturating_sub(FREE_BYTES);
        run(Command::new("fallocate")
            .args(["-l", &fill.to_string()])
            .arg(mnt.join("filler")))?;
        run(&mut Command::new("sync"))?;
        let mut args = vec!["--find", "--show"];
        if direct_io {
            args.push("--direct-io=on");
        }
        let dev = run(Command::new("losetup").args(&args).arg(&backing))?;
        if dev.is_empty() {
            return Err("losetup printed no device".into());
        }
        me.dev = Some(PathBuf::from(dev));
        Ok(me)
    }

    /// Where the full filesystem is mounted.
    pub fn mount_point(&self) -> &Path {
        &self.mnt
    }

    /// The loop device.
    pub fn path(&self) -> &Path {
        self.dev.as_deref().unwrap_or(Path::new("/nonexistent"))
    }

    /// Reads the first `len` bytes the loop device holds, from its medium:
    /// the backing file (holes read as zeros). This is what reached the
    /// device, and it does not go through the loop device's own page cache,
    /// whose failed write-back would make a read of it fail.
    pub fn read_back(&self, len: u64) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(self.mnt.join("backing")).expect("open the backing file");
        let mut out = vec![0u8; len as usize];
        f.read_exact_at(&mut out, 0).expect("read the backing file");
        out
    }
}

impl Drop for FailingDevice {
    fn drop(&mut self) {
        if let Some(dev) = self.dev.take() {
            let _ = Command::new("losetup").arg("-d").arg(&dev).output();
        }
        if self.mounted {
            // Lazily if busy: the loop device's reference goes with it.
            if run(Command::new("umount").arg(&self.mnt)).is_err() {
                let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
            }
        }
    }
}
