//! Waiting and waking between threads: futex words and eventfds.
//!
//! The I/O engine's threads sleep in the kernel (a pool thread in a futex
//! wait, an io_uring reaper in `io_uring_enter`) and are woken by submitters
//! that may be atomic: a futex wake and an eventfd write never sleep, take no
//! lock of ours and allocate nothing, so they are allowed in atomic context,
//! like the `unpark` of the completion core.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::event::EventfdFlags;
use rustix::thread::futex;

/// Sleeps while `word` holds `expected`, for at most `timeout`.
///
/// Returns at once if `word` no longer holds `expected` when the kernel looks
/// (the check and the sleep are one atomic step, so a wake between the
/// caller's load and this call is not lost). May return spuriously; callers
/// re-check their condition in a loop.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let timeout = futex::Timespec {
        tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    // EAGAIN (value changed), ETIMEDOUT and EINTR all mean "look again".
    let _ = futex::wait(word, futex::Flags::PRIVATE, expected, Some(&timeout));
}

/// Wakes up to `count` threads sleeping in [`futex_wait`] on `word`
/// (`u32::MAX`: all of them).
pub fn futex_wake(word: &AtomicU32, count: u32) {
    // The kernel reads the count as an `int`: `u32::MAX` would be -1, which
    // wakes one thread only.
    let count = count.min(i32::MAX as u32);
    let _ = futex::wake(word, futex::Flags::PRIVATE, count);
}

/// An eventfd: a counter in the kernel that a thread can wait on through
/// io_uring (a read of it completes once it is non-zero) and that any thread
/// can bump without blocking.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd with a zero count, close-on-exec and non-blocking (a
    /// write never sleeps, even if the counter were about to overflow).
    pub fn new() -> io::Result<EventFd> {
        let fd = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd { fd })
    }

    /// Adds one to the count, waking a pending read.
    pub fn notify(&self) {
        // EAGAIN means the count is at its maximum: a read is already due.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    /// Waits until the count is non-zero, at most `timeout`, and resets it
    /// (for a thread that sleeps on the eventfd itself rather than in a
    /// ring). May return early; callers re-check their condition.
    pub fn wait(&self, timeout: Duration) {
        let timeout = rustix::event::Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        // EINTR and a timeout both mean "look again".
        let _ = rustix::event::poll(&mut fds, Some(&timeout));
        let mut count = [0u8; 8];
        // Non-blocking: EAGAIN when nothing was written.
        let _ = rustix::io::read(&self.fd, &mut count);
    }

    /// The descriptor, for an io_uring read.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(all(test, not(loom), not(shuttle)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    #[test]
    fn futex_wait_returns_at_once_when_the_word_changed() {
        let word = AtomicU32::new(1);
        let start = Instant::now();
        futex_wait(&word, 0, Duration::from_secs(10));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn futex_wake_wakes_a_waiter() {
        let word = Arc::new(AtomicU32::new(0));
        let waiter = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                while word.load(Ordering::Acquire) == 0 {
                    futex_wait(&word, 0, Duration::from_secs(10));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(5));
        word.store(1, Ordering::Release);
        futex_wake(&word, u32::MAX);
        waiter.join().unwrap();
    }

    #[test]
    fn futex_wake_all_wakes_every_waiter() {
        let word = Arc::new(AtomicU32::new(0));
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let word = Arc::clone(&word);
                std::thread::spawn(move || {
                    let start = Instant::now();
                    while word.load(Ordering::Acquire) == 0 {
                        futex_wait(&word, 0, Duration::from_secs(10));
                    }
                    start.elapsed()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        futex_wake(&word, u32::MAX);
        for w in waiters {
            assert!(w.join().unwrap() < Duration::from_secs(5));
        }
    }

    #[test]
    fn eventfd_counts() {
        let efd = EventFd::new().unwrap();
        efd.notify();
        efd.notify();
        let mut buf = [0u8; 8];
        rustix::io::read(&efd, &mut buf).unwrap();
        assert_eq!(u64::from_ne_bytes(buf), 2);
    }
}
