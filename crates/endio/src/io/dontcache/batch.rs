//! Batched write-back of dontcache writes (step 5 of the module docs): a
//! write's write-back is started when the write completes and waited for
//! once per batch.
//!
//! When a dontcache write completes (atomic context, a backend thread),
//! its caller's bio completes and its in-flight slot is given back; its
//! unit joins the device's *kicked* queue, and one more stage follows,
//! endio's own I/O, without a slot (the backlog bounds these stages: each
//! one's unit counts in it until its drop), but counted in the device's in
//! flight:
//!
//! * a **kick**, `sync_file_range(WRITE)` on the written pages (a `nop` in
//!   native mode, where the kernel starts the write-back itself): the
//!   write-back starts and nobody waits for it. Its end defers the write's
//!   drop bio, as any dontcache I/O's end does;
//! * or, when the kicked writes hold a `BATCHES_PER_BACKLOG`th of the
//!   backlog's bytes or units, or no other dontcache write of the device
//!   is in flight, the **batch wait**: it takes every kicked unit and
//!   waits once, `sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)` over
//!   the pages they span, on a description of the file that is endio's
//!   own (`BatchWaits::On`: its error cursor moves only with these waits,
//!   so each write-back error of the file is reported to one of them, and
//!   never consumed from the user's description, see `writeback.rs`). When
//!   it ends, the units become ready and one drop bio drops them all.
//!
//! # Kicks
//!
//! A kick only starts write-back early, so that the batch wait finds less
//! to wait for; the batch wait writes back and waits for every write it
//! takes, kicked or not. So kicks of small writes are coalesced, as the
//! kernel kicks its flusher by the amount of dontcache data dirty rather
//! than per write: a write of at least [`KICK_BYTES`] kicks its own pages,
//! smaller ones add their pages to a span, and the write whose bytes bring
//! the span to [`KICK_BYTES`] kicks the whole span; the others carry a
//! `nop` stage, as in native mode (ending that stage at once instead was
//! measured slower, BENCHMARKS.md §8). 4 KiB random writes
//! then make one kick per 32 writes instead of one each (each kick is an
//! `IORING_OP_SYNC_FILE_RANGE`, which io_uring runs on an io-wq thread).
//! Bytes left in the span when the writes stop are written back by the
//! batch wait that follows (the last write of a burst is always a batch).
//!
//! The span may cover dirty pages of the file that are not the batch's
//! (other writers'): they are written back with it, early, which is all.
//! The backlog bounds kicked units as it bounds every other (they count
//! until their drop), so the page cache dontcache writes hold stays
//! bounded. A unit that no batch took (the last write of a burst was
//! refused at submit) is taken by the next drop, or `drain`'s rescue,
//! which waits in task context.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::plan::{DropPlan, make_ready_unit};
use super::state::{
    BATCHES_PER_BACKLOG, BacklogEntry, BatchWaits, Dontcache, Io, UNITS_MAX, page_size,
};
use super::stats::add;
use crate::bio::{Bio, Buf, Op};
use crate::sys;
use crate::task::Completer;

/// Completed writes of at least this many bytes kick their own write-back;
/// smaller ones are kicked together once they hold this many (see
/// "Kicks").
const KICK_BYTES: u64 = 128 << 10;

/// The kicked units that make a batch due, whatever their bytes.
const BATCH_UNITS: usize = UNITS_MAX / BATCHES_PER_BACKLOG as usize;

/// The units one batch wait covers.
#[derive(Debug)]
pub(crate) struct Batch(Vec<BacklogEntry>);

/// The stage a completed dontcache write carries next.
#[derive(Debug)]
pub(crate) enum NextStage {
    /// Start the write-back of these bytes (`None`: nothing to do).
    Kick(Option<(u64, u64)>),
    /// Wait for the write-back of these bytes (`None`: nothing written),
    /// then make the units ready.
    Wait(Option<(u64, u64)>, Batch),
}

impl Dontcache {
    /// Whether completed writes carry a kick or batch stage (else each
    /// write's drop writes it back).
    pub(crate) fn batches_writes(&self) -> bool {
        !matches!(self.waits, BatchWaits::PerWrite)
    }

    /// The description batch waits are made on (`None`: a memory device).
    pub(crate) fn batch_fd(&self) -> Option<&std::fs::File> {
        match &self.waits {
            BatchWaits::On(f) => Some(f),
            BatchWaits::Memory | BatchWaits::PerWrite => None,
        }
    }

