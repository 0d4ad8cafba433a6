//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod failing;
pub mod io_target;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use endio::{Bio, BioFlags, Completer};

/// How long a test waits for deferred handlers before it fails.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Pins the calling thread to `cpu`, or panics saying why.
pub fn pin(cpu: usize) {
    endio::testing::pin_current_thread(cpu)
        .unwrap_or_else(|e| panic!("cannot pin to CPU {cpu}: {e}"));
    assert_eq!(endio::testing::current_cpu(), cpu);
}

/// Counts how often each of `n` handlers ran.
#[derive(Clone)]
pub struct Tally(Arc<[AtomicU32]>);

impl Tally {
    pub fn new(n: usize) -> Tally {
        Tally((0..n).map(|_| AtomicU32::new(0)).collect())
    }

    /// A flagged nop bio whose handler counts `id`.
    pub fn bio(&self, id: usize) -> Bio {
        self.bio_then(id, || {})
    }

    /// A flagged nop bio whose handler counts `id`, then runs `work`.
    pub fn bio_then(&self, id: usize, work: impl FnOnce() + Send + 'static) -> Bio {
        let tally = self.clone();
        Bio::nop(move |_| {
            tally.0[id].fetch_add(1, Ordering::Relaxed);
            work();
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK)
    }

    /// How often handler `id` ran.
    pub fn count(&self, id: usize) -> u32 {
        self.0[id].load(Ordering::Relaxed)
    }

    /// Handlers that ran more than once.
    pub fn duplicated(&self) -> usize {
        self.0
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 1)
            .count()
    }

    pub fn ran(&self) -> usize {
        self.0
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Panics unless every handler ran exactly once.
    pub fn assert_each_ran_once(&self) {
        let lost = self
            .0
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) == 0)
            .count();
        let duplicated = self
            .0
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) > 1)
            .count();
        assert_eq!((lost, duplicated), (0, 0), "lost, duplicated handlers");
    }
}

/// Waits until the completer has run every deferred handler.
pub fn wait_idle(completer: &Completer) {
    assert!(
        completer.wait_idle(IDLE_TIMEOUT),
        "deferred handlers did not run within {IDLE_TIMEOUT:?}: {:?}",
        completer.stats().total
    );
}
