//! Real CPU hotplug: kobject uevents from the kernel, and the sysfs files
//! that take CPUs offline, bring them back and inject a failure to force a
//! rolled-back offline. Every function takes the sysfs root, so tests can use
//! a fake tree.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    AddressFamily, RecvFlags, SocketType, bind, netlink, recv, socket_with,
    sockopt::{self, Timeout},
};

/// One kernel uevent, parsed: `ACTION@DEVPATH` and its `SUBSYSTEM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `online`, `offline`, `change`, ...
    pub action: String,
    /// e.g. `/devices/system/cpu/cpu1`.
    pub devpath: String,
    /// e.g. `cpu`.
    pub subsystem: Option<String>,
}

impl Uevent {
    /// The CPU number, if this is an event of a CPU device.
    pub fn cpu(&self) -> Option<usize> {
        if self.subsystem.as_deref() != Some("cpu") {
            return None;
        }
        self.devpath
            .strip_prefix("/devices/system/cpu/cpu")?
            .parse()
            .ok()
    }
}

/// Parses a kernel uevent datagram: `ACTION@DEVPATH\0KEY=VALUE\0...`.
/// `None` for anything else (udev's re-broadcasts start with `libudev`).
pub fn parse_uevent(datagram: &[u8]) -> Option<Uevent> {
    let mut fields = datagram.split(|&b| b == 0).filter(|f| !f.is_empty());
    let head = std::str::from_utf8(fields.next()?).ok()?;
    let (action, devpath) = head.split_once('@')?;
    let subsystem = fields
        .filter_map(|f| std::str::from_utf8(f).ok())
        .find_map(|f| f.strip_prefix("SUBSYSTEM="))
        .map(str::to_owned);
    Some(Uevent {
        action: action.to_owned(),
        devpath: devpath.to_owned(),
        subsystem,
    })
}

/// A netlink socket subscribed to the kernel's kobject uevents.
#[derive(Debug)]
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    /// Opens the socket; `timeout` bounds each [`UeventSocket::next`].
    pub fn open(timeout: Duration) -> io::Result<UeventSocket> {
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            rustix::net::SocketFlags::CLOEXEC,
            Some(netlink::KOBJECT_UEVENT),
        )?;
        // Group 1: the kernel's own broadcasts.
        bind(&fd, &netlink::SocketAddrNetlink::new(0, 1))?;
        sockopt::set_socket_timeout(&fd, Timeout::Recv, Some(timeout))?;
        Ok(UeventSocket { fd })
    }

    /// The next uevent, or `None` when the timeout passed first.
    pub fn next(&self) -> io::Result<Option<Uevent>> {
        let mut buf = [0u8; 8192];
        match recv(&self.fd, &mut buf, RecvFlags::empty()) {
            Ok((n, _)) => Ok(parse_uevent(&buf[..n.min(buf.len())])),
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn cpu_dir(sysfs_root: &Path, cpu: usize) -> PathBuf {
    sysfs_root.join(format!("devices/system/cpu/cpu{cpu}"))
}

/// The CPUs that can be taken offline: those with a writable `online` file
/// (CPU 0 usually has none).
pub fn hotpluggable_cpus(sysfs_root: &Path) -> io::Result<Vec<usize>> {
    let possible = super::read_cpu_list(sysfs_root, "possible")?;
    Ok(possible
        .into_iter()
        .filter(|&cpu| {
            let path = cpu_dir(sysfs_root, cpu).join("online");
            std::fs::OpenOptions::new().write(true).open(path).is_ok()
        })
        .collect())
}

/// Takes `cpu` offline (`false`) or brings it online (`true`).
pub fn set_cpu_online(sysfs_root: &Path, cpu: usize, online: bool) -> io::Result<()> {
    let path = cpu_dir(sysfs_root, cpu).join("online");
    std::fs::write(&path, if online { "1" } else { "0" }).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot write {} to {}: {e} (needs root and a hot-pluggable CPU)",
                u8::from(online),
                path.display()
            ),
        )
    })
}

/// Names of hotplug states whose teardown can fail, so that failing them
/// rolls an offline back (the CPU stays online); tried in order.
const ROLLBACK_STATES: [&str; 3] = ["workqueue:online", "sched:active", "block/mq:online"];

