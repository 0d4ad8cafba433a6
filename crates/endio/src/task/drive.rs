//! A worker that drives its CPU's I/O instead of parking.
//!
//! The kernel completes a bio in the interrupt of the CPU that issued it and,
//! for a flagged one, runs the handler in that CPU's kworker: one CPU, two
//! contexts. endio's interrupt is a thread (the engine lane's reaper) and
//! its worker another, both on one CPU, so handing a batch over costs a
//! wakeup and two context switches, and a closed loop (a handler that
//! submits the next I/O) pays them on every pass: about 3.5 µs per I/O at
//! one in flight on this machine's VM.
//!
//! So a worker with nothing to run does not park: it *drives* the engine
//! lane of its CPU (a [`Drive`]), as a tokio worker parks on its I/O driver.
//! It issues what waits, sleeps in the lane until something completes, and
//! completes it there in atomic context (its interrupt): a flagged bio goes
//! onto the worker's own queue like any completion on this CPU, and the
//! worker then drains the queue in task context, as before. Between
//! handlers it issues what they submitted. Completions still arrive in
//! atomic context and flagged handlers still run in task context on the
//! CPU's worker; what goes is the hand-off between two threads. The lane's
//! own thread, the *reserve*, stands by and drives the lane whenever the
//! worker does not: while the worker is stuck inside a handler, while its
//! CPU is down, and at shutdown.
//!
//! # Who drives a lane
//!
//! One word per lane, [`DriveOwner`], says who may touch the lane's state:
//!
//! - `RESERVE`: the reserve thread (optionally with `WANTED`: the worker
//!   asks for the lane back);
//! - `WORKER`: the worker, which is outside the lane (draining, or between
//!   passes);
//! - `WORKER_IN`: the worker, inside a pass.
//!
//! 1. *enter*: the worker, `WORKER` → `WORKER_IN`, compare-and-swap. Nobody
//!    but the worker moves the word away from `WORKER_IN`.
//! 2. *leave*: the worker, `WORKER_IN` → `WORKER`; then, if the lane is
//!    evicted, step 4 itself.
//! 3. *rescue*: the watchdog, `WORKER` → `RESERVE`, compare-and-swap, when
//!    the worker has been inside one handler for `lane_rescue_after`
//!    ([`RESCUE_AFTER`] by default) while the lane has I/O; then it unparks
//!    the reserve.
//! 4. *release*: `WORKER` → `RESERVE`, compare-and-swap, then unpark the
//!    reserve: by the worker when it may not drive (its CPU is going down,
//!    the completer stops), by the engine when it evicts the lane (shutdown;
//!    the eviction flag is set first and never cleared).
//! 5. *ask back*: the worker, `RESERVE` → `RESERVE | WANTED`, then it rings
//!    the lane's bell (the reserve may sleep in the lane) and parks.
//! 6. *hand back*: the reserve, between its passes, `RESERVE | WANTED` →
//!    `WORKER` unless evicted; then it unparks the worker and stands by.
//!
//! Why one owner at a time: the lane's state is touched only by the
//! reserve while the word is `RESERVE` and by the worker while it is
//! `WORKER_IN`. The word leaves `RESERVE` only by 6, which the reserve does
//! between its passes; it leaves `WORKER_IN` only by 2, which the worker
//! does after its pass; it reaches `WORKER_IN` only from `WORKER` by 1. A
//! compare-and-swap from `WORKER` (1, 3, 4) succeeds for one of them only,
//! and every hand-over is a Release store or RMW read by the next owner's
//! Acquire, so the next owner sees the lane as the last one left it.
//!
//! Why an evicted lane always reaches the reserve: the evictor sets the flag
//! and then tries 4; a worker after 2 reads the flag and then tries 4. All
//! four accesses are SeqCst, so either the evictor's compare-and-swap comes
//! after the worker's store of `WORKER` and succeeds, or the worker's read
//! comes after the flag and the worker's own 4 succeeds. A worker asking
//! back an evicted lane is never answered (6 checks the flag).
//!
//! Why the lane is never left without a driver for long: in `WORKER` the
//! worker is draining (bounded by its run budget, unless a handler blocks,
//! and then 3 hands the lane over within `lane_rescue_after` and a
//! watchdog tick), or about to enter; the worker never parks on its thread while the
//! word is `WORKER` (it parks only after 4 or 5). In `RESERVE` the reserve
//! drives it, as it did before workers drove lanes.
//!
//! A handler that waits for I/O of the lane its own worker drives (a
//! blocking read in a handler) would otherwise wait for 3: [`drive_until`]
//! lets the waiting thread drive that lane itself until the I/O is done.