    /// A dontcache write was submitted (step 1).
    pub(super) fn write_opened(&self) {
        self.writes_open.fetch_add(1, Ordering::SeqCst);
    }

    /// A dontcache write was refused after step 1.
    pub(super) fn write_refused(&self) {
        self.writes_open.fetch_sub(1, Ordering::SeqCst);
    }

    /// The write-back start a completed emulated write of `own` (offset,
    /// length in bytes) is to carry: its own range if it is large, else
    /// the span of the small writes so far once they hold [`KICK_BYTES`],
    /// else none. Lock-free (atomic context); a write racing with the
    /// one that takes the span may land in the next span instead, which
    /// changes only when its write-back starts.
    fn kick_for(&self, own: (u64, u64)) -> Option<(u64, u64)> {
        let (offset, len) = own;
        if len >= KICK_BYTES {
            return Some(own);
        }
        // Relaxed: a hint; the batch wait's ordering is `kicked`'s.
        self.unkicked_start.fetch_min(offset, Ordering::Relaxed);
        self.unkicked_end.fetch_max(offset + len, Ordering::Relaxed);
        let total = self.unkicked_bytes.fetch_add(len, Ordering::AcqRel) + len;
        // Only the write that crossed the mark takes the span.
        if total < KICK_BYTES || total - len >= KICK_BYTES {
            return None;
        }
        self.unkicked_bytes.fetch_sub(total, Ordering::AcqRel);
        // With its own pages in, whatever a racing crosser took.
        let start = self
            .unkicked_start
            .swap(u64::MAX, Ordering::Relaxed)
            .min(offset);
        let end = self
            .unkicked_end
            .swap(0, Ordering::Relaxed)
            .max(offset + len);
        Some((start, end - start))
    }

    /// Every kicked unit, now (at most [`UNITS_MAX`]), for one batch.
    fn take_kicked(&self) -> Vec<BacklogEntry> {
        let mut units = Vec::new();
        for _ in 0..UNITS_MAX {
            let Some(unit) = self.kicked.pop() else {
                break;
            };
            self.kicked_bytes.fetch_sub(unit.len, Ordering::SeqCst);
            units.push(unit);
        }
        // Relaxed: statistics.
        self.c
            .writeback_batch_max
            .fetch_max(units.len() as u64, Ordering::Relaxed);
        units
    }

    /// In task context (a flush, or a waiter's rescue): waits for the
    /// kicked units that no batch wait took, once no dontcache write is in
    /// flight to take them, and makes them ready.
    pub(super) fn wait_stranded(&self, io: Io<'_>) {
        if self.kicked.is_empty() || self.writes_open.load(Ordering::SeqCst) > 0 {
            return;
        }
        let mut units = self.take_kicked();
        if units.is_empty() {
            return;
        }
        let mut res = 0;
        if let (Some(fd), Some((offset, len))) = (self.batch_fd(), span(&units)) {
            add(&self.c.writeback_waits, 1);
            if let Err(e) = sys::sync_range(std::os::fd::AsFd::as_fd(fd), offset, len) {
                res = -i64::from(e.raw_os_error().unwrap_or(libc::EIO));
                io.wb.failed(res);
            }
        }
        for mut unit in units.drain(..) {
            self.waited(&mut unit, res);
            make_ready_unit(self, unit);
        }
    }

    /// A batch's wait ended with `res`: what that means for one unit.
    fn waited(&self, unit: &mut BacklogEntry, res: i64) {
        add(&self.c.writeback_batched, 1);
        if res < 0 {
            let errno = i32::try_from(-res).unwrap_or(libc::EIO);
            if errno == libc::EINVAL || errno == libc::EOPNOTSUPP {
                // No IORING_OP_SYNC_FILE_RANGE here: the drop writes back
                // first (task context may block).
                unit.sync_first = true;
            } else {
                // A failed write-back leaves nothing to drop that is known
                // clean; the pages stay.
                unit.keep = true;
            }
        }
    }
}

/// The byte range the units' pages span, `None` if they wrote nothing.
fn span(units: &[BacklogEntry]) -> Option<(u64, u64)> {
    let page = page_size();
    let (start, end) = units
        .iter()
        .map(BacklogEntry::pages)
        .filter(|p| !p.is_empty())
        .fold((u64::MAX, 0), |(s, e), p| (s.min(p.start), e.max(p.end)));
    (start < end).then(|| (start * page, (end - start) * page))
}

