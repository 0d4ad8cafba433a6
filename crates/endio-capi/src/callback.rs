//! The outstanding callbacks of a device, and which device's callback the
//! calling thread is running: what makes a drain from inside a callback
//! refuse itself instead of waiting for its own caller.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// The outstanding callbacks of a device.
#[derive(Debug, Default)]
pub(crate) struct Callbacks {
    count: Mutex<u64>,
    none: Condvar,
}

impl Callbacks {
    pub(crate) fn add(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
    }

    pub(crate) fn done(&self) {
        let mut n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        *n -= 1;
        if *n == 0 {
            self.none.notify_all();
        }
    }

    pub(crate) fn outstanding(&self) -> u64 {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until every counted callback has returned.
    pub(crate) fn wait_none(&self) {
        let n = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        drop(
            self.none
                .wait_while(n, |n| *n > 0)
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

thread_local! {
    /// The device whose callback this thread is running, if any.
    pub(crate) static IN_CALLBACK: RefCell<Option<Arc<Callbacks>>> = const { RefCell::new(None) };
}

/// The callbacks of the device whose callback this thread runs, if any.
pub(crate) fn in_callback() -> Option<Arc<Callbacks>> {
    IN_CALLBACK.try_with(|c| c.borrow().clone()).ok().flatten()
}
