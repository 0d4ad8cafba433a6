//! What the backends, the completion step and the drop-behind need of an
//! open device: where its bytes live, its geometry, its in-flight count,
//! its write-back state and its dontcache state. The users' handle and the
//! submit path are in `device.rs`.

use std::fmt;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::config::Backend;
use super::dontcache::{self, Batch, Dontcache, DropPlan, Io, NextStage};
use super::lane::Inflight;
use super::mixing::Registration;
use super::null::memory::MemStore;
use super::writeback::WbState;
use crate::bio::{Bio, BioFlags, Buf, Op};
use crate::context;
use crate::task::Completer;

/// What a [`Device`](crate::Device) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A regular file: reads past its end are short, writes past it grow it.
    File,
    /// A block device: I/O past its end is refused.
    BlockDevice,
    /// An in-memory device of the null backend (fixed size, starts zeroed).
    Memory,
}

/// Where the bytes live.
#[derive(Debug)]
pub(crate) enum Target {
    File(File),
    Memory(MemStore),
}

/// Which of a device's open file descriptions an I/O is issued on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Description {
    /// The device's own.
    Device,
    /// A read-only twin with readahead off (per-bio dontcache reads of a
    /// device that keeps readahead); the device's own where it has none.
    NoReadahead,
    /// A read-only twin that keeps readahead (sequential reads of a device
    /// opened dontcache, whose own has it off); the device's own where it
    /// has none.
    Readahead,
}

/// The device's follow-up of one request, opaque to the request and the
/// backends: a dontcache I/O's drop-behind.
#[derive(Debug)]
pub(crate) struct FollowUp(pub(crate) DropPlan);

impl FollowUp {
    /// Whether the I/O is a write, which waits for its write-back.
    pub(crate) fn writes(&self) -> bool {
        self.0.writes()
    }

    /// The bio that carries the write-back stage of a write whose caller's
    /// bio completed already.
    pub(crate) fn take_stage_bio(&mut self) -> Option<Bio> {
        self.0.take_drop_bio()
    }
}

/// An open device, as its I/O sees it.
pub(crate) struct DeviceState {
    pub(crate) path: PathBuf,
    pub(crate) target: Target,
    pub(crate) kind: DeviceKind,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    pub(crate) direct: bool,
    pub(crate) logical_block_size: u32,
    /// Required buffer alignment (1 when not direct).
    pub(crate) mem_align: u32,
    pub(crate) size: u64,
    /// The engine's backend (the dontcache probe of a per-bio flag uses it).
    pub(crate) backend: Backend,
    pub(crate) inflight: Arc<Inflight>,
    /// Opened with `OpenOptions::dontcache`.
    pub(crate) whole_device_dontcache: bool,
    /// Dontcache state: set at open for a dontcache device, on the first
    /// `BioFlags::DONTCACHE` bio for another buffered one.
    pub(crate) dontcache: OnceLock<Arc<Dontcache>>,
    /// Write-back waits and the errors seen (see `writeback.rs`).
    pub(crate) wb: WbState,
    /// A block device's place among the process's buffered and direct
    /// opens of it (see `mixing.rs`); `None` for files and memory.
    pub(crate) mixing: Option<Registration>,
    /// The lanes this device's I/O is issued on, when it is steered to the
    /// CPUs that take its interrupts (`EngineBuilder::steer_direct_io`);
    /// `None`: the submitting CPU's lane.
    pub(crate) steer: Option<Box<[u32]>>,
}