/// At a dontcache write's completion (atomic context), after
/// `transferred`: its unit joins the kicked ones, and the stage that
/// follows is returned with the bio to carry it (the write's drop bio).
pub(crate) fn write_done(dc: &Dontcache, mut plan: DropPlan, res: i64) -> (NextStage, Bio) {
    if res < 0 {
        plan.unit.keep = true;
    }
    let own = {
        let pages = plan.unit.pages();
        let page = page_size();
        (!pages.is_empty() && !plan.unit.keep)
            .then(|| (pages.start * page, (pages.end - pages.start) * page))
    };
    let bio = plan.drop_bio.take().unwrap_or_else(|| {
        // Cannot happen: a dontcache write has its drop bio until here.
        Bio::new(Op::Nop, 0, Buf::empty(), |_| {})
    });
    let len = plan.unit.len;
    // SeqCst, with the pops of `take_kicked` and `writes_open`: the write
    // whose completion finds no other write in flight sees every unit
    // pushed before.
    dc.kicked_bytes.fetch_add(len, Ordering::SeqCst);
    if let Err(unit) = dc.kicked.push(plan.unit) {
        // Cannot happen: the queue has a place per backlog unit. Wait for
        // this one alone.
        tracing::error!("dontcache kicked queue full");
        dc.kicked_bytes.fetch_sub(len, Ordering::SeqCst);
        let units = vec![unit];
        return (NextStage::Wait(span(&units), Batch(units)), bio);
    }
    let open = dc.writes_open.fetch_sub(1, Ordering::SeqCst) - 1;
    let due = open == 0
        || dc.kicked_bytes.load(Ordering::SeqCst) >= dc.batch_bytes
        || dc.kicked.len() >= BATCH_UNITS;
    if !due {
        let native = dc.mode == super::DontcacheMode::Native;
        let kick = own.filter(|_| !native).and_then(|own| dc.kick_for(own));
        if kick.is_some() {
            add(&dc.c.writeback_kicks, 1);
        }
        return (NextStage::Kick(kick), bio);
    }
    let units = dc.take_kicked();
    if units.is_empty() {
        // Another write's batch took this one too.
        return (NextStage::Kick(None), bio);
    }
    add(&dc.c.writeback_waits, 1);
    (NextStage::Wait(span(&units), Batch(units)), bio)
}

/// A kick ended: the drop bio is deferred (its flush finds what other
/// batches made ready). `owner` is dropped first (see `not_written`).
pub(crate) fn kicked<O>(completer: &Completer, owner: O, bio: Bio) {
    drop(owner);
    completer.endio(bio);
}

/// A batch wait ended with `res` (latched on the device by the shared
/// completion step): its units become ready, and `bio` drops them.
pub(crate) fn batch_done<O>(
    completer: &Completer,
    dc: &Arc<Dontcache>,
    owner: O,
    bio: Bio,
    batch: Batch,
    res: i64,
) {
    let Batch(units) = batch;
    if res < 0 {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        if !matches!(errno, libc::EINVAL | libc::EOPNOTSUPP | libc::ECANCELED) {
            add(&dc.c.writeback_errors, 1);
        }
    }
    drop(owner);
    for mut unit in units {
        dc.waited(&mut unit, res);
        make_ready_unit(dc, unit);
    }
    completer.endio(bio);
}

#[cfg(test)]
mod tests {
    use super::super::state::DropRuns;
    use super::*;

    fn unit(offset: u64, len: u64) -> BacklogEntry {
        BacklogEntry {
            key: 1,
            registered: false,
            offset,
            len,
            runs: DropRuns::All,
            reserved: len,
            completed: len,
            write: true,
            sync_first: false,
            keep: false,
            extra: Vec::new(),
            readahead: false,
        }
    }

    #[test]
    fn a_batch_spans_the_pages_of_its_writes() {
        let page = page_size();
        assert_eq!(span(&[]), None);
        assert_eq!(span(&[unit(0, 0)]), None);
        assert_eq!(
            span(&[unit(3 * page, page), unit(page / 2, page)]),
            Some((0, 4 * page))
        );
    }
}
