//! Faults for `endio stress`: handlers that panic or stall, API-driven CPU
//! hotplug churn, and real CPU hotplug of the machine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, bail};
use endio::Completer;
use endio::testing::hotplug::{self, OnlineGuard};
use serde::Serialize;

use crate::interrupt;

/// splitmix64: a fast, well-mixed hash; the fault decisions are a pure
/// function of the bio id and the seed, so a run can be repeated.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Whether event number `n` of stream `stream` happens, with probability
/// `p`.
pub(crate) fn happens(p: f64, stream: u64, n: u64) -> bool {
    let unit = (mix(n ^ stream.rotate_left(32)) >> 11) as f64 / (1u64 << 53) as f64;
    p > 0.0 && unit < p
}

/// What a handler does besides counting itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandlerFaults {
    pub(crate) panic_p: f64,
    pub(crate) stall_p: f64,
    /// How long a stalling handler sleeps (past the stall timeout).
    pub(crate) stall: Duration,
    pub(crate) seed: u64,
}

/// The message of an injected panic; the panic hook stays quiet about it.
pub(crate) const INJECTED_PANIC: &str = "endio stress: injected handler panic";

impl HandlerFaults {
    /// Runs the faults of bio `id` (after it counted itself).
    pub(crate) fn inject(&self, id: u64) {
        if happens(self.stall_p, self.seed ^ 0x57A1, id) {
            thread::sleep(self.stall);
        }
        if happens(self.panic_p, self.seed ^ 0xBA21C, id) {
            std::panic::panic_any(INJECTED_PANIC);
        }
    }

    pub(crate) fn any(&self) -> bool {
        self.panic_p > 0.0 || self.stall_p > 0.0
    }
}

/// Keeps the default panic message for real panics and drops it for the
/// injected ones (thousands of them would flood the terminal).
pub(crate) fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&INJECTED_PANIC) {
            default(info);
        }
    }));
}

/// Counts of lifecycle transitions a churn thread made.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Transitions {
    /// Offlines completed (down_prep + dead, or a real offline).
    pub(crate) offlines: u64,
    /// Rolled-back offlines.
    pub(crate) rollbacks: u64,
    /// Onlines.
    pub(crate) onlines: u64,
}

#[derive(Debug, Default)]
struct Counters {
    offlines: AtomicU64,
    rollbacks: AtomicU64,
    onlines: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Transitions {
        Transitions {
            offlines: self.offlines.load(Relaxed),
            rollbacks: self.rollbacks.load(Relaxed),
            onlines: self.onlines.load(Relaxed),
        }
    }
}

/// A background thread that changes CPU states until stopped.
#[derive(Debug)]
pub(crate) struct Churn {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<thread::JoinHandle<anyhow::Result<()>>>,
}

