//! The threads endio runs: how they are started and stopped, and what they
//! do. Per-CPU workers run protocol steps 4-7; rescue threads drain a CPU
//! whose drainer is stalled; the stall watchdog finds those. The protocol
//! itself (`protocol.rs`) starts no thread: the lifecycle and the rescue
//! check are handed a function that starts one, from here.
//!
//! Every thread is registered in `Shared::threads` when it starts, and
//! [`shut_down`] stops them all:
//!
//! 1. It sets the shutdown flag; every thread checks it between steps.
//! 2. It unparks and joins every registered thread, and does so again until
//!    none is left: a thread may have started another (the watcher a worker,
//!    the watchdog a rescuer) before it saw the flag.
//! 3. It drains every CPU in the calling thread, so the handlers still
//!    queued run before the last handle is gone.

use std::io;
use std::time::Duration;

use super::drive::{self, Drive, Parked};
use super::error::HotplugError;
use super::policy::Pacer;
use super::protocol::{Boundary, Role, RunEnd, Shared};
use super::stats;
use crate::context;
use crate::sync::{Arc, Instant, Ordering, thread};
use crate::sys;

/// Yields before a worker parks on an empty queue.
const YIELDS_BEFORE_PARK: u32 = 4;

/// The handlers a run must have run for the worker to yield before it
/// parks. A run of one handler means completions come one at a time, each a
/// device round trip after the last (one I/O in flight): yields would find
/// nothing. Worse, a worker that yields is still runnable while the reaper
/// it yields to issues the handler's next I/O, so the scheduler wakes the
/// kernel thread that serves that I/O (a loop device's worker) on another,
/// idle, CPU, and the I/O pays two cross-CPU wakeups. A run of several
/// handlers means a stream, where a yield hands the CPU straight to the
/// reaper, cheaper than a park.
const YIELDS_AFTER_RUN_MIN: u64 = 2;

/// Starts a thread named `name` running `f` and registers it for the join
/// at shutdown.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    name: String,
    f: impl FnOnce(Arc<Shared>) + Send + 'static,
) -> io::Result<thread::Thread> {
    let for_thread = Arc::clone(shared);
    let join = thread::Builder::new()
        .name(name)
        .spawn(move || f(for_thread))?;
    let thread = join.thread().clone();
    shared.threads.lock().push(join);
    Ok(thread)
}

/// `cpu_online` (protocol step 10), starting the CPU's worker if it never
/// had one; `counted` as in `Shared::cpu_online`.
pub(crate) fn cpu_online(
    shared: &Arc<Shared>,
    cpu: usize,
    counted: bool,
) -> Result<(), HotplugError> {
    shared.cpu_online(cpu, counted, || {
        spawn(shared, format!("endio-worker/{cpu}"), move |shared| {
            worker_main(&shared, cpu)
        })
    })
}

/// The watchdog's check, starting a rescue thread for each stalled CPU
/// with work left; returns how many it started.
pub(crate) fn rescue_stalled(shared: &Arc<Shared>, now: u64, stall_timeout: Duration) -> usize {
    shared.rescue_stalled(now, stall_timeout, |cpu| {
        spawn(shared, format!("endio-rescue/{cpu}"), move |shared| {
            rescuer_main(&shared, cpu)
        })
        .map(|_| ())
    })
}

