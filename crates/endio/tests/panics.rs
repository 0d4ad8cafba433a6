//! A panicking handler is contained: counted, reported, and the rest of its
//! batch still completes; with `PanicPolicy::Abort` the process aborts.

mod common;

use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::{Tally, pin, wait_idle};
use endio::{Batching, Bio, BioFlags, Completed, Completer, PanicPolicy, context};

#[test]
fn panics_in_deferred_handlers_are_contained() {
    let completer = Completer::builder()
        .batching(Batching::Fixed(Duration::from_millis(50)))
        .build()
        .unwrap();
    pin(0);
    let n = 3000;
    let tally = Tally::new(n);
    {
        let _atomic = context::atomic();
        for id in 0..n {
            // Every third handler panics after counting itself.
            completer.endio(tally.bio_then(id, move || {
                if id % 3 == 0 {
                    panic!("handler {id} fails on purpose");
                }
            }));
        }
    }
    wait_idle(&completer);
    tally.assert_each_ran_once();
    let t = completer.stats().total;
    assert_eq!(t.panics, n as u64 / 3);
    assert_eq!(t.handlers, n as u64);
}

#[test]
fn a_panic_in_an_inline_handler_does_not_reach_the_caller() {
    let completer = Completer::builder().build().unwrap();
    let bio = Bio::nop(|_| panic!("inline handler fails on purpose"));
    assert_eq!(completer.endio(bio), Completed::Inline);
    let (tx, rx) = mpsc::channel();
    completer.endio(Bio::nop(move |_| tx.send(()).unwrap()));
    rx.recv().unwrap();
    assert_eq!(completer.stats().total.panics, 1);
}

const ABORT_CHILD: &str = "ENDIO_TEST_ABORT_CHILD";

#[test]
fn abort_policy_aborts_the_process() {
    if std::env::var_os(ABORT_CHILD).is_some() {
        // The child: a deferred handler panics under PanicPolicy::Abort.
        let completer = Completer::builder()
            .panic_policy(PanicPolicy::Abort)
            .build()
            .unwrap();
        let bio = Bio::nop(|_| panic!("handler fails under Abort"))
            .with_flags(BioFlags::COMPLETE_IN_TASK);
        {
            let _atomic = context::atomic();
            completer.endio(bio);
        }
        wait_idle(&completer);
        std::thread::sleep(Duration::from_secs(5));
        unreachable!("the process should have aborted");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "abort_policy_aborts_the_process", "--nocapture"])
        .env(ABORT_CHILD, "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "child status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn libc_sigabrt() -> i32 {
    6
}
