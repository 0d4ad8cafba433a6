//! Is io_uring usable here? The probe, and what to tell the user when not.
//!
//! io_uring can be missing for four reasons, each with its own fix: a kernel
//! built without it (`ENOSYS`), the `kernel.io_uring_disabled` sysctl (`2`:
//! off for everyone; `1`: only for members of `kernel.io_uring_group` and
//! `CAP_SYS_ADMIN`), a seccomp filter of a container runtime (`EPERM` or
//! `ENOSYS` with the sysctl at `0`), and a locked-memory limit too small for
//! the rings (`ENOMEM`). The engine falls back to its thread pool and says
//! which one it was, once.

use std::fmt;
use std::path::Path;

use io_uring::{IoUring, Probe, opcode};

/// Why io_uring cannot be used, and what would make it usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringUnavailable {
    /// The error number of the failed call, if a call failed.
    pub errno: Option<i32>,
    /// What is wrong.
    pub cause: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for UringUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "io_uring is unavailable: {}; {}", self.cause, self.fix)
    }
}

impl std::error::Error for UringUnavailable {}

/// The value of `kernel.io_uring_disabled` under `proc_root` (normally
/// `/proc`), or `None` if the kernel has no such sysctl (before 6.6) or it
/// cannot be read.
pub fn read_io_uring_disabled(proc_root: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(proc_root.join("sys/kernel/io_uring_disabled")).ok()?;
    text.trim().parse().ok()
}

/// The opcodes the engine issues, with the kernel that added them.
const NEEDED_OPCODES: [(u8, &str); 5] = [
    (opcode::Nop::CODE, "NOP"),
    (opcode::Read::CODE, "READ (Linux 5.6)"),
    (opcode::Write::CODE, "WRITE (Linux 5.6)"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];

/// Checks that io_uring can be set up and supports the operations the
/// engine issues. `proc_root` is where procfs is mounted (normally `/proc`).
pub fn probe_io_uring(proc_root: &Path) -> Result<(), UringUnavailable> {
    let disabled = read_io_uring_disabled(proc_root);
    if disabled == Some(2) {
        // The kernel refuses every io_uring_setup(2) with EPERM; say why
        // without asking it.
        return Err(diagnose_uring_error(Some(libc::EPERM), disabled));
    }
    let ring = IoUring::new(4).map_err(|e| diagnose_uring_error(e.raw_os_error(), disabled))?;
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        return Err(UringUnavailable {
            errno: e.raw_os_error(),
            cause: format!("the kernel cannot list its io_uring operations ({e})"),
            fix: "use a kernel of Linux 5.6 or later".to_owned(),
        });
    }
    let missing: Vec<&str> = NEEDED_OPCODES
        .iter()
        .filter(|(code, _)| !probe.is_supported(*code))
        .map(|&(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return Err(UringUnavailable {
            errno: None,
            cause: format!(
                "the kernel's io_uring lacks the operations {}",
                missing.join(", ")
            ),
            fix: "use a kernel of Linux 5.6 or later".to_owned(),
        });
    }
    Ok(())
}

/// What a failed `io_uring_setup(2)` with `errno` means, given the value of
/// `kernel.io_uring_disabled` (`None`: no such sysctl).
pub fn diagnose_uring_error(errno: Option<i32>, disabled: Option<u32>) -> UringUnavailable {
    let (cause, fix) = match (errno, disabled) {
        (Some(libc::EPERM), Some(2)) => (
            "the sysctl kernel.io_uring_disabled is 2 (io_uring is off for every process)"
                .to_owned(),
            "run `sysctl -w kernel.io_uring_disabled=0` as root".to_owned(),
        ),
        (Some(libc::EPERM), Some(1)) => (
            "the sysctl kernel.io_uring_disabled is 1 and this process is neither in the group \
             kernel.io_uring_group nor privileged"
                .to_owned(),
            "add the user to the group named by `sysctl kernel.io_uring_group`, or run \
             `sysctl -w kernel.io_uring_disabled=0` as root"
                .to_owned(),
        ),
        (Some(libc::EPERM), _) => (
            "io_uring_setup(2) is denied (EPERM) although the kernel allows io_uring: a seccomp \
             filter (a container runtime's default profile) blocks it"
                .to_owned(),
            "allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile \
             (e.g. docker run --security-opt seccomp=<profile>)"
                .to_owned(),
        ),
        (Some(libc::ENOSYS), _) => (
            "io_uring_setup(2) does not exist (ENOSYS): the kernel is built without \
             CONFIG_IO_URING, or a seccomp filter hides it"
                .to_owned(),
            "use a kernel with CONFIG_IO_URING=y, or allow the io_uring system calls in the \
             seccomp profile"
                .to_owned(),
        ),
        (Some(libc::ENOMEM), _) => (
            "the rings do not fit in the locked-memory limit (ENOMEM)".to_owned(),
            "raise RLIMIT_MEMLOCK (ulimit -l), or lower EngineBuilder::queue_depth".to_owned(),
        ),
        (Some(errno), _) => (
            format!(
                "io_uring_setup(2) failed: {}",
                std::io::Error::from_raw_os_error(errno)
            ),
            "check the kernel log; set ENDIO_BACKEND=threads to silence this".to_owned(),
        ),
        (None, _) => (
            "io_uring_setup(2) failed without an error number".to_owned(),
            "set ENDIO_BACKEND=threads to silence this".to_owned(),
        ),
    };
    UringUnavailable { errno, cause, fix }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;

    #[test]
    fn each_cause_names_its_fix() {
        let off = diagnose_uring_error(Some(libc::EPERM), Some(2));
        assert!(off.to_string().contains("io_uring_disabled=0"), "{off}");
        let group = diagnose_uring_error(Some(libc::EPERM), Some(1));
        assert!(group.to_string().contains("io_uring_group"), "{group}");
        let seccomp = diagnose_uring_error(Some(libc::EPERM), Some(0));
        assert!(seccomp.to_string().contains("seccomp"), "{seccomp}");
        let nosys = diagnose_uring_error(Some(libc::ENOSYS), None);
        assert!(nosys.to_string().contains("CONFIG_IO_URING"), "{nosys}");
        let nomem = diagnose_uring_error(Some(libc::ENOMEM), Some(0));
        assert!(nomem.to_string().contains("ulimit -l"), "{nomem}");
    }

    #[test]
    fn the_sysctl_is_read_below_the_given_root() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read_io_uring_disabled(root.path()), None);
        std::fs::create_dir_all(root.path().join("sys/kernel")).unwrap();
        std::fs::write(root.path().join("sys/kernel/io_uring_disabled"), "2\n").unwrap();
        assert_eq!(read_io_uring_disabled(root.path()), Some(2));
        let e = probe_io_uring(root.path()).unwrap_err();
        assert_eq!(e.errno, Some(libc::EPERM));
        assert!(e.to_string().contains("io_uring_disabled=0"), "{e}");
    }

    #[test]
    fn this_kernel_has_io_uring_unless_the_sysctl_says_no() {
        match probe_io_uring(Path::new("/proc")) {
            Ok(()) => {}
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
}
