//! The per-CPU batch list: a multi-producer, lock-free push and a take-all.
//!
//! The producer side is one compare-and-swap loop on the list head: it never
//! blocks, never takes a lock and never allocates (the link lives inside the
//! bio's own node), so a producer in atomic context never waits. The
//! consumer takes the whole list with one swap and reverses it, so handlers
//! run in completion order. A list can also be *closed* (its CPU is dead): a
//! push to a closed list fails and hands the bio back, so the caller can put
//! it elsewhere; nothing is ever pushed where nobody will look.
//!
//! io_uring moved its task_work from a lock-less list (the kernel's `llist`)
//! to a locked FIFO because the reversal costs cycles on bursts. endio keeps
//! the lock-less list: the reversal is paid by the worker (task context), one
//! pass over nodes the worker is about to touch anyway, while a lock on the
//! producer side can be held by a preempted thread and so block the atomic
//! side, which must never wait.

use std::ptr;

use crate::bio::{Bio, Node};
use crate::sync::{AtomicPtr, Ordering};

/// The head value of a closed list. Nodes are boxed and aligned to 8, so no
/// node lives at address 1.
fn closed() -> *mut Node {
    ptr::without_provenance_mut(1)
}

/// What a push found.
#[derive(Debug)]
pub(crate) enum Pushed {
    /// The list was empty: this push made it non-empty, and the pusher must
    /// wake the consumer (the only wakeup of a batch).
    WasEmpty,
    /// The list already held bios; their consumer has been woken already.
    NotEmpty,
    /// The list is closed; the bio is handed back, untouched.
    Closed(Bio),
}

/// A lock-free LIFO list of bios that is consumed whole.
#[derive(Debug)]
pub(crate) struct Queue {
    head: AtomicPtr<Node>,
}

