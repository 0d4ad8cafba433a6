//! Stall rescue: when a worker stays inside one handler past the stall
//! timeout, the rest of its batch and what is queued behind it complete in
//! another thread, while the stalled handler is still inside.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{Tally, pin, wait_idle};
use endio::{Batching, Completer, context};

#[test]
fn a_stalled_worker_is_rescued() {
    let completer = Completer::builder()
        .batching(Batching::Immediate)
        .stall_timeout(Some(Duration::from_millis(50)))
        .hotplug_watcher(false)
        .build()
        .unwrap();
    pin(0);
    let n = 1000;
    let tally = Tally::new(n + 1);
    let stalled_done = Arc::new(AtomicBool::new(false));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel();
    let staller = {
        let stalled_done = stalled_done.clone();
        tally.bio_then(n, move || {
            entered_tx.send(()).unwrap();
            // Stuck (e.g. on a lock) far past the stall timeout.
            let _ = release_rx.recv_timeout(Duration::from_secs(60));
            stalled_done.store(true, Ordering::SeqCst);
        })
    };
    let (all_tx, all_rx) = mpsc::channel();
    {
        let _atomic = context::atomic();
        completer.endio(staller);
        entered_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        for id in 0..n {
            let all_tx = all_tx.clone();
            completer.endio(tally.bio_then(id, move || {
                if id == n - 1 {
                    all_tx.send(()).unwrap();
                }
            }));
        }
    }
    all_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the bios behind the stalled handler were not rescued");
    assert!(
        !stalled_done.load(Ordering::SeqCst),
        "rescued while the stalled handler is still inside"
    );
    // The last handler signalled from inside; it is counted once it returns.
    let mut s = completer.stats().total;
    for _ in 0..5000 {
        if s.rescued >= n as u64 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
        s = completer.stats().total;
    }
    assert!(s.rescues >= 1 && s.rescued >= n as u64, "{s:?}");

    release_tx.send(()).unwrap();
    wait_idle(&completer);
    tally.assert_each_ran_once();
    // The worker is back in charge afterwards.
    let tally = Tally::new(100);
    {
        let _atomic = context::atomic();
        for id in 0..100 {
            completer.endio(tally.bio(id));
        }
    }
    wait_idle(&completer);
    tally.assert_each_ran_once();
}
