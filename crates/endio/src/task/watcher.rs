//! The hotplug watcher: follows the machine's CPU online/offline events and
//! drives the lifecycle.
//!
//! Kernel uevents (netlink, `NETLINK_KOBJECT_UEVENT`) say *when* to look;
//! `/sys/devices/system/cpu/online` says *what* is online. The watcher
//! re-reads the list on every CPU uevent and, as the fallback (no netlink in
//! a sandbox, or an overflowed socket that lost events), every poll period
//! anyway. It reacts to changes of that list only, so lifecycle calls made
//! through the API are left alone until the machine itself changes.
//!
//! Userspace learns of an offline after the fact: the CPU is gone by the
//! time the list changes. So the watcher runs `cpu_down_prep` and `cpu_dead`
//! back to back; bios completed on that CPU in between waited in its batch
//! and are run by `cpu_dead`. A rolled-back offline never shows in the list
//! (the CPU stayed online), so the watcher has nothing to do for it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::error::HotplugError;
use super::protocol::Shared;
use super::worker;
use crate::sync::{Arc, thread};
use crate::sys;
use crate::sys::hotplug::UeventSocket;

/// How often the online list is read when no uevent says so; also the
/// longest the watcher takes to notice shutdown.
const POLL: Duration = Duration::from_millis(50);

/// Starts the watcher thread; `online` is the list the completer was
/// started with, so a change that happens before the thread runs is seen.
pub(crate) fn start(
    shared: &Arc<Shared>,
    sysfs_root: PathBuf,
    online: Vec<usize>,
) -> std::io::Result<()> {
    let known = online.into_iter().collect();
    worker::spawn(shared, "endio-hotplug".to_owned(), move |s| {
        watch(&s, &sysfs_root, known)
    })
    .map(|_| ())
}

fn watch(shared: &Arc<Shared>, sysfs_root: &std::path::Path, mut known: BTreeSet<usize>) {
    let socket = match UeventSocket::open(POLL) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::info!(error = %e, "no kernel uevents for CPU hotplug; polling {}/devices/system/cpu/online every {POLL:?}", sysfs_root.display());
            None
        }
    };
    let read = || -> Option<BTreeSet<usize>> {
        match sys::read_cpu_list(sysfs_root, "online") {
            Ok(cpus) => Some(cpus.into_iter().collect()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the online CPU list; hotplug events are missed until it reads again");
                None
            }
        }
    };
    while !shared.is_shut_down() {
        match &socket {
            // Any event or the timeout: look at the list either way.
            Some(socket) => {
                if let Err(e) = socket.next() {
                    tracing::debug!(error = %e, "uevent socket error; relying on polling");
                    thread::park_timeout(POLL);
                }
            }
            None => thread::park_timeout(POLL),
        }
        let Some(now) = read() else { continue };
        if now != known {
            reconcile(shared, &known, &now);
            known = now;
        }
    }
}

/// Drives the lifecycle from the old online list to the new one.
fn reconcile(shared: &Arc<Shared>, old: &BTreeSet<usize>, new: &BTreeSet<usize>) {
    for &cpu in new.difference(old) {
        if cpu < shared.cpus.len() {
            tracing::debug!(cpu, "CPU came online");
            if let Err(e) = worker::cpu_online(shared, cpu, true) {
                tracing::error!(cpu, error = %e, "cannot bring the CPU's endio worker online");
            }
        }
    }
    for &cpu in old.difference(new) {
        if cpu >= shared.cpus.len() {
            continue;
        }
        tracing::debug!(cpu, "CPU went offline");
        match shared.cpu_down_prep(cpu) {
            // Taken down through the API already: nothing to do.
            Err(HotplugError::NotOnline { .. }) => {}
            Err(e) => {
                tracing::warn!(cpu, error = %e, "cannot take the CPU's endio worker down; its bios still complete")
            }
            Ok(()) => {
                if let Err(e) = shared.cpu_dead(cpu) {
                    tracing::error!(cpu, error = %e, "cannot drain the dead CPU's batch");
                }
            }
        }
    }
}
