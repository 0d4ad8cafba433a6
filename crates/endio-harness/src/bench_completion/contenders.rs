//! The contenders: endio, and what a user would pick instead to move a
//! completion from a thread that must not block to a worker thread.
//!
//! Each takes a [`Job`] from the producer of slot `producer` (pinned to
//! `cpus[producer]`) and runs it in another thread, except [`Inline`], the
//! floor, which runs it in the producer. The non-endio contenders are written
//! the way a competent user would write them: one worker thread per CPU,
//! pinned to it, blocking receive; the producer of that CPU sends its worker
//! boxed closures; no artificial handicap (the condvar queue, for one, only
//! signals a worker that is waiting, and its worker takes the whole queue at
//! once). tokio's `spawn_blocking` is used as its documentation shows, on a
//! default multi-thread runtime.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context as _, bail};
use endio::{Batching, Bio, BioFlags, Completer, Stats, context};

use super::Job;

/// How long a contender may take to run the jobs still queued when it is
/// finished.
const FINISH_TIMEOUT: Duration = Duration::from_secs(30);

/// A closure handed to a worker.
type Task = Box<dyn FnOnce() + Send + 'static>;

/// A way to run completions in task context.
pub(super) trait Contender: Sync {
    /// Hands `job` over from the producer of slot `producer`, which runs
    /// pinned to that slot's CPU.
    fn submit(&self, producer: usize, job: Job);

    /// How many times the workers have gone to sleep so far, where that can
    /// be counted.
    fn wakeups(&self) -> Option<u64>;

    /// endio's own counters (endio contenders only).
    fn endio_stats(&self) -> Option<Stats> {
        None
    }

    /// Runs what is still queued and stops the threads.
    fn finish(self) -> anyhow::Result<()>;
}

/// endio: the producer is atomic, the bio is flagged, so `endio()` defers it
/// to the per-CPU worker.
pub(super) struct Endio {
    completer: Completer,
}

impl Endio {
    pub(super) fn start(batching: Batching) -> anyhow::Result<Endio> {
        let completer = Completer::builder()
            .batching(batching)
            .build()
            .context("cannot start the endio completer")?;
        Ok(Endio { completer })
    }
}

impl Contender for Endio {
    fn submit(&self, _producer: usize, job: Job) {
        let bio = Bio::nop(move |_ended| job.run()).with_flags(BioFlags::COMPLETE_IN_TASK);
        let _atomic = context::atomic();
        self.completer.endio(bio);
    }

    fn wakeups(&self) -> Option<u64> {
        Some(self.completer.stats().total.wakeups)
    }

    fn endio_stats(&self) -> Option<Stats> {
        Some(self.completer.stats().total)
    }

    fn finish(self) -> anyhow::Result<()> {
        if !self.completer.wait_idle(FINISH_TIMEOUT) {
            bail!(
                "the endio completer did not go idle within {} s",
                FINISH_TIMEOUT.as_secs()
            );
        }
        Ok(())
    }
}

/// A counter on a cache line of its own, bumped by one worker.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counter(AtomicU64);

impl Counter {
    fn bump(&self) {
        self.0.fetch_add(1, Relaxed);
    }
}

/// One worker thread per CPU, pinned to it, each counting its sleeps.
struct Workers {
    handles: Vec<JoinHandle<()>>,
    sleeps: Vec<Arc<Counter>>,
}

