//! Direct I/O of a device whose completion interrupts land on some CPUs is
//! issued on those CPUs' rings, so its deferred handlers run on their
//! workers; without steering they run on the submitting CPU's.

mod common;

use std::sync::mpsc;

use common::io_target::disk_dir;
use endio::{Backend, Bio, BioFlags, Completer, Device, Engine, OpenOptions};

fn engine(steer: bool) -> (Completer, Engine) {
    let completer = Completer::builder().build().expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Uring)
        .steer_direct_io(steer)
        .build()
        .expect("io_uring engine");
    (completer, engine)
}

/// Reads the first `n` blocks of `dev` from a thread pinned to `cpu`, each
/// handler deferred to task context; returns the CPUs the handlers ran on.
fn handler_cpus(dev: &Device, cpu: usize, n: u64) -> Vec<usize> {
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            common::pin(cpu);
            let bs = dev.logical_block_size() as usize;
            for i in 0..n {
                let tx = tx.clone();
                let bio = Bio::read(i * bs as u64, dev.buf(bs), move |ended| {
                    assert!(ended.result().is_ok(), "{:?}", ended.result());
                    tx.send(endio::testing::current_cpu()).unwrap();
                })
                .with_flags(BioFlags::COMPLETE_IN_TASK);
                dev.submit(bio).unwrap();
                dev.drain();
            }
        });
    });
    drop(tx);
    let cpus: Vec<usize> = rx.iter().collect();
    assert_eq!(cpus.len() as u64, n, "every handler ran");
    cpus
}

#[test]
fn direct_io_completes_on_the_cpus_that_take_the_disks_interrupts() {
    if let Err(e) = endio::testing::probe_io_uring(std::path::Path::new("/proc")) {
        eprintln!("skipped: {e}");
        return;
    }
    let dir = disk_dir();
    let path = dir.path().join("steer.dat");
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let open = |engine: &Engine, direct: bool| {
        engine
            .open(&path, OpenOptions::new().read(true).direct(direct))
            .expect("open")
    };
    let (_c, steered) = engine(true);
    let (_c2, unsteered) = engine(false);
    assert_eq!(open(&unsteered, true).steered_cpus(), None, "steering off");
    assert_eq!(
        open(&steered, false).steered_cpus(),
        None,
        "buffered I/O is not steered"
    );
    let dev = open(&steered, true);
    let Some(cpus) = dev.steered_cpus() else {
        eprintln!(
            "skipped: the interrupts of the disk under {} reach every CPU, or it has none of its own; nothing is steered",
            dir.path().display()
        );
        return;
    };
    let Some(other) = handlers_run_on_steered_cpus(&dev, &cpus) else {
        return;
    };
    // The control: unsteered, the handlers run on the submitting CPU's worker.
    let dev = open(&unsteered, true);
    let seen = handler_cpus(&dev, other, 64);
    assert!(
        seen.iter().all(|&c| c == other),
        "unsteered, submitted from CPU {other}: handlers ran on {seen:?}"
    );
}

/// A loop device has no interrupt of its own: it is steered like the disk
/// under its backing file, and its deferred handlers run there too.
#[test]
fn a_loop_device_is_steered_like_the_disk_under_its_backing_file() {
    if let Err(e) = endio::testing::probe_io_uring(std::path::Path::new("/proc")) {
        eprintln!("skipped: {e}");
        return;
    }
    let Some(lo) = common::io_target::loop_device_or_skip(
        "a_loop_device_is_steered_like_the_disk_under_its_backing_file",
        1 << 20,
        None,
    ) else {
        return;
    };
    let (_c, steered) = engine(true);
    let dir = disk_dir();
    let path = dir.path().join("beside-the-backing-file.dat");
    std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
    let direct = OpenOptions::new().read(true).direct(true);
    let disk_cpus = steered
        .open(&path, direct)
        .expect("open file")
        .steered_cpus();
    let dev = steered.open(lo.path(), direct).expect("open loop device");
    assert_eq!(
        dev.steered_cpus(),
        disk_cpus,
        "{} over a file in {}",
        lo.path().display(),
        dir.path().display()
    );
    let Some(cpus) = disk_cpus else {
        eprintln!("skipped the handler check: the disk under the backing file is not steered");
        return;
    };
    handlers_run_on_steered_cpus(&dev, &cpus);
}

/// Submits 64 deferred reads from an online CPU outside `cpus` and checks
/// that their handlers ran on `cpus`; returns that CPU, or `None` (after
/// saying so) when every online CPU is one of `cpus`.
fn handlers_run_on_steered_cpus(dev: &Device, cpus: &[usize]) -> Option<usize> {
    let online = parse_list(&std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap());
    let Some(&other) = online.iter().find(|c| !cpus.contains(c)) else {
        eprintln!("skipped the handler check: every online CPU takes the disk's interrupts");
        return None;
    };
    let seen = handler_cpus(dev, other, 64);
    assert!(
        seen.iter().all(|c| cpus.contains(c)),
        "submitted from CPU {other}, steered to {cpus:?}; handlers ran on {seen:?}"
    );
    Some(other)
}

fn parse_list(list: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for item in list.trim().split(',') {
        match item.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => out.push(item.parse().unwrap()),
        }
    }
    out
}
