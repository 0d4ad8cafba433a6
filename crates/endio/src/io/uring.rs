//! The io_uring backend: one ring per CPU, driven by the completer worker of
//! that CPU or by the lane's own reaper thread, pinned to it.
//!
//! # Who drives the ring
//!
//! By default the CPU's completer worker drives the ring when it has no
//! handler to run (`task::drive`): it sleeps in `io_uring_enter`, reaps in
//! atomic context — the flagged handlers go onto its own queue — and runs
//! them in task context in the same thread, issuing between handlers what
//! they submitted. The reaper thread (the lane's *reserve*) stands by and
//! drives the ring whenever the worker does not: while it is stuck inside a
//! handler, while its CPU is down, and at shutdown. Either thread does the
//! same *pass* over the ring (`Ring::pass`, the steps below), one at a time:
//! the ring's state belongs to the holder of the lane's `DriveOwner`.
//!
//! Such a ring is entered by two threads, so it cannot be `SINGLE_ISSUER`
//! (nor `DEFER_TASKRUN`, which needs it): it is `COOP_TASKRUN`. The
//! completion of an I/O is task work of the thread that issued it, which
//! the reserve cannot run; the kernel still runs it when that thread is
//! blocked in a handler (task work wakes an interruptible sleep, and the
//! sleep resumes after it) or busy in one (at its next return from an
//! interrupt or system call: `COOP_TASKRUN` only spares the interprocessor
//! interrupt), so the reserve, which took the ring over, finds the CQE.
//! `tests/worker_driven.rs` has a handler blocked on a read its own worker
//! issued. A ring that only its reaper drives
//! (`EngineBuilder::worker_driven(false)`, or a CPU whose worker drives
//! another engine's ring) keeps fio's flags, below.
//!
//! # Why the reaper also submits
//!
//! fio's io_uring engine asks for `IORING_SETUP_SINGLE_ISSUER |
//! IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN`: one task submits
//! and reaps, completions run as deferred task work when that task enters the
//! kernel to wait, and the kernel never interrupts it with IPIs to run task
//! work. Those flags require a single issuer per ring, while a [`Device`] is
//! shared by any number of threads. So submitters do not enter the kernel:
//! they put their request into the lane's bounded inbox and ring its bell,
//! and the ring's driver (one thread at a time: the worker or the reaper)
//! moves the inbox into SQEs and submits them, and waits for completions
//! in `io_uring_enter`. A ring only its reaper drives gets the three fio
//! flags (falling back to fewer on kernels that refuse them, see
//! `RING_SETUPS`); there is no lock around the submission queue either
//! way.
//!
//! The reaper sleeps in `io_uring_enter(GETEVENTS)`; it keeps a read of its
//! lane's eventfd in flight, which a submitter completes by bumping the
//! eventfd when it finds the reaper asleep (see `task::drive::EventBell`).
//! When a pass leaves nothing in the kernel, it first yields a few times to
//! the worker it may have woken (step 8 of the loop); a worker that drives
//! the ring needs none of that.
//!
//! # Submission
//!
//! The reaper enters the kernel to submit as soon as `submit_batch` SQEs
//! wait (default 1: every I/O at once, fio's default), and submits the rest
//! of a pass with its wait. One call for a whole pass would save system
//! calls, but it hands the device a pass as one convoy: on a virtio disk
//! whose completions of such a convoy come back together, the next pass is
//! the same convoy, and 4 KiB random reads at QD16 took 290 µs in the
//! device instead of 210 µs and ran about 13 % slower (BENCHMARKS.md §7).
//!
//! # Which ring an I/O goes to
//!
//! The submitting CPU's, except for the direct I/O of a device whose
//! completion interrupts all land on some CPUs: it goes to those CPUs'
//! rings (`EngineBuilder::steer_direct_io`), so the completion wakes a
//! reaper on the CPU the interrupt came to, not across CPUs.
//!
//! # Bounds
//!
//! A lane has `queue_depth` slots (`lane.rs`, invariant 1), so at most
//! `queue_depth` of the caller's requests are in the reaper's slab. The
//! write-back stages of batched dontcache writes come on top, without
//! slots, bounded by their devices' dontcache backlogs: the slab grows to
//! hold them (allocating only when it grows, so not in steady state). The
//! SQ has at least `queue_depth + 2` entries (the +2: the eventfd read and
//! one cancel) and the CQ twice that; when stages fill the SQ, the reaper
//! submits what it holds and goes on, and a CQ overflow is kept by the
//! kernel (`IORING_FEAT_NODROP`, every kernel endio runs on) until reaped.
//!
//! # Shutdown
//!
//! Once the engine is closed, requests still in the inbox complete with
//! `ECANCELED` without being issued; requests in the kernel are waited for,
//! and after `shutdown_grace` an `IORING_OP_ASYNC_CANCEL` of any request is
//! issued once, so what the kernel can cancel completes with `ECANCELED`.
//! The reaper leaves once its lane holds no slot.
//!
//! [`Device`]: crate::Device

