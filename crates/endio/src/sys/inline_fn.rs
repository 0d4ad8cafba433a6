//! A once-callable closure taking one argument, stored in place: what a bio
//! keeps its handler in, so that making a bio does not allocate for it.
//!
//! [`InlineFnOnce<A>`] is a `dyn FnOnce(A) + Send` that lives inside its
//! owner instead of behind a `Box`: [`INLINE_BYTES`] bytes of storage
//! (aligned to 16) and two function pointers, one that moves the closure out
//! and calls it, one that drops it un-run. A closure that is larger or more
//! aligned than the storage is boxed, and the box (one pointer) is stored in
//! place instead: it still works, with one allocation.
//!
//! Exactly one of the two pointers runs, exactly once: [`InlineFnOnce::call`]
//! consumes the value without running its `Drop`, and `Drop` runs only for
//! a value never called. A closure that panics has already been moved out of
//! the storage into the call, so unwinding drops what it captured once, in
//! the call's frame, and nothing is left in the storage to drop again.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::{self, ManuallyDrop, MaybeUninit};
use std::ptr;

/// Bytes of a closure kept in place (six words on 64-bit targets).
pub(crate) const INLINE_BYTES: usize = 48;

/// Alignment of the in-place storage.
pub(crate) const INLINE_ALIGN: usize = 16;

/// The storage: plain bytes, aligned to [`INLINE_ALIGN`]. `MaybeUninit`
/// bytes carry whatever they hold (pointer provenance included) when the
/// owner is moved.
#[repr(C, align(16))]
struct Storage([MaybeUninit<u8>; INLINE_BYTES]);

// The attribute above must say INLINE_ALIGN.
const _: () = assert!(mem::align_of::<Storage>() == INLINE_ALIGN);

/// A `FnOnce(A) + Send + 'static` closure, in place when it fits.
pub(crate) struct InlineFnOnce<A> {
    storage: Storage,
    /// Moves the closure of type `F` out of the storage and calls it.
    call: unsafe fn(*mut Storage, A),
    /// Drops the closure of type `F` in the storage.
    drop: unsafe fn(*mut Storage),
    /// `Send` (every closure stored is), not `Sync` (as `Box<dyn FnOnce +
    /// Send>`); and the argument type, which is only ever passed in.
    _marker: Marker<A>,
}

/// See [`InlineFnOnce`]'s field.
type Marker<A> = PhantomData<(fn(A), Cell<()>)>;

/// Whether a value of type `F` is kept in place.
pub(crate) const fn fits<F>() -> bool {
    mem::size_of::<F>() <= INLINE_BYTES && mem::align_of::<F>() <= INLINE_ALIGN
}

/// Moves the `F` out of `storage` and calls it with `arg`.
///
/// # Safety
///
/// `storage` holds a live `F` (written by [`InlineFnOnce::in_place`]) that
/// is not used again.
unsafe fn call_in_place<F: FnOnce(A), A>(storage: *mut Storage, arg: A) {
    // SAFETY: by the contract `storage` holds a live `F`, and it is aligned
    // for `F` (`fits::<F>()` was checked when it was written); reading moves
    // it out, and the caller never touches it again.
    let f = unsafe { ptr::read(storage.cast::<F>()) };
    f(arg);
}

/// Drops the `F` in `storage`.
///
/// # Safety
///
/// `storage` holds a live `F` (written by [`InlineFnOnce::in_place`]) that
/// is not used again.
unsafe fn drop_in_place<F>(storage: *mut Storage) {
    // SAFETY: by the contract `storage` holds a live, aligned `F`, which is
    // dropped here once and never used again.
    unsafe { ptr::drop_in_place(storage.cast::<F>()) };
}

impl<A> InlineFnOnce<A> {
    /// Stores `f`: in place if it fits, else boxed (one allocation) with
    /// the box in place.
    pub(crate) fn new<F>(f: F) -> InlineFnOnce<A>
    where
        F: FnOnce(A) + Send + 'static,
    {
        if fits::<F>() {
            InlineFnOnce::in_place(f)
        } else {
            // A `Box<F>` is itself a one-word `FnOnce(A)`.
            InlineFnOnce::in_place(Box::new(f))
        }
    }

    /// Whether a closure of type `F` would be stored without allocating.
    #[allow(dead_code)]
    pub(crate) const fn stores_in_place<F>() -> bool {
        fits::<F>()
    }

    fn in_place<F>(f: F) -> InlineFnOnce<A>
    where
        F: FnOnce(A) + Send + 'static,
    {
        // Checked by the only caller; a constant after monomorphization.
        assert!(fits::<F>(), "a closure that does not fit is boxed first");
        let mut storage = Storage([MaybeUninit::uninit(); INLINE_BYTES]);
        // SAFETY: the storage is at least as large and as aligned as `F`
        // (asserted above) and holds nothing yet; from here on it holds a
        // live `F`, which exactly one of `call` and `drop` consumes.
        unsafe { ptr::write(ptr::from_mut(&mut storage).cast::<F>(), f) };
        InlineFnOnce {
            storage,
            call: call_in_place::<F, A>,
            drop: drop_in_place::<F>,
            _marker: PhantomData,
        }
    }

