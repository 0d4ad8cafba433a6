//! Execution context: may this thread block?
//!
//! The kernel asks `bio_in_atomic()`: hard or soft IRQ, preemption disabled,
//! inside an RCU read section. A userspace thread has no preempt count, so
//! endio keeps one per thread: code that must never block (an io_uring
//! completion reaper, an event loop, a poller) marks itself with the RAII
//! guard [`atomic()`], and [`in_atomic()`] tells whether the calling thread is
//! inside such a section. Sections nest.
//!
//! Where nothing can be tracked (the kernel built without
//! `CONFIG_PREEMPT_COUNT`, where `bio_in_atomic()` is always true),
//! [`ContextPolicy::AlwaysAtomic`] makes every thread count as atomic except
//! endio's own workers, which are task context by construction. Together with
//! the re-entry guard of [`Completer::complete_in_task`] this can never defer a
//! bio forever (re-deferral is bounded).
//!
//! [`Completer::complete_in_task`]: crate::Completer::complete_in_task

use std::cell::Cell;
use std::marker::PhantomData;

use crate::sync::const_thread_local;

/// How endio decides whether the calling thread is atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextPolicy {
    /// A thread is atomic while it holds an [`atomic()`] guard.
    #[default]
    Tracked,
    /// Every thread but endio's workers is atomic (`!CONFIG_PREEMPT_COUNT`):
    /// nothing can be proven preemptible, so every flagged completion outside
    /// a worker is deferred. Inside a worker, an explicit [`atomic()`]
    /// section is still atomic.
    AlwaysAtomic,
}

#[derive(Clone, Copy)]
struct ThreadContext {
    /// The CPU whose batch the handler running now came from.
    draining_cpu: Option<usize>,
    /// Nesting depth of `atomic()` guards.
    atomic_depth: u32,
    /// This thread is one of endio's workers (or drains a batch in task
    /// context on endio's behalf).
    task_worker: bool,
    /// The CPU whose worker this thread is (`usize::MAX`: none).
    worker_of: usize,
}

const_thread_local! {
    static CONTEXT: Cell<ThreadContext> =
        Cell::new(ThreadContext { draining_cpu: None, atomic_depth: 0, task_worker: false, worker_of: usize::MAX });
}

/// Marks the calling thread atomic ("must not block") until the guard drops.
///
/// ```
/// use endio::context;
///
/// assert!(!context::in_atomic());
/// {
///     let _atomic = context::atomic();
///     assert!(context::in_atomic());
/// }
/// assert!(!context::in_atomic());
/// ```
///
/// # Panics
///
/// If sections nest more than `u32::MAX` deep (a guard leaked in a loop).
pub fn atomic() -> AtomicSection {
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.atomic_depth = ctx.atomic_depth.checked_add(1).expect(
            "atomic sections nested 4 billion deep: an AtomicSection guard is leaked in a loop",
        );
        c.set(ctx);
    });
    AtomicSection {
        _not_send: PhantomData,
    }
}

/// Whether the calling thread is inside an [`atomic()`] section.
pub fn in_atomic() -> bool {
    CONTEXT.with(|c| c.get().atomic_depth > 0)
}

/// The guard of an atomic section; the section ends when it drops. It stays
/// on the thread that made it (`!Send`).
#[derive(Debug)]
#[must_use = "the section ends when the guard drops; bind it: `let _atomic = context::atomic();`"]
pub struct AtomicSection {
    _not_send: PhantomData<*const ()>,
}

impl Drop for AtomicSection {
    fn drop(&mut self) {
        CONTEXT.with(|c| {
            let mut ctx = c.get();
            ctx.atomic_depth -= 1;
            c.set(ctx);
        });
    }
}

/// Whether the calling thread must not run a task-context handler now, under
/// `policy` (`bio_in_atomic()`).
pub(crate) fn atomic_under(policy: ContextPolicy) -> bool {
    CONTEXT.with(|c| {
        let ctx = c.get();
        match policy {
            ContextPolicy::Tracked => ctx.atomic_depth > 0,
            ContextPolicy::AlwaysAtomic => !ctx.task_worker || ctx.atomic_depth > 0,
        }
    })
}

/// Inside a deferred handler: the CPU whose batch it was deferred to (run by
/// that CPU's worker, a rescue thread, or `cpu_dead`'s drain). `None`
/// elsewhere, inline handlers included.
pub fn draining_cpu() -> Option<usize> {
    CONTEXT.with(|c| c.get().draining_cpu)
}

/// Runs `f` with [`draining_cpu`] reporting `cpu`.
pub(crate) fn with_draining_cpu<R>(cpu: usize, f: impl FnOnce() -> R) -> R {
    let outer = CONTEXT.with(|c| {
        let mut ctx = c.get();
        let outer = ctx.draining_cpu.replace(cpu);
        c.set(ctx);
        outer
    });
    let result = f();
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.draining_cpu = outer;
        c.set(ctx);
    });
    result
}

/// Runs `f` with [`draining_cpu`] reporting `None` (a lane's pass inside a
/// handler: the handlers it runs inline are not deferred ones).
pub(crate) fn outside_handler<R>(f: impl FnOnce() -> R) -> R {
    let outer = CONTEXT.with(|c| {
        let mut ctx = c.get();
        let outer = ctx.draining_cpu.take();
        c.set(ctx);
        outer
    });
    let result = f();
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.draining_cpu = outer;
        c.set(ctx);
    });
    result
}

/// Marks the calling thread as the worker of `cpu` for the rest of its life
/// (and a task-context worker).
pub(crate) fn become_worker_of(cpu: usize) {
    become_task_worker();
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.worker_of = cpu;
        c.set(ctx);
    });
}

/// Whether the calling thread is the worker of `cpu`.
#[inline]
pub(crate) fn is_worker_of(cpu: usize) -> bool {
    CONTEXT.with(|c| c.get().worker_of == cpu)
}

/// Marks the calling thread as a task-context worker of endio for the rest of
/// its life.
pub(crate) fn become_task_worker() {
    CONTEXT.with(|c| {
        let mut ctx = c.get();
        ctx.task_worker = true;
        c.set(ctx);
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sections_nest() {
        assert!(!in_atomic());
        let a = atomic();
        let b = atomic();
        assert!(in_atomic());
        drop(a);
        assert!(in_atomic());
        drop(b);
        assert!(!in_atomic());
    }

    #[test]
    fn policies_decide_atomicity() {
        std::thread::spawn(|| {
            assert!(!atomic_under(ContextPolicy::Tracked));
            assert!(atomic_under(ContextPolicy::AlwaysAtomic));
            {
                let _a = atomic();
                assert!(atomic_under(ContextPolicy::Tracked));
            }
            become_task_worker();
            assert!(!atomic_under(ContextPolicy::AlwaysAtomic));
            let _a = atomic();
            // An explicit section inside a worker is atomic under both.
            assert!(atomic_under(ContextPolicy::Tracked));
            assert!(atomic_under(ContextPolicy::AlwaysAtomic));
        })
        .join()
        .unwrap();
    }
}
