//! `--memcg SIZE`: runs the benchmark inside a memory cgroup of that limit,
//! the memory-pressure setup of the dontcache series' cover letters (writes
//! in a 244 MB memcg).
//!
//! 1. Where: cgroup v2 if a cgroup2 hierarchy offers the `memory`
//!    controller (the cgroup is made at its root, `.../endio-bench-PID`,
//!    with `memory` enabled in the root's `cgroup.subtree_control`), else
//!    the cgroup v1 `memory` hierarchy (the cgroup is made below the
//!    process's current memory cgroup, so limits above it still apply).
//! 2. The process that cleans up (the one the user started) makes the
//!    cgroup and writes its limit (`memory.max`, v1
//!    `memory.limit_in_bytes`); the jobs run in a child process that moves
//!    itself in between fork and exec ([`super::supervise`]), so every
//!    thread it starts (the completer's workers, the io_uring reapers and
//!    io-wq workers) is in the cgroup, and an OOM kill there takes the
//!    jobs, never the process that reports it and cleans up.
//! 3. [`Memcg`] is a guard in that outer process: dropped (at the end, on
//!    an error, after the first signal) it removes the directory, which the
//!    job process left by exiting; a second signal does the same from the
//!    signal thread ([`super::interrupt`]). The name carries the outer
//!    process's pid, so a later run can remove it if a SIGKILL left it
//!    ([`super::leftovers`]).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::interrupt::{self, Registration, Undo};
use super::units::fmt_bytes;

/// Which cgroup interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Version {
    /// The unified hierarchy.
    V2,
    /// The legacy `memory` hierarchy.
    V1,
}

/// One line of `/proc/self/mountinfo`, the fields used here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The path inside the filesystem that is mounted (the cgroup at the
    /// mount point).
    root: String,
    mount_point: PathBuf,
    fstype: String,
    super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 6 || right.len() < 3 {
                return None;
            }
            Some(Mount {
                root: unescape(left[3]),
                mount_point: PathBuf::from(unescape(left[4])),
                fstype: right[0].to_owned(),
                super_options: right[2].to_owned(),
            })
        })
        .collect()
}

/// The process's cgroup path in the v2 hierarchy (`0::/path`), and in the
/// v1 hierarchy that has `controller`, from `/proc/self/cgroup`.
fn parse_proc_cgroup(text: &str, controller: &str) -> (Option<String>, Option<String>) {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == controller) {
            v1 = Some(path.to_owned());
        }
    }
    (v2, v1)
}

/// `mount_point` joined with the part of `cgroup` below the mount's root.
fn cgroup_dir(mount: &Mount, cgroup: &str) -> PathBuf {
    let root = mount.root.trim_end_matches('/');
    let rel = cgroup.strip_prefix(root).unwrap_or(cgroup);
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rel)
    }
}

/// Where the benchmark's cgroup goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    version: Version,
    /// The directory the cgroup is made in.
    parent: PathBuf,
    /// The `cgroup.procs` of the process's cgroup now, to return to.
    home_procs: PathBuf,
}

/// Chooses v2 or v1 from the process's mounts and cgroups;
/// `controllers(dir)` reads `dir/cgroup.controllers` of a cgroup2 mount.
fn plan(
    mountinfo: &str,
    proc_cgroup: &str,
    controllers: impl Fn(&Path) -> Option<String>,
) -> Result<Plan, String> {
    let mounts = parse_mountinfo(mountinfo);
    let (v2_path, v1_path) = parse_proc_cgroup(proc_cgroup, "memory");
    let mut seen = Vec::new();
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
        let has_memory = controllers(&m.mount_point)
            .is_some_and(|c| c.split_whitespace().any(|c| c == "memory"));
        if has_memory {
            let home = cgroup_dir(m, v2_path.as_deref().unwrap_or("/"));
            return Ok(Plan {
                version: Version::V2,
                parent: m.mount_point.clone(),
                home_procs: home.join("cgroup.procs"),
            });
        }
        seen.push(format!(
            "cgroup v2 at {} has no memory controller (it is bound to a v1 hierarchy or disabled)",
            m.mount_point.display()
        ));
    }
    let v1 = mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"));
    match (v1, v1_path) {
        (Some(m), Some(path)) => {
            let home = cgroup_dir(m, &path);
            Ok(Plan {
                version: Version::V1,
                parent: home.clone(),
                home_procs: home.join("cgroup.procs"),
            })
        }
        (Some(m), None) => Err(format!(
            "the cgroup v1 memory hierarchy at {} does not list this process in /proc/self/cgroup",
            m.mount_point.display()
        )),
        (None, _) => {
            seen.push("no cgroup v1 memory hierarchy is mounted".into());
            Err(seen.join("; "))
        }
    }
}