use std::fmt;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use crate::sync::{Arc, AtomicBool, AtomicU32, Mutex, Ordering, const_thread_local, fence, thread};
use crate::sys::EventFd;

/// How long a worker may stay inside one handler while its lane has I/O
/// before the watchdog hands the lane to the reserve (step 3), by default
/// (`CompleterBuilder::lane_rescue_after`). The watchdog looks this often
/// while a driven lane is busy.
pub(crate) const RESCUE_AFTER: Duration = Duration::from_millis(1);

const RESERVE: u32 = 0;
const WORKER: u32 = 1;
const WORKER_IN: u32 = 2;
const WANTED: u32 = 4;

/// What a CPU's worker can drive instead of parking: the engine lane of that
/// CPU (its io_uring ring, or the null device's pending list).
///
/// The lane's state belongs to whoever holds its [`DriveOwner`]; `pass`
/// takes the proof ([`Held`]).
pub(crate) trait Drive: Send + Sync {
    /// The lane's ownership word.
    fn owner(&self) -> &DriveOwner;

    /// The bell that wakes whoever sleeps in the lane: submitters ring it,
    /// and so does every producer of the worker's queue.
    fn bell(&self) -> &EventBell;

    /// One pass through the lane: issue what waits, take what completed and
    /// complete it (in atomic context). If `sleep` is given and the pass
    /// found nothing to complete, it first sleeps in the lane until a
    /// completion, the bell, or `sleep()` says there is other work (checked
    /// after the bell is set up, so a ring between the two is not lost).
    /// Returns how many requests it completed.
    fn pass(&self, held: &Held<'_>, sleep: Option<&dyn Fn() -> bool>) -> usize;

    /// Whether a pass now would find something to issue (a submission
    /// between handlers). Reads shared state only; called without holding
    /// the lane.
    fn has_submissions(&self) -> bool;

    /// Whether the lane has I/O a stuck worker would hold back: requests in
    /// flight or waiting to be issued.
    fn busy(&self) -> bool;

    /// An identity of the lane, for [`drive_until`].
    fn key(&self) -> usize;
}

/// The ownership word of a lane (see the module docs).
pub(crate) struct DriveOwner {
    word: AtomicU32,
    evicted: AtomicBool,
    /// The reserve thread, set when it starts.
    reserve: OnceLock<thread::Thread>,
    /// The worker, set when the lane is attached to it.
    worker: OnceLock<thread::Thread>,
}

impl fmt::Debug for DriveOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriveOwner")
            .field("word", &self.word.load(Ordering::Relaxed))
            .field("evicted", &self.evicted.load(Ordering::Relaxed))
            .finish()
    }
}

/// Proof that the caller owns a lane's state, for [`Drive::pass`]. Only
/// this module makes one.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    owner: &'a DriveOwner,
}

impl Held<'_> {
    /// Whether this proves ownership of `owner`'s lane.
    pub(crate) fn of(&self, owner: &DriveOwner) -> bool {
        std::ptr::eq(self.owner, owner)
    }
}

impl Default for DriveOwner {
    fn default() -> DriveOwner {
        DriveOwner {
            word: AtomicU32::new(RESERVE),
            evicted: AtomicBool::new(false),
            reserve: OnceLock::new(),
            worker: OnceLock::new(),
        }
    }
}

