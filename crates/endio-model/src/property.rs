//! The properties a check decides.

use std::fmt;

use serde::Serialize;

/// A property of the design, checked on every reachable state (or, for the
/// two "unbounded" ones, on every reachable cycle of the state graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Property {
    /// No bio is taken off a list and run without a `bi_end_io`.
    HandlerPresent,
    /// Every bio's handler runs exactly once: never twice, and in a
    /// quiescent state every completed bio's handler has run.
    ExactlyOnce,
    /// In a quiescent state (no interrupt, worker, timer or hotplug step left
    /// to happen) no bio is queued on a list.
    NothingStranded,
    /// No per-CPU list is modified by two contexts without mutual exclusion.
    MutualExclusion,
    /// No sleeping lock is taken in a context that must not sleep.
    NoSleepInAtomic,
    /// No bio is re-deferred without bound: no reachable cycle of the state
    /// graph defers a bio that was deferred before.
    BoundedRedeferral,
    /// A worker runs at most one handler between two `need_resched()`
    /// checks.
    BoundedHandlerRun,
}

impl Property {
    /// Every property, in report order.
    pub const ALL: [Property; 7] = [
        Property::HandlerPresent,
        Property::ExactlyOnce,
        Property::NothingStranded,
        Property::MutualExclusion,
        Property::NoSleepInAtomic,
        Property::BoundedRedeferral,
        Property::BoundedHandlerRun,
    ];

    /// The property in words.
    pub fn describe(self) -> &'static str {
        match self {
            Property::HandlerPresent => "no deferred bio runs without a handler",
            Property::ExactlyOnce => "every bio's handler runs exactly once",
            Property::NothingStranded => "no bio queued in a quiescent state",
            Property::MutualExclusion => {
                "no list modified by two contexts without mutual exclusion"
            }
            Property::NoSleepInAtomic => "no sleeping lock taken in atomic context",
            Property::BoundedRedeferral => "no unbounded re-deferral",
            Property::BoundedHandlerRun => "at most 1 handler between need_resched() checks",
        }
    }
}

impl fmt::Display for Property {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}