impl fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceState")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl DeviceState {
    pub(crate) fn file(&self) -> Option<&File> {
        match &self.target {
            Target::File(f) => Some(f),
            Target::Memory(_) => None,
        }
    }

    /// The file behind `description` (`None` for a memory device).
    pub(crate) fn file_for(&self, description: Description) -> Option<&File> {
        match description {
            Description::Device => self.file(),
            Description::NoReadahead => self
                .dontcache()
                .and_then(Dontcache::read_fd)
                .or_else(|| self.file()),
            Description::Readahead => self
                .dontcache()
                .and_then(Dontcache::readahead_fd)
                .or_else(|| self.file()),
        }
    }

    /// The dontcache state, if the device has one yet.
    pub(crate) fn dontcache(&self) -> Option<&Dontcache> {
        self.dontcache.get().map(|dc| &**dc)
    }

    /// What the dontcache code is given of this device.
    pub(crate) fn io(&self) -> Io<'_> {
        Io {
            file: self.file(),
            wb: &self.wb,
        }
    }

    /// Whether `bio` is dontcache on this device, and its state if so (made
    /// on first use for a per-bio flag).
    pub(crate) fn dontcache_for(&self, bio: &Bio) -> Option<&Dontcache> {
        if self.direct || !matches!(bio.op(), Op::Read | Op::Write) {
            // O_DIRECT bypasses the page cache: nothing to drop.
            return None;
        }
        if self.whole_device_dontcache {
            return self.dontcache();
        }
        if !bio.flags().contains(BioFlags::DONTCACHE) {
            return None;
        }
        let dc = self.dontcache.get_or_init(|| {
            // In atomic context the probe is one preadv2(2), not the setup
            // of a private io_uring (the kernel checks the flag alike).
            let backend = if context::in_atomic() {
                Backend::Threads
            } else {
                self.backend
            };
            Arc::new(Dontcache::for_bios(
                self.file(),
                self.readable,
                self.size,
                backend,
            ))
        });
        Some(dc)
    }

    /// How many bytes of the read `bio` are in the page cache now
    /// (`EndedBio::cached_bytes`): none for `O_DIRECT`; `looked_up` when the
    /// dontcache route measured them; one residency query for a buffered
    /// read flagged `CACHE_HITS`; else not measured.
    pub(crate) fn cached_bytes(&self, bio: &Bio, looked_up: Option<u64>) -> Option<u64> {
        if self.direct {
            return Some(0);
        }
        if looked_up.is_some() {
            return looked_up;
        }
        let file = self.file()?;
        if !bio.flags().contains(BioFlags::CACHE_HITS) {
            return None;
        }
        let len = bio.buf().len() as u64;
        match super::cache::cached_bytes(file, bio.offset(), len) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::debug!(error = %e, "cachestat failed; the read's cache hits are not measured");
                None
            }
        }
    }

    /// The drop bio of one dontcache I/O: its handler (task context) drops
    /// the device's ready ranges.
    pub(crate) fn drop_bio(self: &Arc<Self>) -> Bio {
        let dev = Arc::clone(self);
        Bio::new(Op::Nop, 0, Buf::empty(), move |_| {
            if let Some(dc) = dev.dontcache() {
                dc.flush(dev.io(), false);
            }
        })
        .with_flags(BioFlags::COMPLETE_IN_TASK)
    }

    /// The follow-up's step 4 (atomic context): the I/O transferred `res`.
    pub(crate) fn transferred(&self, behind: &mut FollowUp, res: i64) {
        if let Some(dc) = self.dontcache() {
            dontcache::transferred(dc, &mut behind.0, res);
        }
    }

    /// The follow-up's end without a write-back stage; `dev` is dropped
    /// before the unit can be released (see `dontcache::not_written`).
    pub(crate) fn not_written(dev: Arc<Self>, completer: &Completer, behind: FollowUp, res: i64) {
        if let Some(dc) = dev.dontcache.get().cloned() {
            dontcache::not_written(completer, &dc, dev, behind.0, res);
        }
    }

    /// The follow-up's end after the write-back stage.
    pub(crate) fn written_back(
        dev: Arc<Self>,
        completer: &Completer,
        behind: FollowUp,
        stage_bio: Option<Bio>,
        res: i64,
    ) {
        if let Some(dc) = dev.dontcache.get().cloned() {
            dontcache::written_back(completer, &dc, dev, behind.0, stage_bio, res);
        }
    }

    /// Whether this device's dontcache writes are written back in batches
    /// (see `dontcache/batch.rs`): they then carry no wait of their own.
    pub(crate) fn batches_writes(&self) -> bool {
        self.dontcache().is_some_and(Dontcache::batches_writes)
    }

    /// A dontcache write (not `WAIT_WRITEBACK`) completed with `res`: the
    /// stage that follows it, and the bio to carry it.
    pub(crate) fn write_done(&self, behind: FollowUp, res: i64) -> (NextStage, Bio) {
        match self.dontcache() {
            Some(dc) => dontcache::write_done(dc, behind.0, res),
            None => (
                NextStage::Kick(None),
                Bio::new(Op::Nop, 0, Buf::empty(), |_| {}),
            ),
        }
    }

    /// A kick stage ended; `dev` is dropped before the bio is deferred.
    pub(crate) fn kicked(dev: Arc<Self>, completer: &Completer, bio: Bio) {
        dontcache::kicked(completer, dev, bio);
    }

    /// A batch wait ended with `res`.
    pub(crate) fn batch_done(
        dev: Arc<Self>,
        completer: &Completer,
        bio: Bio,
        batch: Batch,
        res: i64,
    ) {
        match dev.dontcache.get().cloned() {
            Some(dc) => dontcache::batch_done(completer, &dc, dev, bio, batch, res),
            None => drop(bio),
        }
    }

    /// The file a stage of a dontcache write is issued on: the batch
    /// description for a wait, any for a kick (it consumes no error).
    pub(crate) fn stage_file(&self, wait: bool) -> Option<&File> {
        if wait {
            self.dontcache().and_then(Dontcache::batch_fd)
        } else {
            self.file()
        }
    }

    /// Waits (task context) until no I/O is in flight and every dontcache
    /// drop is done; `false` if `deadline` passed first.
    pub(crate) fn drain_until(&self, deadline: Option<Instant>) -> bool {
        let left = |d: Instant| d.saturating_duration_since(Instant::now());
        if !self.inflight.wait_zero(deadline.map(left)) {
            return false;
        }
        let Some(dc) = self.dontcache() else {
            return true;
        };
        let idle = dc.wait_idle(self.io(), deadline);
        if idle {
            dc.sweep(self.io());
        }
        idle
    }
}
