//! Blocking positional I/O on a [`Device`], as std's `FileExt`: the caller
//! waits in task context for the bio it submitted.
//!
//! 1. The data is copied into (or read into) a [`Buf`] from
//!    [`Device::buf`], aligned as the device needs, so any slice works on an
//!    `O_DIRECT` device too (its offset and length must still be multiples
//!    of the logical block size; the submit's checks say so otherwise).
//! 2. The bio's handler sends its result and buffer into a one-place
//!    channel. It is not flagged `COMPLETE_IN_TASK`: it runs where the bio
//!    completes, usually a reaper in atomic context, and a send on a
//!    channel with a free place never blocks (as the kernel's
//!    `submit_bio_wait` completes from the interrupt). So the caller may be
//!    a completer worker (a handler) without waiting for itself.
//! 3. The caller waits on the channel. Every submitted bio completes
//!    exactly once, and a refused one comes back at once, so the wait ends.

use std::io;
use std::sync::mpsc;

#[cfg(doc)]
use super::check::SubmitError;
use super::device::Device;
use super::shared::last_lane;
use crate::bio::{Bio, Buf, Op};
use crate::context;
use crate::task::drive;

/// The most bytes one [`Device::read_at`] or [`Device::write_at`] moves: a
/// multiple of every logical block size, and small enough that a dontcache
/// device's backlog holds several.
pub(crate) const CHUNK_BYTES_MAX: usize = 8 << 20;

impl Device {
    /// Reads up to `buf.len()` bytes at `offset` into `buf` and returns how
    /// many were read (fewer at the end of a file, 0 past it), as
    /// `FileExt::read_at`; at most 8 MiB per call. Waits in task context.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::WouldBlock`] in atomic context (submit a [`Bio`]
    /// there instead). What the device refuses comes with the
    /// [`SubmitError`] inside (its message names the fix; `into_inner` and
    /// `downcast` give it, and the bio, back):
    /// [`io::ErrorKind::InvalidInput`] for an `O_DIRECT` offset or length
    /// that is not a multiple of
    /// [`logical_block_size`](Self::logical_block_size) or I/O past the end
    /// of a block or memory device, [`io::ErrorKind::PermissionDenied`] for
    /// a read of a write-only device (or a write of a read-only one),
    /// [`io::ErrorKind::BrokenPipe`] once the engine is shut down. Else the
    /// I/O's own error.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(CHUNK_BYTES_MAX);
        if len == 0 {
            return Ok(0);
        }
        let (n, data) = self.wait_for(Op::Read, offset, self.buf(len), "read_at")?;
        let n = n.min(len);
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// Writes up to `buf.len()` bytes of `buf` at `offset` and returns how
    /// many were written, as `FileExt::write_at`; at most 8 MiB per call.
    /// On a buffered or dontcache device the data is then in the page cache
    /// (see [`sync_data`](Self::sync_data)). Errors as
    /// [`read_at`](Self::read_at).
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(CHUNK_BYTES_MAX);
        if len == 0 {
            return Ok(0);
        }
        let mut data = self.buf(len);
        data.copy_from_slice(&buf[..len]);
        let (n, _) = self.wait_for(Op::Write, offset, data, "write_at")?;
        Ok(n.min(len))
    }

    /// Fills `buf` from `offset`, as `FileExt::read_exact_at`:
    /// [`io::ErrorKind::UnexpectedEof`] if the file ends first. Errors as
    /// [`read_at`](Self::read_at).
    pub fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{} ends at byte {offset}, before the {} bytes still to read",
                            self.path().display(),
                            buf.len()
                        ),
                    ));
                }
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`, as `FileExt::write_all_at`. Errors
    /// as [`read_at`](Self::read_at), and [`io::ErrorKind::WriteZero`] if
    /// the device takes no more.
    pub fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset)? {
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!(
                            "{} took no bytes at {offset}; {} bytes were not written",
                            self.path().display(),
                            buf.len()
                        ),
                    ));
                }
                n => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Makes the data written so far durable: a [`Bio::flush`]
    /// (`fdatasync`), waited for. It reports every write-back failure of
    /// the device since its previous flush, as the README's "Errors"
    /// section tells, including those a dontcache write's write-back saw.
    /// [`io::ErrorKind::WouldBlock`] in atomic context.
    pub fn sync_data(&self) -> io::Result<()> {
        self.wait_for(Op::Flush, 0, Buf::empty(), "sync_data")
            .map(drop)
    }

    /// As [`sync_data`](Self::sync_data): endio's flush is `fdatasync`,
    /// which also writes the metadata needed to read the data back (the
    /// file's size); only timestamps may stay behind.
    pub fn sync_all(&self) -> io::Result<()> {
        self.wait_for(Op::Flush, 0, Buf::empty(), "sync_all")
            .map(drop)
    }

    /// Submits one bio and waits for it (steps 2 and 3 of the module docs).
    fn wait_for(&self, op: Op, offset: u64, buf: Buf, call: &str) -> io::Result<(usize, Buf)> {
        if context::in_atomic() {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "Device::{call} called in atomic context (a reaper or an atomic section), where it may not wait; call it from task context, or submit a Bio whose handler takes the result"
                ),
            ));
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let bio = Bio::new(op, offset, buf, move |ended| {
            let result = ended.result();
            // The receiver waits until the send; it never fails then, and
            // a place is free (one send).
            let _ = tx.try_send((result, ended.into_buf()));
        });
        self.submit(bio)?;
        // A handler waiting on the lane its own worker drives drives it
        // itself until the bio is done, rather than wait for the lane to be
        // taken over (`task::drive`).
        let got = std::cell::RefCell::new(None);
        drive::drive_until(last_lane(), &|| {
            let mut got = got.borrow_mut();
            if got.is_none() {
                *got = rx.try_recv().ok();
            }
            got.is_some()
        });
        let (result, buf) = match got.into_inner() {
            Some(r) => r,
            None => rx
                .recv()
                .expect("every submitted bio's handler runs exactly once"),
        };
        result.map(|n| (n, buf))
    }
}