impl Workers {
    /// Starts a worker on each of `cpus`; `make(i)` returns the body of
    /// worker `i`, which gets its sleep counter.
    fn spawn<F>(
        name: &str,
        cpus: &[usize],
        mut make: impl FnMut(usize) -> F,
    ) -> anyhow::Result<Workers>
    where
        F: FnOnce(&Counter) + Send + 'static,
    {
        let mut workers = Workers {
            handles: Vec::new(),
            sleeps: Vec::new(),
        };
        for (i, &cpu) in cpus.iter().enumerate() {
            let body = make(i);
            let sleeps = Arc::new(Counter::default());
            workers.sleeps.push(Arc::clone(&sleeps));
            let handle = thread::Builder::new()
                .name(format!("bench-{name}/{cpu}"))
                .spawn(move || {
                    super::pin(cpu, "worker");
                    body(&sleeps);
                })
                .with_context(|| format!("cannot start the {name} worker for CPU {cpu}"))?;
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    fn sleeps(&self) -> u64 {
        self.sleeps.iter().map(|c| c.0.load(Relaxed)).sum()
    }

    /// Waits for the workers, which stop once their queue is closed.
    fn join(self) -> anyhow::Result<()> {
        for handle in self.handles {
            if handle.join().is_err() {
                bail!("a worker thread panicked");
            }
        }
        Ok(())
    }
}

/// A `crossbeam-channel` worker per CPU.
pub(super) struct Crossbeam {
    senders: Vec<crossbeam_channel::Sender<Task>>,
    workers: Workers,
}

impl Crossbeam {
    pub(super) fn start(cpus: &[usize]) -> anyhow::Result<Crossbeam> {
        use crossbeam_channel::TryRecvError;
        let mut senders = Vec::new();
        let workers = Workers::spawn("crossbeam", cpus, |_| {
            let (tx, rx) = crossbeam_channel::unbounded::<Task>();
            senders.push(tx);
            move |sleeps: &Counter| {
                loop {
                    let task = match rx.try_recv() {
                        Ok(task) => task,
                        // About to block: count it (recv may still find a
                        // message while it spins, so this is an upper bound).
                        Err(TryRecvError::Empty) => {
                            sleeps.bump();
                            match rx.recv() {
                                Ok(task) => task,
                                Err(_) => return,
                            }
                        }
                        Err(TryRecvError::Disconnected) => return,
                    };
                    task();
                }
            }
        })?;
        Ok(Crossbeam { senders, workers })
    }
}

impl Contender for Crossbeam {
    fn submit(&self, producer: usize, job: Job) {
        self.senders[producer]
            .send(Box::new(move || job.run()))
            .expect("the worker lives until finish");
    }

    fn wakeups(&self) -> Option<u64> {
        Some(self.workers.sleeps())
    }

    fn finish(self) -> anyhow::Result<()> {
        drop(self.senders);
        self.workers.join()
    }
}

/// A `std::sync::mpsc` worker per CPU.
pub(super) struct StdMpsc {
    senders: Vec<mpsc::Sender<Task>>,
    workers: Workers,
}

impl StdMpsc {
    pub(super) fn start(cpus: &[usize]) -> anyhow::Result<StdMpsc> {
        let mut senders = Vec::new();
        let workers = Workers::spawn("mpsc", cpus, |_| {
            let (tx, rx) = mpsc::channel::<Task>();
            senders.push(tx);
            move |sleeps: &Counter| {
                loop {
                    let task = match rx.try_recv() {
                        Ok(task) => task,
                        Err(mpsc::TryRecvError::Empty) => {
                            sleeps.bump();
                            match rx.recv() {
                                Ok(task) => task,
                                Err(_) => return,
                            }
                        }
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    };
                    task();
                }
            }
        })?;
        Ok(StdMpsc { senders, workers })
    }
}

impl Contender for StdMpsc {
    fn submit(&self, producer: usize, job: Job) {
        self.senders[producer]
            .send(Box::new(move || job.run()))
            .expect("the worker lives until finish");
    }

    fn wakeups(&self) -> Option<u64> {
        Some(self.workers.sleeps())
    }

    fn finish(self) -> anyhow::Result<()> {
        drop(self.senders);
        self.workers.join()
    }
}

/// A `Mutex<VecDeque>` + `Condvar` queue per CPU. The producer signals only
/// a worker that is waiting; the worker swaps the whole queue out and runs
/// it unlocked.
pub(super) struct MutexCondvar {
    queues: Vec<Arc<LockedQueue>>,
    workers: Workers,
}

#[derive(Default)]
struct LockedQueue {
    state: Mutex<LockedState>,
    ready: Condvar,
}

#[derive(Default)]
struct LockedState {
    tasks: VecDeque<Task>,
    waiting: bool,
    closed: bool,
}

impl MutexCondvar {
    pub(super) fn start(cpus: &[usize]) -> anyhow::Result<MutexCondvar> {
        let queues: Vec<Arc<LockedQueue>> = cpus.iter().map(|_| Arc::default()).collect();
        let workers = Workers::spawn("condvar", cpus, |i| {
            let queue = Arc::clone(&queues[i]);
            move |sleeps: &Counter| {
                let mut batch = VecDeque::new();
                loop {
                    let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
                    while state.tasks.is_empty() {
                        if state.closed {
                            return;
                        }
                        state.waiting = true;
                        sleeps.bump();
                        state = queue
                            .ready
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                    std::mem::swap(&mut state.tasks, &mut batch);
                    drop(state);
                    for task in batch.drain(..) {
                        task();
                    }
                }
            }
        })?;
        Ok(MutexCondvar { queues, workers })
    }
}

impl Contender for MutexCondvar {
    fn submit(&self, producer: usize, job: Job) {
        let queue = &self.queues[producer];
        let mut state = queue.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.tasks.push_back(Box::new(move || job.run()));
        let wake = std::mem::take(&mut state.waiting);
        drop(state);
        if wake {
            queue.ready.notify_one();
        }
    }

    fn wakeups(&self) -> Option<u64> {
        Some(self.workers.sleeps())
    }

    fn finish(self) -> anyhow::Result<()> {
        for queue in &self.queues {
            queue
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .closed = true;
            queue.ready.notify_one();
        }
        self.workers.join()
    }
}

/// tokio's `spawn_blocking` on a multi-thread runtime with a worker per CPU
/// (tokio's default), called from the producers.
pub(super) struct TokioBlocking {
    runtime: tokio::runtime::Runtime,
}

impl TokioBlocking {
    pub(super) fn start(cpus: &[usize]) -> anyhow::Result<TokioBlocking> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus.len())
            .thread_name("bench-tokio")
            .build()
            .context("cannot start the tokio runtime")?;
        Ok(TokioBlocking { runtime })
    }
}

impl Contender for TokioBlocking {
    fn submit(&self, _producer: usize, job: Job) {
        // The JoinHandle is dropped: the task runs detached.
        drop(self.runtime.spawn_blocking(move || job.run()));
    }

    /// The blocking pool's threads are tokio's; their sleeps are not visible.
    fn wakeups(&self) -> Option<u64> {
        None
    }

    fn finish(self) -> anyhow::Result<()> {
        // Every job has run (the caller waited for them); this only stops
        // the idle threads.
        self.runtime.shutdown_timeout(FINISH_TIMEOUT);
        Ok(())
    }
}

/// The floor: the same boxed closure, run by the producer itself (the cost
/// of making and running a completion, without a hand-off).
pub(super) struct Inline;

impl Contender for Inline {
    fn submit(&self, _producer: usize, job: Job) {
        // black_box: the allocation is real, as in the other contenders
        // (the compiler could otherwise elide a box that never escapes).
        let task: Task = std::hint::black_box(Box::new(move || job.run()));
        task();
    }

    /// No worker: nothing sleeps.
    fn wakeups(&self) -> Option<u64> {
        Some(0)
    }

    fn finish(self) -> anyhow::Result<()> {
        Ok(())
    }
}