impl Churn {
    /// API-driven churn: every 1-4 ms a random CPU goes offline
    /// (down_prep + dead), has an offline rolled back (down_prep + online),
    /// or an offline CPU comes back.
    pub(crate) fn api(completer: &Completer, seed: u64) -> anyhow::Result<Churn> {
        let completer = completer.clone();
        let all: Vec<usize> = completer.online_cpus();
        Churn::start("endio-stress-churn", move |stop, counters| {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                n += 1;
                let r = mix(seed ^ n);
                thread::sleep(Duration::from_micros(1000 + r % 3000));
                let online = completer.online_cpus();
                let offline: Vec<usize> = all
                    .iter()
                    .copied()
                    .filter(|c| !online.contains(c))
                    .collect();
                let pick = |set: &[usize]| set[((r >> 16) % set.len() as u64) as usize];
                match (r >> 8) % 3 {
                    0 if online.len() > 1 => {
                        let cpu = pick(&online);
                        completer.cpu_down_prep(cpu)?;
                        completer.cpu_dead(cpu)?;
                        counters.offlines.fetch_add(1, Relaxed);
                    }
                    1 if online.len() > 1 => {
                        let cpu = pick(&online);
                        completer.cpu_down_prep(cpu)?;
                        // Completions keep landing on it meanwhile.
                        thread::sleep(Duration::from_micros(200));
                        completer.cpu_online(cpu)?;
                        counters.rollbacks.fetch_add(1, Relaxed);
                    }
                    _ if !offline.is_empty() => {
                        completer.cpu_online(pick(&offline))?;
                        counters.onlines.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
            for cpu in all {
                if !completer.online_cpus().contains(&cpu) {
                    completer.cpu_online(cpu)?;
                    counters.onlines.fetch_add(1, Relaxed);
                }
            }
            Ok(())
        })
    }

    /// Real CPU hotplug (root): every hot-pluggable CPU goes offline and
    /// back every 0.2 s, as blktests block/008 does; every third offline is
    /// made to fail and roll back through `cpuN/hotplug/fail`. Every CPU is
    /// brought back online when the churn stops, also on failure.
    pub(crate) fn real(sysfs_root: &Path) -> anyhow::Result<Churn> {
        let guard = OnlineGuard::new(sysfs_root).context("cannot list the hot-pluggable CPUs")?;
        if guard.cpus().is_empty() {
            bail!(
                "no CPU can be taken offline here: no writable {}/devices/system/cpu/cpuN/online \
                 (needs root and a machine with hot-pluggable CPUs)",
                sysfs_root.display()
            );
        }
        let root = sysfs_root.to_owned();
        Churn::start("endio-stress-hotplug", move |stop, counters| {
            let guard = guard;
            let mut round = 0u64;
            while !stop.load(Relaxed) {
                for &cpu in guard.cpus() {
                    round += 1;
                    // Through the record of CPUs taken offline, so that a
                    // signal brings them back; `None`: it did, stop.
                    let went_offline = interrupt::offline_cpu(&root, cpu, || {
                        if round.is_multiple_of(3) {
                            hotplug::inject_rollback(&root, cpu)?;
                            let offline = hotplug::set_cpu_online(&root, cpu, false).is_ok();
                            hotplug::clear_fail(&root, cpu)?;
                            // Refused: rolled back. Accepted: the injection
                            // did not fire, a real offline.
                            Ok(offline)
                        } else {
                            hotplug::set_cpu_online(&root, cpu, false)?;
                            Ok(true)
                        }
                    })?;
                    let Some(went_offline) = went_offline else {
                        return Ok(());
                    };
                    let counter = if went_offline {
                        &counters.offlines
                    } else {
                        &counters.rollbacks
                    };
                    counter.fetch_add(1, Relaxed);
                    thread::sleep(Duration::from_millis(100));
                    if went_offline {
                        guard.restore()?;
                        interrupt::cpus_restored();
                        counters.onlines.fetch_add(1, Relaxed);
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
            Ok(())
        })
    }

    fn start(
        name: &str,
        body: impl FnOnce(&AtomicBool, &Counters) -> anyhow::Result<()> + Send + 'static,
    ) -> anyhow::Result<Churn> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = {
            let (stop, counters) = (stop.clone(), counters.clone());
            thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || body(&stop, &counters))
                .context("cannot start the hotplug churn thread")?
        };
        Ok(Churn {
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// Stops the churn (every CPU is online again afterwards) and returns
    /// its counts.
    pub(crate) fn stop(mut self) -> anyhow::Result<Transitions> {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| anyhow::anyhow!("the hotplug churn thread panicked"))??;
        }
        Ok(self.counters.snapshot())
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_decisions_follow_the_probability() {
        let n = 1_000_000;
        let hits = (0..n).filter(|&i| happens(0.001, 42, i)).count();
        assert!((800..1200).contains(&hits), "{hits}");
        assert_eq!((0..n).filter(|&i| happens(0.0, 42, i)).count(), 0);
        assert_eq!((0..1000).filter(|&i| happens(1.0, 42, i)).count(), 1000);
        // Same seed, same decisions.
        assert!((0..n).all(|i| happens(0.01, 7, i) == happens(0.01, 7, i)));
    }
}