/// Stops and joins every thread, then runs what is left on every CPU in the
/// calling thread (steps 1-3 above). A thread that is itself running this
/// (a handler dropped the last handle) is not joined: it finishes on its
/// own.
pub(crate) fn shut_down(shared: &Shared) {
    shared.stop();
    // A worker sleeping in a lane wakes on its lane's bell.
    for per_cpu in shared.cpus.iter() {
        per_cpu.drive.ring_always();
    }
    let me = thread::current().id();
    loop {
        let threads = std::mem::take(&mut *shared.threads.lock());
        if threads.is_empty() {
            break;
        }
        for t in &threads {
            t.thread().unpark();
        }
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
    shared.drain_all();
}

/// The worker of `cpu`.
fn worker_main(shared: &Shared, cpu: usize) {
    context::become_worker_of(cpu);
    // Short batching delays must not be stretched by the 50 µs default slack.
    let _ = sys::set_timer_slack_ns(1_000);
    let per_cpu = &shared.cpus[cpu];
    let mut pacer = Pacer::new(shared.config.batching);
    let mut last_ran: u64 = 0;
    // The engine lane this worker drives instead of parking, if any
    // (`drive.rs`), re-read when the slot changes.
    let mut lane: Option<Arc<dyn Drive>> = None;
    let mut lane_generation = u32::MAX;
    pin(shared, cpu);
    // Start with a drain: bios may have been queued (or left in the batch by
    // an interrupted run) before this thread first ran.
    let mut park_first = false;
    // The last drain found a rescuer draining this CPU.
    let mut rescuer_drains = false;
    while !shared.is_shut_down() {
        let generation = per_cpu.drive.generation();
        if generation != lane_generation {
            if let Some(old) = lane.take() {
                drive::release(&*old);
            }
            lane = per_cpu.drive.lane();
            lane_generation = generation;
        }
        // A lane is driven only while the CPU's work is enabled, and not
        // while a rescuer drains the CPU (the worker then waits on its
        // thread for the rescuer to finish, which wakes it); otherwise the
        // lane's reserve thread drives it.
        let driving = match lane.as_deref() {
            Some(l) if per_cpu.is_online() && !rescuer_drains => Some(l),
            Some(l) => {
                drive::release(l);
                None
            }
            None => None,
        };
        if park_first {
            let has_work = || {
                !per_cpu.hot.queue.is_empty()
                    || per_cpu.repin.load(Ordering::Relaxed)
                    || !per_cpu.is_online()
                    || shared.is_shut_down()
                    || per_cpu.drive.generation() != lane_generation
            };
            // Step 4: the last drain found nothing it could run. With a
            // lane, sleep in it: what completes there is this CPU's, and
            // comes back onto the queue without a wakeup.
            let found = match driving {
                Some(l) => match drive::park(l, &has_work) {
                    Parked::Drove(_) => true,
                    Parked::Reserve => false,
                },
                // Without a lane, yield a few times first: a producer on
                // this CPU (a reaper, a submitter waiting for its
                // completions) often pushes again within a time slice, and
                // a park/unpark round trip costs two context switches per
                // batch. Only after a run of more than one handler, though
                // (see `YIELDS_AFTER_RUN_MIN`).
                None => {
                    last_ran >= YIELDS_AFTER_RUN_MIN
                        && (0..YIELDS_BEFORE_PARK).any(|_| {
                            thread::yield_now();
                            !per_cpu.hot.queue.is_empty()
                        })
                }
            };
            if !found {
                thread::park();
            }
            if !found || driving.is_some() {
                stats::add_single_writer(&per_cpu.drain_counters.wakeups, 1);
            }
            // Step 5, for a new batch only, and not for a worker that
            // drives a lane: a whole pass of its lane is a batch already,
            // and a sleep on its thread would leave the lane undriven.
            if driving.is_none() && !per_cpu.hot.queue.is_empty() {
                let now = Instant::now();
                let delay = pacer.delay_at_wakeup(now);
                if !delay.is_zero() {
                    let head = per_cpu.hot.queue.head_token();
                    sleep_until(shared, now + delay);
                    pacer.delay_ended(per_cpu.hot.queue.head_token() != head);
                }
            }
        }
        // Acquire: pairs with the Release store in `cpu_online`.
        if per_cpu.repin.swap(false, Ordering::Acquire) {
            pin(shared, cpu);
            stats::add_shared(&per_cpu.lifecycle_counters.repins, 1);
        }
        // Steps 6 and 7. The drain itself decides whether there is work
        // (queue or an interrupted batch): a worker never parks on a guess.
        // A driving worker issues, between handlers, what they submitted,
        // and reaps its lane before each take of the queue.
        let mut since_poll = 0;
        let (end, ran) = drive::with_lane(driving, || {
            shared.drain_with(cpu, Role::Worker, Some(shared.config.budget), &mut |at| {
                if let Some(l) = driving {
                    boundary(shared, l, at, &mut since_poll);
                }
            })
        });
        rescuer_drains = end == RunEnd::Busy;
        pacer.ran(ran);
        last_ran = ran;
        park_first = match end {
            // Found the queue empty: the no-lost-wakeup argument applies.
            RunEnd::Empty => true,
            RunEnd::BudgetSpent => {
                thread::yield_now();
                false
            }
            // Disabled (after `cpu_down_prep`): `cpu_online` wakes us. Busy (a
            // rescuer drains): it wakes us when done (see `rescuer_drains`).
            RunEnd::Disabled | RunEnd::Busy => true,
            // We stalled and were rescued: look again.
            RunEnd::Revoked => false,
        };
    }
    if let Some(l) = lane {
        drive::release(&*l);
    }
}

/// Handlers a driving worker runs between two passes through its lane
/// while their submissions wait, at most.
const HANDLERS_PER_POLL_MAX: u32 = 16;

/// What a driving worker does at a drain's boundary: a pass through its
/// lane before each take of the queue, which issues what the handlers
/// submitted and reaps what completed, as fio reaps a batch of completions
/// and then issues their successors; and one after every
/// [`HANDLERS_PER_POLL_MAX`] handlers of a long batch whose handlers
/// submitted I/O, so those do not wait for the whole batch. A pass per
/// handler would cost the lane's bookkeeping per I/O instead of per batch.
/// With I/O in the lane the worker is about to run handlers, any of which
/// may block: the watchdog is told to watch closely.
fn boundary(shared: &Shared, lane: &dyn Drive, at: Boundary, since_poll: &mut u32) {
    match at {
        Boundary::Between => {
            *since_poll += 1;
            if *since_poll < HANDLERS_PER_POLL_MAX || !lane.has_submissions() {
                return;
            }
        }
        Boundary::Refill => {}
    }
    *since_poll = 0;
    let _ = drive::poll(lane);
    if lane.busy() {
        shared.nudge_watchdog();
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
fn rescuer_main(shared: &Shared, cpu: usize) {
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
    shared.cpus[cpu].wake_worker();
}

/// The stall watchdog: every quarter of `stall_timeout`, rescues the CPUs
/// whose drainer is stuck in one handler for `stall_timeout` or longer. A
/// rescue starts within `stall_timeout * 5 / 4` of the stall.
///
/// It also hands the engine lane a worker drives to the lane's reserve
/// when the worker stays inside one handler for `lane_rescue_after` while
/// the lane has I/O (`drive.rs`, step 3); while any driven lane is busy it
/// ticks that often for it.
pub(crate) fn watchdog_main(shared: &Arc<Shared>, stall_timeout: Duration) {
    let slow = (stall_timeout / 4).max(Duration::from_millis(1));
    let fast = shared.config.lane_rescue_after.min(slow);
    let mut stall_due = Instant::now() + slow;
    while !shared.is_shut_down() {
        // Fast while a driven lane is busy, or since a nudge (an I/O for a
        // lane whose worker is outside it) unparked us.
        thread::park_timeout(if shared.watchdog_fast.load(Ordering::Relaxed) {
            fast
        } else {
            slow
        });
        let (busy, _) = shared.rescue_lanes(shared.clock.ticks());
        shared.watchdog_fast.store(busy, Ordering::Relaxed);
        let now = Instant::now();
        if now >= stall_due {
            stall_due = now + slow;
            rescue_stalled(shared, shared.clock.ticks(), stall_timeout);
        }
    }
}
