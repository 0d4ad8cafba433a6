//! When does `endio()` run a handler inline and when does it defer it? The
//! whole table: context policy × flag × atomic section × worker thread.

mod common;

use std::sync::mpsc;

use common::wait_idle;
use endio::context::ContextPolicy;
use endio::{Bio, BioFlags, Completed, Completer, context};

fn outcome(completer: &Completer, flagged: bool, atomic: bool) -> bool {
    let mut bio = Bio::nop(|_| {});
    bio.set_flags(BioFlags::COMPLETE_IN_TASK, flagged);
    let _section = atomic.then(context::atomic);
    matches!(completer.endio(bio), Completed::Deferred { .. })
}

/// The same question asked from inside a handler that runs on a worker.
fn outcome_on_worker(completer: &Completer, flagged: bool, atomic: bool) -> bool {
    let (tx, rx) = mpsc::channel();
    let c = completer.clone();
    let probe = Bio::nop(move |_| tx.send(outcome(&c, flagged, atomic)).unwrap())
        .with_flags(BioFlags::COMPLETE_IN_TASK);
    let _atomic = context::atomic();
    assert!(matches!(completer.endio(probe), Completed::Deferred { .. }));
    rx.recv().unwrap()
}

#[test]
fn the_table() {
    use ContextPolicy::{AlwaysAtomic, Tracked};
    // (policy, flagged, atomic section, on a worker) -> deferred
    let table = [
        (Tracked, false, false, false, false),
        (Tracked, false, true, false, false),
        (Tracked, true, false, false, false),
        (Tracked, true, true, false, true),
        (Tracked, true, false, true, false),
        (Tracked, true, true, true, true),
        (Tracked, false, true, true, false),
        (AlwaysAtomic, false, false, false, false),
        (AlwaysAtomic, false, true, false, false),
        (AlwaysAtomic, true, false, false, true),
        (AlwaysAtomic, true, true, false, true),
        (AlwaysAtomic, true, false, true, false),
        (AlwaysAtomic, true, true, true, true),
        (AlwaysAtomic, false, true, true, false),
    ];
    for policy in [Tracked, AlwaysAtomic] {
        let completer = Completer::builder().context_policy(policy).build().unwrap();
        for &(p, flagged, atomic, worker, deferred) in table.iter().filter(|r| r.0 == policy) {
            let got = if worker {
                outcome_on_worker(&completer, flagged, atomic)
            } else {
                outcome(&completer, flagged, atomic)
            };
            assert_eq!(
                got, deferred,
                "{p:?} flagged={flagged} atomic={atomic} worker={worker}: deferred={got}"
            );
        }
        wait_idle(&completer);
    }
}