impl DriveOwner {
    /// The reserve thread registers itself (once, when it starts).
    pub(crate) fn set_reserve(&self, thread: thread::Thread) {
        let _ = self.reserve.set(thread);
    }

    /// The reserve's own view: `Some` while it owns the lane (`RESERVE`,
    /// asked back or not).
    pub(crate) fn reserve_holds(&self) -> Option<Held<'_>> {
        // Acquire: the lane as the worker left it when it was rescued or
        // released (their Release RMW).
        (self.word.load(Ordering::Acquire) & !WANTED == RESERVE).then_some(Held { owner: self })
    }

    /// Step 6, by the reserve between passes: if the worker asked for the
    /// lane back and the lane is not evicted, gives it back and wakes the
    /// worker. `held` is the reserve's proof, which ends here.
    pub(crate) fn hand_back(&self, held: Held<'_>) -> bool {
        debug_assert!(held.of(self));
        if self.evicted.load(Ordering::SeqCst) {
            return false;
        }
        // Release: the lane as the reserve leaves it, for the worker's
        // Acquire in `enter`.
        let handed = self
            .word
            .compare_exchange(
                RESERVE | WANTED,
                WORKER,
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok();
        if handed && let Some(worker) = self.worker.get() {
            worker.unpark();
        }
        handed
    }

    /// Whether the worker asked for the lane back (the reserve's loop
    /// checks it between passes).
    pub(crate) fn wanted(&self) -> bool {
        self.word.load(Ordering::Relaxed) & WANTED != 0
    }

    /// Step 1: the worker enters the lane.
    fn enter(&self) -> Option<Held<'_>> {
        // Acquire: the lane as its last owner left it.
        self.word
            .compare_exchange(WORKER, WORKER_IN, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| Held { owner: self })
    }

    /// Step 2: the worker leaves the lane, and releases it if it is evicted.
    fn leave(&self, held: Held<'_>) {
        debug_assert!(held.of(self));
        // Release: the lane as the worker leaves it.
        self.word.store(WORKER, Ordering::SeqCst);
        if self.evicted.load(Ordering::SeqCst) {
            self.release();
        }
    }

    /// Steps 3 and 4: `WORKER` → `RESERVE` and the reserve unparked; `false`
    /// if the worker is inside the lane or does not drive it.
    fn release(&self) -> bool {
        let released = self.take_from_worker();
        if released {
            self.wake_reserve();
        }
        released
    }

    /// `WORKER` → `RESERVE`, without waking the reserve yet (for a caller
    /// that counts the takeover first); `false` as for `release`.
    fn take_from_worker(&self) -> bool {
        // AcqRel: the worker's last pass (Release in `leave`) reaches the
        // reserve through this RMW and its Acquire in `reserve_holds`.
        self.word
            .compare_exchange(WORKER, RESERVE, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Wakes the reserve (it drives the lane now).
    fn wake_reserve(&self) {
        if let Some(reserve) = self.reserve.get() {
            reserve.unpark();
        }
    }

    /// Step 5: the worker asks for the lane back; `false` if it could not
    /// (evicted, or the word is not `RESERVE`).
    fn ask_back(&self) -> bool {
        if self.evicted.load(Ordering::SeqCst) {
            return false;
        }
        let word = self.word.load(Ordering::Relaxed);
        word & WANTED != 0
            || (word == RESERVE
                && self
                    .word
                    .compare_exchange(
                        RESERVE,
                        RESERVE | WANTED,
                        Ordering::SeqCst,
                        Ordering::Relaxed,
                    )
                    .is_ok())
    }

    /// Step 4 by the engine: the lane goes to the reserve for good. A worker
    /// inside it hands it over when its pass ends (step 2); the caller rings
    /// the lane's bell so that a pass sleeping in the lane ends.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.release();
    }

    /// Whether the worker holds the lane (inside or outside it).
    pub(crate) fn worker_drives(&self) -> bool {
        matches!(self.word.load(Ordering::Relaxed), WORKER | WORKER_IN)
    }
}

