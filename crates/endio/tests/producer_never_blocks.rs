//! The producer never blocks: it runs in atomic context, so it must never
//! block, never wait for the worker. While CPU 0's worker is stuck inside a
//! handler, 100k completions on CPU 0 all return at once (deferred), and all
//! run later, once, in order behind the stuck one.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{Tally, pin, wait_idle};
use endio::{Batching, Completed, Completer, context};

const PUSHES: usize = 100_000;

#[test]
fn pushes_return_while_the_worker_is_blocked() {
    let completer = Completer::builder()
        .batching(Batching::Immediate)
        .build()
        .unwrap();
    pin(0);
    let tally = Tally::new(PUSHES + 1);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = tally.bio_then(PUSHES, move || {
        entered_tx.send(()).unwrap();
        release_rx.recv().unwrap();
    });
    let _atomic = context::atomic();
    assert_eq!(completer.endio(blocker), Completed::Deferred { cpu: 0 });
    entered_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the worker of CPU 0 never started the blocking handler");

    for id in 0..PUSHES {
        assert_eq!(
            completer.endio(tally.bio(id)),
            Completed::Deferred { cpu: 0 }
        );
    }
    // Nothing behind the stuck handler has run: the pushes did not wait.
    assert_eq!(tally.ran(), 1);
    let queued = completer.stats().total.queued();
    assert_eq!(
        queued,
        PUSHES as u64 + 1,
        "the blocked one and all pushes are queued"
    );

    release_tx.send(()).unwrap();
    wait_idle(&completer);
    tally.assert_each_ran_once();
}