impl Queue {
    #[cfg(any(test, loom))]
    pub(crate) fn new() -> Queue {
        Queue {
            head: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// A closed queue: pushes are refused until [`Queue::open`].
    pub(crate) fn new_closed() -> Queue {
        Queue {
            head: AtomicPtr::new(closed()),
        }
    }

    /// Pushes `bio`. Lock-free: retries only when another push or a take
    /// changed the head in between.
    pub(crate) fn push(&self, bio: Bio) -> Pushed {
        let node = bio.into_raw();
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            if head == closed() {
                // SAFETY: `node` came from `Bio::into_raw` just above and was
                // never published (no compare-and-swap succeeded).
                return Pushed::Closed(unsafe { Bio::from_raw(node) });
            }
            // SAFETY: `node` is ours until the compare-and-swap below
            // publishes it.
            unsafe { (*node).next.store(head, Ordering::Relaxed) };
            // Release: the node's fields and its `next` must be visible to the
            // consumer that acquires the head. Acquire: a push that lands on
            // a freshly opened queue sees what `open`'s Release published (the
            // CPU's registered worker). Free on x86, where a compare-and-swap
            // is a full barrier anyway.
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if head.is_null() => return Pushed::WasEmpty,
                Ok(_) => return Pushed::NotEmpty,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every bio, oldest first. An open list stays open and a closed
    /// one closed; the caller must not race [`Queue::close`] or
    /// [`Queue::open`] (they are serialised by the CPU's control lock).
    pub(crate) fn take_all(&self) -> BioList {
        // Relaxed: only a hint that saves the swap (and its cache-line
        // ownership) when there is nothing to take.
        let head = self.head.load(Ordering::Relaxed);
        if head.is_null() || head == closed() {
            return BioList::new();
        }
        // Acquire: pairs with the Release of every push in the head's release
        // sequence, so all nodes of the chain are visible.
        let chain = self.head.swap(ptr::null_mut(), Ordering::Acquire);
        // SAFETY: the swap made us the sole owner of the chain; it was not
        // closed (only `close` stores `closed()`, and it is serialised with us).
        unsafe { BioList::from_lifo_chain(chain) }
    }

    /// Closes the list and takes what it held, oldest first. Pushes fail from
    /// now on.
    pub(crate) fn close(&self) -> BioList {
        // Acquire: as in `take_all`.
        let chain = self.head.swap(closed(), Ordering::Acquire);
        if chain == closed() {
            return BioList::new();
        }
        // SAFETY: the swap made us the sole owner of the chain.
        unsafe { BioList::from_lifo_chain(chain) }
    }

    /// Reopens a closed list (no effect on an open one).
    pub(crate) fn open(&self) {
        // Release: a producer whose push succeeds on the opened list (its
        // compare-and-swap acquires) sees everything set up before, the
        // worker's registration in particular.
        let _ = self.head.compare_exchange(
            closed(),
            ptr::null_mut(),
            Ordering::Release,
            Ordering::Relaxed,
        );
    }

    /// An identity of the list's current head (a snapshot): it changes with
    /// every push and take, so equal values around a wait mean nothing was
    /// pushed meanwhile (a take cannot happen: only the waiting worker takes).
    pub(crate) fn head_token(&self) -> usize {
        self.head.load(Ordering::Relaxed).addr()
    }

    /// Whether the list holds no bio (a snapshot).
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        head.is_null() || head == closed()
    }

    /// Whether the list is closed (a snapshot).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn is_closed(&self) -> bool {
        self.head.load(Ordering::Relaxed) == closed()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        drop(self.close());
    }
}

/// An owned FIFO of bios taken from a [`Queue`], linked through the nodes.
pub(crate) struct BioList {
    head: *mut Node,
    tail: *mut Node,
    len: usize,
}

// SAFETY: a `BioList` is the sole owner of its nodes, and a node is as `Send`
// as the `Bio` it was (its handler is `Send`); moving the list moves that
// ownership, no node is reachable from elsewhere.
unsafe impl Send for BioList {}

impl BioList {
    pub(crate) const fn new() -> BioList {
        BioList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    /// Reverses a LIFO chain (newest first) into a FIFO list.
    ///
    /// # Safety
    ///
    /// The caller owns every node of the chain, which ends in null.
    unsafe fn from_lifo_chain(mut chain: *mut Node) -> BioList {
        let mut list = BioList::new();
        list.tail = chain;
        while !chain.is_null() {
            // SAFETY: we own the chain (contract); the Acquire that gave it to
            // us made every `next` visible.
            let next = unsafe { (*chain).next.load(Ordering::Relaxed) };
            // SAFETY: as above.
            unsafe { (*chain).next.store(list.head, Ordering::Relaxed) };
            list.head = chain;
            list.len += 1;
            chain = next;
        }
        list
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Takes the oldest bio.
    pub(crate) fn pop_front(&mut self) -> Option<Bio> {
        if self.head.is_null() {
            return None;
        }
        let node = self.head;
        // SAFETY: we own `node`, a live node of this list.
        self.head = unsafe { (*node).next.load(Ordering::Relaxed) };
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= 1;
        // SAFETY: `node` came from `Bio::into_raw` (pushes) and is unlinked.
        let bio = unsafe { Bio::from_raw(node) };
        bio.node.next.store(ptr::null_mut(), Ordering::Relaxed);
        Some(bio)
    }
}

impl BioList {
    /// Moves all of `other` behind the bios of `self`.
    pub(crate) fn append(&mut self, mut other: BioList) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() {
            std::mem::swap(self, &mut other);
            return;
        }
        // SAFETY: we own our tail node, a live node of this list.
        unsafe { (*self.tail).next.store(other.head, Ordering::Relaxed) };
        self.tail = other.tail;
        self.len += other.len;
        other.head = ptr::null_mut();
        other.tail = ptr::null_mut();
        other.len = 0;
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        if self.len > 0 {
            tracing::error!(
                bios = self.len,
                "endio dropped bios without running their handlers (a bug in endio)"
            );
        }
        while let Some(bio) = self.pop_front() {
            drop(bio);
        }
    }
}

impl std::fmt::Debug for BioList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BioList").field("len", &self.len).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn tagged(order: &Arc<Mutex<Vec<u32>>>, tag: u32) -> Bio {
        let order = Arc::clone(order);
        Bio::nop(move |_| order.lock().unwrap().push(tag))
    }

    #[test]
    fn take_all_is_fifo() {
        let q = Queue::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        assert!(matches!(q.push(tagged(&order, 0)), Pushed::WasEmpty));
        for i in 1..5 {
            assert!(matches!(q.push(tagged(&order, i)), Pushed::NotEmpty));
        }
        let mut list = q.take_all();
        assert_eq!(list.len(), 5);
        assert!(q.is_empty());
        assert!(matches!(q.push(tagged(&order, 5)), Pushed::WasEmpty));
        while let Some(bio) = list.pop_front() {
            bio.run_handler();
        }
        let mut list = q.take_all();
        assert_eq!(list.len(), 1);
        list.pop_front().unwrap().run_handler();
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_closed_queue_hands_the_bio_back() {
        let q = Queue::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        q.push(tagged(&order, 0));
        let mut left = q.close();
        assert!(q.is_closed());
        left.pop_front().unwrap().run_handler();
        let Pushed::Closed(bio) = q.push(tagged(&order, 1)) else {
            panic!("a closed queue accepted a bio");
        };
        assert!(q.take_all().is_empty());
        q.open();
        assert!(matches!(q.push(bio), Pushed::WasEmpty));
        left = q.take_all();
        while let Some(bio) = left.pop_front() {
            bio.run_handler();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1]);
    }
}