/// An eventfd with a flag that says whether anyone sleeps on it, so a ring
/// costs a system call only when someone does. The sleeper sets the flag,
/// fences and looks for work once more before it sleeps; a ringer publishes
/// its work, fences and looks at the flag. SeqCst on both sides: one of the
/// two sees the other.
#[derive(Debug)]
pub(crate) struct EventBell {
    efd: EventFd,
    sleeping: AtomicBool,
}

impl EventBell {
    pub(crate) fn new() -> io::Result<EventBell> {
        Ok(EventBell {
            efd: EventFd::new()?,
            sleeping: AtomicBool::new(false),
        })
    }

    /// After publishing work: wakes the sleeper, if any.
    pub(crate) fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.efd.notify();
        }
    }

    /// Wakes whoever sleeps, or the next sleep (shutdown, eviction).
    pub(crate) fn ring_always(&self) {
        self.efd.notify();
    }

    /// Before sleeping: sets the flag and looks for work once more; `false`
    /// (flag cleared) if there is some, and then the caller must not sleep.
    pub(crate) fn prepare_sleep(&self, has_work: impl Fn() -> bool) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if has_work() {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// After a sleep (however it ended).
    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// The eventfd, for a read in flight in a ring or a poll.
    pub(crate) fn efd(&self) -> &EventFd {
        &self.efd
    }
}

/// A CPU's slot for the lane its worker drives.
#[derive(Default)]
pub(crate) struct DriveSlot {
    lane: Mutex<Option<Arc<dyn Drive>>>,
    /// The lane's bell, for producers of the CPU's queue to ring: set when
    /// a lane is first attached, kept (it may be the bell of a later lane
    /// too, and producers must never see it go).
    bell: OnceLock<Arc<EventBell>>,
    /// Bumped when the lane changes, so the worker re-reads it.
    generation: AtomicU32,
}

impl fmt::Debug for DriveSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriveSlot")
            .field("attached", &self.lane.lock().is_some())
            .finish()
    }
}

impl DriveSlot {
    /// The bell of this CPU's driven lanes, made on first use.
    pub(crate) fn bell(&self) -> io::Result<Arc<EventBell>> {
        if let Some(bell) = self.bell.get() {
            return Ok(Arc::clone(bell));
        }
        let bell = Arc::new(EventBell::new()?);
        Ok(Arc::clone(self.bell.get_or_init(|| bell)))
    }

    /// Rings the bell, if a lane was ever attached (a producer after a push
    /// that made the queue non-empty).
    #[inline]
    pub(crate) fn ring(&self) {
        if let Some(bell) = self.bell.get() {
            bell.ring();
        }
    }

    /// Attaches `lane`, driven by `worker`; `false` if one is attached.
    pub(crate) fn attach(&self, lane: Arc<dyn Drive>, worker: &thread::Thread) -> bool {
        let mut slot = self.lane.lock();
        if slot.is_some() {
            return false;
        }
        let _ = lane.owner().worker.set(worker.clone());
        *slot = Some(lane);
        self.generation.fetch_add(1, Ordering::Release);
        true
    }