    /// Calls the closure with `arg`, consuming it.
    pub(crate) fn call(self, arg: A) {
        // Our `Drop` must not run: the call moves the closure out.
        let mut this = ManuallyDrop::new(self);
        let call = this.call;
        // SAFETY: the storage holds the live closure `call` was made for
        // (written by `in_place`, not yet consumed: `self` was owned), and
        // `this` is never dropped nor used again, also if the call unwinds.
        unsafe { call(ptr::from_mut(&mut this.storage), arg) };
    }
}

impl<A> Drop for InlineFnOnce<A> {
    fn drop(&mut self) {
        // SAFETY: a value being dropped was never called (`call` consumes
        // it without dropping), so the storage holds the live closure
        // `drop` was made for; it is not used after this.
        unsafe { (self.drop)(ptr::from_mut(&mut self.storage)) };
    }
}

// SAFETY: every closure stored is `Send` (the bound of `new`; a boxed one
// is a `Box` of a `Send` closure), and the function pointers are plain
// code; moving the storage to another thread moves the closure.
unsafe impl<A> Send for InlineFnOnce<A> {}

impl<A> fmt::Debug for InlineFnOnce<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InlineFnOnce { .. }")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Tally(Arc<AtomicUsize>);

    impl Drop for Tally {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tally() -> (Tally, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        (Tally(Arc::clone(&n)), n)
    }

    #[test]
    fn a_small_closure_is_kept_in_place_and_called_once() {
        let (t, drops) = tally();
        let seen = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&seen);
        let f = move |x: usize| {
            let _keep = &t;
            s.store(x, Ordering::SeqCst);
        };
        assert!(fits::<&dyn Fn()>());
        assert!(InlineFnOnce::<usize>::stores_in_place::<(
            Tally,
            Arc<AtomicUsize>
        )>());
        let g = InlineFnOnce::new(f);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        g.call(7);
        assert_eq!(seen.load(Ordering::SeqCst), 7);
        assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped once, by the call");
    }

    #[test]
    fn a_large_closure_is_boxed_and_still_works() {
        let (t, drops) = tally();
        let big = [3u64; 16];
        assert!(!fits::<[u64; 16]>());
        let g = InlineFnOnce::new(move |x: u64| {
            let _keep = &t;
            assert_eq!(big.iter().sum::<u64>() + x, 49);
        });
        g.call(1);
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        let (t, drops) = tally();
        let g = InlineFnOnce::new(move |_: ()| {
            let _keep = (&t, big);
        });
        drop(g);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "a boxed closure dropped un-run"
        );
    }

    #[test]
    fn an_over_aligned_closure_is_boxed_and_aligned() {
        #[repr(align(64))]
        struct Wide(u8);
        assert!(!fits::<Wide>());
        let w = Wide(5);
        let g = InlineFnOnce::new(move |x: u8| {
            assert_eq!(ptr::from_ref(&w).addr() % 64, 0);
            assert_eq!(w.0 + x, 6);
        });
        g.call(1);
        // 16 fits in place.
        #[repr(align(16))]
        struct Sixteen(u8);
        assert!(fits::<Sixteen>());
        let s = Sixteen(2);
        InlineFnOnce::new(move |x: u8| {
            assert_eq!(ptr::from_ref(&s).addr() % 16, 0);
            assert_eq!(s.0 + x, 3);
        })
        .call(1);
    }

    #[test]
    fn dropping_an_uncalled_closure_drops_it_once() {
        let (t, drops) = tally();
        let g = InlineFnOnce::new(move |_: ()| drop(t));
        drop(g);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_panicking_closure_drops_its_captures_once() {
        for big in [false, true] {
            let (t, drops) = tally();
            let pad = [0u8; 64];
            let g = if big {
                InlineFnOnce::new(move |_: ()| {
                    let _keep = (&t, pad);
                    panic!("handler panics");
                })
            } else {
                InlineFnOnce::new(move |_: ()| {
                    let _keep = &t;
                    panic!("handler panics");
                })
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| g.call(())));
            assert!(outcome.is_err());
            assert_eq!(drops.load(Ordering::SeqCst), 1, "big: {big}");
        }
    }

    #[test]
    fn a_zero_sized_closure_works() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let f = |x: usize| {
            CALLS.fetch_add(x, Ordering::SeqCst);
        };
        assert_eq!(mem::size_of_val(&f), 0);
        InlineFnOnce::new(f).call(2);
        drop(InlineFnOnce::new(f));
        assert_eq!(CALLS.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn it_moves_to_another_thread() {
        let (t, drops) = tally();
        let g = InlineFnOnce::new(move |x: u32| {
            let _keep = &t;
            assert_eq!(x, 9);
        });
        std::thread::spawn(move || g.call(9)).join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