/// Makes the next offline of `cpu` fail and roll back, through
/// `cpuN/hotplug/fail`. Returns the state number used. The kernel clears the
/// injection once it fired; [`clear_fail`] clears it otherwise.
pub fn inject_rollback(sysfs_root: &Path, cpu: usize) -> io::Result<u32> {
    let states_path = sysfs_root.join("devices/system/cpu/hotplug/states");
    let states = std::fs::read_to_string(&states_path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", states_path.display()),
        )
    })?;
    let fail = cpu_dir(sysfs_root, cpu).join("hotplug/fail");
    for name in ROLLBACK_STATES {
        let Some(number) = states.lines().find_map(|line| {
            let (n, s) = line.split_once(':')?;
            (s.trim() == name).then(|| n.trim().parse::<u32>().ok())?
        }) else {
            continue;
        };
        if std::fs::write(&fail, number.to_string()).is_ok() {
            return Ok(number);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "none of the hotplug states {ROLLBACK_STATES:?} in {} can be failed through {}",
            states_path.display(),
            fail.display()
        ),
    ))
}

/// Removes a failure injection on `cpu`.
pub fn clear_fail(sysfs_root: &Path, cpu: usize) -> io::Result<()> {
    std::fs::write(cpu_dir(sysfs_root, cpu).join("hotplug/fail"), "-1")
}

/// Brings every hot-pluggable CPU back online and clears failure injections
/// when dropped — also when the code that took them offline panics. Tests
/// and tools that touch real hotplug hold one.
#[derive(Debug)]
pub struct OnlineGuard {
    sysfs_root: PathBuf,
    cpus: Vec<usize>,
}

impl OnlineGuard {
    /// A guard for every hot-pluggable CPU under `sysfs_root`.
    pub fn new(sysfs_root: &Path) -> io::Result<OnlineGuard> {
        Ok(OnlineGuard {
            sysfs_root: sysfs_root.to_owned(),
            cpus: hotpluggable_cpus(sysfs_root)?,
        })
    }

    /// The CPUs it restores.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Brings every CPU back online now; the first error, after trying all.
    pub fn restore(&self) -> io::Result<()> {
        let mut first_error = None;
        for &cpu in &self.cpus {
            let _ = clear_fail(&self.sysfs_root, cpu);
            // A failed injection can make one bringup fail: try twice.
            let result = set_cpu_online(&self.sysfs_root, cpu, true)
                .or_else(|_| set_cpu_online(&self.sysfs_root, cpu, true));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for OnlineGuard {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("endio: could not bring every CPU back online: {e}");
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_uevents() {
        let e = parse_uevent(
            b"offline@/devices/system/cpu/cpu1\0ACTION=offline\0DEVPATH=/devices/system/cpu/cpu1\0SUBSYSTEM=cpu\0SEQNUM=4242\0",
        )
        .unwrap();
        assert_eq!(e.action, "offline");
        assert_eq!(e.cpu(), Some(1));
        let e = parse_uevent(b"add@/devices/virtual/block/loop3\0SUBSYSTEM=block\0").unwrap();
        assert_eq!(e.cpu(), None);
        let e = parse_uevent(b"online@/devices/system/cpu/cpu12\0SUBSYSTEM=cpu\0").unwrap();
        assert_eq!(e.cpu(), Some(12));
        // Not kernel uevents.
        assert_eq!(parse_uevent(b"libudev\0\xfe\xed"), None);
        assert_eq!(parse_uevent(b""), None);
        assert_eq!(parse_uevent(b"garbage"), None);
        let e = parse_uevent(b"online@/devices/system/cpu/cpuX\0SUBSYSTEM=cpu\0").unwrap();
        assert_eq!(e.cpu(), None);
    }

    #[test]
    fn rollback_injection_picks_a_known_state() {
        let root = std::env::temp_dir().join(format!("endio-hp-{}", std::process::id()));
        let cpu = root.join("devices/system/cpu");
        std::fs::create_dir_all(cpu.join("cpu1/hotplug")).unwrap();
        std::fs::write(cpu.join("possible"), "0-1\n").unwrap();
        std::fs::create_dir_all(cpu.join("hotplug")).unwrap();
        std::fs::write(
            cpu.join("hotplug/states"),
            "  0: offline\n187: workqueue:online\n236: online\n",
        )
        .unwrap();
        assert_eq!(inject_rollback(&root, 1).unwrap(), 187);
        assert_eq!(
            std::fs::read_to_string(cpu.join("cpu1/hotplug/fail")).unwrap(),
            "187"
        );
        std::fs::write(cpu.join("hotplug/states"), "  0: offline\n").unwrap();
        let e = inject_rollback(&root, 1).unwrap_err().to_string();
        assert!(e.contains("workqueue:online"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