    /// Detaches the lane whose key is `key`, if it is the one attached,
    /// and wakes the worker so that it lets go of it.
    pub(crate) fn detach(&self, key: usize) {
        let mut slot = self.lane.lock();
        if slot.as_ref().is_some_and(|l| l.key() == key) {
            let lane = slot.take();
            self.generation.fetch_add(1, Ordering::Release);
            drop(slot);
            if let Some(worker) = lane.as_ref().and_then(|l| l.owner().worker.get()) {
                worker.unpark();
            }
            if let Some(lane) = lane {
                lane.bell().ring_always();
            }
        }
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn lane(&self) -> Option<Arc<dyn Drive>> {
        self.lane.lock().clone()
    }

    /// Whether the attached lane is driven by the worker and busy (the
    /// watchdog's fast tick).
    pub(crate) fn busy(&self) -> bool {
        self.lane
            .lock()
            .as_ref()
            .is_some_and(|l| l.owner().worker_drives() && l.busy())
    }

    /// Step 3, by the watchdog: takes the lane from a worker stuck in a
    /// handler, if the lane has I/O; `counted` runs once it has, before the
    /// reserve is woken. Returns whether it did.
    pub(crate) fn rescue(&self, counted: impl FnOnce()) -> bool {
        let Some(lane) = self.lane.lock().clone() else {
            return false;
        };
        if !lane.busy() || !lane.owner().take_from_worker() {
            return false;
        }
        counted();
        lane.owner().wake_reserve();
        true
    }
}

/// How a worker's park in its lane ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parked {
    /// It drove the lane; this many requests completed.
    Drove(usize),
    /// The reserve holds the lane; the worker asked for it back and must
    /// park on its thread (the reserve unparks it when it hands back).
    Reserve,
}

/// The worker's park when its queue is empty: a pass through `lane` that
/// may sleep in it until a completion, the bell, or `has_work()`.
pub(crate) fn park(lane: &dyn Drive, has_work: &dyn Fn() -> bool) -> Parked {
    let owner = lane.owner();
    let Some(held) = owner.enter() else {
        if owner.ask_back() {
            lane.bell().ring_always();
        }
        return Parked::Reserve;
    };
    let done = lane.pass(&held, Some(has_work));
    owner.leave(held);
    Parked::Drove(done)
}

/// A pass that does not sleep (between handlers); `None` if the worker does
/// not hold the lane.
pub(crate) fn poll(lane: &dyn Drive) -> Option<usize> {
    let owner = lane.owner();
    let held = owner.enter()?;
    let done = lane.pass(&held, None);
    owner.leave(held);
    Some(done)
}

/// The worker may not drive its lane now (its CPU goes down, it stops):
/// the lane goes to the reserve.
pub(crate) fn release(lane: &dyn Drive) {
    lane.owner().release();
}

const_thread_local! {
    /// The lane the calling worker drives while it runs handlers (see
    /// [`drive_until`]).
    static DRIVING: std::cell::Cell<Option<*const dyn Drive>> = std::cell::Cell::new(None);
}

/// Runs `f` with `lane` as the calling worker's driven lane.
pub(crate) fn with_lane<R>(lane: Option<&dyn Drive>, f: impl FnOnce() -> R) -> R {
    // SAFETY: only the pointer's lifetime is erased; it is read back by
    // `drive_until` on this thread while `f` runs, during which `lane` is
    // borrowed, and the cell is restored before this returns.
    let ptr = lane.map(|l| unsafe {
        std::mem::transmute::<*const (dyn Drive + '_), *const (dyn Drive + 'static)>(l)
    });
    let outer = DRIVING.with(|c| c.replace(ptr));
    struct Restore(Option<*const dyn Drive>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DRIVING.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(outer);
    f()
}

/// For a thread that waits for I/O on the lane `key`: if it is the worker
/// driving that lane (a handler waiting for a blocking read, say), drives
/// the lane until `done()` and returns `true`; else returns `false` at once
/// and the caller waits its own way. Also `false` as soon as the lane is
/// taken from the worker (the reserve then completes the I/O).
pub(crate) fn drive_until(key: usize, done: &dyn Fn() -> bool) -> bool {
    let Some(ptr) = DRIVING.with(std::cell::Cell::get) else {
        return false;
    };
    // SAFETY: set by `with_lane` on this thread, whose borrow of the lane
    // outlives this call (we run inside its `f`).
    let lane = unsafe { &*ptr };
    if lane.key() != key {
        return false;
    }
    loop {
        if done() {
            return true;
        }
        let owner = lane.owner();
        let Some(held) = owner.enter() else {
            return done();
        };
        lane.pass(&held, Some(done));
        owner.leave(held);
    }
}
