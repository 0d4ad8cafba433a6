//! The checks a bio passes before it is accepted, and what a refused one
//! gets: the [`SubmitError`] with the bio inside and a message naming the
//! problem and the fix.

use std::fmt;
use std::io;
use std::os::fd::AsFd;

use super::mixing::{self, Settle};
use super::state::{DeviceKind, DeviceState};
use crate::bio::{Bio, Op};
use crate::sys;

/// The largest transfer one `read`/`write` system call makes on Linux
/// (`MAX_RW_COUNT`: `INT_MAX` rounded down to a page).
pub const MAX_IO_BYTES: u64 = 0x7fff_f000;

/// What kind of problem made [`Device::submit`](crate::Device::submit) refuse a bio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubmitErrorKind {
    /// A write on a device opened without `write`.
    ReadOnly,
    /// A read on a device opened without `read`.
    WriteOnly,
    /// A read or write with an empty buffer.
    ZeroLength,
    /// `O_DIRECT` with an offset that is not a multiple of the logical block
    /// size.
    UnalignedOffset,
    /// `O_DIRECT` with a length that is not a multiple of the logical block
    /// size.
    UnalignedLength,
    /// `O_DIRECT` with a buffer address that is not aligned as the device
    /// needs.
    UnalignedBuffer,
    /// I/O that ends past the end of a block device or memory device.
    PastEnd,
    /// One I/O larger than the kernel transfers in one call.
    TooLarge,
    /// Every slot is taken, or the dontcache backlog is full, and the
    /// caller may not wait (atomic context, or [`Device::try_submit`](crate::Device::try_submit)).
    Busy,
    /// The engine is shut down.
    ShutDown,
    /// A write that waits for its write-back could not get a description
    /// of the file to wait on (the open-file limit).
    NoDescriptor,
    /// An `O_DIRECT` read or write of a block device that this process also
    /// has open buffered, whose range has pages in the page cache that must
    /// be written back and dropped first: refused where the caller may not
    /// wait for that (atomic context, [`Device::try_submit`](crate::Device::try_submit)),
    /// or because the write-back failed. See
    /// [`OpenOptions::direct`](crate::OpenOptions::direct).
    MixedCache,
}

/// A refused bio, handed back with what was wrong and what to do about it
/// (nothing is lost).
pub struct SubmitError {
    kind: SubmitErrorKind,
    message: String,
    bio: Exclusive<Bio>,
}

