//! Real CPU hotplug of this machine under load (as blktests block/008 does):
//! every hot-pluggable CPU goes offline and back every 0.2 s for a few
//! seconds, and every third offline is forced to fail and roll back through
//! `cpuN/hotplug/fail`. The completer's watcher drives the lifecycle from the
//! kernel's events. Nothing may be lost or run twice. Needs root and a
//! writable `/sys/devices/system/cpu/cpu1/online`; says why it skips
//! otherwise. Every CPU is brought back online by a guard, also on failure.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Tally, wait_idle};
use endio::testing::hotplug::{self, OnlineGuard};
use endio::{Completer, context};

const SECONDS: u64 = 3;
const BIOS_PER_PRODUCER: usize = 15_000_000;
const INFLIGHT: u64 = 4096;

fn skip_reason(sysfs: &Path) -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    let online = sysfs.join("devices/system/cpu/cpu1/online");
    if std::fs::OpenOptions::new()
        .write(true)
        .open(&online)
        .is_err()
    {
        return Some(format!(
            "{} is not writable (no hot-pluggable CPU 1)",
            online.display()
        ));
    }
    None
}

#[test]
fn nothing_is_lost_under_real_hotplug_with_rollbacks() {
    let sysfs = Path::new("/sys");
    if let Some(why) = skip_reason(sysfs) {
        eprintln!("skipped: real CPU hotplug test: {why}");
        return;
    }
    let guard = OnlineGuard::new(sysfs).unwrap();
    guard.restore().unwrap();
    let completer = Completer::builder().build().unwrap();
    let cpus = completer.online_cpus();
    let tally = Tally::new(BIOS_PER_PRODUCER * cpus.len());
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| {
            let (completer, tally, stop, completed) = (
                completer.clone(),
                tally.clone(),
                stop.clone(),
                completed.clone(),
            );
            std::thread::spawn(move || {
                // Pinned while the CPU lives; the kernel moves us when it dies.
                let _ = endio::testing::pin_current_thread(cpu);
                let mut issued = 0u64;
                for n in 0..BIOS_PER_PRODUCER {
                    if stop.load(Ordering::Relaxed) {
                        return issued;
                    }
                    while issued - completed.load(Ordering::Relaxed).min(issued) > INFLIGHT {
                        std::thread::yield_now();
                    }
                    let completed = completed.clone();
                    let bio = tally.bio_then(i * BIOS_PER_PRODUCER + n, move || {
                        completed.fetch_add(1, Ordering::Relaxed);
                    });
                    let _atomic = context::atomic();
                    completer.endio(bio);
                    issued += 1;
                }
                issued
            })
        })
        .collect();

    let (mut offlines, mut rollbacks) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut round = 0u32;
    while Instant::now() < deadline {
        for &cpu in guard.cpus() {
            round += 1;
            if round.is_multiple_of(3) {
                hotplug::inject_rollback(sysfs, cpu).unwrap();
                if hotplug::set_cpu_online(sysfs, cpu, false).is_err() {
                    rollbacks += 1;
                } else {
                    offlines += 1;
                }
                hotplug::clear_fail(sysfs, cpu).unwrap();
            } else {
                hotplug::set_cpu_online(sysfs, cpu, false).unwrap();
                offlines += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
            guard.restore().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let issued: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    // Let the watcher see the last online, then the workers finish.
    std::thread::sleep(Duration::from_millis(300));
    wait_idle(&completer);

    let s = completer.stats().total;
    eprintln!(
        "real hotplug: {issued} bios, {offlines} offlines, {rollbacks} rolled back; completer saw \
         down_preps={} deads={} onlines={} drained={} redirected={} repins={} rescues={}",
        s.down_preps, s.deads, s.onlines, s.drained, s.redirected, s.repins, s.rescues
    );
    assert_eq!(s.deferred, issued);
    assert_eq!(s.handlers, issued);
    assert_eq!(completed.load(Ordering::Relaxed), issued);
    let ran = tally.ran() as u64;
    assert_eq!(
        (ran, tally.duplicated()),
        (issued, 0),
        "handlers that ran (lost), ran twice"
    );
    assert!(
        offlines > 0 && rollbacks > 0,
        "offlines={offlines} rollbacks={rollbacks}"
    );
    assert!(
        s.deads > 0 && s.onlines > 0,
        "the watcher did not follow the hotplug: {s:?}"
    );
    assert_eq!(
        completer.online_cpus(),
        cpus,
        "every CPU is back online in the completer"
    );
}
