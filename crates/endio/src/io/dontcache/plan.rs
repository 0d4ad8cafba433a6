//! What a dontcache request carries through its stages (steps 1-5 of the
//! module docs): the route to the backend, the look-up of what is cached,
//! and the completions that make its unit ready.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::drop::coalesce;
use super::mode::DontcacheMode;
use super::readahead::Claim;
use super::state::{BacklogEntry, Dontcache, DropRuns, Io, page_size};
use super::stats::add;
use crate::bio::{Bio, Op};
use crate::io::cache;
use crate::io::state::Description;
use crate::sys;
use crate::task::Completer;

/// The emulation's part of a request.
#[derive(Debug)]
pub(crate) struct DropPlan {
    /// Taken when the request becomes its write-back stage (whose bio it
    /// then is).
    pub(super) drop_bio: Option<Bio>,
    pub(super) unit: BacklogEntry,
}

impl DropPlan {
    /// Whether the I/O is a write, which waits for its write-back.
    pub(crate) fn writes(&self) -> bool {
        self.unit.write
    }

    /// The drop bio, to carry a write-back stage.
    pub(crate) fn take_drop_bio(&mut self) -> Option<Bio> {
        self.drop_bio.take()
    }
}

/// How one bio goes to the backend.
#[derive(Debug)]
pub(crate) struct Routing {
    pub(crate) rw_flags: i32,
    /// The description to issue it on.
    pub(crate) description: Description,
    pub(crate) plan: Option<DropPlan>,
    /// For a read whose pages were looked up: how many of its bytes were
    /// cached (for `EndedBio::cached_bytes`).
    pub(crate) cached_bytes: Option<u64>,
}

impl Routing {
    pub(crate) const PLAIN: Routing = Routing {
        rw_flags: 0,
        description: Description::Device,
        plan: None,
        cached_bytes: None,
    };
}

/// Bytes of `offset..offset + len` outside `uncached` (runs of page
/// indexes): the part of the range whose pages are cached.
fn cached_part(offset: u64, len: u64, uncached: &[Range<u64>], page: u64) -> u64 {
    let end = offset + len;
    let missing: u64 = uncached
        .iter()
        .map(|r| {
            let (s, e) = ((r.start * page).max(offset), (r.end * page).min(end));
            e.saturating_sub(s)
        })
        .sum();
    len - missing.min(len)
}

/// Adds to `runs` (uncached runs of `pages`, ascending) the parts of the
/// other pages that are in `pending` drops, keeping `runs` ascending and
/// disjoint.
fn inherit(pages: &Range<u64>, runs: &mut Vec<Range<u64>>, pending: &[(u64, Range<u64>)]) {
    let mut gaps = Vec::new();
    let mut at = pages.start;
    for r in runs.iter() {
        if r.start > at {
            gaps.push(at..r.start);
        }
        at = at.max(r.end);
    }
    if at < pages.end {
        gaps.push(at..pages.end);
    }
    let before = runs.len();
    for g in &gaps {
        for (_, p) in pending {
            let (s, e) = (g.start.max(p.start), g.end.min(p.end));
            if s < e {
                runs.push(s..e);
            }
        }
    }
    if runs.len() > before {
        coalesce(runs);
    }
}

/// Step 4, in atomic context: the I/O of a request that carries a plan
/// transferred `res` bytes (or failed); the caller's bio is completed by
/// the shared completion step.
pub(crate) fn transferred(dc: &Dontcache, plan: &mut DropPlan, res: i64) {
    let n = u64::try_from(res).unwrap_or(0);
    plan.unit.len = plan.unit.len.min(n);
    if n > 0 {
        dc.add_completed(n);
        plan.unit.completed = n;
    }
}

/// Step 4's end for an I/O without a write-back stage (a read, or a write
/// that failed or wrote nothing): its unit becomes ready.
///
/// Order, for the file's sake: `owner` (the request's reference to its
/// device) is dropped before the unit can be released (or its drop bio
/// run), so that the last reference, the one that closes the file, is
/// never dropped here but in task context (a drop bio's handler, or the
/// user's `Device`).
pub(crate) fn not_written<O>(
    completer: &Completer,
    dc: &Arc<Dontcache>,
    owner: O,
    mut plan: DropPlan,
    res: i64,
) {
    if res < 0 {
        plan.unit.keep = true;
    }
    make_ready(completer, dc, owner, plan);
}

/// Step 5's end, in atomic context: the write-back stage of a dontcache
/// write ended with `res`; `drop_bio` is the stage's bio when it was the
/// drop bio. The error itself was latched on the device by the shared
/// completion step. `owner` as in [`not_written`].
pub(crate) fn written_back<O>(
    completer: &Completer,
    dc: &Arc<Dontcache>,
    owner: O,
    mut plan: DropPlan,
    drop_bio: Option<Bio>,
    res: i64,
) {
    add(&dc.c.writeback_waits, 1);
    if res < 0 {
        let errno = i32::try_from(-res).unwrap_or(libc::EIO);
        if errno == libc::EINVAL || errno == libc::EOPNOTSUPP {
            // No IORING_OP_SYNC_FILE_RANGE here: the drop bio's handler
            // writes back first (task context may block).
            plan.unit.sync_first = true;
        } else {
            // A failed write-back leaves nothing to drop that is known
            // clean; the pages stay.
            plan.unit.keep = true;
            add(&dc.c.writeback_errors, 1);
        }
    }
    if drop_bio.is_some() {
        plan.drop_bio = drop_bio;
    }
    make_ready(completer, dc, owner, plan);
}

