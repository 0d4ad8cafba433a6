//! One I/O as a [`Future`], on any executor: std's `Future` and `Waker`
//! only, no executor in the library.
//!
//! 1. [`Device::read_async`], [`write_async`](Device::write_async) and
//!    [`sync_async`](Device::sync_async) build the bio; nothing happens
//!    until the future is first polled (futures are lazy).
//! 2. The first poll stores the task's waker in the I/O's shared state and
//!    then submits the bio, flagged `COMPLETE_IN_TASK`, with
//!    [`Device::submit`]: when every in-flight slot is taken it waits for
//!    one there (a bounded futex wait on an executor thread), as a bounded
//!    channel's blocking send would; size the engine's
//!    [`queue_depth`](crate::EngineBuilder::queue_depth) for the I/Os you
//!    keep in flight. A refused bio makes the future ready at once with the
//!    error and the buffer.
//! 3. The handler runs in task context (a completer worker): it stores the
//!    result and the buffer and takes the waker under the state's lock,
//!    then wakes it after releasing the lock. Waking in task context lets
//!    any executor's waker do what it needs (lock, allocate).
//! 4. A later poll takes the result under the same lock, or replaces the
//!    waker if the task moved. The handler either finds the newest waker
//!    (the poll stored it first) or the poll finds the result: the lock
//!    orders the two, so no wake-up is lost.
//!
//! Dropping the future after the first poll does not cancel the I/O: the
//! bio owns its buffer, completes, and its result is dropped.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::device::Device;
use crate::bio::{Bio, BioFlags, Buf, EndedBio, Op};

/// What an [`IoFuture`] gives: the bytes transferred (or the error) and the
/// buffer back, to reuse.
pub type IoOutput = (io::Result<usize>, Buf);

/// One read, write or flush of a [`Device`], as a future (see
/// [`Device::read_async`]). Submitted when first polled; resolves to the
/// result and the buffer. `Send`, `Unpin`, executor-agnostic.
#[must_use = "futures do nothing unless polled: the I/O is submitted at the first poll"]
pub struct IoFuture {
    state: State,
}

enum State {
    /// Not yet polled.
    Idle { dev: Device, bio: Bio },
    /// Submitted; the handler fills the slot.
    Submitted(Arc<Mutex<Slot>>),
    /// Refused at submit; given out at the next poll.
    Refused(Option<IoOutput>),
    /// The output was given out.
    Done,
}

#[derive(Default)]
struct Slot {
    output: Option<IoOutput>,
    waker: Option<Waker>,
}

impl Device {
    /// Reads `buf.len()` bytes at `offset` into `buf`, as a future that
    /// gives the count and the buffer back. On an `O_DIRECT` device take
    /// the buffer from [`Device::buf`] (aligned).
    pub fn read_async(&self, buf: Buf, offset: u64) -> IoFuture {
        IoFuture::new(self, Op::Read, offset, buf)
    }

    /// Writes `buf` at `offset`, as a future that gives the count and the
    /// buffer back.
    pub fn write_async(&self, buf: Buf, offset: u64) -> IoFuture {
        IoFuture::new(self, Op::Write, offset, buf)
    }

    /// A flush ([`Bio::flush`]), as a future: reports write-back failures
    /// as [`Device::sync_data`] does.
    pub fn sync_async(&self) -> IoFuture {
        IoFuture::new(self, Op::Flush, 0, Buf::empty())
    }
}

impl IoFuture {
    fn new(dev: &Device, op: Op, offset: u64, buf: Buf) -> IoFuture {
        let bio = Bio::new(op, offset, buf, |_| {}).with_flags(BioFlags::COMPLETE_IN_TASK);
        IoFuture {
            state: State::Idle {
                dev: dev.clone(),
                bio,
            },
        }
    }

    /// Adds `flags` to the bio (before the first poll; e.g.
    /// [`BioFlags::WAIT_WRITEBACK`] or [`BioFlags::DONTCACHE`]).
    pub fn with_flags(mut self, flags: BioFlags) -> IoFuture {
        if let State::Idle { bio, .. } = &mut self.state {
            bio.set_flags(flags, true);
        }
        self
    }

    /// Step 2 of the module docs.
    fn submit(dev: &Device, bio: Bio, waker: &Waker) -> State {
        let slot = Arc::new(Mutex::new(Slot {
            output: None,
            waker: Some(waker.clone()),
        }));
        let filled = Arc::clone(&slot);
        // The placeholder handler of `new` is replaced by the real one.
        let bio = bio.wrap_handler(move |_placeholder| {
            move |ended: EndedBio| {
                let output = (ended.result(), ended.into_buf());
                let waker = {
                    let mut s = filled.lock().unwrap_or_else(PoisonError::into_inner);
                    s.output = Some(output);
                    s.waker.take()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            }
        });
        match dev.submit(bio) {
            Ok(()) => State::Submitted(slot),
            Err(mut e) => {
                let buf = std::mem::take(e.bio_mut().buf_mut());
                State::Refused(Some((Err(io::Error::from(e)), buf)))
            }
        }
    }
}

impl Future for IoFuture {
    type Output = IoOutput;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<IoOutput> {
        let this = self.get_mut();
        if let State::Idle { .. } = this.state {
            let State::Idle { dev, bio } = std::mem::replace(&mut this.state, State::Done) else {
                unreachable!("checked just above");
            };
            this.state = IoFuture::submit(&dev, bio, cx.waker());
        }
        match &mut this.state {
            State::Idle { .. } => unreachable!("submitted just above"),
            State::Submitted(slot) => {
                let mut s = slot.lock().unwrap_or_else(PoisonError::into_inner);
                match s.output.take() {
                    Some(output) => {
                        drop(s);
                        this.state = State::Done;
                        Poll::Ready(output)
                    }
                    None => {
                        match &mut s.waker {
                            Some(w) => w.clone_from(cx.waker()),
                            None => s.waker = Some(cx.waker().clone()),
                        }
                        Poll::Pending
                    }
                }
            }
            State::Refused(output) => {
                let output = output.take().expect("a refused future is polled once more");
                this.state = State::Done;
                Poll::Ready(output)
            }
            State::Done => panic!("IoFuture polled after it completed"),
        }
    }
}

impl fmt::Debug for IoFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Idle { .. } => "idle",
            State::Submitted(_) => "submitted",
            State::Refused(_) => "refused",
            State::Done => "done",
        };
        f.debug_struct("IoFuture").field("state", &state).finish()
    }
}