/// What the cgroup saw, for the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemcgReport {
    /// The cgroup's directory.
    pub(crate) path: PathBuf,
    /// v1 or v2.
    pub(crate) version: Version,
    /// The limit.
    pub(crate) limit_bytes: u64,
    /// The most memory it was charged (`memory.peak`, v1
    /// `memory.max_usage_in_bytes`), if the kernel tells.
    pub(crate) peak_bytes: Option<u64>,
    /// Times the limit was hit (`memory.events` `max`, v1
    /// `memory.failcnt`).
    pub(crate) limit_hits: Option<u64>,
    /// cgroup v2: every counter of `memory.events` (`low`, `high`, `max`,
    /// `oom`, `oom_kill`, ...); v1: `failcnt` and `memory.oom_control`'s
    /// `oom_kill`. Counted from the cgroup's creation, which is the run's.
    pub(crate) events: BTreeMap<String, u64>,
    /// What reclaim did during the run: the growth of the [`STAT_KEYS`]
    /// counters of `memory.stat` that the kernel has, from when the job
    /// process joined the cgroup to the report. cgroup v2 has `pgscan`
    /// and `pgsteal` (pages scanned and reclaimed), `workingset_refault_*`
    /// (pages read again soon after reclaim took them); v1 has no
    /// `pgscan`/`pgsteal`, its `pgpgout` counts uncharge events, one per
    /// folio of any size (reclaimed, dropped or truncated), not pages.
    pub(crate) stat_delta: BTreeMap<String, u64>,
}

/// The `memory.stat` counters (monotonic) whose growth the report gives;
/// each only where the kernel has it.
pub(crate) const STAT_KEYS: [&str; 14] = [
    "pgscan",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgsteal",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_file",
    "pgactivate",
    "pgdeactivate",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
];

/// The smallest `--memcg` the jobs run in at the default `--bs` and
/// `--iodepth`, without and with `--bdev` (whose loop device charges its
/// backing-file I/O to the cgroup too); the kernel OOM-kills them below.
/// Measured on cgroup v1, Linux 6.18, 2 CPUs busy with other builds, with
/// `endio bench [--bdev] --memcg SIZE --no-plot` (the embedded default,
/// 1 GiB): the first sizes that passed three runs in a row were 44M and
/// 64M (36M and 49M passed once, then failed), rounded up to 48M and 64M.
/// Dirty pages that writeback has not cleaned yet cannot be reclaimed, so
/// the need grows with a slower disk; the jobs' buffers (`--iodepth` x
/// `--bs`, 16 MiB by default) are a large part, so larger ones need more.
pub(crate) const MIN_BYTES: u64 = 48 << 20;
/// See [`MIN_BYTES`].
pub(crate) const MIN_BDEV_BYTES: u64 = 64 << 20;

/// The smallest `--memcg` for the jobs, with or without `--bdev`.
pub(crate) fn min_bytes(bdev: bool) -> u64 {
    if bdev { MIN_BDEV_BYTES } else { MIN_BYTES }
}

/// Below this no job can even start (the process itself needs memory).
const FLOOR_BYTES: u64 = 16 << 20;

