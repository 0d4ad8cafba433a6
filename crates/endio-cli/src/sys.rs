//! Platform code of the command: the loop-device ioctls (`loop(4)`) and the
//! process calls the benchmark's cleanup needs. Logic elsewhere calls these
//! and never `ioctl` or `libc` directly.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// `LOOP_SET_FD`.
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
/// `LOOP_CLR_FD`.
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
/// `LOOP_SET_STATUS64`.
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
/// `LOOP_GET_STATUS64`.
const LOOP_GET_STATUS64: libc::c_ulong = 0x4C05;
/// `LOOP_CONFIGURE` (Linux 5.8): attach and set the flags in one step.
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
/// `LOOP_CTL_GET_FREE`, on `/dev/loop-control`.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

/// `LO_FLAGS_AUTOCLEAR`: the kernel detaches the device at its last close.
pub(crate) const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// `LO_FLAGS_DIRECT_IO`: the backing file is accessed with direct I/O.
pub(crate) const LO_FLAGS_DIRECT_IO: u32 = 16;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn zeroed_info() -> LoopInfo64 {
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// The number of a free loop device (`LOOP_CTL_GET_FREE`, which adds one if
/// none is free).
pub(crate) fn loop_get_free(control: &File) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument; the fd is open for the
    // duration of the call.
    let n = check(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) })?;
    u32::try_from(n).map_err(|_| io::Error::other("LOOP_CTL_GET_FREE returned a negative number"))
}

/// Attaches `backing` to the loop device `dev` with `flags` in one step
/// (`LOOP_CONFIGURE`).
pub(crate) fn loop_configure(dev: &File, backing: &File, flags: u32) -> io::Result<()> {
    let fd = u32::try_from(backing.as_raw_fd()).map_err(|_| io::Error::other("negative fd"))?;
    let mut info = zeroed_info();
    info.lo_flags = flags;
    let config = LoopConfig {
        fd,
        block_size: 0,
        info,
        reserved: [0; 8],
    };
    // SAFETY: 1. `config` is a valid `struct loop_config`, which the kernel
    // only reads, and lives across the call; 2. both fds are open.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &raw const config) })?;
    Ok(())
}

/// Attaches `backing` to `dev` (`LOOP_SET_FD`), then sets `flags`
/// (`LOOP_SET_STATUS64`): for kernels without `LOOP_CONFIGURE`.
pub(crate) fn loop_set_fd_and_flags(dev: &File, backing: &File, flags: u32) -> io::Result<()> {
    // SAFETY: LOOP_SET_FD takes the backing fd by value; both fds are open.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) })?;
    let mut info = loop_status(dev)?;
    info.lo_flags |= flags;
    // SAFETY: `info` is a valid `struct loop_info64` the kernel only reads,
    // alive across the call; the fd is open.
    let set = check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_STATUS64, &raw const info) });
    if let Err(e) = set {
        let _ = loop_clear(dev);
        return Err(e);
    }
    Ok(())
}

fn loop_status(dev: &File) -> io::Result<LoopInfo64> {
    let mut info = zeroed_info();
    // SAFETY: `info` is a valid, writable `struct loop_info64` that lives
    // across the call; the fd is open.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_GET_STATUS64, &raw mut info) })?;
    Ok(info)
}

/// The `LO_FLAGS_*` of an attached loop device.
pub(crate) fn loop_flags(dev: &File) -> io::Result<u32> {
    Ok(loop_status(dev)?.lo_flags)
}

/// Detaches the loop device (`LOOP_CLR_FD`; with auto-clear set and the
/// device still open elsewhere, the kernel detaches it at the last close).
pub(crate) fn loop_clear(dev: &File) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is open.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD) })?;
    Ok(())
}

/// A `cgroup.procs` path opened before a fork, so that the child can move
/// itself in between fork and exec with async-signal-safe calls only.
#[derive(Debug)]
pub(crate) struct ProcsFile(CString);

impl ProcsFile {
    /// `dir/cgroup.procs`.
    pub(crate) fn new(dir: &Path) -> io::Result<ProcsFile> {
        use std::os::unix::ffi::OsStrExt as _;
        let path = dir.join("cgroup.procs");
        CString::new(path.as_os_str().as_bytes())
            .map(ProcsFile)
            .map_err(|_| io::Error::other("a cgroup path with a NUL byte"))
    }

    /// In the child after `fork`: moves the calling process into the cgroup
    /// (writing `0` names the writer) and asks for SIGKILL when the parent
    /// dies, so no job outlives the process that cleans up after it. Only
    /// async-signal-safe system calls; no allocation.
    pub(crate) fn enter_in_child(&self, parent: rustix::process::Pid) -> io::Result<()> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        // The parent died before the line above: it will not clean up.
        if rustix::process::getppid() != Some(parent) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        let fd = rustix::fs::open(
            self.0.as_c_str(),
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        rustix::io::write(&fd, b"0")?;
        Ok(())
    }
}

/// Sends `signal` to `pid`, ignoring a process that is already gone.
pub(crate) fn send_signal(pid: u32, signal: i32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let Some(signal) = rustix::process::Signal::from_named_raw(signal) else {
        return;
    };
    let _ = rustix::process::kill_process(pid, signal);
}
