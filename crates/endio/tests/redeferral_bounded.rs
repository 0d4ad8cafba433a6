//! Re-deferral is bounded: with `ContextPolicy::AlwaysAtomic` (the kernel
//! without `CONFIG_PREEMPT_COUNT`, where `bio_in_atomic()` is always true), a
//! handler that calls `complete_in_task` on its own bio must not be
//! re-deferred forever: a bio that has been deferred once is never deferred
//! again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;

use common::wait_idle;
use endio::context::ContextPolicy;
use endio::{Bio, Completed, Completer, EndedBio};

const BIOS: u32 = 1000;

fn always_atomic() -> Completer {
    Completer::builder()
        .context_policy(ContextPolicy::AlwaysAtomic)
        .build()
        .unwrap()
}

#[test]
fn a_handler_that_always_punts_terminates_and_runs_once() {
    let completer = always_atomic();
    let first = Arc::new(AtomicU32::new(0));
    let rest = Arc::new(AtomicU32::new(0));
    let (outcomes_tx, outcomes_rx) = mpsc::channel();
    for _ in 0..BIOS {
        let (c, first, rest, outcomes_tx) = (
            completer.clone(),
            first.clone(),
            rest.clone(),
            outcomes_tx.clone(),
        );
        // Not flagged: runs inline in this (atomic) thread, and punts.
        let bio = Bio::nop(move |ended| {
            first.fetch_add(1, Ordering::Relaxed);
            let (c2, again_tx) = (c.clone(), outcomes_tx.clone());
            let punted = c.complete_in_task(ended, move |ended| {
                // The rest asks again, as a handler that always asks would.
                let again = c2.complete_in_task(ended, move |_| {
                    rest.fetch_add(1, Ordering::Relaxed);
                });
                again_tx.send(("again", again)).unwrap();
            });
            outcomes_tx.send(("first", punted)).unwrap();
        });
        assert_eq!(completer.endio(bio), Completed::Inline);
    }
    wait_idle(&completer);
    drop(outcomes_tx);
    let outcomes: Vec<_> = outcomes_rx.iter().collect();
    assert_eq!(first.load(Ordering::Relaxed), BIOS);
    assert_eq!(rest.load(Ordering::Relaxed), BIOS);
    let deferred = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Completed::Deferred { .. }));
    assert!(deferred.clone().all(|(who, _)| *who == "first"));
    assert_eq!(deferred.count(), BIOS as usize);
    assert_eq!(completer.stats().total.deferred, u64::from(BIOS));
}

/// The guard itself, without help from the worker being task context: a bio
/// that was deferred once comes back to an atomic, non-worker thread, which
/// asks again. It must run here, not go round again.
#[test]
fn the_deferred_mark_is_the_reentry_guard_in_atomic_context() {
    let completer = always_atomic();
    let (back_tx, back_rx) = mpsc::channel::<EndedBio>();
    let c = completer.clone();
    let bio = Bio::nop(move |ended| {
        c.complete_in_task(ended, move |ended| back_tx.send(ended).unwrap());
    });
    assert_eq!(completer.endio(bio), Completed::Inline);
    let ended = back_rx.recv().unwrap();
    assert!(ended.was_deferred());
    // This thread is atomic under AlwaysAtomic, and the bio asks again.
    let (ran_tx, ran_rx) = mpsc::channel();
    let outcome = completer.complete_in_task(ended, move |ended| ran_tx.send(ended).unwrap());
    assert_eq!(outcome, Completed::Inline);
    let ended = ran_rx
        .try_recv()
        .expect("the rest ran inline, before complete_in_task returned");
    assert_eq!(completer.stats().total.deferred, 1);

    // The same bio reused for a new I/O is a new bio: it may be deferred again
    // (it kept the COMPLETE_IN_TASK flag that complete_in_task set).
    let (tx, rx) = mpsc::channel();
    let c = completer.clone();
    let fresh = ended.into_bio(move |ended| {
        let outcome = c.complete_in_task(ended, |_| {});
        tx.send(outcome).unwrap();
    });
    assert!(!fresh.was_deferred());
    assert!(matches!(completer.endio(fresh), Completed::Deferred { .. }));
    // Its handler ran deferred, so asking again runs in place.
    assert_eq!(rx.recv().unwrap(), Completed::Inline);
    wait_idle(&completer);
    assert_eq!(completer.stats().total.deferred, 2);
}
