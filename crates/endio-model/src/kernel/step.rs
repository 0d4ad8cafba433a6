//! A transition being built: the state it leads to, its edge flags and its
//! narration.

use super::scenario::Context;
use super::state::{Executor, State};
use crate::explore::Transition;
use crate::property::Property;

/// Edge flag: the step deferred a bio that had been deferred before.
pub(crate) const REDEFER: u8 = 1 << 0;
/// Edge flag: an executor ran a handler.
pub(crate) const WORKER_HANDLER: u8 = 1 << 1;
/// Edge flag: an executor checked `need_resched()` (or called
/// `cond_resched()`), or its run started or ended (the workqueue calls
/// `cond_resched()` between work items).
pub(crate) const CHECKPOINT: u8 = 1 << 2;

/// A step is not enabled: it would block (on a held lock).
pub(super) struct Blocked;

/// A completion context: what runs, on which CPU, as which executor.
#[derive(Clone, Copy)]
pub(super) struct Caller {
    pub(super) kind: Context,
    pub(super) cpu: u8,
    pub(super) who: Option<Executor>,
}

/// A transition being built.
pub(super) struct Step {
    pub(super) state: State,
    pub(super) flags: u8,
    pub(super) text: Option<String>,
}

impl Step {
    pub(super) fn new(s: &State, narrate: bool) -> Step {
        Step {
            state: s.clone(),
            flags: 0,
            text: narrate.then(String::new),
        }
    }

    /// Appends to the narration (only computed when narrating).
    pub(super) fn say(&mut self, part: impl FnOnce() -> String) {
        if let Some(text) = &mut self.text {
            text.push_str(&part());
        }
    }

    pub(super) fn fault(&mut self, property: Property, part: impl FnOnce() -> String) {
        self.state.fault = Some(property);
        self.say(part);
    }

    pub(super) fn push(self, out: &mut Vec<Transition<State>>) {
        out.push(Transition {
            target: self.state,
            flags: self.flags,
            text: self.text.unwrap_or_default(),
        });
    }
}

/// `mod_delayed_work_on()`'s delay.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Delay {
    Jiffy,
    Now,
}
