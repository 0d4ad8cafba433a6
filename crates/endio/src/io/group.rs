//! A completion group: a wait that ends only when every bio counted in has
//! been completed *and its handler has returned*.
//!
//! [`Device::drain`] waits until the device has no bio in flight; a handler
//! queued to run in task context, and whatever bios it submits, are not in
//! flight at that moment, so a chain of handlers that resubmit outlives the
//! drain. A [`Group`] counts a bio from its submit until its handler has
//! returned:
//!
//! 1. [`Group::submit`] (or [`Group::add`]) raises the group's count by one
//!    and replaces the bio's handler with one that runs the original handler
//!    and then lowers the count. The count is held by a member value moved
//!    into the new handler, so it falls also when the handler unwinds or the
//!    bio is dropped without being completed.
//! 2. A handler that submits more bios into the same group raises the count
//!    for each *before* it returns, and its own member falls only after it
//!    returns: the count cannot pass through zero while the chain goes on.
//! 3. The member that brings the count to zero takes the group's lock and
//!    wakes every waiter. [`Group::wait`] checks the count under that lock
//!    and sleeps on the condition variable, which releases it atomically: a
//!    waiter either sees zero or is asleep when the wake-up comes, so no
//!    wake-up is lost.
//!
//! The count rises before the bio is queued (step 1) and falls only after
//! its handler returned (step 2), so when `wait` returns every bio counted
//! in has ended and no handler of the group is running or will run.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::check::SubmitError;
use super::device::Device;
use crate::bio::Bio;
use crate::context;

/// Counts bios in until their handlers have returned, and waits for them
/// all: the wait for "all my I/O, and the I/O its handlers started, is
/// done".
///
/// ```no_run
/// # fn f(dev: &endio::Device) -> Result<(), endio::SubmitError> {
/// use endio::{Bio, BioFlags, Group};
///
/// let group = Group::new();
/// let (g, d) = (group.clone(), dev.clone());
/// let first = Bio::write(0, dev.buf(4096), move |done| {
///     // Runs in task context; a bio it submits into `g` keeps the group open.
///     let again = done.into_bio(|_| {}).with_flags(BioFlags::COMPLETE_IN_TASK);
///     g.submit(&d, again).expect("resubmit");
/// });
/// group.submit(dev, first.with_flags(BioFlags::COMPLETE_IN_TASK))?;
/// group.wait(); // both writes done, both handlers returned
/// # Ok(()) }
/// ```
///
/// Cheap to clone; clones share the count. Do not wait on a group from a
/// handler counted in it: the handler holds the group open while it waits.
#[derive(Clone, Default)]
pub struct Group {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Bios counted in whose handlers have not returned.
    members: AtomicU64,
    /// Taken by waiters to check `members`, and by the last member to wake them.
    lock: Mutex<()>,
    idle: Condvar,
}

/// One bio's place in the group; dropped after its handler returned.
struct Member(Arc<Shared>);

impl Drop for Member {
    fn drop(&mut self) {
        // AcqRel: the handler's effects happen before a waiter's return,
        // which reads the count with Acquire.
        if self.0.members.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taking the lock orders this wake-up after a waiter's check
            // (step 3 of the module docs); held only for the notify.
            let _held = self.0.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.0.idle.notify_all();
        }
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group::default()
    }

    /// Counts `bio` in (see [`add`](Self::add)) and submits it to `dev`
    /// with [`Device::submit`]. A refused bio comes back inside the error
    /// still counted in: it leaves the group when it is dropped, or when it
    /// is submitted again and its handler has returned.
    pub fn submit(&self, dev: &Device, bio: Bio) -> Result<(), SubmitError> {
        dev.submit(self.add(bio))
    }

    /// As [`submit`](Self::submit), with [`Device::try_submit`] (never
    /// waits for a slot).
    pub fn try_submit(&self, dev: &Device, bio: Bio) -> Result<(), SubmitError> {
        dev.try_submit(self.add(bio))
    }

    /// `bio`, counted in this group until its handler has returned (or the
    /// bio is dropped unhandled), to submit in any way.
    pub fn add(&self, bio: Bio) -> Bio {
        // Relaxed: the count only has to be raised before the bio can
        // complete, which the submit that follows orders.
        self.shared.members.fetch_add(1, Ordering::Relaxed);
        let member = Member(Arc::clone(&self.shared));
        bio.wrap_handler(move |handler| {
            move |ended| {
                handler.call(ended);
                drop(member);
            }
        })
    }

    /// Bios counted in whose handlers have not yet returned.
    pub fn len(&self) -> u64 {
        self.shared.members.load(Ordering::Acquire)
    }

    /// Whether no bio is counted in.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every bio counted in has completed and its handler has
    /// returned, including bios that handlers submitted into the group
    /// before returning.
    ///
    /// # Panics
    ///
    /// In atomic context, where waiting is not allowed.
    pub fn wait(&self) {
        assert!(
            !context::in_atomic(),
            "Group::wait called in atomic context (a reaper or an atomic section), where it may not wait; wait from task context"
        );
        self.wait_until(None);
    }

    /// As [`wait`](Self::wait), for at most `timeout`; `false` if bios were
    /// still counted in then. In atomic context it only looks.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        if context::in_atomic() {
            return self.is_empty();
        }
        self.wait_until(Some(Instant::now() + timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let s = &self.shared;
        let mut held = s.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while s.members.load(Ordering::Acquire) != 0 {
            held = match deadline {
                None => s.idle.wait(held).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    s.idle
                        .wait_timeout(held, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
        true
    }
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("members", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_leaves_after_its_handler_and_when_dropped_unhandled() {
        let group = Group::new();
        let g = group.clone();
        let bio = group.add(Bio::nop(move |_| {
            assert_eq!(g.len(), 1, "still counted in")
        }));
        assert_eq!(group.len(), 1);
        bio.run_handler();
        assert!(group.is_empty());
        assert!(group.wait_timeout(Duration::ZERO));

        let dropped = group.add(Bio::nop(|_| {}));
        assert!(!group.wait_timeout(Duration::from_millis(1)));
        drop(dropped);
        assert!(group.wait_timeout(Duration::ZERO));
    }

    #[test]
    fn a_handler_that_adds_keeps_the_group_open() {
        let group = Group::new();
        let g = group.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let first = group.add(Bio::nop(move |_| tx.send(g.add(Bio::nop(|_| {}))).unwrap()));
        let waiter = {
            let group = group.clone();
            std::thread::spawn(move || {
                group.wait();
                group.len()
            })
        };
        first.run_handler();
        let second = rx.recv().unwrap();
        assert_eq!(group.len(), 1, "the second bio holds the group");
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "wait returned with a bio counted in");
        second.run_handler();
        assert_eq!(waiter.join().unwrap(), 0);
    }
}
