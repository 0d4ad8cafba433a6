//! A chain of writes, each submitted after its predecessor's handler:
//! `Device::drain` followed by `Completer::wait_idle` returns before the
//! chain has ended (shown, so that this test can fail), while
//! `Group::wait` returns only after the last handler has returned, on every
//! backend.
//!
//! Two chains: a handler that hands the next write to a thread which
//! submits it after a nap (every backend), and a handler that submits the
//! next write itself on a null device whose I/O takes a nap. Both leave a
//! moment with no bio in flight and no handler queued while the chain goes
//! on, which is what `drain` and `wait_idle` look at; the group counts the
//! next write in before the handler returns.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::io_target::{backends, disk_dir, engine};
use endio::{Backend, Bio, BioFlags, Completer, Device, EndedBio, Engine, Group, OpenOptions};

/// Links in a chain, and the nap between two of them.
const LINKS: u32 = 8;
const NAP: Duration = Duration::from_millis(15);
/// The hand-off's nap where the early return is shown: long enough that
/// `drain` and `wait_idle` always look inside it, however loaded the
/// machine.
const LONG_NAP: Duration = Duration::from_millis(250);
const BLOCK: u64 = 4096;

/// How a handler starts the next write.
#[derive(Clone, Copy, Debug)]
enum Next {
    /// Hands it to a thread that naps (the duration), then submits.
    Handoff(Duration),
    /// Submits it itself (the I/O naps: a null device with latency).
    InHandler,
}

/// Submits link `i` of a chain that counts finished handlers in `done`;
/// through `group` if given, else straight to the device.
fn link(
    dev: Device,
    group: Option<Group>,
    done: Arc<AtomicU32>,
    next: Next,
    i: u32,
    buf: endio::Buf,
) {
    let (d, g) = (dev.clone(), group.clone());
    let bio = Bio::write(u64::from(i) * BLOCK, buf, move |ended: EndedBio| {
        ended.result().expect("chain write");
        if i + 1 < LINKS {
            link(d, g, Arc::clone(&done), next, i + 1, ended.into_buf());
        }
        done.fetch_add(1, Ordering::Release);
    })
    .with_flags(BioFlags::COMPLETE_IN_TASK);
    let bio = match &group {
        Some(g) => g.add(bio),
        None => bio,
    };
    match next {
        Next::InHandler => dev.submit(bio).expect("submit a link"),
        Next::Handoff(_) if i == 0 => dev.submit(bio).expect("submit a link"),
        Next::Handoff(nap) => {
            std::thread::spawn(move || {
                std::thread::sleep(nap);
                dev.submit(bio).expect("submit a link");
            });
        }
    }
}

/// The chains of this file: (completer, engine, device, how links follow),
/// the hand-offs napping `nap`.
fn chains(dir: &std::path::Path, nap: Duration) -> Vec<(Completer, Engine, Device, Next)> {
    let mut v = Vec::new();
    for backend in backends() {
        let (completer, engine) = engine(backend, 8);
        let dev = open(&engine, dir, &format!("{backend}"));
        v.push((completer, engine, dev, Next::Handoff(nap)));
    }
    let completer = Completer::builder().build().expect("completer");
    let engine = Engine::builder(completer.clone())
        .backend(Backend::Null)
        .null_latency(NAP)
        .build()
        .expect("null engine");
    let dev = open(&engine, dir, "null-latency");
    v.push((completer, engine, dev, Next::InHandler));
    v
}

fn open(engine: &Engine, dir: &std::path::Path, name: &str) -> Device {
    engine
        .open(
            dir.join(name),
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .size(1 << 20),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Waits, bounded, for a chain to end; panics if it does not.
fn let_it_end(done: &AtomicU32, what: &str) {
    for _ in 0..2000 {
        if done.load(Ordering::Acquire) == LINKS {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{what}: the chain did not end");
}

#[test]
fn drain_and_wait_idle_return_before_a_resubmitting_chain_ends() {
    let dir = disk_dir();
    for (completer, _engine, dev, next) in chains(dir.path(), LONG_NAP) {
        let what = format!("{} {next:?}", dev.backend());
        let mut early = 0;
        for _run in 0..3 {
            let done = Arc::new(AtomicU32::new(0));
            link(
                dev.clone(),
                None,
                Arc::clone(&done),
                next,
                0,
                dev.buf(BLOCK as usize),
            );
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(30)));
            if done.load(Ordering::Acquire) < LINKS {
                early += 1;
            }
            let_it_end(&done, &what);
            dev.drain();
            assert!(completer.wait_idle(Duration::from_secs(30)));
        }
        eprintln!("{what}: drain + wait_idle returned before the chain ended in {early} of 3 runs");
        // The in-handler chain shows it only when `drain` looks in the
        // instant between a completion and its handler's resubmit: a race,
        // reported. The hand-off's long nap leaves no race.
        assert!(
            early >= 1 || matches!(next, Next::InHandler),
            "{what}: drain + wait_idle never returned before the chain ended; the contrast this file shows is gone"
        );
    }
}

#[test]
fn group_wait_returns_only_after_the_last_handler_returned() {
    let dir = disk_dir();
    for (_completer, _engine, dev, next) in chains(dir.path(), NAP) {
        let what = format!("{} {next:?}", dev.backend());
        for run in 0..3 {
            let group = Group::new();
            let done = Arc::new(AtomicU32::new(0));
            link(
                dev.clone(),
                Some(group.clone()),
                Arc::clone(&done),
                next,
                0,
                dev.buf(BLOCK as usize),
            );
            group.wait();
            assert_eq!(
                done.load(Ordering::Acquire),
                LINKS,
                "{what} run {run}: Group::wait returned before the chain ended"
            );
            assert!(group.is_empty());
            assert!(group.wait_timeout(Duration::ZERO));
        }
    }
}

#[test]
fn wait_timeout_says_when_the_chain_is_still_going() {
    let dir = disk_dir();
    let (_completer, engine) = engine(Backend::Null, 8);
    let dev = open(&engine, dir.path(), "timeout");
    let group = Group::new();
    let done = Arc::new(AtomicU32::new(0));
    link(
        dev.clone(),
        Some(group.clone()),
        Arc::clone(&done),
        Next::Handoff(NAP),
        0,
        dev.buf(BLOCK as usize),
    );
    // The chain takes LINKS - 1 naps; half of one is surely too short.
    assert!(!group.wait_timeout(NAP / 2));
    assert!(!group.is_empty());
    assert!(group.wait_timeout(Duration::from_secs(30)));
    assert_eq!(done.load(Ordering::Acquire), LINKS);
}
