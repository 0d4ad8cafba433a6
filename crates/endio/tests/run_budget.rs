//! Run budget: a flood of cheap bios on one CPU must not monopolise its
//! worker. A run stops when its budget (handlers or time) is spent, the
//! worker requeues itself and yields; no run exceeds the budget by more than
//! one handler.

mod common;

use std::time::{Duration, Instant};

use common::{Tally, pin, wait_idle};
use endio::{Batching, Budget, Completer, context};

const FLOOD: usize = 200_000;

/// Floods CPU 0 while its worker waits out a long batching delay, so the whole
/// flood is queued when the worker starts draining.
fn flood(budget: Budget, handler_spin: Duration) -> endio::Stats {
    let completer = Completer::builder()
        .batching(Batching::Fixed(Duration::from_millis(300)))
        .budget(budget)
        .build()
        .unwrap();
    pin(0);
    let tally = Tally::new(FLOOD);
    {
        let _atomic = context::atomic();
        for id in 0..FLOOD {
            completer.endio(tally.bio_then(id, move || spin(handler_spin)));
        }
    }
    wait_idle(&completer);
    tally.assert_each_ran_once();
    completer
        .stats()
        .per_cpu
        .iter()
        .find(|c| c.cpu == 0)
        .unwrap()
        .stats
}

fn spin(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn count_budget_requeues_and_bounds_every_run() {
    let budget = Budget {
        handlers_max: 1000,
        time_max: Duration::from_secs(10),
    };
    let s = flood(budget, Duration::ZERO);
    assert_eq!(s.handlers, FLOOD as u64);
    assert!(s.requeues >= (FLOOD as u64 / 1000) - 1, "{s:?}");
    assert!(
        s.run_len_max <= 1000,
        "a run executed {} handlers",
        s.run_len_max
    );
    assert!(
        s.batch_len_max > 1000,
        "the flood should be one big batch: {s:?}"
    );
}

#[test]
fn time_budget_requeues_and_overruns_by_at_most_one_handler() {
    let budget = Budget {
        handlers_max: u32::MAX,
        time_max: Duration::from_micros(500),
    };
    let s = flood(budget, Duration::from_micros(2));
    assert_eq!(s.handlers, FLOOD as u64);
    assert!(s.requeues > 0, "{s:?}");
    // The budget is checked after every handler, so a run ends at the first
    // handler boundary past the budget.
    let bound = budget.time_max.as_nanos() as u64 + s.handler_ns_max;
    assert!(
        s.run_ns_max <= bound,
        "a run took {} ns, more than the {} ns budget plus one handler ({} ns)",
        s.run_ns_max,
        budget.time_max.as_nanos(),
        s.handler_ns_max
    );
}
