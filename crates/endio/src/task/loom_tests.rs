//! Model checks of the lock-free core with loom: push, take-all, close and the
//! empty→non-empty wakeup, over every interleaving within the preemption
//! bound set by `ci/loom.sh`.
//!
//! The consumer below is the worker's wait loop (protocol steps 4 and 6 in
//! `task/mod.rs`): take all; if nothing was taken, park. A lost wakeup shows up
//! as loom's deadlock report (every thread blocked); a lost or doubled bio as
//! a failed count.

use loom::sync::Mutex;
use loom::sync::atomic::AtomicUsize;

use super::queue::{BioList, Pushed, Queue};
use crate::bio::Bio;
use crate::sync::{Arc, Ordering, thread};
use loom::thread::spawn;

/// A bio whose handler appends `(producer, seq)` to `log`.
fn logged(log: &Arc<Mutex<Vec<(usize, usize)>>>, producer: usize, seq: usize) -> Bio {
    let log = Arc::clone(log);
    Bio::nop(move |_| log.lock().unwrap().push((producer, seq)))
}

/// Producer side of the protocol (steps 1-2): push, and wake on the
/// empty→non-empty transition.
fn produce(queue: &Queue, worker: &thread::Thread, bio: Bio) {
    match queue.push(bio) {
        Pushed::WasEmpty => worker.unpark(),
        Pushed::NotEmpty => {}
        Pushed::Closed(_) => panic!("queue unexpectedly closed"),
    }
}

fn run_all(mut list: BioList) -> usize {
    let mut n = 0;
    while let Some(bio) = list.pop_front() {
        bio.run_handler();
        n += 1;
    }
    n
}

/// Worker side (steps 4 and 6): until `expected` bios have run, take all, and
/// park when there was nothing to take.
fn consume(queue: &Queue, expected: usize) {
    let mut ran = 0;
    while ran < expected {
        if queue.is_empty() {
            thread::park();
            continue;
        }
        ran += run_all(queue.take_all());
    }
}

#[test]
fn no_wakeup_is_lost_and_nothing_runs_twice() {
    loom::model(|| {
        let queue = Arc::new(Queue::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let worker = thread::current();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (queue, log, worker) = (queue.clone(), log.clone(), worker.clone());
                spawn(move || produce(&queue, &worker, logged(&log, p, 0)))
            })
            .collect();
        consume(&queue, 2);
        for p in producers {
            p.join().unwrap();
        }
        let mut log = log.lock().unwrap().clone();
        log.sort_unstable();
        assert_eq!(log, vec![(0, 0), (1, 0)]);
        assert!(queue.is_empty());
    });
}

#[test]
fn each_producer_is_run_in_order() {
    loom::model(|| {
        let queue = Arc::new(Queue::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let worker = thread::current();
        let producers: Vec<_> = (0..2)
            .map(|p| {
                let (queue, log, worker) = (queue.clone(), log.clone(), worker.clone());
                spawn(move || {
                    let seqs = if p == 0 { 2 } else { 1 };
                    for seq in 0..seqs {
                        produce(&queue, &worker, logged(&log, p, seq));
                    }
                })
            })
            .collect();
        consume(&queue, 3);
        for p in producers {
            p.join().unwrap();
        }
        let log = log.lock().unwrap().clone();
        let p0: Vec<_> = log.iter().filter(|(p, _)| *p == 0).collect();
        assert_eq!(p0, vec![&(0, 0), &(0, 1)]);
        assert_eq!(log.len(), 3);
    });
}

#[test]
fn a_push_racing_a_close_is_taken_or_handed_back() {
    loom::model(|| {
        let queue = Arc::new(Queue::new());
        let log = Arc::new(Mutex::new(Vec::new()));
        let handed_back = Arc::new(AtomicUsize::new(0));
        let producer = {
            let (queue, log, handed_back) = (queue.clone(), log.clone(), handed_back.clone());
            spawn(move || match queue.push(logged(&log, 0, 0)) {
                Pushed::Closed(bio) => {
                    handed_back.fetch_add(1, Ordering::Relaxed);
                    bio.run_handler();
                }
                Pushed::WasEmpty | Pushed::NotEmpty => {}
            })
        };
        let closed = run_all(queue.close());
        producer.join().unwrap();
        assert_eq!(closed + handed_back.load(Ordering::Relaxed), 1);
        assert_eq!(log.lock().unwrap().len(), 1);
        assert!(queue.take_all().is_empty());
    });
}