use std::cell::UnsafeCell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::lane::{Driver, Lane};
use super::request::{Request, complete_all};
use super::shared::EngineShared;
use crate::bio::Op;
use crate::task::drive::{Drive, DriveOwner, EventBell, Held};

/// `user_data` of the eventfd read.
const WAKE: u64 = u64::MAX;
/// `user_data` of the shutdown cancel.
const CANCEL: u64 = u64::MAX - 1;

/// Ring setups tried in order until the kernel accepts one: fio's flags,
/// then fewer for older kernels (`DEFER_TASKRUN` needs 6.1, `SINGLE_ISSUER`
/// 6.0, `COOP_TASKRUN` 5.19).
/// `TASKRUN_FLAG` rides along with `COOP_TASKRUN`: the kernel then marks
/// the SQ when task work is pending, so a submit that does not wait still
/// runs deferred completions (`GETEVENTS`) instead of leaving them for the
/// next wait.
const RING_SETUPS: [RingSetup; 4] = [
    RingSetup {
        name: "COOP_TASKRUN|TASKRUN_FLAG|SINGLE_ISSUER|DEFER_TASKRUN",
        coop_taskrun: true,
        single_issuer: true,
        defer_taskrun: true,
    },
    RingSetup {
        name: "COOP_TASKRUN|TASKRUN_FLAG|SINGLE_ISSUER",
        coop_taskrun: true,
        single_issuer: true,
        defer_taskrun: false,
    },
    RingSetup {
        name: "COOP_TASKRUN|TASKRUN_FLAG",
        coop_taskrun: true,
        single_issuer: false,
        defer_taskrun: false,
    },
    RingSetup {
        name: "none",
        coop_taskrun: false,
        single_issuer: false,
        defer_taskrun: false,
    },
];

/// The first of [`RING_SETUPS`] without a single issuer: where the setups
/// of a ring two threads drive start (see "Who drives the ring").
const SHARED_SETUPS: usize = 2;

/// One set of ring flags to try.
struct RingSetup {
    /// As `Engine::ring_flags` reports it.
    name: &'static str,
    /// `COOP_TASKRUN | TASKRUN_FLAG`.
    coop_taskrun: bool,
    single_issuer: bool,
    defer_taskrun: bool,
}

