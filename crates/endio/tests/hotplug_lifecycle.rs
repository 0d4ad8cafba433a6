//! The per-CPU lifecycle driven through the API: a rolled-back offline
//! requeues (nothing is stranded by a rolled-back offline), `cpu_dead` drains in its caller, later completions
//! on a dead CPU go elsewhere, `cpu_down_prep` waits for a running drain, and
//! misuse gets errors that name the fix, and `cpu_dead` runs the rest of an
//! interrupted batch before what was queued behind it. Also the hotplug watcher, on a fake
//! sysfs tree.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{Tally, pin, wait_idle};
use endio::{Completed, Completer, HotplugError, context};

/// A completer without the watcher (the machine's real hotplug must not
/// interfere) and without rescue, on a machine with at least two CPUs.
fn completer() -> Option<Completer> {
    let c = Completer::builder()
        .hotplug_watcher(false)
        .stall_timeout(None)
        .build()
        .unwrap();
    if c.online_cpus().len() < 2 {
        eprintln!(
            "skipped: needs two online CPUs, this machine has {:?}",
            c.online_cpus()
        );
        return None;
    }
    Some(c)
}

/// A completer whose batches gather for 100 ms (so that bios deferred
/// together make one batch), without the watcher and without rescue, on a
/// machine with at least two CPUs.
fn slow_batching_completer() -> Option<Completer> {
    let completer = Completer::builder()
        .batching(endio::Batching::Fixed(Duration::from_millis(100)))
        .hotplug_watcher(false)
        .stall_timeout(None)
        .build()
        .unwrap();
    if completer.online_cpus().len() < 2 {
        eprintln!("skipped: needs two online CPUs");
        return None;
    }
    Some(completer)
}

/// Once CPU 1's worker is inside a handler that waits on `release`
/// (`entered` says so): `cpu_down_prep(1)` from another thread, then the
/// handler released, so the drain stops at that handler's boundary.
fn down_prep_cpu1_while_blocked(
    completer: &Completer,
    entered: &mpsc::Receiver<()>,
    release: &mpsc::Sender<()>,
) {
    entered.recv_timeout(Duration::from_secs(30)).unwrap();
    let down = {
        let completer = completer.clone();
        std::thread::spawn(move || completer.cpu_down_prep(1).unwrap())
    };
    // down_prep has disabled the work (it counts that before it waits).
    while completer.stats().total.down_preps == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    release.send(()).unwrap();
    down.join().unwrap();
}

fn defer_on(completer: &Completer, tally: &Tally, ids: std::ops::Range<usize>) -> Vec<Completed> {
    let _atomic = context::atomic();
    ids.map(|id| completer.endio(tally.bio(id))).collect()
}

#[test]
fn a_rolled_back_offline_requeues_what_arrived_meanwhile() {
    let Some(completer) = completer() else { return };
    pin(1);
    completer.cpu_down_prep(1).unwrap();
    let tally = Tally::new(2);
    // A finds the list empty (its wakeup finds the work disabled), B finds
    // it non-empty: exactly the v6 sequence that stranded both.
    let done = defer_on(&completer, &tally, 0..2);
    assert_eq!(done, vec![Completed::Deferred { cpu: 1 }; 2]);
    let s = completer.stats().total;
    assert_eq!(
        (s.deferred, s.handlers),
        (2, 0),
        "the work is disabled: {s:?}"
    );

    completer.cpu_online(1).unwrap(); // the rollback
    wait_idle(&completer);
    tally.assert_each_ran_once();
    let s = completer.stats().total;
    assert_eq!(
        (s.rollbacks, s.requeued_on_online, s.deads),
        (1, 1, 0),
        "{s:?}"
    );
}

#[test]
fn dead_drains_in_the_caller_and_later_completions_go_elsewhere() {
    let Some(completer) = completer() else { return };
    pin(1);
    completer.cpu_down_prep(1).unwrap();
    let caller = std::thread::current().id();
    let (tx, rx) = mpsc::channel();
    {
        let _atomic = context::atomic();
        for _ in 0..100 {
            let tx = tx.clone();
            let bio = endio::Bio::nop(move |_| {
                tx.send((std::thread::current().id(), context::draining_cpu()))
                    .unwrap();
            })
            .with_flags(endio::BioFlags::COMPLETE_IN_TASK);
            assert_eq!(completer.endio(bio), Completed::Deferred { cpu: 1 });
        }
    }
    assert_eq!(completer.cpu_dead(1).unwrap(), 100);
    drop(tx);
    let ran: Vec<_> = rx.iter().collect();
    assert_eq!(ran.len(), 100);
    assert!(
        ran.iter().all(|&(t, cpu)| t == caller && cpu == Some(1)),
        "{ran:?}"
    );

    // This thread still runs on CPU 1 (API-driven offline), but CPU 1's
    // batch is closed: its completions go to CPU 0.
    let tally = Tally::new(10);
    let done = defer_on(&completer, &tally, 0..10);
    assert!(
        done.iter().all(|d| *d == Completed::Deferred { cpu: 0 }),
        "{done:?}"
    );
    wait_idle(&completer);
    tally.assert_each_ran_once();

    completer.cpu_online(1).unwrap();
    let tally = Tally::new(10);
    let done = defer_on(&completer, &tally, 0..10);
    assert!(
        done.iter().all(|d| *d == Completed::Deferred { cpu: 1 }),
        "{done:?}"
    );
    wait_idle(&completer);
    tally.assert_each_ran_once();
    let s = completer.stats().total;
    assert_eq!(
        (s.down_preps, s.deads, s.onlines, s.drained, s.redirected),
        (1, 1, 1, 100, 10),
        "{s:?}"
    );
}