impl SubmitError {
    pub(crate) fn new(kind: SubmitErrorKind, message: String, bio: Bio) -> SubmitError {
        SubmitError {
            kind,
            message,
            bio: Exclusive(bio),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> SubmitErrorKind {
        self.kind
    }

    /// The message: the problem, the device and the fix.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The refused bio, untouched, with its handler (which has not run).
    pub fn into_bio(self) -> Bio {
        self.bio.0
    }

    /// The refused bio, to change and submit again.
    pub fn bio_mut(&mut self) -> &mut Bio {
        &mut self.bio.0
    }
}

impl fmt::Debug for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmitError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SubmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SubmitError {}

/// A refused bio as an `io::Error` (for `?` in functions that return
/// `io::Result`), keeping the [`SubmitError`], and so the bio, inside:
/// `into_inner` and `downcast` give it back. The kind: `WouldBlock` for
/// [`SubmitErrorKind::Busy`], `PermissionDenied` for a read of a
/// write-only device or a write of a read-only one, `BrokenPipe` once the
/// engine is shut down, `Other` for [`SubmitErrorKind::NoDescriptor`],
/// `InvalidInput` for the rest (alignment, length, past the end).
impl From<SubmitError> for io::Error {
    fn from(e: SubmitError) -> io::Error {
        let kind = match e.kind() {
            SubmitErrorKind::Busy => io::ErrorKind::WouldBlock,
            SubmitErrorKind::ShutDown => io::ErrorKind::BrokenPipe,
            SubmitErrorKind::NoDescriptor => io::ErrorKind::Other,
            SubmitErrorKind::ReadOnly | SubmitErrorKind::WriteOnly => {
                io::ErrorKind::PermissionDenied
            }
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

/// Owns a value and gives no shared access to it (`&self` reaches nothing
/// inside), so it may be shared between threads whatever the value is: what
/// `std::sync::Exclusive` does. It makes [`SubmitError`] `Sync` (a [`Bio`]
/// holds a `Send`-only handler), so that `?` can turn it into an
/// `anyhow::Error` or a `Box<dyn Error + Send + Sync>`.
struct Exclusive<T>(T);

// SAFETY: `Sync` promises that `&Exclusive<T>` may be used from several
// threads at once. No method of `Exclusive` takes `&self` and reaches the
// value (the field is private to this module, where it is read only by value
// in `SubmitError::into_bio` and through `&mut` in `SubmitError::bio_mut`,
// and `SubmitError`'s `&self` methods do not touch it), so a shared
// reference gives access to nothing, and `T: Send` suffices for moving it.
unsafe impl<T: Send> Sync for Exclusive<T> {}

fn op_name(op: Op) -> &'static str {
    match op {
        Op::Read => "read",
        Op::Write => "write",
        Op::Flush => "flush",
        Op::Nop => "nop",
    }
}

impl DeviceState {
    /// Before a direct read or write of a block device that this process
    /// also has open buffered: the range's conflicting pages written back
    /// and dropped (task context), or the refusal (see `mixing.rs`). A
    /// device without a buffered twin pays one relaxed load.
    pub(crate) fn settle_mixed(
        &self,
        bio: &Bio,
        may_wait: bool,
    ) -> Result<(), (SubmitErrorKind, String)> {
        let (Some(reg), Some(file)) = (&self.mixing, self.file()) else {
            return Ok(());
        };
        let op = bio.op();
        if !self.direct || !matches!(op, Op::Read | Op::Write) || !reg.buffered_opens() {
            return Ok(());
        }
        let (offset, len) = (bio.offset(), bio.buf().len() as u64);
        let Settle::WriteBackAndDrop(start, n) =
            mixing::look(file.as_fd(), offset, len, op == Op::Write)
        else {
            return Ok(());
        };
        let name = op_name(op);
        let path = self.path.display();
        let what = if op == Op::Write { "cached" } else { "dirty" };
        if !may_wait {
            return Err((
                SubmitErrorKind::MixedCache,
                format!(
                    "O_DIRECT {name} of {len} bytes at offset {offset} of {path} not issued: this process also has the block device open buffered and the range has {what} pages in the page cache, which must be written back and dropped first, and that blocks; submit it with Device::submit from task context (not in atomic context, not with try_submit), or open every handle of the device with the same OpenOptions::direct"
                ),
            ));
        }
        let fail = |step: &str, e: std::io::Error| {
            (
                SubmitErrorKind::MixedCache,
                format!(
                    "O_DIRECT {name} of {len} bytes at offset {offset} of {path} not issued: this process also has the block device open buffered, and {step} the range's {what} pages failed ({e}); the buffered data of that range may not be on the device: check the buffered handle's flush, then submit again"
                ),
            )
        };
        self.wb
            .wait_range(file, start, n)
            .map_err(|e| fail("writing back", e))?;
        sys::drop_range(file.as_fd(), start, n).map_err(|e| fail("dropping", e))
    }

    /// The checks of a bio before it is queued.
    pub(crate) fn check(&self, bio: &Bio) -> Result<(), (SubmitErrorKind, String)> {
        let path = self.path.display();
        let op = bio.op();
        let name = op_name(op);
        match op {
            Op::Nop | Op::Flush => return Ok(()),
            Op::Write if !self.writable => {
                return Err((
                    SubmitErrorKind::ReadOnly,
                    format!(
                        "cannot write to {path}: it is open read-only; open it with OpenOptions::write(true)"
                    ),
                ));
            }
            Op::Read if !self.readable => {
                return Err((
                    SubmitErrorKind::WriteOnly,
                    format!(
                        "cannot read {path}: it is open write-only; open it with OpenOptions::read(true)"
                    ),
                ));
            }
            Op::Read | Op::Write => {}
        }
        let offset = bio.offset();
        let len = bio.buf().len() as u64;
        let lbs = u64::from(self.logical_block_size);
        if len == 0 {
            return Err((
                SubmitErrorKind::ZeroLength,
                format!(
                    "zero-length {name} at offset {offset} on {path}: give the bio a buffer of at least one logical block ({lbs} bytes), or use Bio::nop to transfer nothing"
                ),
            ));
        }
        if len > MAX_IO_BYTES {
            return Err((
                SubmitErrorKind::TooLarge,
                format!(
                    "{name} of {len} bytes on {path} is larger than one I/O can be ({MAX_IO_BYTES} bytes, the kernel's per-call limit); split it into smaller bios"
                ),
            ));
        }
        if self.direct {
            if !offset.is_multiple_of(lbs) {
                return Err((
                    SubmitErrorKind::UnalignedOffset,
                    format!(
                        "O_DIRECT {name} on {path}: offset {offset} is not a multiple of the logical block size {lbs}; align offsets to {lbs} bytes, or open without OpenOptions::direct(true)"
                    ),
                ));
            }
            if !len.is_multiple_of(lbs) {
                return Err((
                    SubmitErrorKind::UnalignedLength,
                    format!(
                        "O_DIRECT {name} on {path}: length {len} is not a multiple of the logical block size {lbs}; make lengths a multiple of {lbs} bytes, or open without OpenOptions::direct(true)"
                    ),
                ));
            }
            let align = self.mem_align as usize;
            if !bio.buf().is_aligned_to(align) {
                let addr = bio.buf().as_ptr() as usize;
                return Err((
                    SubmitErrorKind::UnalignedBuffer,
                    format!(
                        "O_DIRECT {name} on {path}: the buffer at {addr:#x} is not aligned to {align} bytes (logical block size {lbs}); allocate it with Device::buf(len) or Buf::zeroed(len, {})",
                        align.max(lbs as usize)
                    ),
                ));
            }
        }
        if matches!(self.kind, DeviceKind::BlockDevice | DeviceKind::Memory) {
            let end = offset.saturating_add(len);
            if end > self.size {
                let size = self.size;
                return Err((
                    SubmitErrorKind::PastEnd,
                    format!(
                        "{name} of {len} bytes at offset {offset} on {path} ends at byte {end}, past the end of the device ({size} bytes); keep offset + length within {size}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The message of a refusal for a full dontcache backlog.
    pub(crate) fn backlog_refusal(&self, bio: &Bio) -> String {
        format!(
            "cannot {} {} now: its dontcache backlog (I/O submitted whose pages are not yet dropped from the cache) is full and the caller may not wait (atomic context or try_submit); submit from task context, retry after a completion, or raise OpenOptions::dontcache_backlog_bytes_max",
            op_name(bio.op()),
            self.path.display()
        )
    }

    /// The message of a refusal by the engine (after the checks passed),
    /// whose `lanes` have `depth` slots each.
    pub(crate) fn refusal(
        &self,
        kind: SubmitErrorKind,
        bio: &Bio,
        lanes: usize,
        depth: u32,
    ) -> String {
        let path = self.path.display();
        let name = op_name(bio.op());
        match kind {
            SubmitErrorKind::ShutDown => format!(
                "cannot {name} {path}: the engine is shut down (its last Engine handle was dropped); keep an Engine alive while submitting"
            ),
            _ => {
                format!(
                    "cannot {name} {path} now: all {lanes}x{depth} in-flight slots are taken and the caller may not wait (atomic context or try_submit); submit from task context, retry after a completion, or raise EngineBuilder::queue_depth"
                )
            }
        }
    }
}
