//! The designs checked: the patch as posted, as fixed after the review, and
//! as merged.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::kernel::{Code, Protection, ReschedCheck};

/// A version of the kernel design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Design {
    /// v6 exactly as posted: `local_lock` around the per-CPU `bio_list`, a
    /// per-CPU delayed work (1 jiffy), no requeue on CPU online, no re-entry
    /// guard in `bio_complete_in_task()`.
    V6,
    /// v6 with the fixes its author accepted in the review: requeue on CPU
    /// online (nothing stranded after a rollback), `local_irq_save()`
    /// instead of `local_lock` (no sleeping lock in atomic context),
    /// `BIO_COMPLETE_IN_TASK` as re-entry guard in `bio_complete_in_task()`
    /// (re-deferral bounded).
    V6Fixed,
    /// As merged for Linux 7.3: the fixes, and no batching delay (a plain
    /// work item, queued only when the list was empty), `local_irq_save()`
    /// around a FIFO `bio_list`, `WQ_MEM_RECLAIM | WQ_PERCPU`.
    Merged,
}

impl Design {
    /// Every design, in report order.
    pub const ALL: [Design; 3] = [Design::V6, Design::V6Fixed, Design::Merged];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Design::V6 => "v6",
            Design::V6Fixed => "v6-fixed",
            Design::Merged => "merged",
        }
    }

    /// The design's code, as far as the model is concerned.
    pub(crate) fn code(self) -> Code {
        match self {
            Design::V6 => Code {
                protection: Protection::LocalLock,
                delayed: true,
                requeue_on_online: false,
                reentry_guard: false,
                resched: ReschedCheck::PerBatch,
            },
            Design::V6Fixed => Code {
                protection: Protection::LocalIrqSave,
                delayed: true,
                requeue_on_online: true,
                reentry_guard: true,
                resched: ReschedCheck::PerBatch,
            },
            Design::Merged => Code {
                protection: Protection::LocalIrqSave,
                delayed: false,
                requeue_on_online: true,
                reentry_guard: true,
                resched: ReschedCheck::PerBatch,
            },
        }
    }
}

impl fmt::Display for Design {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown design name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownDesign(pub String);

impl fmt::Display for UnknownDesign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown design {:?}; the designs are v6, v6-fixed and merged",
            self.0
        )
    }
}

impl std::error::Error for UnknownDesign {}

impl FromStr for Design {
    type Err = UnknownDesign;

    fn from_str(s: &str) -> Result<Design, UnknownDesign> {
        Design::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownDesign(s.to_owned()))
    }
}