/// A memory cgroup: its directory and how to read it.
#[derive(Debug, Clone)]
pub(crate) struct Cgroup {
    dir: PathBuf,
    version: Version,
    limit: u64,
    /// The [`STAT_KEYS`] counters when this process joined.
    stat_start: BTreeMap<String, u64>,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Every `key value` line of a flat keyed file whose value is a number.
fn read_keys(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .map(|text| parse_keys(&text))
        .unwrap_or_default()
}

fn parse_keys(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The [`STAT_KEYS`] counters of `memory.stat` in `dir`.
fn read_stat(dir: &Path) -> BTreeMap<String, u64> {
    let mut all = read_keys(&dir.join("memory.stat"));
    all.retain(|k, _| STAT_KEYS.contains(&k.as_str()));
    all
}

/// Growth of each counter in `end` over `start` (absent in `start`: from 0).
fn delta(start: &BTreeMap<String, u64>, end: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    end.into_iter()
        .map(|(k, v)| {
            let d = v.saturating_sub(start.get(&k).copied().unwrap_or(0));
            (k, d)
        })
        .collect()
}

/// The value of `key` in a flat keyed file (`memory.events`,
/// `memory.oom_control`).
fn read_key(path: &Path, key: &str) -> Option<u64> {
    fs::read_to_string(path).ok().and_then(|text| {
        text.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    })
}

impl Cgroup {
    /// The cgroup at `dir` that this process was started in (the job
    /// process), with `limit`.
    pub(crate) fn joined(dir: &Path, limit: u64) -> Cgroup {
        let version = if dir.join("memory.max").exists() {
            Version::V2
        } else {
            Version::V1
        };
        Cgroup {
            dir: dir.to_owned(),
            version,
            limit,
            stat_start: read_stat(dir),
        }
    }

    /// Its directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the cgroup saw so far.
    pub(crate) fn report(&self) -> MemcgReport {
        let (peak, hits) = match self.version {
            Version::V2 => (
                read_u64(&self.dir.join("memory.peak")),
                read_key(&self.dir.join("memory.events"), "max"),
            ),
            Version::V1 => (
                read_u64(&self.dir.join("memory.max_usage_in_bytes")),
                read_u64(&self.dir.join("memory.failcnt")),
            ),
        };
        let events = match self.version {
            Version::V2 => read_keys(&self.dir.join("memory.events")),
            Version::V1 => {
                let mut e = BTreeMap::new();
                if let Some(n) = read_u64(&self.dir.join("memory.failcnt")) {
                    e.insert("failcnt".to_owned(), n);
                }
                if let Some(n) = read_key(&self.dir.join("memory.oom_control"), "oom_kill") {
                    e.insert("oom_kill".to_owned(), n);
                }
                e
            }
        };
        MemcgReport {
            path: self.dir.clone(),
            version: self.version,
            limit_bytes: self.limit,
            peak_bytes: peak,
            limit_hits: hits,
            events,
            stat_delta: delta(&self.stat_start, read_stat(&self.dir)),
        }
    }

    /// Processes the OOM killer killed in it.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        read_key(&self.dir.join(file), "oom_kill").unwrap_or(0)
    }
}

/// Where this process makes its memory cgroups, if a memory controller is
/// available.
pub(crate) fn parent_dir() -> Option<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let proc_cgroup = fs::read_to_string("/proc/self/cgroup").ok()?;
    plan(&mountinfo, &proc_cgroup, |dir| {
        fs::read_to_string(dir.join("cgroup.controllers")).ok()
    })
    .ok()
    .map(|p| p.parent)
}

/// The name of the memory cgroup of the run that process `pid` owns.
pub(crate) fn name_of(pid: u32) -> String {
    format!("endio-bench-{pid}")
}

/// The benchmark's memory cgroup, made by the process that cleans up (not
/// the one that runs the jobs); removed when dropped. See the module docs.
#[derive(Debug)]
pub(crate) struct Memcg {
    cgroup: Cgroup,
    _registration: Registration,
}

impl Memcg {
    /// Makes the cgroup with `limit` bytes, empty.
    pub(crate) fn create(limit: u64, bdev: bool) -> anyhow::Result<Memcg> {
        let uid = rustix::process::geteuid();
        if !uid.is_root() {
            bail!(
                "--memcg needs root: creating a memory cgroup ({} limit) and moving a process into it is not allowed for uid {}; run as root (e.g. with sudo) or drop --memcg",
                fmt_bytes(limit),
                uid.as_raw()
            );
        }
        if limit < FLOOR_BYTES {
            bail!(
                "--memcg {}: the limit is too small to run in (the benchmark needs at least {} with the default --bs and --iodepth); give --memcg {}M or more, e.g. --memcg 256M",
                fmt_bytes(limit),
                fmt_bytes(min_bytes(bdev)),
                min_bytes(bdev) >> 20
            );
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").context(
            "cannot read /proc/self/mountinfo to find the cgroup hierarchies; is /proc mounted?",
        )?;
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup")
            .context("cannot read /proc/self/cgroup; is this kernel built with cgroups?")?;
        let plan = plan(&mountinfo, &proc_cgroup, |dir| {
            fs::read_to_string(dir.join("cgroup.controllers")).ok()
        })
        .map_err(|why| {
            anyhow::anyhow!(
                "--memcg: no memory cgroup controller is available: {why}; enable one (boot with cgroup_enable=memory, or mount it: mount -t cgroup -o memory none /sys/fs/cgroup/memory) or drop --memcg"
            )
        })?;
        if plan.version == Version::V2 {
            let control = plan.parent.join("cgroup.subtree_control");
            let enabled = fs::read_to_string(&control)
                .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
            if !enabled {
                write(&control, "+memory").with_context(|| {
                    format!(
                        "--memcg: cannot enable the memory controller for child cgroups in {}; enable it there (echo +memory > {}) or drop --memcg",
                        control.display(),
                        control.display()
                    )
                })?;
            }
        }
        let dir = plan.parent.join(name_of(std::process::id()));
        if dir.exists() {
            // Left by an earlier process with the same pid that was killed.
            let _ = fs::remove_dir(&dir);
        }
        // Registered first: the signal thread removes it from here on.
        let registration = interrupt::register(Undo::RemoveCgroup(dir.clone()));
        fs::create_dir(&dir).with_context(|| {
            format!(
                "--memcg: cannot create the memory cgroup {}; check that {} is writable (root, not a read-only cgroupfs in a container) or drop --memcg",
                dir.display(),
                plan.parent.display()
            )
        })?;
        let memcg = Memcg {
            cgroup: Cgroup {
                dir,
                version: plan.version,
                limit,
                stat_start: BTreeMap::new(),
            },
            _registration: registration,
        };
        let limit_file = match memcg.cgroup.version {
            Version::V2 => "memory.max",
            Version::V1 => "memory.limit_in_bytes",
        };
        write(&memcg.cgroup.dir.join(limit_file), &limit.to_string()).with_context(|| {
            format!(
                "--memcg: cannot set {} of {} to {limit}",
                limit_file,
                memcg.cgroup.dir.display()
            )
        })?;
        Ok(memcg)
    }

