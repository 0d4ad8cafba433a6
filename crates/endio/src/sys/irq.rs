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
//! Both roots are parameters, so the walk is tested on fake trees.

use std::path::Path;

use super::cpulist::parse_cpu_list;

/// The CPUs that take the interrupts of the device behind block device
/// number `major:minor` (a partition counts as its disk): the union of the
/// current affinity of each interrupt of its bus device, sorted. `None`
/// when the device has no interrupt of its own (a loop device, device
/// mapper, zram, a file system without a disk) or sysfs or procfs do not
/// say.
///
/// The affinity is read once, now: an interrupt moved later (by
/// `irqbalance`, or a CPU going offline) is not followed.
pub fn interrupt_cpus(
    sysfs_root: &Path,
    proc_root: &Path,
    major: u32,
    minor: u32,
) -> Option<Vec<usize>> {
    let link = sysfs_root.join(format!("dev/block/{major}:{minor}"));
    let mut dir = std::fs::canonicalize(link).ok()?;
    if dir.join("partition").exists() {
        dir.pop();
    }
    let devices = std::fs::canonicalize(sysfs_root.join("devices")).ok()?;
    let irqs = loop {
        if let Some(irqs) = device_irqs(&dir) {
            break irqs;
        }
        if !dir.pop() || !dir.starts_with(&devices) || dir == devices {
            return None;
        }
    };
    let mut cpus = Vec::new();
    for irq in irqs {
        let base = proc_root.join(format!("irq/{irq}"));
        let text = std::fs::read_to_string(base.join("effective_affinity_list"))
            .or_else(|_| std::fs::read_to_string(base.join("smp_affinity_list")));
        if let Some(list) = text.ok().and_then(|t| parse_cpu_list(&t).ok()) {
            cpus.extend(list);
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    (!cpus.is_empty()).then_some(cpus)
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
