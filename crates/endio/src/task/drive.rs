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
//! 3. *rescue*: the watchdog, `WORKER` → `RESERVE`, compare-and-swap, then
//!    it unparks the reserve: when the worker has been inside one handler
//!    for `lane_rescue_after` ([`RESCUE_AFTER`] by default) while the lane
//!    has I/O, and whenever it revokes the worker's drain (a stall).
//! 4. *release*: `WORKER` → `RESERVE`, compare-and-swap, then unpark the
//!    reserve: by the worker when it may not drive (its CPU is going down,
//!    a rescuer drains its CPU, it stops), by the engine when it evicts the
//!    lane (shutdown; the eviction flag is set first and never cleared, and
//!    the reserve is woken whatever the word, to look at it).
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
//! Why an evicted lane always reaches the reserve: the evictor sets the
//! flag, fences (SeqCst) and tries 4; a worker in 2, and a reserve after a
//! successful 6, store the word, fence and read the flag. The two fences
//! are ordered: if the evictor's comes first, the other reads the flag (the
//! worker then does 4 itself; the reserve takes the lane straight back with
//! 4's compare-and-swap, or the worker that entered meanwhile does it in its
//! 2); if the other's comes first, its store precedes the evictor's
//! compare-and-swap, which finds `WORKER` or a worker inside the lane, who
//! does 4 in its 2. A worker asking back an evicted lane is never answered.
//! `loom_tests` below checks this, and that the lane is never held twice,
//! over a worker, a reserve and an eviction.
//!
//! Why the lane is never left without a driver for long: in `WORKER` the
//! worker is draining (bounded by its run budget, unless a handler blocks,
//! and then 3 hands the lane over within `lane_rescue_after` and a
//! watchdog tick: the watchdog ticks that often while a driven lane is
//! busy, and is nudged when I/O is queued on a lane whose worker is
//! outside it or when a worker runs handlers with I/O in its lane), or
//! about to enter; a worker that parks on its thread first releases the
//! lane (4) or has asked it back (5). In `RESERVE` the reserve drives it,
//! as it did before workers drove lanes.
//!
//! Each lane has a bell of its own ([`EventBell`]), and only the lane's
//! current driver sleeps on it. While a lane is attached, the producers of
//! the worker's queue ring it too, through the CPU's [`DriveSlot`], which
//! swaps the bell in and out without a lock (`BellRef`).
//!
//! A handler that waits for I/O of the lane its own worker drives (a
//! blocking read in a handler, a submit waiting for a slot) would otherwise
//! wait for 3: [`drive_until`] lets the waiting thread drive that lane
//! itself until the I/O is done.

use std::fmt;
use std::io;
use std::sync::OnceLock;
use std::time::Duration;