    /// The cgroup.
    pub(crate) fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }
}

impl Drop for Memcg {
    fn drop(&mut self) {
        let dir = &self.cgroup.dir;
        if let Err(e) = interrupt::remove_cgroup(dir) {
            eprintln!(
                "warning: cannot remove the memory cgroup {}: {e}; remove it with `rmdir {}` once no process is in it",
                dir.display(),
                dir.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
30 1 253:0 / / rw,relatime - ext4 /dev/vda rw
40 24 0:35 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
41 40 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
45 40 0:40 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
46 40 0:41 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
";

    const HYBRID_CGROUP: &str = "\
5:cpu:/
4:memory:/jobs/abc
0::/
";

    #[test]
    fn hybrid_without_v2_memory_uses_v1_below_the_current_cgroup() {
        let p = plan(HYBRID, HYBRID_CGROUP, |_| Some(String::new())).unwrap();
        assert_eq!(p.version, Version::V1);
        assert_eq!(p.parent, Path::new("/sys/fs/cgroup/memory/jobs/abc"));
        assert_eq!(
            p.home_procs,
            Path::new("/sys/fs/cgroup/memory/jobs/abc/cgroup.procs")
        );
    }

    #[test]
    fn unified_with_memory_uses_v2_at_its_root() {
        let mounts = "35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let cg = "0::/user.slice/session-1.scope\n";
        let p = plan(mounts, cg, |d| {
            assert_eq!(d, Path::new("/sys/fs/cgroup"));
            Some("cpuset cpu io memory pids\n".into())
        })
        .unwrap();
        assert_eq!(p.version, Version::V2);
        assert_eq!(p.parent, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            p.home_procs,
            Path::new("/sys/fs/cgroup/user.slice/session-1.scope/cgroup.procs")
        );
    }

    #[test]
    fn no_memory_controller_is_explained() {
        let mounts = "41 40 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let e = plan(mounts, "0::/\n", |_| Some("pids".into())).unwrap_err();
        assert!(e.contains("no memory controller"), "{e}");
        assert!(e.contains("no cgroup v1 memory hierarchy"), "{e}");
    }

    #[test]
    fn a_mount_of_a_subtree_maps_paths_below_its_root() {
        let mounts = "45 40 0:40 /jobs /mnt/mem rw - cgroup cgroup rw,memory\n";
        let p = plan(mounts, "4:memory:/jobs/abc\n", |_| None).unwrap();
        assert_eq!(p.parent, Path::new("/mnt/mem/abc"));
    }

    #[test]
    fn stat_deltas_keep_the_reclaim_counters() {
        let start = parse_keys("pgscan 10\npgsteal 4\nfile 999\n");
        let mut end =
            parse_keys("pgscan 25\npgsteal 4\nfile 5\nworkingset_refault_file 3\nbad x\n");
        end.retain(|k, _| STAT_KEYS.contains(&k.as_str()));
        let d = delta(&start, end);
        assert_eq!(d.get("pgscan"), Some(&15));
        assert_eq!(d.get("pgsteal"), Some(&0));
        assert_eq!(d.get("workingset_refault_file"), Some(&3));
        assert!(!d.contains_key("file") && !d.contains_key("bad"));
    }

    #[test]
    fn mountinfo_escapes_and_junk() {
        let m = parse_mountinfo("1 2 0:1 / /a\\040b rw - cgroup2 none rw\nnonsense\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, Path::new("/a b"));
    }
}
