//! Which CPUs take a block device's completion interrupts.
//!
//! A device with fewer hardware queues than CPUs (a virtio disk with one
//! queue, a SATA disk) raises its completion interrupt on the CPUs of its
//! interrupts' affinity. An I/O submitted from another CPU completes there
//! first, and the thread waiting for it is woken across CPUs (an
//! inter-processor interrupt, which a virtual machine pays for with an
//! exit). The kernel tells which CPUs those are: the block device's sysfs
//! directory leads to its bus device, whose `msi_irqs` (or `irq`) names the
//! interrupts, and `/proc/irq/N/effective_affinity_list` where each is
//! delivered now.
//!
//! A stacked device has no interrupt of its own: a loop device's I/O
//! completes where the device under its backing file completes it, a
//! device-mapper target's where the devices it maps to do. So a loop device
//! takes the interrupts of the disk under `loop/backing_file`, and a device
//! with `slaves/` those of the devices listed there.
//!
//! Both roots are parameters, so the walk is tested on fake trees.

use std::path::Path;

use super::cpulist::parse_cpu_list;

/// The CPUs that take the interrupts of the device behind block device
/// number `major:minor` (a partition counts as its disk): the union of the
/// current affinity of each interrupt of its bus device, sorted; for a
/// stacked device (loop, device mapper), those of the devices under it.
/// `None` when no device down the stack has an interrupt of its own (a
/// loop device over a file on tmpfs, zram) or sysfs or procfs do not say.
///
/// The affinity is read once, now: an interrupt moved later (by
/// `irqbalance`, or a CPU going offline) is not followed.
pub fn interrupt_cpus(
    sysfs_root: &Path,
    proc_root: &Path,
    major: u32,
    minor: u32,
) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    collect_cpus(sysfs_root, proc_root, major, minor, 0, &mut cpus);
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
}

/// Devices stacked deeper than this are not followed (a loop device over a
/// file on a loop device over ... ends here, as does a cycle).
const STACK_DEPTH_MAX: u32 = 8;

/// Adds the CPUs of `major:minor`'s interrupts, or of the devices under it,
/// to `cpus`.
fn collect_cpus(
    sysfs_root: &Path,
    proc_root: &Path,
    major: u32,
    minor: u32,
    depth: u32,
    cpus: &mut Vec<usize>,
) {
    let link = sysfs_root.join(format!("dev/block/{major}:{minor}"));
    let Ok(mut dir) = std::fs::canonicalize(link) else {
        return;
    };
    if dir.join("partition").exists() {
        dir.pop();
    }
    if let Some(irqs) = bus_irqs(sysfs_root, &dir) {
        for irq in irqs {
            let base = proc_root.join(format!("irq/{irq}"));
            let text = std::fs::read_to_string(base.join("effective_affinity_list"))
                .or_else(|_| std::fs::read_to_string(base.join("smp_affinity_list")));
            if let Some(list) = text.ok().and_then(|t| parse_cpu_list(&t).ok()) {
                cpus.extend(list);
            }
        }
        return;
    }
    if depth >= STACK_DEPTH_MAX {
        return;
    }
    for (major, minor) in lower_devices(&dir) {
        collect_cpus(sysfs_root, proc_root, major, minor, depth + 1, cpus);
    }
}

/// The interrupts of the bus device above the block device directory
/// `dir`: the first directory up the tree, below `devices/`, that has any.
fn bus_irqs(sysfs_root: &Path, dir: &Path) -> Option<Vec<u32>> {
    let devices = std::fs::canonicalize(sysfs_root.join("devices")).ok()?;
    let mut dir = dir.to_path_buf();
    loop {
        if let Some(irqs) = device_irqs(&dir) {
            return Some(irqs);
        }
        if !dir.pop() || !dir.starts_with(&devices) || dir == devices {
            return None;
        }
    }
}