/// Steps 4/5's end: the unit becomes ready and its drop bio is deferred,
/// or, with nothing to drop, the unit is released at once.
fn make_ready<O>(completer: &Completer, dc: &Arc<Dontcache>, owner: O, plan: DropPlan) {
    let DropPlan { drop_bio, unit, .. } = plan;
    if unit.nothing_to_drop() && !unit.registered {
        let (reserved, completed) = (unit.reserved, unit.completed);
        drop(drop_bio);
        drop(owner);
        dc.release(1, reserved, completed);
        return;
    }
    drop(owner);
    make_ready_unit(dc, unit);
    if let Some(bio) = drop_bio {
        completer.endio(bio);
    }
}

/// A unit becomes ready (its drop bio, or another, is deferred after), or,
/// with nothing to drop, is released at once.
pub(super) fn make_ready_unit(dc: &Dontcache, unit: BacklogEntry) {
    if unit.nothing_to_drop() && !unit.registered {
        dc.release(1, unit.reserved, unit.completed);
        return;
    }
    if let Err(unit) = dc.ready.push(unit) {
        // Cannot happen: the queue has a place per backlog unit.
        tracing::error!("dontcache ready queue full; the range stays cached");
        dc.release(1, unit.reserved, unit.completed);
    }
}

impl Dontcache {
    /// How `bio` (a read or write of a buffered device, dontcache by the
    /// device or by its flag) goes to the backend. `drop_bio` makes the bio
    /// whose handler (task context) flushes the device's ready units: it is
    /// made here, so that backend threads never allocate. `Err` when the
    /// backlog is full and the caller may not wait.
    pub(crate) fn route(
        &self,
        io: Io<'_>,
        bio: &Bio,
        may_wait: bool,
        drop_bio: impl FnOnce() -> Bio,
    ) -> Result<Routing, ()> {
        let read = bio.op() == Op::Read;
        let len = bio.buf().len() as u64;
        let native = self.mode == DontcacheMode::Native;
        let page = page_size();
        let pages = bio.offset() / page..(bio.offset() + len).div_ceil(page);
        // A read keeps readahead where a description has it if it
        // continues the last read, or reads pages readahead brought in (a
        // read of the stream submitted out of order: on the description
        // without readahead, a page readahead marked would start readahead
        // there, of pages nobody owns).
        let sequential = read && self.ra.sequential(bio.offset(), len);
        // Only on a device opened dontcache: on another, the device's own
        // plain reads could cache pages a lookahead owns, and its drop
        // would take them.
        let can_read_ahead = read && io.file.is_some() && !pages.is_empty() && self.ra.fd.is_some();
        // Owned pages the I/O covers are its own to drop; a sequential read
        // also takes the runs the stream moved past by a whole lookahead.
        let past = sequential.then(|| {
            let ahead = self.ra.lookahead(pages.start, len, page);
            pages.start.saturating_sub(ahead.end - ahead.start)
        });
        let claim = if io.file.is_some() {
            self.ra.claim(&pages, past, may_wait)
        } else {
            Some(Claim::default())
        };
        let mut readahead = can_read_ahead
            && claim
                .as_ref()
                .is_some_and(|c| sequential || !c.inside.is_empty());
        let claim = claim.unwrap_or_default();
        let description = |readahead: bool| match (read, readahead, self.whole_device) {
            (true, true, _) => Description::Readahead,
            (true, false, false) if self.read_fd.is_some() => Description::NoReadahead,
            _ => Description::Device,
        };
        if native && read && !readahead {
            add(&self.c.native_ios, 1);
            // The kernel drops what the read brought in before the read
            // returns (in task context, so it always can).
            self.ra.give_back(claim, may_wait);
            return Ok(Routing {
                rw_flags: sys::RWF_DONTCACHE,
                description: description(false),
                plan: None,
                cached_bytes: None,
            });
        }
        // A read with readahead is emulated (see `readahead.rs`).
        let native = native && !(read && readahead);
        if !self.reserve(io, len, may_wait) {
            self.ra.give_back(claim, may_wait);
            return Err(());
        }
        if !read {
            self.write_opened();
        }
        add(
            if native {
                &self.c.native_ios
            } else {
                &self.c.emulated_ios
            },
            1,
        );
        // Relaxed: a unique number is all that is needed.
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut registered = false;
        let mut cached_bytes = None;
        let mut extra = Vec::new();
        let runs = match io.file {
            None => {
                readahead = false;
                DropRuns::All
            }
            Some(file) => {
                let mut runs = Vec::new();
                let queried = cache::uncached_runs(file, pages.clone(), &mut runs);
                match queried {
                    Ok(q) => {
                        add(&self.c.residency_queries, u64::from(q));
                        if read {
                            cached_bytes = Some(cached_part(bio.offset(), len, &runs, page));
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cachestat failed; the whole range counts as uncached")
                    }
                }
                // Pages cached only because readahead of this device's
                // dontcache reads brought them in are this I/O's to drop.
                if !claim.inside.is_empty() {
                    runs.extend(claim.inside);
                    coalesce(&mut runs);
                }
                extra = claim.behind;
                // Pages cached only because an earlier dontcache I/O of this
                // device has not dropped them yet are not "cached before":
                // this I/O inherits their drop (the earlier drop may find
                // them dirty again and skip them). In atomic context the
                // lock is only tried.
                let pending = if may_wait {
                    Some(self.pending.lock())
                } else {
                    self.pending.try_lock()
                };
                if let Some(mut pending) = pending {
                    let uncached: u64 = runs.iter().map(|r| r.end - r.start).sum();
                    if uncached < pages.end - pages.start {
                        inherit(&pages, &mut runs, &pending);
                    }
                    pending.extend(runs.iter().map(|r| (key, r.clone())));
                    registered = !runs.is_empty();
                }
                let uncached: u64 = runs.iter().map(|r| r.end - r.start).sum();
                let kept = (pages.end - pages.start) - uncached;
                add(&self.c.kept_bytes, kept * page);
                if readahead {
                    self.look_ahead(io, &pages, len, may_wait);
                }
                if runs.len() == 1 && runs[0] == pages {
                    DropRuns::All
                } else {
                    DropRuns::Some(runs)
                }
            }
        };
        let drop_bio = drop_bio();
        Ok(Routing {
            rw_flags: if native { sys::RWF_DONTCACHE } else { 0 },
            description: description(readahead),
            cached_bytes,
            plan: Some(DropPlan {
                drop_bio: Some(drop_bio),
                unit: BacklogEntry {
                    key,
                    registered,
                    offset: bio.offset(),
                    len,
                    runs,
                    reserved: len,
                    completed: 0,
                    write: !read,
                    sync_first: false,
                    keep: false,
                    extra,
                    readahead: read && readahead,
                },
            }),
        })
    }

    /// Before a sequential read of `pages` (`len` bytes) is issued with
    /// readahead: owns the pages of its lookahead that are not cached now.
    fn look_ahead(&self, io: Io<'_>, pages: &Range<u64>, len: u64, may_wait: bool) {
        add(&self.c.readahead_ios, 1);
        let Some(file) = io.file else {
            return;
        };
        let ahead = self.ra.lookahead(pages.end, len, page_size());
        // Only what is not owned yet is looked up: the rest may be cached
        // by now because readahead brought it, which the look-up cannot
        // tell from "cached before".
        let Some(gaps) = self.ra.unowned(&ahead, may_wait) else {
            return;
        };
        let mut runs = Vec::new();
        for gap in gaps {
            match cache::uncached_runs(file, gap, &mut runs) {
                Ok(q) => add(&self.c.residency_queries, u64::from(q)),
                // Owned pages are dropped; a failed look-up owns none.
                Err(_) => return,
            }
        }
        self.ra.own(&runs, may_wait);
    }

    /// A refused submit gives its unit back (its plan is dropped unused).
    pub(crate) fn unreserve(&self, plan: DropPlan) {
        if plan.unit.write {
            self.write_refused();
        }
        if plan.unit.registered {
            self.forget(&mut [plan.unit.key]);
        }
        self.release(1, plan.unit.reserved, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_drops_are_inherited_only_where_the_page_is_cached() {
        // Pages 0..10; uncached 2..4; pending drops of others: 0..1, 3..6, 20..30.
        let mut runs = Vec::new();
        runs.push(2..4);
        let pending = vec![(1, 0..1), (2, 3..6), (3, 20..30)];
        inherit(&(0..10), &mut runs, &pending);
        assert_eq!(runs, vec![0..1, 2..6]);
        let mut none = Vec::new();
        inherit(&(0..4), &mut none, &[]);
        assert!(none.is_empty());
    }

    #[test]
    // The slices are lists of page runs, one run each here.
    #[allow(clippy::single_range_in_vec_init)]
    fn the_cached_part_counts_bytes_of_the_range_only() {
        // 4 KiB pages; a read of 8 KiB from 2 KiB covers pages 0..3.
        assert_eq!(cached_part(2048, 8192, &[], 4096), 8192);
        assert_eq!(cached_part(2048, 8192, &[0..3], 4096), 0);
        // Page 0 uncached: its 2 KiB of the range came from the device.
        assert_eq!(cached_part(2048, 8192, &[0..1], 4096), 6144);
        assert_eq!(cached_part(2048, 8192, &[1..2, 5..9], 4096), 4096);
    }
}
