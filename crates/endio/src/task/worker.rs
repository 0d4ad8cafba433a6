//! The threads endio runs: per-CPU workers (protocol steps 4-7), rescue
//! threads and the stall watchdog.

use std::time::Duration;

use super::policy::Pacer;
use super::protocol::{Role, RunEnd, Shared};
use super::stats;
use crate::context;
use crate::sync::{Arc, Instant, Ordering, thread};
use crate::sys;

/// Yields before a worker parks on an empty queue.
const YIELDS_BEFORE_PARK: u32 = 4;

/// The worker of `cpu`.
pub(crate) fn worker_main(shared: Arc<Shared>, cpu: usize) {
    context::become_task_worker();
    // Short batching delays must not be stretched by the 50 µs default slack.
    let _ = sys::set_timer_slack_ns(1_000);
    let per_cpu = &shared.cpus[cpu];
    let mut pacer = Pacer::new(shared.config.batching);
    pin(&shared, cpu);
    // Start with a drain: bios may have been queued (or left in the batch by
    // an interrupted run) before this thread first ran.
    let mut park_first = false;
    while !shared.is_shut_down() {
        if park_first {
            // Step 4: the last drain found nothing it could run. Yield a few
            // times first: a producer on this CPU (a reaper, a submitter
            // waiting for its completions) often pushes again within a
            // time slice, and a park/unpark round trip costs two context
            // switches per batch.
            let found = (0..YIELDS_BEFORE_PARK).any(|_| {
                thread::yield_now();
                !per_cpu.hot.queue.is_empty()
            });
            if !found {
                thread::park();
                stats::add_single_writer(&per_cpu.drain_counters.wakeups, 1);
            }
            // Step 5, for a new batch only.
            if !per_cpu.hot.queue.is_empty() {
                let now = Instant::now();
                let delay = pacer.delay_at_wakeup(now);
                if !delay.is_zero() {
                    let head = per_cpu.hot.queue.head_token();
                    sleep_until(&shared, now + delay);
                    pacer.delay_ended(per_cpu.hot.queue.head_token() != head);
                }
            }
        }
        // Acquire: pairs with the Release store in `cpu_online`.
        if per_cpu.repin.swap(false, Ordering::Acquire) {
            pin(&shared, cpu);
            stats::add_shared(&per_cpu.lifecycle_counters.repins, 1);
        }
        // Steps 6 and 7. The drain itself decides whether there is work
        // (queue or an interrupted batch): a worker never parks on a guess.
        let (end, ran) = shared.drain(cpu, Role::Worker, Some(shared.config.budget));
        pacer.ran(ran);
        park_first = match end {
            // Found the queue empty: the no-lost-wakeup argument applies.
            RunEnd::Empty => true,
            RunEnd::BudgetSpent => {
                thread::yield_now();
                false
            }
            // Disabled (down_prep'd): `cpu_online` unparks us. Busy (a
            // rescuer drains): it unparks us when done.
            RunEnd::Disabled | RunEnd::Busy => true,
            // We stalled and were rescued: look again.
            RunEnd::Revoked => false,
        };
    }
}

fn pin(shared: &Shared, cpu: usize) {
    if shared.config.pin_workers
        && let Err(e) = sys::pin_current_thread(cpu)
    {
        tracing::warn!(cpu, error = %e, "endio worker could not pin itself to its CPU; it runs unpinned");
    }
}

/// Sleeps until `deadline` or shutdown, whichever comes first.
fn sleep_until(shared: &Shared, deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline || shared.is_shut_down() {
            return;
        }
        thread::park_timeout(deadline - now);
    }
}

/// A rescue thread: drains `cpu` in place of its stalled drainer, until the
/// queue is empty, the CPU goes down, or it stalls itself (then the watchdog
/// starts another). Runs unpinned: the stalled handler may be spinning on
/// that very CPU.
pub(crate) fn rescuer_main(shared: &Shared, cpu: usize) {
    context::become_task_worker();
    loop {
        let (end, _) = shared.drain(cpu, Role::Rescuer, Some(shared.config.budget));
        match end {
            RunEnd::BudgetSpent => thread::yield_now(),
            RunEnd::Busy => {
                // The worker came back first; it carries on.
                break;
            }
            RunEnd::Empty | RunEnd::Disabled | RunEnd::Revoked => break,
        }
    }
    // Whatever arrives from now on is the worker's again.
    if let Some(worker) = shared.cpus[cpu].worker.get() {
        worker.unpark();
    }
}

/// The stall watchdog: every quarter of `stall_timeout`, rescues the CPUs
/// whose drainer is stuck in one handler for `stall_timeout` or longer. A
/// rescue starts within `stall_timeout * 5 / 4` of the stall.
pub(crate) fn watchdog_main(shared: &Shared, stall_timeout: Duration) {
    let tick = (stall_timeout / 4).max(Duration::from_millis(1));
    while !shared.is_shut_down() {
        thread::park_timeout(tick);
        shared.rescue_stalled(shared.clock.ticks(), stall_timeout);
    }
}