/// The devices a stacked block device's I/O goes to: the device holding a
/// loop device's backing file (the file system's, or the block device
/// itself), and the entries of `slaves/` (device mapper, md).
fn lower_devices(dir: &Path) -> Vec<(u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut lower = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("loop/backing_file")) {
        let path = text.trim_end_matches('\n');
        let path = path.strip_suffix(" (deleted)").unwrap_or(path);
        if let Ok(meta) = std::fs::metadata(path) {
            let dev = if meta.file_type().is_block_device() {
                meta.rdev()
            } else {
                meta.dev()
            };
            lower.push((rustix::fs::major(dev), rustix::fs::minor(dev)));
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("slaves")) {
        for entry in entries.filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path().join("dev")) else {
                continue;
            };
            if let Some((major, minor)) = text.trim().split_once(':')
                && let (Ok(major), Ok(minor)) = (major.parse(), minor.parse())
            {
                lower.push((major, minor));
            }
        }
    }
    lower
}

/// The interrupts of one sysfs device directory: the entries of
/// `msi_irqs/`, else its legacy `irq` (0 means none).
fn device_irqs(dir: &Path) -> Option<Vec<u32>> {
    if let Ok(entries) = std::fs::read_dir(dir.join("msi_irqs")) {
        let irqs: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        if !irqs.is_empty() {
            return Some(irqs);
        }
    }
    let text = std::fs::read_to_string(dir.join("irq")).ok()?;
    let irq: u32 = text.trim().parse().ok()?;
    (irq != 0).then(|| vec![irq])
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake sysfs and procfs: a PCI device with two MSI interrupts
    /// (affinities `a` and `b`), a disk `vda` under it with a partition,
    /// and a loop device with no bus device.
    fn tree(a: &str, b: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let pci = root.join("sys/devices/pci0000:00/0000:00:02.0");
        let disk = pci.join("virtio1/block/vda");
        fs::create_dir_all(disk.join("vda1")).unwrap();
        fs::write(disk.join("vda1/partition"), "1\n").unwrap();
        fs::create_dir_all(pci.join("msi_irqs")).unwrap();
        for irq in ["35", "36"] {
            fs::write(pci.join("msi_irqs").join(irq), "msix\n").unwrap();
        }
        fs::write(pci.join("irq"), "11\n").unwrap();
        let lo = root.join("sys/devices/virtual/block/loop0");
        fs::create_dir_all(&lo).unwrap();
        fs::create_dir_all(root.join("sys/dev/block")).unwrap();
        symlink(&disk, root.join("sys/dev/block/254:0")).unwrap();
        symlink(disk.join("vda1"), root.join("sys/dev/block/254:1")).unwrap();
        symlink(&lo, root.join("sys/dev/block/7:0")).unwrap();
        for (irq, list) in [("35", a), ("36", b)] {
            let d = root.join("proc/irq").join(irq);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("effective_affinity_list"), format!("{list}\n")).unwrap();
        }
        t
    }

    fn cpus(t: &tempfile::TempDir, major: u32, minor: u32) -> Option<Vec<usize>> {
        interrupt_cpus(&t.path().join("sys"), &t.path().join("proc"), major, minor)
    }

    #[test]
    fn a_disk_and_its_partition_name_their_bus_devices_interrupts() {
        let t = tree("1", "1");
        assert_eq!(cpus(&t, 254, 0), Some(vec![1]));
        assert_eq!(cpus(&t, 254, 1), Some(vec![1]));
        let t = tree("0", "2-3");
        assert_eq!(cpus(&t, 254, 0), Some(vec![0, 2, 3]));
    }

    #[test]
    fn a_device_without_interrupts_or_an_unknown_number_has_none() {
        let t = tree("1", "1");
        assert_eq!(cpus(&t, 7, 0), None);
        assert_eq!(cpus(&t, 8, 0), None);
    }

    /// The disk of [`tree`].
    fn vda(t: &tempfile::TempDir) -> std::path::PathBuf {
        t.path()
            .join("sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda")
    }

    /// Links the device a file in `t` lives on to `target` in the fake
    /// sysfs; returns that file.
    fn file_on(t: &tempfile::TempDir, target: &Path) -> std::path::PathBuf {
        use std::os::unix::fs::MetadataExt;
        let file = t.path().join("backing.img");
        fs::write(&file, b"x").unwrap();
        let dev = fs::metadata(&file).unwrap().dev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let link = t.path().join(format!("sys/dev/block/{major}:{minor}"));
        let _ = fs::remove_file(&link);
        symlink(target, link).unwrap();
        file
    }

    #[test]
    fn a_loop_device_takes_the_interrupts_of_the_disk_under_its_backing_file() {
        let t = tree("1", "1");
        let disk = vda(&t);
        let file = file_on(&t, &disk);
        let lo = t.path().join("sys/devices/virtual/block/loop0");
        fs::create_dir_all(lo.join("loop")).unwrap();
        fs::write(
            lo.join("loop/backing_file"),
            format!("{}\n", file.display()),
        )
        .unwrap();
        assert_eq!(cpus(&t, 7, 0), Some(vec![1]));
        // Deleted while attached: the kernel says so after the path.
        fs::write(
            lo.join("loop/backing_file"),
            format!("{} (deleted)\n", file.display()),
        )
        .unwrap();
        assert_eq!(cpus(&t, 7, 0), Some(vec![1]));
    }

    #[test]
    fn a_mapped_device_takes_the_interrupts_of_its_slaves() {
        let t = tree("0", "1");
        let disk = vda(&t);
        fs::write(disk.join("dev"), "254:0\n").unwrap();
        let dm = t.path().join("sys/devices/virtual/block/dm-0");
        fs::create_dir_all(dm.join("slaves")).unwrap();
        symlink(&disk, dm.join("slaves/vda")).unwrap();
        // A slave without interrupts adds nothing.
        let lo = t.path().join("sys/devices/virtual/block/loop0");
        fs::write(lo.join("dev"), "7:0\n").unwrap();
        symlink(&lo, dm.join("slaves/loop0")).unwrap();
        symlink(&dm, t.path().join("sys/dev/block/252:0")).unwrap();
        assert_eq!(cpus(&t, 252, 0), Some(vec![0, 1]));
    }

    #[test]
    fn a_stack_with_no_interrupt_or_a_cycle_has_none() {
        let t = tree("1", "1");
        let lo = t.path().join("sys/devices/virtual/block/loop0");
        fs::create_dir_all(lo.join("loop")).unwrap();
        // The backing file's device is the loop device itself: a cycle,
        // cut at the depth bound.
        let file = file_on(&t, &lo);
        fs::write(
            lo.join("loop/backing_file"),
            format!("{}\n", file.display()),
        )
        .unwrap();
        assert_eq!(cpus(&t, 7, 0), None);
        // A backing file that no longer exists.
        fs::write(lo.join("loop/backing_file"), "/nonexistent/endio\n").unwrap();
        assert_eq!(cpus(&t, 7, 0), None);
    }

    #[test]
    fn the_legacy_irq_serves_without_msi_and_smp_affinity_without_effective() {
        let t = tree("1", "1");
        let pci = t.path().join("sys/devices/pci0000:00/0000:00:02.0");
        fs::remove_dir_all(pci.join("msi_irqs")).unwrap();
        let d = t.path().join("proc/irq/11");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("smp_affinity_list"), "0-1\n").unwrap();
        assert_eq!(cpus(&t, 254, 0), Some(vec![0, 1]));
    }

    #[test]
    fn this_machines_root_disk_if_any_has_cpus_that_exist() {
        let Ok(meta) = fs::metadata("/") else { return };
        use std::os::unix::fs::MetadataExt;
        let dev = meta.dev();
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let online = super::super::read_cpu_list(Path::new("/sys"), "possible").unwrap();
        if let Some(list) = interrupt_cpus(Path::new("/sys"), Path::new("/proc"), major, minor) {
            assert!(
                list.iter().all(|c| online.contains(c)),
                "{list:?} vs {online:?}"
            );
        }
    }
}