use crate::sync::{
    Arc, AtomicBool, AtomicPtr, AtomicU32, Mutex, Ordering, const_thread_local, fence, thread,
};
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
    /// and so does every producer of the worker's queue while the lane is
    /// attached. Each lane has its own, and only the lane's driver sleeps
    /// on it.
    fn bell(&self) -> &EventBell;

    /// The same bell, shared.
    fn bell_arc(&self) -> Arc<EventBell>;

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
        if self.evicted.load(Ordering::Relaxed) {
            return false;
        }
        // Release: the lane as the reserve leaves it, for the worker's
        // Acquire in `enter`.
        let handed = self
            .word
            .compare_exchange(
                RESERVE | WANTED,
                WORKER,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if !handed {
            return false;
        }
        // An eviction between the check above and the hand-back found the
        // word `RESERVE | WANTED` and could not take it. The fence pairs
        // with the evictor's (see `evict`): either this load sees the flag,
        // and the lane is taken back (if the worker entered meanwhile, its
        // `leave` sees the flag), or the evictor's take comes after the
        // hand-back and takes it.
        fence(Ordering::SeqCst);
        if self.evicted.load(Ordering::Relaxed) && self.take_from_worker() {
            return false;
        }
        if let Some(worker) = self.worker.get() {
            worker.unpark();
        }
        true
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
            .compare_exchange(WORKER, WORKER_IN, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Held { owner: self })
    }

    /// Step 2: the worker leaves the lane, and releases it if it is evicted.
    fn leave(&self, held: Held<'_>) {
        debug_assert!(held.of(self));
        // Release: the lane as the worker leaves it.
        self.word.store(WORKER, Ordering::Release);
        // Pairs with the evictor's fence: this load sees the flag, or the
        // evictor's take comes after the store above (see `evict`).
        fence(Ordering::SeqCst);
        if self.evicted.load(Ordering::Relaxed) {
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
            .compare_exchange(WORKER, RESERVE, Ordering::AcqRel, Ordering::Relaxed)
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
        if self.evicted.load(Ordering::Relaxed) {
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
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok())
    }

    /// Step 4 by the engine: the lane goes to the reserve for good. A worker
    /// inside it hands it over when its pass ends (step 2); the caller rings
    /// the lane's bell so that a pass sleeping in the lane ends.
    ///
    /// The flag, a SeqCst fence, then the take; a worker leaving or a
    /// reserve handing back stores the word, fences, then loads the flag.
    /// The fences are ordered one way or the other: if the evictor's comes
    /// first, the other's load sees the flag; if the other's comes first,
    /// its store precedes the evictor's take, which sees `WORKER`.
    pub(crate) fn evict(&self) {
        self.evicted.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.take_from_worker();
        // Whether it took the lane now or the reserve holds it (and may
        // sleep): the reserve must look at the flag.
        self.wake_reserve();
    }

    /// Whether the worker holds the lane (inside or outside it).
    pub(crate) fn worker_drives(&self) -> bool {
        matches!(self.word.load(Ordering::Relaxed), WORKER | WORKER_IN)
    }

    /// Whether the worker holds the lane but is not in it (draining, or
    /// inside a handler): whatever is submitted waits for it.
    pub(crate) fn worker_outside(&self) -> bool {
        self.word.load(Ordering::Relaxed) == WORKER
    }

    /// Whether `thread` is the worker the lane is attached to.
    pub(crate) fn is_worker(&self, thread: &thread::Thread) -> bool {
        self.worker.get().is_some_and(|w| w.id() == thread.id())
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
    /// The attached lane's bell, for producers of the CPU's queue to ring
    /// without a lock (`BellRef`).
    bell: BellRef,
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
    /// Rings the attached lane's bell, if any (a producer after a push that
    /// made the queue non-empty; never blocks).
    #[inline]
    pub(crate) fn ring(&self) {
        self.bell.ring(false);
    }

    /// Rings the attached lane's bell even if nobody sleeps (shutdown).
    pub(crate) fn ring_always(&self) {
        self.bell.ring(true);
    }

    /// Attaches `lane`, driven by `worker`; `false` if one is attached.
    pub(crate) fn attach(&self, lane: Arc<dyn Drive>, worker: &thread::Thread) -> bool {
        let mut slot = self.lane.lock();
        if slot.is_some() {
            return false;
        }
        let _ = lane.owner().worker.set(worker.clone());
        self.bell.set(Some(lane.bell_arc()));
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
            if let Some(lane) = lane {
                // Wake the worker first, while producers can still ring the
                // bell; then the bell goes.
                if let Some(worker) = lane.owner().worker.get() {
                    worker.unpark();
                }
                lane.bell().ring_always();
                self.bell.set(None);
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
    /// handler, if the lane has I/O (or whatever it has, if `force`: its
    /// drain was revoked); `counted` runs once it has, before the reserve
    /// is woken. Returns whether it did.
    pub(crate) fn rescue(&self, force: bool, counted: impl FnOnce()) -> bool {
        let Some(lane) = self.lane.lock().clone() else {
            return false;
        };
        if !(force || lane.busy()) || !lane.owner().take_from_worker() {
            return false;
        }
        counted();
        lane.owner().wake_reserve();
        true
    }
}

/// The bell of the lane a CPU's worker drives, rung by producers of the
/// worker's queue in atomic context: no lock, no allocation. A pointer and
/// a count of the rings using it: a ring counts itself in, loads the
/// pointer, rings, counts itself out; a change swaps the pointer, then
/// waits until no ring is counted in before the old bell may go. All four
/// are SeqCst: a ring that loaded the old pointer counted itself in before
/// the swap, so the changer's later load of the count sees it (until it is
/// done with the bell).
#[derive(Default)]
struct BellRef {
    ptr: AtomicPtr<EventBell>,
    rings: AtomicU32,
    /// Keeps the bell `ptr` points to alive.
    owned: Mutex<Option<Arc<EventBell>>>,
}

impl BellRef {
    fn ring(&self, always: bool) {
        if self.ptr.load(Ordering::Relaxed).is_null() {
            return;
        }
        self.rings.fetch_add(1, Ordering::SeqCst);
        let bell = self.ptr.load(Ordering::SeqCst);
        // SAFETY: a non-null pointer is that of the bell in `owned`, which
        // `set` drops only after the pointer was swapped away and no ring
        // counted in before the swap is still counted in; we counted
        // ourselves in before this load.
        if let Some(bell) = unsafe { bell.as_ref() } {
            if always {
                bell.ring_always();
            } else {
                bell.ring();
            }
        }
        self.rings.fetch_sub(1, Ordering::SeqCst);
    }

    /// Points at `bell` (task context: it waits for rings in progress).
    fn set(&self, bell: Option<Arc<EventBell>>) {
        let mut owned = self.owned.lock();
        let new = bell
            .as_ref()
            .map_or(std::ptr::null_mut(), |b| Arc::as_ptr(b).cast_mut());
        self.ptr.swap(new, Ordering::SeqCst);
        while self.rings.load(Ordering::SeqCst) != 0 {
            thread::yield_now();
        }
        *owned = bell;
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
/// and the caller waits its own way. The worker stays inside the lane
/// (`WORKER_IN`) across these passes, so no rescue takes the lane from a
/// worker that drives it; it leaves, and returns `done()`, if the lane is
/// evicted (the engine shuts down: the reserve then completes the I/O).
pub(crate) fn drive_until(key: usize, done: &dyn Fn() -> bool) -> bool {
    let Some(ptr) = DRIVING.with(std::cell::Cell::get) else {
        return false;
    };
    // SAFETY: set by `with_lane` on this thread, whose borrow of the lane
    // outlives this call (we run inside its `f`).
    let lane = unsafe { &*ptr };
    if lane.key() != key || done() {
        return done();
    }
    let owner = lane.owner();
    let Some(held) = owner.enter() else {
        return false;
    };
    // Inline handlers of these passes are not deferred ones, whatever
    // handler of this worker waits here.
    crate::context::outside_handler(|| {
        while !done() && !owner.evicted.load(Ordering::Relaxed) {
            lane.pass(&held, Some(done));
        }
    });
    owner.leave(held);
    done()
}

/// The ownership word under loom: a worker that enters, leaves and asks
/// the lane back, a reserve that hands it back, and an eviction, in every
/// interleaving. The lane is never held twice, and after the eviction it
/// always ends with the reserve, awake (a lost wakeup shows as loom's
/// deadlock report).
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;

    /// Holds the lane for a moment: no one else may hold it meanwhile.
    fn hold(holders: &AtomicUsize) {
        assert_eq!(
            holders.fetch_add(1, Ordering::SeqCst),
            0,
            "the lane is held twice"
        );
        holders.fetch_sub(1, Ordering::SeqCst);
    }

    #[test]
    fn one_holder_and_an_evicted_lane_ends_with_its_reserve() {
        // Exhaustive, this model takes minutes; three preemptions cover the
        // hand-back racing the eviction (found at two), unless
        // `LOOM_MAX_PREEMPTIONS` says otherwise.
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(|| {
            let owner = Arc::new(DriveOwner::default());
            let holders = Arc::new(AtomicUsize::new(0));
            let reserve = {
                let (owner, holders) = (Arc::clone(&owner), Arc::clone(&holders));
                loom::thread::spawn(move || {
                    loop {
                        match owner.reserve_holds() {
                            Some(held) => {
                                hold(&holders);
                                if owner.evicted.load(Ordering::Relaxed) {
                                    break;
                                }
                                if owner.wanted() {
                                    owner.hand_back(held);
                                } else {
                                    thread::park();
                                }
                            }
                            None => thread::park(),
                        }
                    }
                })
            };
            // Registered before anything can evict or ask back (the engine
            // starts the reserve, which registers, before it is built).
            owner.set_reserve(reserve.thread().clone());
            let worker = {
                let (owner, holders) = (Arc::clone(&owner), Arc::clone(&holders));
                loom::thread::spawn(move || {
                    let _ = owner.worker.set(thread::current());
                    for _ in 0..2 {
                        match owner.enter() {
                            Some(held) => {
                                hold(&holders);
                                owner.leave(held);
                            }
                            None => {
                                if owner.ask_back()
                                    && let Some(r) = owner.reserve.get()
                                {
                                    // The lane's bell, in the model.
                                    r.unpark();
                                }
                            }
                        }
                    }
                })
            };
            owner.evict();
            worker.join().unwrap();
            reserve.join().unwrap();
            assert!(
                owner.reserve_holds().is_some(),
                "an evicted lane ends with its reserve"
            );
        });
    }
}
