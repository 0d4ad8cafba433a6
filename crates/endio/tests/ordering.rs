//! Handlers of bios deferred on one CPU run in the order the bios were
//! completed, under every batching policy, while other CPUs do the same.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pin, wait_idle};
use endio::{Batching, Bio, BioFlags, Completed, Completer, context};

const PER_CPU: u64 = 100_000;

fn in_order_per_cpu(batching: Batching) {
    let completer = Completer::builder().batching(batching).build().unwrap();
    let violations = Arc::new(Mutex::new(Vec::new()));
    let producers: Vec<_> = completer
        .online_cpus()
        .iter()
        .map(|&cpu| {
            let (completer, violations) = (completer.clone(), violations.clone());
            std::thread::spawn(move || {
                pin(cpu);
                let last = Arc::new(AtomicU64::new(0));
                let _atomic = context::atomic();
                for seq in 1..=PER_CPU {
                    let (last, violations) = (last.clone(), violations.clone());
                    let bio = Bio::nop(move |_| {
                        // Only this CPU's worker runs these, one at a time.
                        let prev = last.swap(seq, Ordering::Relaxed);
                        if prev + 1 != seq {
                            violations.lock().unwrap().push((cpu, prev, seq));
                        }
                    })
                    .with_flags(BioFlags::COMPLETE_IN_TASK);
                    assert_eq!(completer.endio(bio), Completed::Deferred { cpu });
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    wait_idle(&completer);
    let v = violations.lock().unwrap();
    assert!(
        v.is_empty(),
        "{batching}: out of order (cpu, previous, this): {:?}",
        &v[..v.len().min(10)]
    );
    assert_eq!(
        completer.stats().total.handlers,
        PER_CPU * completer.online_cpus().len() as u64
    );
}

#[test]
fn immediate_keeps_completion_order() {
    in_order_per_cpu(Batching::Immediate);
}

#[test]
fn fixed_keeps_completion_order() {
    in_order_per_cpu(Batching::Fixed(Duration::from_millis(1)));
}

#[test]
fn adaptive_keeps_completion_order() {
    in_order_per_cpu(Batching::default());
}
