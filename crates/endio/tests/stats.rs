//! The counters add up: per-CPU sums equal the total, every deferral is
//! matched by a handler once quiescent, and a ping-pong of single bios shows
//! exactly one batch and one wakeup per bio.

mod common;

use std::sync::mpsc;

use common::{Tally, wait_idle};
use endio::{Batching, Bio, BioFlags, Completer, Stats, context};

#[test]
fn per_cpu_counters_sum_to_the_total() {
    let completer = Completer::builder().build().unwrap();
    let cpus = completer.online_cpus().to_vec();
    let per_cpu = 50_000;
    let tally = Tally::new(per_cpu * cpus.len() * 2);
    let producers: Vec<_> = cpus
        .iter()
        .enumerate()
        .map(|(i, &cpu)| {
            let (completer, tally) = (completer.clone(), tally.clone());
            std::thread::spawn(move || {
                common::pin(cpu);
                for n in 0..per_cpu {
                    let id = (i * per_cpu + n) * 2;
                    {
                        let _atomic = context::atomic();
                        completer.endio(tally.bio(id));
                    }
                    // Same flag, task context: inline.
                    completer.endio(tally.bio(id + 1));
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    wait_idle(&completer);
    tally.assert_each_ran_once();

    let snap = completer.stats();
    let mut sum = Stats::default();
    for c in &snap.per_cpu {
        sum.accumulate(&c.stats);
    }
    assert_eq!(sum, snap.total);
    let t = snap.total;
    let n = (per_cpu * cpus.len()) as u64;
    assert_eq!((t.deferred, t.inline, t.handlers, t.queued()), (n, n, n, 0));
    assert!(t.batches >= 1 && t.batches <= t.handlers, "{t:?}");
    assert!(t.wakeups <= t.deferred, "{t:?}");
    assert!(t.batch_len_max as f64 >= t.batch_len_mean(), "{t:?}");
    assert!(t.run_len_max >= 1 && t.run_len_max <= 1024, "{t:?}");
    assert_eq!(t.panics, 0);
}

#[test]
fn ping_pong_is_one_batch_and_at_most_one_wakeup_per_bio() {
    let completer = Completer::builder()
        .batching(Batching::Immediate)
        .build()
        .unwrap();
    let rounds = 1000;
    for _ in 0..rounds {
        let (tx, rx) = mpsc::channel();
        let bio = Bio::nop(move |_| tx.send(()).unwrap()).with_flags(BioFlags::COMPLETE_IN_TASK);
        {
            let _atomic = context::atomic();
            completer.endio(bio);
        }
        rx.recv().unwrap();
        // The handler has run; let the drain finish its bookkeeping.
        wait_idle(&completer);
    }
    let t = completer.stats().total;
    assert_eq!(
        (t.deferred, t.handlers, t.batches),
        (rounds, rounds, rounds)
    );
    // The worker yields a few times, then parks between rounds: at most one
    // wakeup per round (a park may also return spuriously, rarely).
    assert!(t.wakeups <= rounds + rounds / 100, "{t:?}");
    assert_eq!(t.batch_len_max, 1);
    assert_eq!(t.batch_len_mean(), 1.0);
}