/// Builds the ring with the first setup the kernel takes (`driven`: a ring
/// the CPU's worker drives too, which takes the setups without a single
/// issuer only).
fn build_ring(entries: u32, driven: bool) -> io::Result<(IoUring, &'static str)> {
    let setups = &RING_SETUPS[if driven { SHARED_SETUPS } else { 0 }..];
    let mut last = None;
    for setup in setups {
        let mut b = IoUring::builder();
        b.setup_clamp().setup_cqsize(entries * 2);
        if setup.coop_taskrun {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }
        if setup.single_issuer {
            b.setup_single_issuer();
        }
        if setup.defer_taskrun {
            b.setup_defer_taskrun();
        }
        match b.build(entries) {
            Ok(ring) => return Ok((ring, setup.name)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// A lane's ring and what is in it, touched only by the holder of the
/// lane's `DriveOwner` (the reserve, or the worker inside a pass).
pub(crate) struct RingCell {
    ring: UnsafeCell<Option<Ring>>,
    /// Requests in the kernel, as of the last pass (for the watchdog).
    in_kernel: AtomicU32,
}

// SAFETY: `ring` is touched only by the holder of the lane's `DriveOwner`,
// one thread at a time, each hand-over a Release/Acquire pair on the
// owner's word (`task::drive`); `IoUring` and the requests are `Send`.
unsafe impl Sync for RingCell {}

impl RingCell {
    pub(crate) fn new() -> Arc<RingCell> {
        Arc::new(RingCell {
            ring: UnsafeCell::new(None),
            in_kernel: AtomicU32::new(0),
        })
    }

    /// The ring, for the holder of the lane.
    ///
    /// # Safety
    ///
    /// `held` must prove ownership of the lane whose cell this is, and the
    /// reference must not outlive it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn ring(&self, _held: &Held<'_>) -> &mut Option<Ring> {
        // SAFETY: exclusive by the caller's contract.
        unsafe { &mut *self.ring.get() }
    }
}

/// Starts the reaper of lane `lane`; it reports its ring setup (or why it
/// has none) on `setup`.
pub(crate) fn spawn(
    shared: Arc<EngineShared>,
    cell: Arc<RingCell>,
    lane: usize,
    setup: mpsc::Sender<io::Result<&'static str>>,
) -> io::Result<std::thread::JoinHandle<()>> {
    let cpu = shared.lanes[lane].cpu;
    let name = match cpu {
        Some(cpu) => format!("endio-uring/{cpu}"),
        None => format!("endio-uring/l{lane}"),
    };
    std::thread::Builder::new()
        .name(name)
        .spawn(move || reaper_main(&shared, &cell, lane, &setup))
}

/// A lane's ring and the requests in it.
struct Ring {
    ring: IoUring,
    st: Requests,
    /// The key of the registered buffer pool, once this ring registered it.
    fixed: Option<usize>,
    /// The eventfd read's target; lives as long as the ring (declared
    /// after it, dropped after it) and is never moved (boxed).
    wake_buf: Box<[u8; 8]>,
}

/// The requests of a ring.
struct Requests {
    /// Requests in the kernel, indexed by `user_data`.
    slab: Vec<Option<Request>>,
    free: Vec<u32>,
    in_kernel: u32,
    /// Writeback stages of writes completed in the last pass: issued first
    /// in the next.
    chained: Vec<Request>,
    /// Requests reaped (or refused) and not yet completed.
    done: Vec<(Request, i64)>,
    wake_armed: bool,
    /// Who issued the eventfd read in flight: its completion is that
    /// thread's task work.
    wake_by: Driver,
}

/// What one pass found.
#[derive(Debug, Default, Clone, Copy)]
struct Passed {
    /// Requests completed.
    completed: usize,
}

impl Ring {
    fn new(ring: IoUring, depth: u32, fixed: Option<usize>) -> Ring {
        Ring {
            ring,
            fixed,
            st: Requests {
                slab: (0..depth).map(|_| None).collect(),
                free: (0..depth).rev().collect(),
                in_kernel: 0,
                chained: Vec::with_capacity(depth as usize),
                done: Vec::with_capacity(depth as usize),
                wake_armed: false,
                wake_by: Driver::Reaper,
            },
            wake_buf: Box::new([0u8; 8]),
        }
    }

    /// One pass over the ring, by whoever drives it: steps 1-7 below. If
    /// `sleep` is given and the pass has nothing to complete, it waits in
    /// the kernel for a completion or the lane's bell, unless `sleep()`
    /// says there is other work. At shutdown (`closed`) the wait is 1 ms
    /// at most and new requests complete with `ECANCELED`.
    fn pass(
        &mut self,
        shared: &EngineShared,
        lane: &Lane<Request>,
        sleep: Option<&dyn Fn() -> bool>,
        closed: bool,
        by: Driver,
    ) -> Passed {
        let bell = lane.bell.event();
        let efd = bell.efd().raw_fd();
        let batch = shared.config.submit_batch as usize;
        let (submitter, mut sq, mut cq) = self.ring.split();
        let st = &mut self.st;
        let fixed = self.fixed;
        // The kernel consumed the SQ during the last enter: learn its head.
        sq.sync();
        // 1. Keep the doorbell read in flight.
        if !st.wake_armed {
            let read = opcode::Read::new(types::Fd(efd), self.wake_buf.as_mut_ptr(), 8)
                .build()
                .user_data(WAKE);
            // SAFETY: `wake_buf` is boxed (it does not move) and lives as
            // long as the ring, and the read is retired before both go
            // (`retire_wake`); `efd` stays open as long as the lane's bell,
            // which outlives the ring.
            if unsafe { sq.push(&read) }.is_ok() {
                st.wake_armed = true;
                st.wake_by = by;
            }
        }
        // 2. Chained writeback stages, then the inbox -> SQ, entering the
        //    kernel whenever `submit_batch` SQEs are waiting (what is left
        //    goes with the wait below; see "Submission"). Stages of batched
        //    dontcache writes hold no slot: the slab grows for them, and a
        //    full SQ is submitted first; what still does not fit waits for
        //    the next pass.
        while let Some(req) = st.chained.pop() {
            if closed {
                st.done.push((req, -i64::from(libc::ECANCELED)));
                continue;
            }
            if !sq_room(&mut sq, &submitter) {
                st.chained.push(req);
                break;
            }
            let index = free_index(&mut st.slab, &mut st.free);
            st.issue(&mut sq, index, req, fixed, lane);
            submit_batch(&mut sq, &submitter, batch);
        }
        while sq_room(&mut sq, &submitter) {
            let Some(req) = lane.inbox.pop() else {
                break;
            };
            if closed {
                st.done.push((req, -i64::from(libc::ECANCELED)));
                continue;
            }
            let index = free_index(&mut st.slab, &mut st.free);
            st.issue(&mut sq, index, req, fixed, lane);
            submit_batch(&mut sq, &submitter, batch);
        }
        // 5. Submit what is left; wait for a completion unless there is
        //    something to do already. The bell's handshake: the flag, a
        //    fence, then one more look at the inbox and the caller's work.
        cq.sync();
        let mut want = 0;
        if let Some(other_work) = sleep
            && st.done.is_empty()
            && st.chained.is_empty()
            && cq.is_empty()
            && bell.prepare_sleep(|| !lane.inbox.is_empty() || other_work())
        {
            want = 1;
        }
        sq.sync();
        let entered = if want == 0 && sq.is_empty() && !sq.taskrun() {
            // Nothing to submit, nothing to wait for, no task work: the
            // system call would do nothing.
            Ok(0)
        } else if closed || (want == 1 && by == Driver::Reaper && st.wake_by != by) {
            // At shutdown, and for a reaper whose doorbell read the worker
            // issued: that read completes only as the worker's task work,
            // which a worker stuck in uninterruptible sleep does not run;
            // so look again every millisecond rather than sleep on it.
            let ts = types::Timespec::new().nsec(1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            submitter.submit_with_args(want, &args)
        } else {
            submitter.submit_and_wait(want)
        };
        if want == 1 {
            bell.woke();
        }
        if let Err(e) = entered {
            match e.raw_os_error() {
                // Timed out, interrupted, or completions to reap first.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => {
                    tracing::error!(error = %e, cpu = ?lane.cpu, "io_uring_enter failed; retrying in 1 ms");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        // 6. Reap every CQE.
        cq.sync();
        for cqe in &mut cq {
            st.reap(&cqe);
        }
        cq.sync();
        drop((submitter, sq, cq));
        // 7. The completion step: slots back, then `endio` in atomic
        //    context (the ring's driver is endio's interrupt); write-back
        //    stages are issued first in the next pass.
        let completed = st.done.len();
        // Counted before the handlers run, so whoever a handler wakes sees
        // its completion counted.
        lane.completions.by(by, completed);
        let chained = &mut st.chained;
        complete_all(&shared.completer, &lane.slots, &mut st.done, |stage| {
            chained.push(stage);
        });
        Passed { completed }
    }

    /// At shutdown, after the grace period: cancels what the kernel still
    /// holds; `false` if the SQ had no room (try again next pass).
    fn cancel_all(&mut self) -> bool {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancel request points to no memory.
        unsafe { self.ring.submission().push(&cancel) }.is_ok()
    }

    /// Whether nothing of the lane is left in the ring.
    fn is_empty(&self) -> bool {
        self.st.in_kernel == 0 && self.st.done.is_empty() && self.st.chained.is_empty()
    }

    /// Retires the doorbell read before the ring and its buffer go.
    fn retire_wake(&mut self, bell: &EventBell) {
        if !self.st.wake_armed {
            return;
        }
        bell.ring_always();
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.st.wake_armed && Instant::now() < deadline {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let (submitter, mut sq, mut cq) = self.ring.split();
            sq.sync();
            let _ = submitter.submit_with_args(1, &args);
            cq.sync();
            for cqe in &mut cq {
                if cqe.user_data() == WAKE {
                    self.st.wake_armed = false;
                }
            }
        }
    }
}

/// The lane as its CPU's worker drives it (`task::drive::Drive`).
pub(crate) struct UringDrive {
    pub(crate) shared: Arc<EngineShared>,
    pub(crate) cell: Arc<RingCell>,
    pub(crate) lane: usize,
}

impl Drive for UringDrive {
    fn owner(&self) -> &DriveOwner {
        &self.shared.lanes[self.lane].owner
    }

    fn bell(&self) -> &EventBell {
        self.shared.lanes[self.lane].bell.event()
    }

    fn bell_arc(&self) -> Arc<EventBell> {
        self.shared.lanes[self.lane].bell.event_arc()
    }

    fn pass(&self, held: &Held<'_>, sleep: Option<&dyn Fn() -> bool>) -> usize {
        assert!(held.of(self.owner()), "a pass needs the lane it drives");
        let lane = &self.shared.lanes[self.lane];
        // SAFETY: `held` proves we own this lane, for this call.
        let Some(ring) = (unsafe { self.cell.ring(held) }) else {
            return 0;
        };
        let closed = self.shared.closed.load(Ordering::SeqCst);
        let passed = ring.pass(&self.shared, lane, sleep, closed, Driver::Worker);
        self.cell
            .in_kernel
            .store(ring.st.in_kernel, Ordering::Relaxed);
        passed.completed
    }

    fn has_submissions(&self) -> bool {
        !self.shared.lanes[self.lane].inbox.is_empty()
    }

    fn busy(&self) -> bool {
        let lane = &self.shared.lanes[self.lane];
        self.cell.in_kernel.load(Ordering::Relaxed) > 0
            || lane.slots.in_use() > 0
            || !lane.inbox.is_empty()
    }

    fn key(&self) -> usize {
        self.shared.lanes[self.lane].key()
    }
}

fn reaper_main(
    shared: &Arc<EngineShared>,
    cell: &RingCell,
    lane_index: usize,
    setup: &mpsc::Sender<io::Result<&'static str>>,
) {
    let lane = &shared.lanes[lane_index];
    if let Some(cpu) = lane.cpu
        && shared.config.pin
        && let Err(e) = crate::sys::pin_current_thread(cpu)
    {
        tracing::warn!(cpu, error = %e, "endio io_uring reaper could not pin itself to its CPU; it runs unpinned");
    }
    lane.owner.set_reserve(std::thread::current());
    let depth = lane.slots.capacity();
    // The ring is made here: with SINGLE_ISSUER its creator is its issuer.
    let driven = lane.driven.load(Ordering::Acquire);
    let (ring, flags) = match build_ring(depth + 2, driven) {
        Ok(r) => r,
        Err(e) => {
            let _ = setup.send(Err(e));
            return;
        }
    };
    if !driven {
        // Saves a file lookup per io_uring_enter (5.18+); optional. Only
        // for a ring this thread alone enters: the registration is the
        // registering thread's.
        let _ = ring.submitter().register_ring_fd();
    }
    let fixed = shared.pool.as_ref().and_then(|pool| {
        // SAFETY: the pool's memory stays mapped as long as the pool, which
        // the engine holds as long as this ring lives (the ring is dropped
        // by this thread, which holds the engine).
        match unsafe { ring.submitter().register_buffers(&[pool.iovec()]) } {
            Ok(()) => {
                lane.buffers.registered.store(1, Ordering::Relaxed);
                Some(pool.key())
            }
            Err(e) => {
                warn_registration_failed(pool.len(), &e);
                None
            }
        }
    });
    {
        let held = lane
            .owner
            .reserve_holds()
            .expect("a lane starts with its reserve");
        // SAFETY: we hold the lane (a new lane is the reserve's).
        *unsafe { cell.ring(&held) } = Some(Ring::new(ring, depth, fixed));
    }
    let _ = setup.send(Ok(flags));
    let mut closed_at: Option<Instant> = None;
    let mut cancel_sent = false;
    let mut held_before = true;
    loop {
        // SeqCst: pairs with the store in `EngineShared::shutdown` and the
        // submitter's load after taking a slot (see `mod.rs`).
        let closed = shared.closed.load(Ordering::SeqCst);
        if closed && closed_at.is_none() {
            closed_at = Some(Instant::now());
        }
        let Some(held) = lane.owner.reserve_holds() else {
            // The worker drives the ring: stand by until it is handed over
            // (a rescue, the worker's CPU going down, the engine's eviction
            // at shutdown all unpark this thread). The timeout only bounds a
            // wakeup this protocol does not lose.
            held_before = false;
            std::thread::park_timeout(Duration::from_millis(100));
            continue;
        };
        if !held_before {
            held_before = true;
            lane.completions.taken_over();
        }
        // SAFETY: we hold the lane until `held` goes.
        let Some(ring) = (unsafe { cell.ring(&held) }) else {
            break;
        };
        // 3. At shutdown, after the grace period, cancel what the kernel
        //    still holds, once.
        if let Some(at) = closed_at
            && !cancel_sent
            && ring.st.in_kernel > 0
            && at.elapsed() >= shared.config.shutdown_grace
        {
            cancel_sent = ring.cancel_all();
        }
        // 4. Done when closed and nothing holds a slot of this lane.
        if closed && ring.is_empty() && lane.slots.all_free() && lane.inbox.is_empty() {
            break;
        }
        let passed = ring.pass(
            shared,
            lane,
            Some(&|| lane.owner.wanted()),
            closed,
            Driver::Reaper,
        );
        cell.in_kernel.store(ring.st.in_kernel, Ordering::Relaxed);
        // The worker asked for the ring back: hand it over between passes.
        if lane.owner.wanted() && !closed {
            if lane.owner.hand_back(held) {
                lane.completions.handed_back();
                held_before = false;
            }
            continue;
        }
        // 8. The ring went idle with these completions: nothing is left to
        //    reap, so the next event is a resubmission by a handler, most
        //    often from the worker this pass just woke on the same CPU.
        //    Yield to it (bounded, `lane::yield_for_work`) rather than sleep,
        //    so its push rings no bell and is issued as soon as it runs,
        //    without the eventfd round trip. With I/O still in the kernel
        //    the reaper does not yield: that would delay reaping it.
        if passed.completed > 0
            && !closed
            && ring.st.in_kernel == 0
            && ring.st.chained.is_empty()
            && lane.inbox.is_empty()
        {
            super::lane::yield_for_work(|| !lane.inbox.is_empty());
        }
    }
    let held = lane
        .owner
        .reserve_holds()
        .expect("the reaper leaves holding its lane");
    // SAFETY: we hold the lane.
    if let Some(mut ring) = unsafe { cell.ring(&held) }.take() {
        ring.retire_wake(lane.bell.event());
    }
}

/// Says once per process why a ring could not register the buffer pool
/// (its buffers then work as ordinary memory).
fn warn_registration_failed(bytes: usize, e: &io::Error) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.swap(true, Ordering::Relaxed) {
        return;
    }
    let fix = if matches!(e.raw_os_error(), Some(libc::ENOMEM | libc::EPERM)) {
        "raise the locked-memory limit (ulimit -l, LimitMEMLOCK=) to the pool size times the CPU count, give the process CAP_IPC_LOCK, or choose a smaller pool"
    } else {
        "choose a smaller pool, or none"
    };
    tracing::warn!(bytes, error = %e, "an io_uring ring could not register endio's buffer pool, so its buffers are pinned per I/O: {fix}");
}

/// A free slab index, the slab grown by one if none is free.
fn free_index(slab: &mut Vec<Option<Request>>, free: &mut Vec<u32>) -> u32 {
    if let Some(&index) = free.last() {
        return index;
    }
    let index = u32::try_from(slab.len()).unwrap_or(u32::MAX);
    slab.push(None);
    free.push(index);
    index
}

/// Submits the SQ once it holds `batch` entries.
fn submit_batch(
    sq: &mut io_uring::SubmissionQueue<'_>,
    submitter: &io_uring::Submitter<'_>,
    batch: usize,
) {
    if sq.len() >= batch {
        submit_now(sq, submitter);
    }
}

/// Whether the SQ has room for one more entry, after submitting what it
/// holds if it was full.
fn sq_room(sq: &mut io_uring::SubmissionQueue<'_>, submitter: &io_uring::Submitter<'_>) -> bool {
    if sq.is_full() {
        submit_now(sq, submitter);
    }
    !sq.is_full()
}

/// Submits what the SQ holds, without waiting; on failure the entries
/// stay and go with the next enter.
fn submit_now(sq: &mut io_uring::SubmissionQueue<'_>, submitter: &io_uring::Submitter<'_>) {
    sq.sync();
    if let Err(e) = submitter.submit() {
        tracing::debug!(error = %e, "io_uring submit failed; the SQ goes with the next enter");
    }
    sq.sync();
}

/// The SQE of a request (without its `user_data`); `registered`: its
/// buffer is a block of the buffer pool registered with the ring as its
/// buffer 0.
fn prepare(req: &mut Request, registered: bool) -> squeue::Entry {
    let fd = types::Fd(req.raw_fd());
    if let Some((offset, len)) = req.writeback_range() {
        // Never 0 (which would mean "to the end of the file"): a stage
        // exists only for a write of at least one byte.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        return opcode::SyncFileRange::new(fd, len)
            .offset(offset)
            .flags(req.sync_flags())
            .build();
    }
    let offset = req.bio.offset();
    let len = u32::try_from(req.transfer_len()).unwrap_or(u32::MAX);
    let rw_flags = req.rw_flags;
    match req.bio.op() {
        Op::Read if registered => {
            opcode::ReadFixed::new(fd, req.bio.buf_mut().as_mut_ptr(), len, 0)
                .offset(offset)
                .rw_flags(rw_flags)
                .build()
        }
        Op::Read => opcode::Read::new(fd, req.bio.buf_mut().as_mut_ptr(), len)
            .offset(offset)
            .rw_flags(rw_flags)
            .build(),
        Op::Write if registered => opcode::WriteFixed::new(fd, req.bio.buf().as_ptr(), len, 0)
            .offset(offset)
            .rw_flags(rw_flags)
            .build(),
        Op::Write => opcode::Write::new(fd, req.bio.buf().as_ptr(), len)
            .offset(offset)
            .rw_flags(rw_flags)
            .build(),
        Op::Flush => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        Op::Nop => opcode::Nop::new().build(),
    }
}

impl Requests {
    /// Issues `req` under the free slab index `index` (the last of `free`):
    /// its SQE goes into `sq` and the request waits in `slab[index]` until
    /// the CQE for `index` is reaped. A request the SQ refuses (cannot
    /// happen, see "Bounds") fails with `EBUSY` rather than being lost.
    fn issue(
        &mut self,
        sq: &mut io_uring::SubmissionQueue<'_>,
        index: u32,
        mut req: Request,
        fixed: Option<usize>,
        lane: &Lane<Request>,
    ) {
        // A block of the pool this ring registered: as registered buffer 0.
        let registered = fixed.is_some() && req.bio.buf().pool_key() == fixed;
        if registered {
            lane.buffers.fixed_ios.fetch_add(1, Ordering::Relaxed);
        }
        let entry = prepare(&mut req, registered).user_data(u64::from(index));
        // SAFETY: the SQE points into the request's buffer (a writeback
        // stage's to no memory), on the heap and owned by the request, which
        // is parked in `slab[index]` (moving the request does not move the
        // buffer) until the CQE for `index` is reaped; the file stays open
        // because the request holds its device.
        match unsafe { sq.push(&entry) } {
            Ok(()) => {
                self.free.pop();
                self.slab[index as usize] = Some(req);
                self.in_kernel += 1;
            }
            Err(_) => self.done.push((req, -i64::from(libc::EBUSY))),
        }
    }

    /// Takes the request of one CQE out of the slab.
    fn reap(&mut self, cqe: &cqueue::Entry) {
        match cqe.user_data() {
            WAKE => self.wake_armed = false,
            CANCEL => {}
            index => {
                let slot = usize::try_from(index)
                    .ok()
                    .and_then(|i| self.slab.get_mut(i));
                if let Some(req) = slot.and_then(Option::take) {
                    self.free.push(index as u32);
                    self.in_kernel -= 1;
                    self.done.push((req, i64::from(cqe.result())));
                } else {
                    tracing::error!(
                        user_data = index,
                        "io_uring completion for an unknown request; ignored"
                    );
                }
            }
        }
    }
}