#[test]
fn down_prep_waits_for_the_running_drain() {
    let Some(completer) = completer() else { return };
    pin(1);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let tally = Tally::new(1);
    let bio = {
        let finished = finished.clone();
        tally.bio_then(0, move || {
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            finished.store(true, Ordering::SeqCst);
        })
    };
    {
        let _atomic = context::atomic();
        completer.endio(bio);
    }
    entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let down = {
        let (completer, finished) = (completer.clone(), finished.clone());
        std::thread::spawn(move || {
            completer.cpu_down_prep(1).unwrap();
            // disable_delayed_work_sync: the running handler has finished.
            finished.load(Ordering::SeqCst)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    assert!(
        !down.is_finished(),
        "down_prep returned while a drain was running"
    );
    release_tx.send(()).unwrap();
    assert!(down.join().unwrap());
    completer.cpu_online(1).unwrap();
    wait_idle(&completer);
}

#[test]
fn misuse_is_refused_with_the_fix() {
    let Some(completer) = completer() else { return };
    let e = completer.cpu_dead(1).unwrap_err();
    assert!(matches!(e, HotplugError::NotDownPrepared { cpu: 1 }));
    assert!(e.to_string().contains("cpu_down_prep(1)"), "{e}");

    completer.cpu_down_prep(1).unwrap();
    let e = completer.cpu_down_prep(1).unwrap_err();
    assert!(e.to_string().contains("cpu_online(1)"), "{e}");
    let e = completer.cpu_down_prep(0).unwrap_err();
    assert!(matches!(e, HotplugError::LastCpu { cpu: 0 }), "{e}");
    assert!(e.to_string().contains("last online CPU"), "{e}");
    completer.cpu_online(1).unwrap();
    completer.cpu_online(1).unwrap(); // already online: nothing to do

    let e = completer.cpu_online(100_000).unwrap_err();
    assert!(e.to_string().contains("not a possible CPU"), "{e}");
}

#[test]
fn the_watcher_follows_the_online_list() {
    let root = std::env::temp_dir().join(format!("endio-watch-{}", std::process::id()));
    let dir = root.join("devices/system/cpu");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("possible"), "0-1\n").unwrap();
    std::fs::write(dir.join("online"), "0-1\n").unwrap();
    let completer = Completer::builder()
        .sysfs_root(&root)
        .pin_workers(false)
        .build()
        .unwrap();
    assert_eq!(completer.online_cpus(), vec![0, 1]);
    let until = |want: Vec<usize>| {
        for _ in 0..200 {
            if completer.online_cpus() == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "the watcher did not reach {want:?}: {:?}",
            completer.online_cpus()
        );
    };
    std::fs::write(dir.join("online"), "0\n").unwrap();
    until(vec![0]);
    std::fs::write(dir.join("online"), "0-1\n").unwrap();
    until(vec![0, 1]);
    let s = completer.stats().total;
    assert_eq!((s.down_preps, s.deads, s.onlines), (1, 1, 1), "{s:?}");
    drop(completer);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Found by the shuttle tests: a down_prep that stops a worker between two
/// handlers of one batch leaves the rest of the batch taken but not run, and
/// the queue empty. After the rollback the worker must run that rest, not
/// park because the queue looks empty.
#[test]
fn a_rollback_runs_the_rest_of_an_interrupted_batch() {
    let Some(completer) = slow_batching_completer() else {
        return;
    };
    pin(1);
    let tally = Tally::new(11);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    {
        let _atomic = context::atomic();
        // All eleven land within the 100 ms batching delay: one batch.
        completer.endio(tally.bio_then(0, move || {
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        }));
        for id in 1..11 {
            completer.endio(tally.bio(id));
        }
    }
    down_prep_cpu1_while_blocked(&completer, &entered_rx, &release_tx);
    assert_eq!(tally.ran(), 1, "the worker stopped at the handler boundary");
    completer.cpu_online(1).unwrap();
    wait_idle(&completer);
    tally.assert_each_ran_once();
}

#[test]
fn dead_runs_an_interrupted_batch_before_what_was_queued_behind_it() {
    let Some(completer) = slow_batching_completer() else {
        return;
    };
    pin(1);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let logged = |id: usize| {
        let order = Arc::clone(&order);
        endio::Bio::nop(move |_| order.lock().unwrap().push(id))
            .with_flags(endio::BioFlags::COMPLETE_IN_TASK)
    };
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    {
        let _atomic = context::atomic();
        // One batch: 0 blocks the worker, 1..6 wait behind it.
        let first = Arc::clone(&order);
        completer.endio(
            endio::Bio::nop(move |_| {
                first.lock().unwrap().push(0);
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
            })
            .with_flags(endio::BioFlags::COMPLETE_IN_TASK),
        );
        for id in 1..6 {
            completer.endio(logged(id));
        }
    }
    down_prep_cpu1_while_blocked(&completer, &entered_rx, &release_tx);
    // The interrupted batch holds 1..6; these wait in the still open queue.
    {
        let _atomic = context::atomic();
        for id in 6..11 {
            assert_eq!(completer.endio(logged(id)), Completed::Deferred { cpu: 1 });
        }
    }
    assert_eq!(completer.cpu_dead(1).unwrap(), 10);
    assert_eq!(*order.lock().unwrap(), (0..11).collect::<Vec<_>>());
    completer.cpu_online(1).unwrap();
}
